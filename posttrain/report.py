"""Iteration report card, from MLflow alone: a markdown table stage x metric with deltas against
the input checkpoint, and PNG plots, written to a folder and logged to the iteration's run.

    posttrain report ITERATION_RUN_ID [--out DIR]

Plots: evaluation metrics of the input (base) vs the final checkpoint; the refusal vs
over-refusal frontier; the reward model's score histogram on held-out pairs (chosen vs rejected);
GRPO reward and completion length over steps; training loss of every stage over steps.
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
    lines = ["| metric | input (base) | final | delta |", "|---|---|---|---|"]
    for m in EVAL_METRICS:
        b, f = base.get(m), final.get(m)
        delta = f - b if b is not None and f is not None else None
        lines.append(f"| {m} | {_fmt(b)} | {_fmt(f)} | {'+' if delta and delta > 0 else ''}{_fmt(delta)} |")
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


def plots(client, runs: dict, out: Path) -> list[Path]:
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
    return written


def report(iteration: str, out: Path) -> tuple[str, list[Path]]:
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = _runs(client, iteration)
    missing = [n for n in ("evaluate.base", "evaluate.final", *TRAIN_STAGES) if n not in runs]
    if missing:
        raise ValueError(f"iteration {iteration} has no recorded {', '.join(missing)}: it did not get that far")
    out.mkdir(parents=True, exist_ok=True)
    text = table(runs)
    written = plots(client, runs, out)
    (out / "report.md").write_text(f"# Iteration {iteration}\n\n{text}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written) + "\n")
    client.log_artifacts(iteration, str(out), "report")
    return text, written
