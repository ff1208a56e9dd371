"""The DVC edge: run the data pipeline with the real `dvc` CLI and read versions from dvc.lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

# The last stage of the data pipeline in dvc.yaml: `dvc repro` of it runs every curation stage it
# depends on (sources -> clean -> mix per split family, then decontaminate/validate/publish), and
# its outs in dvc.lock are the curated splits, whose md5s are the data versions of record.
CURATE_TARGET = "curate_publish"


class DVCError(RuntimeError):
    pass


def _env() -> dict[str, str]:
    # dvc.yaml commands call `python -m posttrain ...`: make that the interpreter running us.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def dvc(project: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise DVCError(f"`dvc {' '.join(args)}` failed in {project} (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def repro(project: Path, stage: str, runs: Path) -> str:
    """`dvc repro STAGE`, one process at a time: DVC's own repo lock makes a concurrent second
    `dvc repro` fail instead of wait, and two iterations started together both call this."""
    from filelock import FileLock

    runs.mkdir(parents=True, exist_ok=True)
    with FileLock(str(runs / "dvc-repro.lock")):
        return dvc(project, "repro", stage)


def locked_outs(project: Path, stage: str) -> dict[str, str]:
    """{out path: md5} of a stage as recorded in dvc.lock (the data version of record)."""
    lock = project / "dvc.lock"
    if not lock.is_file():
        raise DVCError(f"{lock} missing: run `dvc repro {stage}` first")
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise DVCError(f"{lock} has no stage '{stage}': run `dvc repro {stage}`")
    return {o["path"]: o["md5"] for o in stages[stage].get("outs", [])}
