"""MLflow at the edges: one parent run per iteration, one child run per stage, model versions.

Runs are addressed by id through `MlflowClient`, never through a process-wide "active run":
Prefect may run tasks in worker threads, and leaving a `with mlflow.start_run(run_id)` block marks
the run FINISHED while its stage may still be training.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
import urllib.parse
import warnings
from contextlib import closing
from pathlib import Path

EXPERIMENT = "posttrain"


def tracking_uri(runs: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs / 'mlflow.db'}"


def configure(runs: Path) -> str:
    """Point this process at the store and fail in seconds if a server is unreachable."""
    import mlflow

    uri = tracking_uri(runs)
    if uri.startswith("sqlite:///"):
        runs.mkdir(parents=True, exist_ok=True)
        # WAL lets two iterations write the same store at once (readers never block the writer);
        # the mode is stored in the database file, so setting it once is enough.
        with closing(sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=30)) as con:
            con.execute("PRAGMA journal_mode=WAL")
    elif uri.startswith(("http://", "https://")):
        parsed = urllib.parse.urlparse(uri)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as err:
            raise ConnectionError(f"MLflow tracking server {uri} is unreachable: {err}. Start it or fix MLFLOW_TRACKING_URI.") from err
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(runs: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri(runs).startswith("sqlite:///"):
        # Without an explicit location a sqlite store writes artifacts to ./mlruns of the cwd.
        location = (runs / "mlartifacts").as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def git_sha(project: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True)
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project, capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def start_parent(runs: Path, name: str, tags: dict[str, str], params: dict[str, object]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.create_run(experiment_id(runs), run_name=name, tags=tags)
    log_params(run.info.run_id, params)
    return run.info.run_id


def start_child(runs: Path, parent_id: str, stage: str, tags: dict[str, str]) -> str:
    from mlflow import MlflowClient

    run = MlflowClient().create_run(
        experiment_id(runs), run_name=stage, tags={"mlflow.parentRunId": parent_id, "stage": stage, **tags}
    )
    return run.info.run_id


def log_params(run_id: str, params: dict[str, object]) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        MlflowClient().log_batch(run_id, params=items[i : i + 100])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    for i in range(0, len(items), 1000):
        MlflowClient().log_batch(run_id, metrics=items[i : i + 1000])


def log_history(run_id: str, history: list[dict]) -> None:
    """A trainer's per-step log (loss, grad_norm, rewards, ...) as MLflow metric series."""
    for entry in history:
        step = int(entry.get("step", 0))
        values = {f"train/{k}": v for k, v in entry.items() if k not in ("step", "epoch") and isinstance(v, (int, float))}
        if values:
            log_metrics(run_id, values, step=step)


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v))


def end_run(run_id: str, status: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_terminated(run_id, status=status)


def log_dataset(run_id: str, path: Path, md5: str, name: str, context: str) -> None:
    """Log a dataset input whose digest is its DVC md5 (MLflow's own digest of HF datasets
    skips list columns such as `messages`, so it would not change when the data does).

    Through the client by run id: `with mlflow.start_run(run_id)` would end (FINISH) the run on exit."""
    from mlflow import MlflowClient
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():  # two registered local-file source classes both match; same thing
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(Path(path).resolve().as_uri())
    dataset = MetaDataset(source=source, name=name, digest=md5)
    MlflowClient().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def log_artifact(run_id: str, path: Path) -> None:
    from mlflow import MlflowClient

    MlflowClient().log_artifact(run_id, str(path))


def log_artifacts(run_id: str, local_dir: Path, artifact_path: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().log_artifacts(run_id, str(local_dir), artifact_path)


def register(run_id: str, model_name: str, artifact_path: str, tags: dict[str, str]) -> str:
    """Register the checkpoint logged under `artifact_path` of `run_id`; returns the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, tags={"pipeline": model_name})
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    mv = client.create_model_version(model_name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def set_alias(model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, version)
