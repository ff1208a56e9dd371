"""The gates between stages: `gate_stage` after each boundary evaluation, `gate_final` after the
final one. Thresholds come from evaluations/gates.yaml; a gate logs its checks on the parent run,
tags the model version, and only a passing final gate moves the registry aliases.

Two iterations may pass their final gates at the same time on one store: each moves all its aliases
in one step under the store's lock (`tracking.store_lock`), stamped `champion.set_at`, so the
later-finished gate wins and the aliases never mix versions of the two iterations."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from core import tracking
from pipeline.runner import Iteration, Record


def _gate_outcome(it: Iteration, gate_name: str, checks: list, version: str, spec_version) -> list:
    """Log a gate's checks (parent run: gates/<file>.json + gate.<name>.* metrics) and tag the
    model version; returns the failed checks."""
    p = it.params
    failed = [c for c in checks if not c.passed]
    artifact = "gate.json" if gate_name == "final" else f"gate.{gate_name}.json"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / artifact).write_text(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
        tracking.log_artifacts(it.parent_run_id, Path(tmp), "gates")
    tracking.log_metrics(it.parent_run_id, {f"gate.{gate_name}.passed": float(not failed),
                                            f"gate.{gate_name}.failed_checks": float(len(failed))})
    tags = {f"gate.{gate_name}": "failed" if failed else "passed", f"gate.{gate_name}.gates_version": str(spec_version)}
    if failed:
        tags[f"gate.{gate_name}.failures"] = "; ".join(c.describe() for c in failed)[:4000]
    tracking.set_version_tags(p.pipeline.name, version, tags)
    return failed


def gate_stage(it: Iteration, stage: str, evaluation: Record, previous: Record, policy: Record) -> dict:
    """The per-stage gate after a boundary evaluation: gates.yaml section `stage` on the stage's
    scores, deltas and regressions against the previous boundary (for sft: evaluate.base's
    scores on the same items), and its monitors, which also read the stage's own training metrics
    as `stage.<metric>`. A failure tags the model version, moves no alias and raises, so
    nothing downstream starts."""
    from evaluations import gates, monitors
    from tasks.evaluate import boundary_view

    p = it.params
    tracking.configure(it.layout().runs)
    spec = gates.load(it.layout().project / p.evaluate.gates_file)
    if stage not in spec:
        raise gates.GateFailed(f"gate '{stage}': {p.evaluate.gates_file} has no section '{stage}'; every trained stage "
                               f"is gated (write `{stage}: {{}}` to gate it on nothing, on purpose)", stage)
    metrics = {**evaluation.metrics, **{monitors.STAGE_PREFIX + k: v for k, v in policy.metrics.items()}}
    checks = gates.evaluate(spec, stage, metrics, boundary_view(previous.metrics))
    failed = _gate_outcome(it, stage, checks, policy.model_version, spec["version"])
    if failed:
        raise gates.GateFailed(f"gate '{stage}' ({p.evaluate.gates_file} v{spec['version']}) failed "
                               f"({len(failed)} of {len(checks)} checks; evaluate.{stage} vs evaluate.{previous.label}):\n  "
                               + "\n  ".join(c.describe() for c in failed), stage)
    return {"passed": True, "checks": len(checks)}


def gate_final(it: Iteration, final: Record, base: Record, policy_versions: dict[str, str], rm: Record) -> dict:
    """Check the final evaluation against gates.yaml; on pass move the aliases, else raise.

    A failed gate tags the candidate version and moves no alias."""
    from evaluations import gates

    p = it.params
    lay = it.layout()
    tracking.configure(lay.runs)
    spec = gates.load(lay.project / p.evaluate.gates_file)
    checks = gates.evaluate(spec, "final", final.metrics, base.metrics)
    name = p.pipeline.name
    candidate = policy_versions["safety"]
    failed = _gate_outcome(it, "final", checks, candidate, spec["version"])
    if failed:
        raise gates.GateFailed(f"gate 'final' ({p.evaluate.gates_file} v{spec['version']}) failed:\n  "
                               + "\n  ".join(c.describe() for c in failed), "final")
    moved, champion = _move_aliases(it, name, policy_versions, rm.model_version)
    return {"passed": True, "checks": len(checks), "champion": f"{name}/{champion}", "moved": moved}


def _move_aliases(it: Iteration, name: str, policy_versions: dict[str, str], rm_version: str) -> tuple[bool, str]:
    """Point the stage aliases, `reward_model` and `champion` at this iteration's versions, all
    under the store lock: read the current champion's `champion.set_at`, move only if ours is later
    (ours is taken under the lock, so the later-finished gate wins), then stamp the move on the
    champion version and the registered model. Another iteration's move happens wholly before or
    after, never in between. Returns (moved, the champion version afterwards)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    candidate = policy_versions["safety"]
    with tracking.store_lock():
        ours = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        model = client.get_registered_model(name)
        current = model.tags.get("champion.set_at", "")
        if current >= ours:  # a gate stamped later (another host's clock ahead): its aliases stand
            return False, str(model.aliases.get("champion", model.tags.get("champion.version", "")))
        for stage, version in policy_versions.items():
            tracking.set_alias(name, stage, version)
        tracking.set_alias(name + "-reward-model", "reward_model", rm_version)
        tracking.set_alias(name, "champion", candidate)
        stamp = {"champion.set_at": ours, "champion.iteration": it.parent_run_id, "champion.version": candidate}
        tracking.set_version_tags(name, candidate, stamp)
        for k, v in stamp.items():
            client.set_registered_model_tag(name, k, v)
    return True, candidate
