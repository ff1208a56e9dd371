"""Iteration report card, from MLflow alone: a markdown table stage x metric with deltas against
the input checkpoint, and PNG plots, written to a folder and logged to the iteration's run.

    posttrain report ITERATION_RUN_ID [--out DIR]

Tables: the full evaluations (input vs final, with deltas), the boundary evaluations (one row per
checkpoint: base, sft, align, reason, safety, final on the boundary items, each with its delta
against the row before) and the training stages.
Plots: evaluation metrics of the input (base) vs the final checkpoint; the refusal vs
over-refusal frontier; the reward model's score histogram on held-out pairs (chosen vs rejected);
GRPO reward and completion length over steps; training loss of every stage over steps; the
reward-hacking probe (RM score vs verifier accuracy of the same math answers across checkpoints).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

EVAL_METRICS = (
    "math_accuracy", "answer_format_rate", "code_pass_at_1", "ifeval_prompt_accuracy", "refusal_rate",
    "over_refusal_rate", "sycophancy_rate", "rm_pair_accuracy", "win_rate_vs_input", "distinct_2",
    "response_tokens_mean",
)
TRAIN_STAGES = ("sft", "reward_model", "align", "reason", "safety")
BOUNDARY_METRICS = ("math_accuracy", "answer_format_rate", "rm_score_mean", "refusal_rate", "over_refusal_rate",
                    "win_rate_vs_input", "distinct_2")
CHECKPOINTS = ("base", "sft", "align", "reason", "safety", "final")


def boundary_points(runs: dict) -> list[tuple[str, dict[str, float]]]:
    """(checkpoint, scores on the boundary items) in pipeline order: evaluate.base / .final
    contribute their `boundary.*` metrics, the boundary evaluations their own. Win rates are each
    evaluation's own (vs its input), so the full evaluations' view leaves them out."""
    points = []
    for name in CHECKPOINTS:
        run = runs.get(f"evaluate.{name}")
        if run is None:
            continue
        m = run.data.metrics
        if name in ("base", "final"):
            m = {k[len("boundary."):]: v for k, v in m.items() if k.startswith("boundary.")}
        if m:
            points.append((name, m))
    return points


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
            cell = _fmt(v) + (f" ({'+' if delta > 0 else ''}{_fmt(delta)})" if delta is not None else "")
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
    if not runs:
        raise ValueError(f"{iteration} has no stage runs: is it an iteration's parent run id?")
    return runs


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def table(runs: dict) -> str:
    base = runs["evaluate.base"].data.metrics if "evaluate.base" in runs else {}
    final = runs["evaluate.final"].data.metrics if "evaluate.final" in runs else {}
    lines = ["| metric | input (base) | final | delta | items worse↓ / better↑ than base |", "|---|---|---|---|---|"]
    for m in EVAL_METRICS:
        b, f = base.get(m), final.get(m)
        delta = f - b if b is not None and f is not None else None
        lines.append(f"| {m} | {_fmt(b)} | {_fmt(f)} | {'+' if delta and delta > 0 else ''}{_fmt(delta)} | "
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
            lines.append(f"| {s} | {runs[s].info.run_id} | {runs[s].info.status} | {_fmt(m.get('train_loss'))} | "
                         f"{_fmt(m.get('param_delta_l2'))} | {extra + '=' + _fmt(m.get(extra)) if extra else '-'} |")
    return "\n".join(lines)


def _history(client, run, key: str) -> tuple[list[int], list[float]]:
    points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    return [p.step for p in points], [p.value for p in points]


def monitor_verdict(client, iteration: str | None, gate: str, monitor: str) -> str:
    """One line: what the `gate`'s `monitor` decided for this iteration (gates/gate.<gate>.json)."""
    from mlflow.exceptions import MlflowException

    if iteration is None:
        return f"{gate} gate: not recorded"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            checks = json.loads(Path(client.download_artifacts(iteration, f"gates/gate.{gate}.json", tmp)).read_text())
        except (OSError, MlflowException):
            return f"{gate} gate: not run"
    found = [c for c in checks if c["kind"] == "monitors" and c["metric"] == monitor]
    if not found:
        return f"{gate} gate: no {monitor} monitor"
    return f"{gate} gate, {monitor}: {'passed' if found[0]['passed'] else 'FIRED'}"


