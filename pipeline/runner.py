"""Runs one stage as a versioned, tracked, idempotent step (no Prefect here).

execute(): version key -> output dir; a complete dir with the same key is reused (cache hit) in
any later iteration once its files match the digests its marker recorded (a damaged one is moved
aside to `<dir>.damaged-<UTC time>` and rebuilt); otherwise: MLflow child run, the stage body,
checkpoint logged and registered, marker written last. Any exception marks the MLflow run FAILED, registers nothing,
and is re-raised as StageFailed naming the stage.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from contextvars import ContextVar
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from filelock import FileLock

from core import distributed, tracking
from core.config import Params
from core.paths import Layout, layout
from core.stage_dir import is_complete, mark_complete, read_marker, verify, version_key

log = logging.getLogger(__name__)

# The version key a launcher computed for the stage it sent here (SkyPilot's VERSION_KEY env);
# execute() refuses to run under any other key. Set by pipeline.standalone for its one stage.
EXPECT_KEY: ContextVar[str | None] = ContextVar("EXPECT_KEY", default=None)


class StageFailed(RuntimeError):
    def __init__(self, stage: str, reason: str):
        super().__init__(f"stage '{stage}' failed: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Iteration:
    """What every stage task needs to know about the iteration: small, plain, serialisable.
    `params` is the config parsed once when the iteration opened (profile + overrides applied)."""

    project: str
    profile: str
    overrides: tuple[str, ...]
    parent_run_id: str
    flow_run_id: str
    git_sha: str
    params: Params = field(repr=False, compare=False)

    def layout(self) -> Layout:
        return layout(self.project)

    def tags(self) -> dict[str, str]:
        return {"profile": self.profile, "git_sha": self.git_sha, "prefect_flow_run_id": self.flow_run_id,
                "iteration": self.parent_run_id, "backend": "local"}


@dataclass
class Record:
    """A stage's recorded output: what downstream stages, the run table and lineage read."""

    stage: str
    key: str
    out: str
    run_id: str
    metrics: dict[str, float]
    model: str | None = None
    model_version: str | None = None
    label: str = ""
    cached: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def required(cls) -> tuple[str, ...]:
        """The marker keys a Record cannot be built without."""
        return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)

    @classmethod
    def from_marker(cls, out: Path) -> "Record":
        """MarkerError (core.stage_dir), naming the file, for a marker that is no JSON object or lacks a field."""
        meta = read_marker(out, cls.required())
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "cached"}, cached=True)


def damage(out: Path) -> list[str]:
    """What is wrong with a complete stage dir (empty: reusable): core.stage_dir.verify with the
    fields a Record needs, and the marker's version key must be the one its directory is named after."""
    problems = verify(out, Record.required())
    if not problems:
        recorded_key = str(read_marker(out)["key"])
        if not recorded_key.startswith(out.name):
            problems.append(f"COMPLETE.json: version key {recorded_key[:20]}, expected {out.name}")
    return problems


def execute(
    it: Iteration,
    stage: str,
    *,
    config: dict,
    inputs: dict[str, str],
    code: str,
    body: Callable[[Path], dict[str, float]],
    datasets: dict[str, tuple[str, str]] | None = None,
    model_name: str | None = None,
    parent_version: str | None = None,
    label: str = "",
    extra: dict | None = None,
    backend: str = "local",
) -> Record:
    """inputs: {name: version key or md5 of each input}; datasets: {name: (path, md5)} to log;
    model_name: register out/model under this registered model."""
    lay = it.layout()
    key = version_key(stage, config, inputs, code)
    out = lay.stage_dir(stage, key)
    expected = EXPECT_KEY.get()
    if expected and expected != key:
        raise StageFailed(stage, f"this checkout computes version key {key[:20]}, the launcher sent {expected[:20]}: "
                                 f"code, config or inputs differ from what the iteration launched; launch again "
                                 f"from the same commit")
    if not distributed.is_main():
        return _execute_worker(stage, key, out, body, label)
    tracking.configure(lay.runs)
    name = f"{stage}.{label}" if label else stage
    if backend == "skypilot":
        record = _execute_remote(it, stage, name, key)
        _link(it, name, record, reused=record.cached)
        return record
    out.parent.mkdir(parents=True, exist_ok=True)
    # Two iterations reaching the same stage version at once: the second waits here, then reuses
    # the first one's output instead of deleting a directory that is still being written.
    with FileLock(f"{out}.lock"):
        if is_complete(out) and _intact(out, name, key):
            record = Record.from_marker(out)
            _link(it, name, record, reused=True)
            return record
        if distributed.in_solo() and stage != "curate":
            # A trainer here would wait for processes that are not in it (they wait for rank 0).
            raise StageFailed(stage, f"'{name}' has no complete output for this config, and a distributed launch "
                                     f"builds only the stage it was started for; build it first: "
                                     f"posttrain stage {name} --profile {it.profile}")
        if out.exists():
            _clear_unfinished(out)
        out.mkdir(parents=True, exist_ok=True)
        distributed.barrier()  # the other processes start the body only in a prepared directory

        run_id = tracking.start_child(lay.runs, it.parent_run_id, stage, {**it.tags(), "version_key": key, "label": label},
                                      run_name=name)
        try:
            record = _run_body(it, stage, key, out, run_id, config=config, inputs=inputs, body=body, datasets=datasets,
                               model_name=model_name, parent_version=parent_version, label=label, extra=extra)
        except BaseException as err:
            # Exceptions are the stage failing; other BaseExceptions (SIGTERM via Prefect's
            # TerminationSignal, Ctrl-C, SystemExit) are the process being stopped.
            tracking.end_run(run_id, "FAILED" if isinstance(err, Exception) else "KILLED")
            tracking.set_tags(run_id, {"error": f"{type(err).__name__}: {err}"[:4000]})
            if isinstance(err, Exception):
                raise StageFailed(stage, f"{type(err).__name__}: {err}") from err
            raise
        tracking.end_run(run_id, "FINISHED")
        _link(it, name, record, reused=False)
        return record


