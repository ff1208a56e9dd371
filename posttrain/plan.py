"""Cost and memory plan of one iteration on a GPU profile, before anything is launched.

    posttrain plan --profile llama70b-h100

Per stage: nodes x GPUs, per-GPU memory (weights, gradients, optimizer states, activations, other)
under the profile's sharding, tokens processed, optimizer steps, GPU-hours, wall hours and cost,
then the iteration total. Every input is the profile's parsed configuration (core.config.load_params
on params.yaml's `profiles:` entry), so a plan never prices a profile that `posttrain run` would
reject. The arithmetic is posttrain/estimate.py; its sources are in ASSUMPTIONS and are printed
with every plan; where a 70B estimate is outside 2x of the published 70B reference GPU-hours the
plan says why, in numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from core.config import ConfigError, Params, load_params
from core.paths import layout
from posttrain.estimate import PlanError, StagePlan, stage_plans, tokens_text, totals

PROFILES = Path("params.yaml")  # relative to the project root: its `profiles:` section

ASSUMPTIONS = (
    "FLOPs: training 6*N per token (forward 2N + backward 4N; Kaplan et al. 2020, C ~ 6ND), plus "
    "attention 6*layers*context*hidden; forward-only passes (DPO reference, rollouts) 2*N per token. "
    "N excludes the input embedding (a lookup, no matmul); the reward model also has no LM head.",
    "Peak: H100 SXM dense BF16 989 TFLOP/s per GPU (NVIDIA datasheet; 1,979 is with 2:4 sparsity).",
    "Training MFU {mfu}: FSDP full shard + activation checkpointing, bf16 (Llama 3 paper: 38-43% BF16 "
    "MFU on H100; recompute is not counted as model FLOPs).",
    "Rollout MFU {rollout_mfu}: decoding is memory-bandwidth bound; one decode step streams all weights "
    "(HBM 3.35 TB/s), so MFU ~ concurrent sequences x 3.35e12/989e12 = 0.34% per sequence: 30-75 "
    "sequences per engine. GRPO wall time is rollout-dominated when completions are long; prompt prefill "
    "is counted at training MFU, once per prompt (the G samples share it).",
    "Goodput {goodput}: share of paid GPU time spent in training steps (checkpoint saves, evaluation, "
    "restarts; Llama 3 reports > 90% effective training time). GPU-hours = FLOPs / (peak x MFU) / goodput.",
    "Memory per GPU: weights 2 + gradients 2 + optimizer 12 bytes/param (ZeRO, Rajbhandari et al. "
    "2020), divided by the GPUs under full shard (fsdp2/zero3), undivided under ddp; activations per "
    "Korthikanti et al. 2022 at the longest micro-batch (max_length); DPO and reward pairs are "
    "concatenated (2 sequences per pair); GRPO adds vLLM's reserved share of the GPU.",
    "Tokens: rows x mean tokens per row x epochs (plan.* estimates); GRPO rollouts: prompts x epochs "
    "x group size x mean completion length; evaluate: items x max new tokens, base and final.",
    "Reference: published GPU-hours per stage for post-training a ~70 B model on 64 H100s, compared "
    "only when the model has ~70 B parameters.",
)


def load_profile(name: str, project: str | Path | None = None, path: str | Path | None = None) -> Params:
    """The parsed configuration of profile `name` in params.yaml (or in the params file `path`).

    Validated like `posttrain run` validates it; a ConfigError becomes a PlanError."""
    file = Path(path) if path else layout(project).project / PROFILES
    try:
        return load_params(file, name)
    except ConfigError as err:
        raise PlanError(str(err)) from err


def _r(pair: tuple[float, float], fmt: str = "") -> str:
    """A low-high range; without a format, whole numbers from 10 up and one decimal below."""
    fmt = fmt or (",.0f" if pair[0] >= 10 else ",.1f")
    return f"{pair[0]:{fmt}}-{pair[1]:{fmt}}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: the first left-aligned, the numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def render(plans: Sequence[StagePlan]) -> str:
    b = plans[0].basis
    out = [f"posttrain plan: profile {b.profile or '?'} - {b.model_id}, {b.params / 1e9:,.2f} B params "
           f"({b.layers} layers, hidden {b.hidden}); {b.accelerator} x {plans[0].gpus_per_node} per node, "
           f"{b.sharding}, ${b.price:,.2f}/GPU-h, spot {'yes' if b.use_spot else 'no'}", ""]
    rows = []
    for p in plans:
        if p.reference is None:
            ref, flag = "-", ""
        else:
            ref, flag = f"{p.reference[0]:,}-{p.reference[1]:,}", "ok" if p.within_2x else "see note"
        rows.append([p.stage, p.kind, f"{p.nodes} x {p.gpus_per_node}", tokens_text(p.tokens),
                     tokens_text(p.generated), f"{p.steps:,}" if p.steps else "-", _r(p.gpu_hours),
                     _r(p.wall_hours, ",.1f"), _r(p.cost), ref, flag])
    gh, cost = totals(plans)
    rows.append(["total", "", "", "", "", "", _r(gh), "", _r(cost), "", ""])
    out += _table(["stage", "kind", "nodes x GPUs", "tokens", "generated", "steps", "GPU-h", "wall h",
                   "cost USD", "published 70B GPU-h", "within 2x"], rows)
    out += ["", "Memory per GPU (GiB), largest micro-batch (sequences x tokens):", ""]
    mrows = [[p.stage, "inference" if p.kind == "generate" else b.sharding, p.micro_batch,
              *(f"{v:,.1f}" for v in (p.memory.weights, p.memory.gradients, p.memory.optimizer,
                                      p.memory.activations, p.memory.other, p.memory.total)),
              f"{'fits' if p.memory.fits else 'DOES NOT FIT'} {p.memory.capacity:,.0f}"] for p in plans]
    out += _table(["stage", "sharding", "micro-batch", "weights", "grads", "optimizer", "activations", "other",
                   "total", "per GPU"], mrows)
    details = [f"- {p.stage}: {p.detail}" for p in plans if p.detail]
    if details:
        out += ["", "Stage details:", *details]
    notes = [f"- {p.stage}: {p.note}" for p in plans if p.note]
    if notes:
        out += ["", "Why estimates differ from the published 70B reference by more than 2x:", *notes]
    fmt = {"mfu": f"{b.mfu[0]:.0%}-{b.mfu[1]:.0%}", "rollout_mfu": f"{b.rollout_mfu[0]:.0%}-{b.rollout_mfu[1]:.0%}",
           "goodput": f"{b.goodput:.0%}"}
    out += ["", "Assumptions:", *(f"- {a.format(**fmt)}" for a in ASSUMPTIONS)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posttrain plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True, help=f"a GPU profile in {PROFILES}")
    parser.add_argument("--project", default=None, help="project root (default: current dir)")
    parser.add_argument("--profiles", default=None, help=f"params file holding the profiles (default: <project>/{PROFILES})")
    args = parser.parse_args(argv)
    try:
        print(render(stage_plans(load_profile(args.profile, args.project, args.profiles))))
    except (PlanError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
