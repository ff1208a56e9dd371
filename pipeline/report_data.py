"""What the report card reads from an iteration's runs: the metrics it shows and the boundary
evaluations in pipeline order (shared by the tables in report.py and the plots in report_plots.py)."""

from __future__ import annotations

import math

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


def fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