def _intact(out: Path, name: str, key: str) -> bool:
    """A complete dir may be reused only if damage() finds nothing; a damaged one is moved aside
    (nothing is deleted) with one warning line, and the stage is rebuilt as if it had never run.
    Downstream outputs are keyed by this stage's version key, not its bytes, and were built from
    it before the damage: they stay reusable, each checked here in turn when it is reused."""
    problems = damage(out)
    if not problems:
        return True
    aside = out.with_name(f"{out.name}.damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%fZ}")
    out.rename(aside)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    log.warning("stage '%s' version %s: damaged output, %s%s; moved aside to %s, rebuilding the stage",
                name, key[:20], problems[0], more, aside)
    return False


def _clear_unfinished(out: Path) -> None:
    """An unfinished attempt: none of its outputs is reused as if complete, except trainer
    checkpoints that carry their own marker (out/trainer[/<phase>]/checkpoint-N/COMPLETE.json,
    written after the checkpoint's last file): the trainer resumes from the last one. Unmarked
    checkpoints (killed mid-save) go with everything else."""
    keep = {c for c in (out / "trainer").rglob("checkpoint-*") if c.is_dir() and is_complete(c)}
    stack = [out]
    while stack:
        for path in stack.pop().iterdir():
            if path in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                if any(k.is_relative_to(path) for k in keep):
                    stack.append(path)  # holds a kept checkpoint deeper down
                else:
                    shutil.rmtree(path)
            else:
                path.unlink()


def _run_body(it: Iteration, stage: str, key: str, out: Path, run_id: str, *, config: dict, inputs: dict[str, str],
              body: Callable[[Path], dict[str, float]], datasets: dict[str, tuple[str, str]] | None,
              model_name: str | None, parent_version: str | None, label: str, extra: dict | None) -> Record:
    """The body inside its MLflow child run: params and datasets logged, metrics checked and logged,
    small records and the model logged, the model registered, and the marker written last."""
    tracking.log_params(run_id, {**{f"config.{k}": v for k, v in _flatten(config).items()},
                                 **{f"input.{k}": v for k, v in inputs.items()}})
    for ds_name, (path, md5) in (datasets or {}).items():
        tracking.log_dataset(run_id, Path(path), md5, ds_name, context=stage)
    started = time.perf_counter()
    # Trainers log each step to the run as they go; CPU, memory and disk are sampled beside them.
    with tracking.streaming_to(run_id) as streamed, tracking.system_metrics(run_id):
        metrics = body(out)
    # Wall time of the stage's own work (training / generation), without tracking, hashing,
    # locking or registration: bench/ compares it with the flow's wall time (overhead).
    metrics["compute_s"] = time.perf_counter() - started
    metrics["world_size"] = float(distributed.world_size())
    metrics.update(_gpu_cost(it, metrics["compute_s"]))
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(f"non-finite metrics {bad}")
    tracking.log_metrics(run_id, metrics)
    history = out / "log_history.json"
    if history.is_file():  # what was not streamed: all of it, or the steps before a resumed trainer's first
        tracking.log_history(run_id, json.loads(history.read_text()), streamed["first_step"])
    # The stage's small records (eval samples, scores, step logs) go to MLflow too, so an
    # audit or a report needs only the tracking server, not this machine's disk.
    for record_file in sorted([*out.glob("*.json*"), *out.glob("*.png")]):
        tracking.log_artifact(run_id, record_file)
    record = Record(stage=stage, key=key, out=str(out), run_id=run_id, metrics=metrics, label=label, extra=extra or {})
    if model_name:
        model_dir = out / "model"
        tracking.log_model(run_id, model_dir, "model",
                           f"posttrain stage `{stage}` (version key {key}) of iteration {it.parent_run_id}, "
                           f"registered as {model_name}; profile {it.profile}, code {it.git_sha}.")
        record.model = str(model_dir)
        record.model_version = tracking.register(
            run_id, model_name, "model",
            {"stage": stage, "iteration": it.parent_run_id, "version_key": key, "profile": it.profile,
             "parent_version": parent_version or "base", "git_sha": it.git_sha},
        )
        tracking.set_tags(run_id, {"model_version": f"{model_name}/{record.model_version}"})
    mark_complete(out, asdict(record))
    return record


