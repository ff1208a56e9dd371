"""Iteration report card, from MLflow alone: what the iteration is (profile, git SHA, date,
status, gate verdicts, champion), a markdown table stage x metric with deltas against the input
checkpoint, and PNG plots (pipeline/report_plots.py), written to a folder and logged to the
iteration's run. A failed, partial or rerun iteration gets what exists, and a line per missing
stage saying why it is missing.

    posttrain report ITERATION [--out DIR]

Every flow run writes its iteration's card as it ends (`write_card`): runs/reports/<id>/report.md.

Tables: the full evaluations (input vs final, with deltas), the boundary evaluations (one row per
checkpoint: base, sft, align, reason, safety, final on the boundary items, each with its delta
against the row before) and the training stages.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from pipeline.report_data import BOUNDARY_METRICS, EVAL_METRICS, TRAIN_STAGES, boundary_points, fmt


def boundary_table(runs: dict) -> str:
    points = boundary_points(runs)
    if not points:
        return ""
    lines = ["Boundary items: (delta) vs the row above; `n↓ m↑` items that got worse / better than there, "
             "item by item, with the sign test's p when more got worse (evaluations/paired.py).", "",
             "| checkpoint (boundary items) | " + " | ".join(BOUNDARY_METRICS) + " |",
             "|---|" + "---|" * len(BOUNDARY_METRICS)]
    prev: dict[str, float] = {}
    for name, m in points:
        cells = []
        for k in BOUNDARY_METRICS:
            v, before = m.get(k), prev.get(k)
            delta = v - before if v is not None and before is not None and k != "win_rate_vs_input" else None
            cell = fmt(v) + (f" ({'+' if delta > 0 else ''}{fmt(delta)})" if delta is not None else "")
            cells.append(f"{cell} {_flips(m, k)}".rstrip())
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        prev = m
    return "\n".join(lines)


def _flips(m: dict[str, float], k: str) -> str:
    """`n↓ m↑` items of metric k that got worse / better than the baseline (evaluations/paired.py),
    with the sign test's p when more got worse; "" without paired counts or flips."""
    worse, better = m.get(f"paired.{k}.worse"), m.get(f"paired.{k}.better")
    if worse is None or better is None or not worse + better:
        return ""
    return f"{worse:.0f}↓ {better:.0f}↑" + (f" p={m[f'paired.{k}.p_worse']:.2g}" if worse > better else "")


def _runs(client, iteration: str) -> dict[str, object]:
    """{node name: MLflow run} of every stage the iteration ran or reused."""
    tags = client.get_run(iteration).data.tags
    runs = {}
    for key, run_id in tags.items():
        if key.startswith("stage.") and key.endswith(".run_id"):
            runs[key[len("stage."):-len(".run_id")]] = client.get_run(run_id)
    return runs


def table(runs: dict) -> str:
    base = runs["evaluate.base"].data.metrics if "evaluate.base" in runs else {}
    final = runs["evaluate.final"].data.metrics if "evaluate.final" in runs else {}
    lines = ["| metric | input (base) | final | delta | items worse↓ / better↑ than base |", "|---|---|---|---|---|"]
    for m in EVAL_METRICS:
        b, f = base.get(m), final.get(m)
        delta = f - b if b is not None and f is not None else None
        lines.append(f"| {m} | {fmt(b)} | {fmt(f)} | {'+' if delta and delta > 0 else ''}{fmt(delta)} | "
                     f"{_flips(final, m) or '-'} |")
    boundary = boundary_table(runs)
    if boundary:
        lines += ["", boundary]
    lines += ["", "| stage | MLflow run | status | train_loss | param_delta_l2 | stage metric |", "|---|---|---|---|---|---|"]
    stage_metric = {"reward_model": "rm_pair_accuracy", "reason": "reward_last", "align": "logps_chosen_delta"}
    for s in TRAIN_STAGES:
        if s in runs:
            m = runs[s].data.metrics
            extra = stage_metric.get(s)
            lines.append(f"| {s} | {runs[s].info.run_id} | {runs[s].info.status} | {fmt(m.get('train_loss'))} | "
                         f"{fmt(m.get('param_delta_l2'))} | {extra + '=' + fmt(m.get(extra)) if extra else '-'} |")
    return "\n".join(lines)


