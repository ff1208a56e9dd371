"""Shared fixtures. Every test process runs offline (as the default profile does)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import workspace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# What `dvc repro` of the data pipeline produces: its outs (gitignored) and the DVC cache holding
# them. DVC counts an out as changed when its cache entry is missing, so both travel together.
DATA_OUTPUTS = ("data/staging", "data/curated", ".dvc/cache")


def make_workspace(dest: Path, data_from: Path | None = None) -> Path:
    """A fresh git + DVC checkout of the project in `dest` (tests never touch the real runs/).

    With `data_from` (the `curated_ws` fixture), the data pipeline's outputs are copied in too, as a
    checkout after `dvc pull` has them: the flow's `dvc repro` then finds nothing changed instead of
    spending ~1 min per workspace re-curating identical data. The curation itself is tested where it
    runs for real: curated_ws and tests/test_data_dvc.py."""
    if data_from is not None:
        for rel in DATA_OUTPUTS:
            shutil.copytree(data_from / rel, dest / rel, dirs_exist_ok=True)
    return workspace.make(dest)


# Fake credentials, one random set per test session, in every workspace process's environment, as
# real ones would be on a workstation: tests/faults/test_secrets.py checks that none of them ends up
# in MLflow, stage outputs or logs. Random so that no earlier run's leftovers can match.
FAKE_SECRETS = {
    "HF_TOKEN": f"hf_canary_{secrets.token_hex(16)}",
    "AWS_SECRET_ACCESS_KEY": f"canary_{secrets.token_hex(16)}",
    "MLFLOW_TRACKING_PASSWORD": f"canary_{secrets.token_hex(16)}",
}


def workspace_env(ws: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(ws / ".prefect"),
        "POSTTRAIN_RUNS": str(ws / "runs"),
        "PYTHONPATH": str(ws),  # the workspace's copy of the code, as in a fresh clone
        **FAKE_SECRETS,
    })
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    return env


def posttrain(ws: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=ws, env=workspace_env(ws),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def curated(tmp_path_factory) -> Path:
    """The curated splits, built once per session with the real curate stage."""
    from core.config import load_params
    from tasks.curate import pipeline as curate

    out = tmp_path_factory.mktemp("curated") / "curated"
    curate.run(load_params(ROOT / "params.yaml").curate, out, root=ROOT)
    return out


def iteration_id(output: str) -> str:
    """The MLflow parent run id printed in the run table's title."""
    import re

    found = re.findall(r"iteration ([0-9a-f]{32})", output)
    assert found, output[-3000:]
    return found[-1]


@pytest.fixture(scope="session")
def curated_ws(tmp_path_factory) -> tuple[Path, str]:
    """A workspace in which the whole data pipeline ran once with the real `dvc repro`: (workspace,
    dvc's output). Other workspaces start from its outputs (make_workspace(data_from=...))."""
    ws = make_workspace(tmp_path_factory.mktemp("curated_ws"))
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=ws, env=workspace_env(ws), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def tiny_ws(tmp_path_factory, curated_ws):
    """One workspace in which a first tiny iteration has completed: (workspace, process, run id)."""
    ws = make_workspace(tmp_path_factory.mktemp("ws"), data_from=curated_ws[0])
    proc = posttrain(ws, "run", "--profile", "tiny")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return ws, proc, iteration_id(proc.stdout)


def tiny_gates(ws: Path) -> dict:
    """The tiny profile's gates (gates.tiny.yaml over gates.yaml), merged: a base to edit in a test."""
    from evaluations import gates

    return gates.load(ws / "evaluations" / "gates.tiny.yaml")


def mlflow_client(ws: Path):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{ws / 'runs' / 'mlflow.db'}")
    return MlflowClient()


def children(client, parent_id: str) -> list:
    exp = client.get_experiment_by_name("posttrain")
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def latest_iteration(client):
    exp = client.get_experiment_by_name("posttrain")
    return client.search_runs([exp.experiment_id], "tags.kind = 'iteration'", order_by=["attributes.start_time DESC"])[0]


def prefect_state(ws: Path, flow_run_id: str, env: dict | None = None) -> str:
    """A flow run's state as the Prefect API (the one the UI uses) reports it."""
    script = (
        "import asyncio, sys\nfrom prefect.client.orchestration import get_client\n"
        "async def main():\n    async with get_client() as c:\n"
        f"        r = await c.read_flow_run('{flow_run_id}')\n        print(r.state.type.value)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ws, env=env or workspace_env(ws), capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]
