"""What each figure is called, what it measures, its acceptance target, and how a headline is
judged against it."""

from __future__ import annotations

import statistics

# The figures in the order they run and are rendered: name -> what it measures.
TITLES = {
    "iteration_time": "Iteration wall time, per stage and in total",
    "overhead": "Orchestration + tracking overhead (flow wall - stage compute) / stage compute",
    "rerun": "Rerun of one failed stage: rerun wall - stage compute (and proof upstream did not run)",
    "sft_vs_trl": "SFT tokens/s: our sft stage / plain TRL SFTTrainer script",
    "packing": "SFT tokens/s: packed (padding-free) / unpacked",
    "generation_engine": "Generation tokens/s: our evaluation path / plain transformers generate, same batch",
    "generation_batching": "Generation tokens/s: batched / one-by-one",
    "flops": "Training FLOP/s (6 x params x tokens/s) / bf16 matmul peak",
}
# Acceptance targets: (comparison, value, unit, profile the target is set for or None). One copy;
# the results file carries it.
TARGETS = {
    "overhead": ("<=", 5.0, "%", "default"),  # orchestration + tracking overhead, default profile
    "rerun": ("<=", 10.0, "s", None),  # rerun wall time minus the stage's own compute
    "sft_vs_trl": (">=", 0.95, "x", None),  # ours / plain TRL tokens/s
    "packing": (">=", 2.0, "x", None),  # packed / unpacked tokens/s
    "generation_engine": (">=", 2.0, "x", None),  # ours / model.generate tokens/s, same batch size
    "generation_batching": (">=", 5.0, "x", None),  # batched / one-by-one tokens/s
    "flops": (">=", 30.0, "%", None),  # achieved training FLOP/s / bf16 matmul peak
}


def median(values) -> float:
    return statistics.median(list(values))


def verdict(name: str, value: float) -> dict | None:
    """attainment: value / target for a floor, target / value for a ceiling (1 = on target,
    0.5 = halfway there, i.e. missed by a factor of 2)."""
    if name not in TARGETS:
        return None
    op, target, unit, _ = TARGETS[name]
    if op == ">=":
        met, attainment = value >= target, value / target
    else:
        met, attainment = value <= target, (target / value if value > 0 else float("inf"))
    return {"met": met, "attainment": attainment}


def target(name: str) -> dict | None:
    if name not in TARGETS:
        return None
    op, value, unit, profile = TARGETS[name]
    return {"op": op, "value": value, "unit": unit, "profile": profile}


def finish(name: str, headline: float, unit: str, **rest) -> dict:
    """A figure's JSON-able record: its title, headline, target and verdict, then `rest`."""
    return {"title": TITLES[name], "headline": {"value": headline, "unit": unit}, "target": target(name),
            "verdict": verdict(name, headline), **rest}