def _gpu_cost(it: Iteration, compute_s: float) -> dict[str, float]:
    """Actual GPU-hours and cost of the stage body, to compare with `posttrain plan`'s estimate:
    one process per GPU, so GPUs = world size (no GPU: nothing to log)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    gpu_hours = compute_s / 3600 * distributed.world_size()
    return {"gpu_hours": gpu_hours, "cost_usd": gpu_hours * it.params.cluster.price_per_gpu_hour}


def _execute_remote(it: Iteration, stage: str, name: str, key: str) -> Record:
    """The stage as a SkyPilot managed job running `posttrain stage STAGE --iteration PARENT` on the
    cluster: it computes the same version key (or refuses), logs its own child run of this
    iteration and writes its output with the marker last under the checkpoint bucket. The job's
    status decides (anything but SUCCEEDED raises); the marker is the record downstream reads."""
    import os

    import mlflow

    from pipeline import skypilot

    p = it.params
    cluster = p.cluster
    uri = cluster.tracking_uri or mlflow.get_tracking_uri()
    rel = it.layout().stage_dir(stage, key).relative_to(it.layout().runs).as_posix()
    marker_url = f"{cluster.checkpoint_bucket.rstrip('/')}/{rel}/COMPLETE.json"

    def read_marker() -> dict:
        import fsspec

        with fsspec.open(marker_url, "r") as f:  # FileNotFoundError when the job wrote none
            return json.load(f)

    envs = {"VERSION_KEY": key, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PARENT_RUN_ID": it.parent_run_id,
            "POSTTRAIN_OVERRIDES": json.dumps(list(it.overrides))}
    secrets = {k: os.environ[k] for k in ("HF_TOKEN",) if os.environ.get(k)}
    try:
        meta = skypilot.launch_stage(name, it.profile, envs, marker=read_marker, project=it.project,
                                     cluster=cluster, secrets=secrets)
    except Exception as err:
        raise StageFailed(stage, f"{type(err).__name__}: {err}") from err
    fields = {k: meta[k] for k in Record.__dataclass_fields__ if k in meta and k != "cached"}
    return Record(**fields, cached=False)


def _execute_worker(stage: str, key: str, out: Path, body: Callable[[Path], dict[str, float]], label: str) -> Record:
    """A non-main process of a distributed stage: same version key and directory as rank 0, the
    body only (its share of training). The main process decides about reuse, tracks, registers
    and writes the marker; the marker is written only after every process finished the body, so
    all processes see the same completeness here. A damaged dir is as incomplete here as on rank 0
    (the same check of the same files; rank 0 moves it aside): this process waits for the rebuild
    instead of returning a stale record while rank 0 waits for it at the barrier."""
    if is_complete(out) and not damage(out):
        return Record.from_marker(out)
    distributed.barrier()
    metrics = body(out)
    return Record(stage=stage, key=key, out=str(out), run_id="", metrics=metrics, label=label)


def _link(it: Iteration, name: str, record: Record, reused: bool) -> None:
    """Record on the iteration's parent run which stage output it used: reruns and lineage read
    these tags, and a reused stage links its original MLflow run instead of making a new one."""
    tracking.set_tags(it.parent_run_id, {f"stage.{name}.run_id": record.run_id, f"stage.{name}.version_key": record.key,
                                         f"stage.{name}.reused": str(reused).lower()})
    log.info(_outcome(name, record, reused))


# The numbers a stage's one-line outcome names, when it has them.
OUTCOME_METRICS = ("train_loss", "eval_loss", "rm_pair_accuracy", "heldout_accuracy_delta", "math_accuracy",
                   "refusal_rate", "over_refusal_rate", "win_rate_vs_input")


def _outcome(name: str, record: Record, reused: bool) -> str:
    """One line per stage for the run's log (Prefect UI and terminal): reused from which run, or
    how long it ran and what it scored."""
    if reused:
        return f"{name}: reused (version {record.key[:12]}, MLflow run {record.run_id}), not recomputed"
    shown = ", ".join(f"{k} {record.metrics[k]:.4g}" for k in OUTCOME_METRICS if k in record.metrics)
    minutes = record.metrics.get("compute_s", 0.0) / 60
    return f"{name}: ran in {minutes:.1f} min" + (f"; {shown}" if shown else "")


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
