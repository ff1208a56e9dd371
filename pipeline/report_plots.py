"""The report card's plots, each drawn only from what the iteration recorded (a failed or rerun
iteration gets the plots its runs support; `plots` says which it left out and why).

  metrics_across_stages.png  evaluation metrics of the input (base) vs the final checkpoint
  refusal_frontier.png       refusal vs over-refusal, input and final
  rm_score_histogram.png     the reward model's scores on held-out pairs, chosen vs rejected
  grpo_reward_length.png     GRPO reward and completion length over steps
  training_loss.png          one loss panel per training stage (their scales differ)
  reward_hacking_probe.png   RM score vs verifier accuracy across checkpoints, with the reason
                             gate's reward_hacking verdict
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from pipeline.report_data import EVAL_METRICS, TRAIN_STAGES, boundary_points, fmt


def _history(client, run, key: str) -> tuple[list[int], list[float]]:
    points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    return [p.step for p in points], [p.value for p in points]


def monitor_verdict(client, iteration: str | None, gate: str, monitor: str) -> str:
    """One line: what the `gate`'s `monitor` decided for this iteration (gates/gate.<gate>.json)."""
    path = f"gates/gate.{gate}.json"
    if iteration is None or path not in {a.path for a in client.list_artifacts(iteration, "gates")}:
        return f"{gate} gate: not run"
    with tempfile.TemporaryDirectory() as tmp:
        checks = json.loads(Path(client.download_artifacts(iteration, path, tmp)).read_text())
    found = [c for c in checks if c["kind"] == "monitors" and c["metric"] == monitor]
    if not found:
        return f"{gate} gate: no {monitor} monitor"
    return f"{gate} gate, {monitor}: {'passed' if found[0]['passed'] else 'FIRED'}"


def _eval_bars(plt, client, runs, iteration):
    base, final = runs["evaluate.base"].data.metrics, runs["evaluate.final"].data.metrics
    shown = [m for m in EVAL_METRICS if m in base and m in final and m != "response_tokens_mean"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(shown))
    ax.bar([x - 0.2 for x in xs], [base[m] for m in shown], width=0.4, label="input (base)")
    ax.bar([x + 0.2 for x in xs], [final[m] for m in shown], width=0.4, label="final")
    ax.set_xticks(list(xs), shown, rotation=35, ha="right")
    ax.set_ylabel("score")
    ax.set_title("Evaluation: input checkpoint vs final checkpoint")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _frontier(plt, client, runs, iteration):
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, name, marker in (("input (base)", "evaluate.base", "o"), ("final", "evaluate.final", "s")):
        m = runs[name].data.metrics
        ax.scatter(m.get("over_refusal_rate", math.nan), m.get("refusal_rate", math.nan), s=90, marker=marker,
                   label=label, alpha=0.7)  # translucent: equal points stay visible
    ax.set_xlabel("over-refusal on benign look-alikes (lower is better)")
    ax.set_ylabel("refusal on harmful prompts (higher is better)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Refusal vs over-refusal")
    ax.legend(loc="lower right")
    return fig


def _rm_histogram(plt, client, runs, iteration):
    with tempfile.TemporaryDirectory() as tmp:
        scores = json.loads(Path(client.download_artifacts(runs["reward_model"].info.run_id, "rm_scores.json",
                                                           tmp)).read_text())
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.hist(scores["chosen"], bins=30, alpha=0.6, label="chosen")
    ax.hist(scores["rejected"], bins=30, alpha=0.6, label="rejected")
    ax.set_xlabel("reward-model score")
    ax.set_ylabel("held-out pairs")
    ax.set_title("Reward model scores (a single spike = collapsed RM)")
    ax.legend(loc="upper right")
    return fig


def _grpo(plt, client, runs, iteration):
    fig, ax1 = plt.subplots(figsize=(6.5, 4.5))
    steps, reward = _history(client, runs["reason"], "train/reward")
    ax1.plot(steps, reward, marker="o", label="mean reward")
    ax1.set_xlabel("GRPO step")
    ax1.set_ylabel("reward")
    ax2 = ax1.twinx()
    steps, length = _history(client, runs["reason"], "train/completions/mean_length")
    ax2.plot(steps, length, color="tab:orange", marker="s", label="completion length")
    ax2.set_ylabel("mean completion length (tokens)")
    ax1.set_title("reason (GRPO): reward and completion length")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    return fig


def _losses(plt, client, runs, iteration):
    stages = [s for s in TRAIN_STAGES if s in runs and _history(client, runs[s], "train/loss")[0]]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.4), squeeze=False)
    for ax, s in zip(axes[0], stages):
        steps, loss = _history(client, runs[s], "train/loss")
        ax.plot(steps, loss, marker="." if len(steps) < 40 else None)
        ax.set_title(s)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("training loss")
    fig.suptitle("Training loss per stage (own scale each)")
    return fig


def _hacking_probe(plt, client, runs, iteration):
    # Reward hacking shows as the RM's score of the answers climbing while the verifier's
    # accuracy on the same answers stays flat or falls: both on one chart per checkpoint.
    points = [(n, m) for n, m in boundary_points(runs) if "rm_score_mean" in m and "math_accuracy" in m]
    if not points:
        return None
    names = [n for n, _ in points]
    rm_scores, acc = [m["rm_score_mean"] for _, m in points], [m["math_accuracy"] for _, m in points]
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.plot(names, rm_scores, marker="o", label="RM score (mean)")
    ax1.set_ylabel("reward-model score of the math answers")
    ax2 = ax1.twinx()
    ax2.plot(names, acc, marker="s", color="tab:green", label="verifier accuracy")
    ax2.set_ylabel("math accuracy (math-verify)")
    ax2.set_ylim(-0.05, 1.05)
    ax1.set_xlabel("checkpoint (boundary items)")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    ax3.scatter(rm_scores, acc)
    at: dict[tuple[float, float], list[str]] = {}  # checkpoints on the same point get one joint label
    for n, x, y in zip(names, rm_scores, acc):
        at.setdefault((round(x, 4), round(y, 4)), []).append(n)
    for (x, y), group in at.items():
        ax3.annotate(", ".join(group), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax3.set_xlabel("RM score (mean)")
    ax3.set_ylabel("math accuracy")
    ax3.set_ylim(-0.05, 1.05)
    ax3.set_title(f"Pearson r = {fmt(_pearson(rm_scores, acc))} over {len(points)} checkpoints", fontsize=10)
    ax1.set_title(f"RM up, accuracy flat = hacking\n{monitor_verdict(client, iteration, 'reason', 'reward_hacking')}",
                  fontsize=10)
    return fig


# file: (draw, the runs it needs)
PLOTS = {
    "metrics_across_stages.png": (_eval_bars, ("evaluate.base", "evaluate.final")),
    "refusal_frontier.png": (_frontier, ("evaluate.base", "evaluate.final")),
    "rm_score_histogram.png": (_rm_histogram, ("reward_model",)),
    "grpo_reward_length.png": (_grpo, ("reason",)),
    "training_loss.png": (_losses, ()),
    "reward_hacking_probe.png": (_hacking_probe, ()),
}


def plots(client, runs: dict, out: Path, iteration: str | None = None) -> tuple[list[Path], list[str]]:
    """(plots written, one line per plot left out: which and why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written, skipped = [], []
    for name, (draw, needs) in PLOTS.items():
        missing = [n for n in needs if n not in runs]
        fig = None if missing else draw(plt, client, runs, iteration)
        if fig is None:
            skipped.append(f"{name}: no {', '.join(missing) or 'data'} recorded")
            continue
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    return written, skipped


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