def _gates(parent) -> str:
    from pipeline.dag import POLICY_STAGES

    order = [*POLICY_STAGES, "final"]
    verdicts = sorted(((k.removeprefix("gate.").removesuffix(".passed"), v) for k, v in parent.data.metrics.items()
                       if k.startswith("gate.") and k.endswith(".passed")),
                      key=lambda gv: order.index(gv[0]) if gv[0] in order else len(order))
    return ", ".join(f"{g} {'passed' if v == 1.0 else 'FAILED'}" for g, v in verdicts) or "none ran"


def _champion(client, parent) -> str:
    from mlflow.exceptions import MlflowException

    name = parent.data.tags.get("pipeline", "posttrain")
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return "none yet"
    version, owner = model.tags.get("champion.version"), model.tags.get("champion.iteration", "")
    if not version:
        return f"none yet ({name} has versions; a final gate that passes sets the alias)"
    return f"{name}/{version}, " + ("from this iteration" if owner == parent.info.run_id else f"set by parent run {owner}")


def header(client, parent) -> list[str]:
    """The iteration's identity and outcome, one fact per line."""
    t, info = parent.data.tags, parent.info
    started = datetime.fromtimestamp(info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- status: {info.status}" + (f", stopped at {t['failed_at']}: {t.get('failure', '')}" if t.get("failed_at")
                                            else ""),
             f"- profile: {t.get('profile', '?')}; git SHA: {t.get('git_sha', '?')}; started: {started}",
             f"- Prefect flow run: {t.get('prefect_flow_run_name') or '-'} ({t.get('prefect_flow_run_id') or '-'})",
             f"- gates: {_gates(parent)}", f"- champion: {_champion(client, parent)}"]
    if t.get("rerun_of"):
        lines.insert(1, f"- rerun of {t.get('rerun_stage', '?')} from iteration {t['rerun_of']}")
    return lines


def missing(parent, runs: dict) -> list[str]:
    """One line per pipeline node this iteration has no record of, with why."""
    from pipeline.dag import ORDER

    t = parent.data.tags
    if t.get("failed_at") or parent.info.status == "FAILED":
        why = f"not reached: the iteration stopped at {t.get('failed_at') or 'an error'}"
    elif t.get("rerun_of"):
        why = f"not part of this rerun (see iteration {t['rerun_of']})"
    else:
        why = "not recorded (the iteration is still running, or was killed)"
    here = t.get("failed_at", "")
    return [f"- {n}: FAILED here: {t.get('failure', '')}" if n == here else f"- {n}: {why}"
            for n in ORDER if n != "base" and n not in runs]


def report(iteration: str, out: Path) -> tuple[str, list[Path]]:
    """Write out/report.md and the plots, log them to the iteration's run; returns (summary, plots)."""
    from mlflow import MlflowClient

    from pipeline.report_plots import plots

    client = MlflowClient()
    parent = client.get_run(iteration)
    runs = _runs(client, iteration)
    out.mkdir(parents=True, exist_ok=True)
    head = "\n".join(header(client, parent))
    gaps = missing(parent, runs)
    body = table(runs) if runs else "no stage recorded"
    written, skipped = plots(client, runs, out, iteration)
    text = f"{head}\n\n" + ("Missing:\n" + "\n".join(gaps) + "\n\n" if gaps else "") + body
    images = "\n".join(f"![{p.stem}]({p.name})" for p in written)
    left_out = ("\n\nPlots left out:\n" + "\n".join(f"- {s}" for s in skipped)) if skipped else ""
    (out / "report.md").write_text(f"# Iteration {iteration}\n\n{text}\n\n{images}{left_out}\n")
    client.log_artifacts(iteration, str(out), "report")
    return text, written


log = logging.getLogger("pipeline")


def card_dir(runs: Path, iteration: str) -> Path:
    return runs / "reports" / iteration


def write_card(it) -> str:
    """The card of an iteration that has just ended (`it`: pipeline.runner.Iteration), written under
    runs/reports/<id> and logged to its MLflow run; the path of report.md.

    The iteration's outcome is already recorded (runs, gates, alias) when this runs, so a card that
    cannot be written does not change it: the error is logged with the command that writes it again,
    and the path is ""."""
    out = card_dir(it.layout().runs, it.parent_run_id)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per plot file in the run's log
    try:
        report(it.parent_run_id, out)
    except Exception as err:  # noqa: BLE001 - any failure here leaves the recorded outcome as it is
        log.error(f"report card not written: {type(err).__name__}: {err}; write it with "
                  f"`posttrain report {it.parent_run_id}`")
        return ""
    log.info(f"report card: {out / 'report.md'}")
    return str(out / "report.md")
