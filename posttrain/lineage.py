"""Lineage of a registered model version, answered from MLflow (and dvc.lock at the recorded git
revision) alone:

    model version -> stage run (config, version key, git SHA, Prefect flow run) -> parent version
    -> ... -> base checkpoint, and every dataset used (DVC md5) checked against dvc.lock.

    posttrain lineage posttrain@champion [--json]
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from pipeline import ids

SCHEMA = Path(__file__).with_name("lineage.schema.json")


def _dvc_lock_at(project: Path, git_sha: str) -> dict[str, str] | None:
    """{path: md5} of dvc.lock at the recorded revision (None if that revision is not here)."""
    rev = git_sha.removesuffix("-dirty")
    out = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=project, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    stages = (yaml.safe_load(out.stdout) or {}).get("stages", {})
    return {o["path"]: o["md5"] for s in stages.values() for o in s.get("outs", [])}


def _stage_entry(client, mv) -> dict:
    run = client.get_run(mv.run_id)
    tags, params = run.data.tags, run.data.params
    return {
        "model_version": f"{mv.name}/{mv.version}",
        "stage": tags["stage"],
        "run_id": run.info.run_id,
        "run_status": run.info.status,
        "iteration": tags.get("iteration", ""),
        "version_key": tags.get("version_key", ""),
        "git_sha": tags.get("git_sha", ""),
        "prefect_flow_run_id": tags.get("prefect_flow_run_id", ""),
        "profile": tags.get("profile", ""),
        "parent_version": mv.tags.get("parent_version", ""),
        "input_model": params.get("input.model", ""),
        "gate": {k: v for k, v in mv.tags.items() if k.startswith("gate.")},
        "datasets": [{"name": d.dataset.name, "digest": d.dataset.digest, "source": json.loads(d.dataset.source).get("uri", "")}
                     for d in run.inputs.dataset_inputs],
    }


def lineage(ref: str, project: Path) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient()
    mv = ids.model_version(client, ref)
    chain = []
    while True:
        entry = _stage_entry(client, mv)
        chain.append(entry)
        parent = entry["parent_version"]
        if not parent or parent == "base":
            break
        mv = client.get_model_version(mv.name, parent)
    first = chain[-1]
    lock = _dvc_lock_at(project, first["git_sha"])
    datasets = {}
    for entry in chain:
        for d in entry["datasets"]:
            path = "data/curated/" + d["name"] + ".jsonl"
            datasets[d["name"]] = {"md5": d["digest"], "path": path,
                                   "dvc_lock_md5": lock.get(path) if lock else None,
                                   "matches_dvc_lock": bool(lock) and lock.get(path) == d["digest"]}
    return {
        "model": ref,
        "resolved": chain[0]["model_version"],
        "chain": chain,
        "base_model": first["input_model"],
        "datasets": datasets,
        "dvc_lock_revision": first["git_sha"].removesuffix("-dirty"),
        "git_sha": chain[0]["git_sha"],
    }


def validate(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def render(doc: dict) -> str:
    lines = [f"{doc['model']} = {doc['resolved']}"]
    for e in doc["chain"]:
        lines.append(f"  {e['model_version']:<16} stage={e['stage']:<13} run={e['run_id']} key={e['version_key'][:12]} "
                     f"git={e['git_sha'][:12]} prefect_flow_run={e['prefect_flow_run_id']}")
        for d in e["datasets"]:
            lines.append(f"      dataset {d['name']:<17} md5={d['digest']}")
    lines.append(f"  base checkpoint: {doc['base_model']}")
    lines.append(f"  dvc.lock @ {doc['dvc_lock_revision'][:12]}:")
    for name, d in sorted(doc["datasets"].items()):
        lines.append(f"      {d['path']:<40} md5={d['md5']} {'matches dvc.lock' if d['matches_dvc_lock'] else 'NOT in dvc.lock at that revision'}")
    return "\n".join(lines)
