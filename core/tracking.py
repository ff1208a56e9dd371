"""MLflow at the edges: one parent run per iteration, one child run per stage, model versions.

Runs are addressed by id through `MlflowClient`, never through a process-wide "active run":
Prefect may run tasks in worker threads, and leaving a `with mlflow.start_run(run_id)` block marks
the run FINISHED while its stage may still be training.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import warnings
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path

log = logging.getLogger(__name__)

EXPERIMENT = "posttrain"
# How long a process waits for another one's store creation/migration or registry write before it
# gives up (a fresh store migrates in a few seconds; a registry write takes milliseconds).
STORE_LOCK_TIMEOUT_S = 300.0
_STORE_LOCKS: dict[str, object] = {}  # lock file -> its FileLock, one object per file (reentrant in a thread)
_READY: set[str] = set()  # sqlite URIs this process already opened (created/migrated) under the lock


def tracking_uri(runs: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs / 'mlflow.db'}"


def store_lock(uri: str | None = None) -> AbstractContextManager:
    """The cross-process lock of a local SQLite store (`<db>.lock` next to the database): held while
    a process creates/migrates the store and around registry writes (versions, their tags, aliases),
    so that two iterations on one store never race MLflow's check-then-insert (UNIQUE constraint
    failures) or migrate a fresh database twice. Reentrant within a thread; other threads and
    processes wait. A tracking server orders its own writes: no lock (a no-op context) there."""
    import mlflow

    uri = uri or mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    path = f"{uri.removeprefix('sqlite:///')}.lock"
    lock = _STORE_LOCKS.get(path)
    if lock is None:
        lock = _STORE_LOCKS.setdefault(path, FileLock(path, timeout=STORE_LOCK_TIMEOUT_S))
    return lock  # type: ignore[return-value]


def configure(runs: Path) -> str:
    """Point this process at the store and fail in seconds if a server is unreachable."""
    import mlflow

    uri = tracking_uri(runs)
    if uri.startswith("sqlite:///"):
        runs.mkdir(parents=True, exist_ok=True)
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if uri not in _READY:
            _open_sqlite(uri, db)
            _READY.add(uri)
    elif uri.startswith(("http://", "https://")):
        parsed = urllib.parse.urlparse(uri)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as err:
            raise ConnectionError(f"MLflow tracking server {uri} is unreachable: {err}. Start it or fix MLFLOW_TRACKING_URI.") from err
    mlflow.set_tracking_uri(uri)
    return uri


def _open_sqlite(uri: str, db: Path) -> None:
    """Open (and on first use create and migrate) the SQLite store, one process at a time: MLflow
    creates the tables of an empty database in every process that finds it empty, so two processes
    starting together on a fresh store fail (`table ... already exists`, alembic revision
    mismatches). Under the lock the first one migrates; the others then find a current schema.
    MLflow caches the opened stores per process, so this runs once per process and URI."""
    from mlflow import MlflowClient

    with store_lock(uri):
        # WAL lets two iterations write the same store at once (readers never block the writer);
        # the mode is stored in the database file, so setting it once is enough.
        with closing(sqlite3.connect(db, timeout=30)) as con:
            con.execute("PRAGMA journal_mode=WAL")
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # the tracking store: tables, migrations, experiment 0
        client.search_registered_models(max_results=1)  # the model registry store over the same database


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
    with store_lock():  # two first iterations would both create it (UNIQUE name): look again under the lock
        exp = client.get_experiment_by_name(EXPERIMENT)
        return exp.experiment_id if exp is not None else client.create_experiment(EXPERIMENT, artifact_location=location)


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


def start_child(runs: Path, parent_id: str, stage: str, tags: dict[str, str], run_name: str | None = None) -> str:
    """A stage's run under its iteration, named by its node (`evaluate.sft`; default: the stage)."""
    from mlflow import MlflowClient

    run = MlflowClient().create_run(
        experiment_id(runs), run_name=run_name or stage, tags={"mlflow.parentRunId": parent_id, "stage": stage, **tags}
    )
    return run.info.run_id


SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default sampling; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


@contextmanager
def system_metrics(run_id: str, interval_s: float = SYSTEM_METRICS_INTERVAL_S):
    """Inside: MLflow's own monitor samples CPU, memory, disk, network (and GPU where there is one)
    into `run_id` as system/* metrics."""
    import logging

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # It announces every start and stop at INFO: four lines per stage in the terminal.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s)  # the URI configure() set
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.finish()


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


def log_history(run_id: str, history: list[dict], before_step: int | None = None) -> None:
    """A trainer's per-step log (loss, grad_norm, rewards, ...) as MLflow metric series; with
    before_step, only the steps before it (those a resumed trainer did not stream again)."""
    for entry in history:
        step = int(entry.get("step", 0))
        if before_step is not None and step >= before_step:
            continue
        values = {f"train/{k}": v for k, v in entry.items() if k not in ("step", "epoch") and isinstance(v, (int, float))}
        if values:
            log_metrics(run_id, values, step=step)


# The stage run a trainer in this thread streams its per-step log to (stream_metrics): set by the
# runner around a stage body. A context variable, not a global: Prefect may run tasks in threads.
_STREAM: ContextVar[dict | None] = ContextVar("posttrain_stream", default=None)


@contextmanager
def streaming_to(run_id: str):
    """Inside: stream_metrics() logs to `run_id` as it is called. Yields the state: "steps" counts
    what was streamed (0: the body logged nothing per step), "first_step" is the earliest step."""
    state = {"run_id": run_id, "steps": 0, "first_step": None}
    token = _STREAM.set(state)
    try:
        yield state
    finally:
        _STREAM.reset(token)


def stream_metrics(values: dict[str, float], step: int) -> bool:
    """Log one step's values to the stage run being streamed to, at once (a killed stage keeps its
    curves up to its last step). False when no stage run is set (a trainer outside a stage)."""
    state = _STREAM.get()
    if state is None or not values:
        return False
    log_metrics(state["run_id"], values, step=step)
    state["steps"] += 1
    state["first_step"] = step if state["first_step"] is None else min(state["first_step"], step)
    return True


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


def log_model(run_id: str, checkpoint: Path, artifact_path: str, description: str = "") -> None:
    """Log a stage checkpoint under `artifact_path` of `run_id` as an MLflow transformers model
    (core.mlflow_model), which the registry's versions point at. It is built in a temporary
    directory beside the checkpoint, on the same file system, so that its weights are hard links to
    the checkpoint's files rather than copies; a build killed half-way leaves it in an unfinished
    stage dir, which is cleared before the stage runs again."""
    from core import mlflow_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=checkpoint.parent, prefix=".mlflow_model-") as tmp:
        built = mlflow_model.build(checkpoint, Path(tmp) / "model", description)
        log.info("MLflow model of %s built in %.1f s (%d bytes besides the checkpoint's files)", checkpoint,
                 time.perf_counter() - started, mlflow_model.new_bytes(built))
        log_artifacts(run_id, built, artifact_path)


def register(run_id: str, model_name: str, artifact_path: str, tags: dict[str, str]) -> str:
    """Register the model logged under `artifact_path` of `run_id` (log_model); returns the version.
    Under the store lock: two iterations registering at once would both create the registered model."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    with store_lock():
        try:
            client.get_registered_model(model_name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(model_name, tags={"pipeline": model_name})
        mv = client.create_model_version(model_name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def set_alias(model_name: str, alias: str, version: str) -> None:
    """Under the store lock: MLflow inserts a new alias after checking it is absent, and two
    processes setting the same new alias at once fail on the UNIQUE constraint."""
    from mlflow import MlflowClient

    with store_lock():
        MlflowClient().set_registered_model_alias(model_name, alias, version)


def set_version_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    """Tags on a model version, under the store lock (same check-then-insert as an alias: two
    iterations gating the same reused version would race on the UNIQUE constraint)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    with store_lock():
        for k, v in tags.items():
            client.set_model_version_tag(model_name, version, k, str(v))