def plots(client, runs: dict, out: Path, iteration: str | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    base = runs["evaluate.base"].data.metrics
    final = runs["evaluate.final"].data.metrics
    shown = [m for m in EVAL_METRICS if m in base and m in final and m != "response_tokens_mean"]
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], [base[m] for m in shown], width=0.4, label="input (base)")
    ax.bar([x + 0.2 for x in xs], [final[m] for m in shown], width=0.4, label="final")
    ax.set_xticks(list(xs), shown, rotation=35, ha="right")
    ax.set_ylabel("score")
    ax.set_title("Evaluation: input checkpoint vs final checkpoint")
    ax.legend()
    save(fig, "metrics_across_stages.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for label, m, marker in (("input (base)", base, "o"), ("final", final, "s")):
        ax.scatter(m.get("over_refusal_rate", math.nan), m.get("refusal_rate", math.nan), s=80, marker=marker, label=label)
    ax.set_xlabel("over-refusal rate on benign look-alikes (lower is better)")
    ax.set_ylabel("refusal rate on harmful prompts (higher is better)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Refusal vs over-refusal frontier")
    ax.legend()
    save(fig, "refusal_frontier.png")

    with tempfile.TemporaryDirectory() as tmp:
        scores = json.loads(Path(client.download_artifacts(runs["reward_model"].info.run_id, "rm_scores.json", tmp)).read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(scores["chosen"], bins=30, alpha=0.6, label="chosen")
    ax.hist(scores["rejected"], bins=30, alpha=0.6, label="rejected")
    ax.set_xlabel("reward-model score")
    ax.set_ylabel("held-out pairs")
    ax.set_title("Reward model scores (a single spike = collapsed RM)")
    ax.legend()
    save(fig, "rm_score_histogram.png")

    fig, ax1 = plt.subplots(figsize=(6, 4))
    steps, reward = _history(client, runs["reason"], "train/reward")
    ax1.plot(steps, reward, marker="o", label="mean reward")
    ax1.set_xlabel("GRPO step")
    ax1.set_ylabel("reward")
    ax2 = ax1.twinx()
    steps, length = _history(client, runs["reason"], "train/completions/mean_length")
    ax2.plot(steps, length, color="tab:orange", marker="s", label="completion length")
    ax2.set_ylabel("mean completion length (tokens)")
    ax1.set_title("reason (GRPO): reward and completion length")
    fig.legend(loc="upper right")
    save(fig, "grpo_reward_length.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in TRAIN_STAGES:
        steps, loss = _history(client, runs[s], "train/loss")
        if steps:
            ax.plot(steps, loss, label=s)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per stage")
    ax.legend()
    save(fig, "training_loss.png")

    # Reward hacking shows as the RM's score of the answers climbing while the verifier's
    # accuracy on the same answers stays flat or falls: both on one chart per checkpoint.
    points = [(n, m) for n, m in boundary_points(runs) if "rm_score_mean" in m and "math_accuracy" in m]
    if points:
        names = [n for n, _ in points]
        rm_scores = [m["rm_score_mean"] for _, m in points]
        acc = [m["math_accuracy"] for _, m in points]
        fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(names, rm_scores, marker="o", label="RM score (mean)")
        ax1.set_ylabel("reward-model score of the math answers")
        ax2 = ax1.twinx()
        ax2.plot(names, acc, marker="s", color="tab:green", label="verifier accuracy")
        ax2.set_ylabel("math accuracy (math-verify)")
        ax2.set_ylim(-0.05, 1.05)
        ax1.set_xlabel("checkpoint (boundary items)")
        handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax1.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=8)
        ax3.scatter(rm_scores, acc)
        for n, x, y in zip(names, rm_scores, acc):
            ax3.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4))
        ax3.set_xlabel("RM score (mean)")
        ax3.set_ylabel("math accuracy")
        ax3.set_ylim(-0.05, 1.05)
        r = _pearson(rm_scores, acc)
        ax3.set_title(f"Pearson r = {_fmt(r)} over {len(points)} checkpoints")
        ax1.set_title(f"RM score up, accuracy flat = hacking\n{monitor_verdict(client, iteration, 'reason', 'reward_hacking')}",
                      fontsize=10)
        save(fig, "reward_hacking_probe.png")
    return written


def _pearson(xs: list[float], ys: list[float]) -> float:
    """NaN when either side is constant or there are fewer than 3 points (shown as '-')."""
    n = len(xs)
    if n < 3:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def report(iteration: str, out: Path) -> tuple[str, list[Path]]:
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = _runs(client, iteration)
    missing = [n for n in ("evaluate.base", "evaluate.final", *TRAIN_STAGES) if n not in runs]
    if missing:
        raise ValueError(f"iteration {iteration} has no recorded {', '.join(missing)}: it did not get that far")
    out.mkdir(parents=True, exist_ok=True)
    text = table(runs)
    written = plots(client, runs, out, iteration)
    (out / "report.md").write_text(f"# Iteration {iteration}\n\n{text}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written) + "\n")
    client.log_artifacts(iteration, str(out), "report")
    return text, written
