"""Runs one stage as a versioned, tracked, idempotent step (no Prefect here).

execute(): version key -> output dir; a complete dir with the same key is reused (cache hit) in
any later iteration; otherwise: MLflow child run, the stage body, checkpoint logged and
registered, marker written last. Any exception marks the MLflow run FAILED, registers nothing,
and is re-raised as StageFailed naming the stage.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from filelock import FileLock

from posttrain import tracking
from posttrain.config import Params, load_params
from posttrain.paths import Layout, layout
from posttrain.stage_dir import is_complete, mark_complete, read_marker, version_key


class StageFailed(RuntimeError):
    def __init__(self, stage: str, reason: str):
        super().__init__(f"stage '{stage}' failed: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Iteration:
    """What every stage task needs to know about the iteration: small, plain, serialisable."""

    project: str
    profile: str
    overrides: tuple[str, ...]
    parent_run_id: str
    flow_run_id: str
    git_sha: str

    def params(self) -> Params:
        return load_params(Path(self.project) / "params.yaml", self.profile, self.overrides)

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
    def from_marker(cls, out: Path) -> "Record":
        meta = read_marker(out)
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "cached"}, cached=True)


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
) -> Record:
    """inputs: {name: version key or md5 of each input}; datasets: {name: (path, md5)} to log;
    model_name: register out/model under this registered model."""
    lay = it.layout()
    key = version_key(stage, config, inputs, code)
    out = lay.stage_dir(stage, key)
    tracking.configure(lay.runs)
    name = f"{stage}.{label}" if label else stage
    out.parent.mkdir(parents=True, exist_ok=True)
    # Two iterations reaching the same stage version at once: the second waits here, then reuses
    # the first one's output instead of deleting a directory that is still being written.
    with FileLock(f"{out}.lock"):
        if is_complete(out):
            record = Record.from_marker(out)
            _link(it, name, record, reused=True)
            return record
        if out.exists():  # an unfinished attempt: never resumed from as if it were complete
            shutil.rmtree(out)
        out.mkdir(parents=True)

        run_id = tracking.start_child(lay.runs, it.parent_run_id, stage, {**it.tags(), "version_key": key, "label": label})
        try:
            tracking.log_params(run_id, {**{f"config.{k}": v for k, v in _flatten(config).items()},
                                         **{f"input.{k}": v for k, v in inputs.items()}})
            for ds_name, (path, md5) in (datasets or {}).items():
                tracking.log_dataset(run_id, Path(path), md5, ds_name, context=stage)
            metrics = body(out)
            bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
            if bad:
                raise FloatingPointError(f"non-finite metrics {bad}")
            tracking.log_metrics(run_id, metrics)
            history = out / "log_history.json"
            if history.is_file():
                tracking.log_history(run_id, json.loads(history.read_text()))
            # The stage's small records (eval samples, scores, step logs) go to MLflow too, so an
            # audit or a report needs only the tracking server, not this machine's disk.
            for record_file in sorted(out.glob("*.json*")):
                tracking.log_artifact(run_id, record_file)
            record = Record(stage=stage, key=key, out=str(out), run_id=run_id, metrics=metrics, label=label, extra=extra or {})
            if model_name:
                model_dir = out / "model"
                tracking.log_artifacts(run_id, model_dir, "model")
                record.model = str(model_dir)
                record.model_version = tracking.register(
                    run_id, model_name, "model",
                    {"stage": stage, "iteration": it.parent_run_id, "version_key": key, "profile": it.profile,
                     "parent_version": parent_version or "base", "git_sha": it.git_sha},
                )
                tracking.set_tags(run_id, {"model_version": f"{model_name}/{record.model_version}"})
            mark_complete(out, asdict(record))
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


def _link(it: Iteration, name: str, record: Record, reused: bool) -> None:
    """Record on the iteration's parent run which stage output it used: reruns and lineage read
    these tags, and a reused stage links its original MLflow run instead of making a new one."""
    tracking.set_tags(it.parent_run_id, {f"stage.{name}.run_id": record.run_id, f"stage.{name}.version_key": record.key,
                                         f"stage.{name}.reused": str(reused).lower()})


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
