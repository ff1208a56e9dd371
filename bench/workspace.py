"""A throwaway copy of the project for benchmarks and tests: its own git repo, runs/ and Prefect
home, so neither ever reads or writes the real runs/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Earlier benchmark results are not part of what a benchmark runs on.
SKIP = ("bench/results/",)


def checkout_files(source: Path = ROOT) -> list[str]:
    """What a fresh clone of `source` holds (tracked files, plus new ones git does not ignore), as
    paths relative to it: the code, params.yaml, dvc.yaml/dvc.lock, data contracts. runs/, data
    outputs and caches are produced, never copied."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=source, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    return [f for f in listed if not f.startswith(SKIP) and (source / f).is_file()]


def make(dest: Path, source: Path = ROOT) -> Path:
    """A fresh git + DVC checkout of the project at `source` (this checkout) in `dest`: tests and
    benchmarks run on it, never on the real runs/."""
    for rel in checkout_files(source):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest / rel)
    git = ["git", "-c", "user.name=posttrain", "-c", "user.email=posttrain@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-qm", "workspace"], cwd=dest, check=True)
    return dest


def seed_data(dest: Path, source: Path = ROOT) -> list[str]:
    """Copy the data outputs of `source`'s dvc.lock, and their objects in its DVC cache, that exist
    there into `dest`. `dvc repro` in `dest` then rebuilds only what does not match the lock
    (nothing, when the checkout's data is current) instead of curating from scratch (~1-2 min);
    without the cache objects DVC would count every output "not in cache" and rebuild it.
    Returns the copied paths."""
    import yaml

    lock = yaml.safe_load((source / "dvc.lock").read_text()) or {}
    copied = []
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []):
            files = [(source / out["path"], dest / out["path"])]
            if "md5" in out:  # DVC 3 cache layout: .dvc/cache/files/md5/<first 2>/<rest>
                rel = Path(".dvc", "cache", "files", "md5", out["md5"][:2], out["md5"][2:])
                files.append((source / rel, dest / rel))
            for src, dst in files:
                if src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
                    copied.append(str(src.relative_to(source)))
    return copied


def base_env() -> dict[str, str]:
    """Offline, no telemetry: what the default profile sets for every process."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"})
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    return env


@dataclass(frozen=True)
class Workspace:
    root: Path
    runs: Path  # POSTTRAIN_RUNS: a fresh one per repetition makes every stage run again

    def env(self) -> dict[str, str]:
        return {**base_env(), "PREFECT_HOME": str(self.root / ".prefect"), "POSTTRAIN_RUNS": str(self.runs),
                "PYTHONPATH": str(self.root)}  # the workspace's copy of the code, as in a fresh clone

    def with_runs(self, name: str) -> "Workspace":
        return Workspace(self.root, self.root / name)

    def posttrain(self, *args: str, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
        """Run the CLI as a user would; returns the process and its wall time in seconds."""
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        return proc, time.perf_counter() - started
