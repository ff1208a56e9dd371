"""The figures of the benchmark record, each named by what it measures: what each one runs, and
how its repetitions are summarised (medians) and compared with its target.

Each figure function takes the run's Context and returns a JSON-able dict with `headline` (the
number the table shows, with its unit), `target` (or None) and `verdict`; its raw repetitions are
kept beside the summary so that every median can be recomputed from the results file.

- targets.py: the names, titles and targets, and the verdict of a headline;
- plan.py: the sizes of a run (QUICK, FULL) and the Context the figures share;
- iterations.py: iteration_time, overhead, rerun (whole iterations through the CLI);
- sft.py: sft_vs_trl, packing, flops (SFT throughput);
- generation.py: generation_engine, generation_batching.
"""

from __future__ import annotations

from bench.figures.generation import generation_batching, generation_engine
from bench.figures.iterations import iteration_time, overhead, rerun
from bench.figures.plan import FULL, QUICK, Context, Plan
from bench.figures.sft import flops, packing, sft_vs_trl
from bench.figures.targets import TARGETS, TITLES, target, verdict

# name -> figure function, in the order they run (iteration_time, overhead and rerun share the
# full iterations; flops reuses sft_vs_trl's runs of our stage).
FIGURES = {
    "iteration_time": iteration_time,
    "overhead": overhead,
    "rerun": rerun,
    "sft_vs_trl": sft_vs_trl,
    "packing": packing,
    "generation_engine": generation_engine,
    "generation_batching": generation_batching,
    "flops": flops,
}
assert list(FIGURES) == list(TITLES), "FIGURES and TITLES must name the same figures in the same order"

__all__ = ["FIGURES", "FULL", "QUICK", "TARGETS", "TITLES", "Context", "Plan", "target", "verdict"]
