"""Fault injection for secrets: credentials in the environment never reach MLflow, outputs or logs.

Run: .venv/bin/python -m pytest -q tests/faults/test_secrets.py
Every workspace process gets fake credentials (`conftest.FAKE_SECRETS`: HF_TOKEN,
AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, random per session). After the tiny iteration of
`tiny_ws`, everything MLflow holds for that workspace and every stage output is searched for them.
That model-generated code cannot see them either is tests/faults/test_sandbox.py::
test_secrets_in_our_environment_are_not_visible.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_SECRETS, mlflow_client, workspace_env
from mlflow.entities import ViewType

pytestmark = pytest.mark.e2e
CANARIES = tuple(FAKE_SECRETS.values())


def _leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [c for c in CANARIES if c.encode() in data]


def _read(path: Path) -> bytes:
    """A file's bytes. SQLite files are read by another process: opening and closing a database
    file in this process (which holds MLflow connections) would drop this process's POSIX locks
    on it, the documented way to corrupt a live SQLite database."""
    if ".db" in path.name or path.suffix in (".sqlite", ".sqlite3"):
        return subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


def test_the_secrets_were_in_the_iterations_environment(tiny_ws):
    """Control: the pipeline's processes really had the canaries (otherwise the scans prove nothing)."""
    ws, _, _ = tiny_ws
    code = "import os; print(' '.join(os.environ.get(k, '') for k in %r))" % (list(FAKE_SECRETS),)
    out = subprocess.run([sys.executable, "-c", code], cwd=ws, env=workspace_env(ws), capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == list(CANARIES)
    assert all(c.startswith(("hf_canary_", "canary_")) and len(c) > 32 for c in CANARIES)


def test_no_secret_in_the_iterations_console_output(tiny_ws):
    _, proc, _ = tiny_ws
    assert _leaks(proc.stdout + proc.stderr) == []


def test_no_secret_in_any_mlflow_run(tiny_ws, tmp_path):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=50_000)
    assert it in {r.info.run_id for r in runs} and len(runs) >= 8  # the iteration and its stage runs
    leaks = {}
    artifact_files = 0
    for run in runs:
        rid = run.info.run_id
        fields = {
            "params": run.data.params,
            "tags": run.data.tags,
            "metric keys": list(run.data.metrics),
            "run info": [run.info.run_name, run.info.artifact_uri],
            "dataset inputs": [[d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source,
                                d.dataset.schema, d.dataset.profile, {t.key: t.value for t in d.tags}]
                               for d in (run.inputs.dataset_inputs if run.inputs else [])],
        }
        for what, value in fields.items():
            if found := _leaks(repr(value)):
                leaks[f"{rid} {what}"] = found
        # Every artifact, byte for byte (binary files included: the HF Trainer's training_args.bin
        # is a pickle of TrainingArguments, which has a hub_token field).
        local = Path(client.download_artifacts(rid, "", str(tmp_path / rid)))
        for f in (p for p in local.rglob("*") if p.is_file()):
            artifact_files += 1
            if found := _leaks(f.read_bytes()):
                leaks[f"{rid} artifact {f.relative_to(local)}"] = found
    assert artifact_files > 0  # the scan saw the logged checkpoints
    assert leaks == {}


def test_no_secret_in_the_model_registry(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    models = client.search_registered_models()
    versions = [v for m in models for v in client.search_model_versions(f"name = '{m.name}'")]
    assert {"posttrain", "posttrain-reward-model"} <= {m.name for m in models}
    assert any(v.tags.get("iteration") == it for v in versions)
    leaks = {f"model {m.name}": _leaks(repr([m.tags, m.description, m.aliases])) for m in models}
    leaks |= {f"version {v.name}/{v.version}": _leaks(repr([v.tags, v.description, v.source, v.run_link, v.aliases]))
              for v in versions}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_no_secret_in_stage_outputs_or_the_stores(tiny_ws):
    """Stage markers and training logs, and then every file under runs/ (the MLflow sqlite store and
    its WAL, artifacts, checkpoints, the DVC cache) and Prefect's home (its database and logs)."""
    ws, _, it = tiny_ws
    stages = ws / "runs" / "stages"
    markers = sorted(stages.glob("*/*/COMPLETE.json"))
    histories = sorted(stages.glob("*/*/log_history.json"))
    assert len(markers) >= 7 and histories
    assert {f"{p}": _leaks(p.read_bytes()) for p in markers + histories if _leaks(p.read_bytes())} == {}

    files = [p for root in (ws / "runs", ws / ".prefect") for p in root.rglob("*") if p.is_file()]
    assert any(it.encode() in _read(p) for p in files if p.name.startswith("mlflow.db"))  # control: the store
    assert {f"{p.relative_to(ws)}": found for p in files if (found := _leaks(_read(p)))} == {}
