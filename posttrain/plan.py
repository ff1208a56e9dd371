"""Cost and memory plan of one iteration on a GPU profile, before anything is launched.

    posttrain plan --profile llama70b-h100

Per stage: nodes x GPUs, per-GPU memory (weights, gradients, optimizer states, activations, other)
under the profile's sharding, tokens processed, optimizer steps, GPU-hours, wall hours and cost,
then the iteration total. Every input comes from the profile's entry in params.yaml (`profiles:`),
validated by core/config.py first. The throughput model is a range, not a point: the low
GPU-hours use the high end of the utilisation assumptions and vice versa. Its sources are in
ASSUMPTIONS and are printed with every plan; where a 70B estimate is outside 2x of DOMAIN.md's
reference the plan says why, in numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

PROFILES = Path("params.yaml")  # relative to the project root: its `profiles:` section
GIB = 2**30

# The TRL trainer each tasks/<stage>.py calls decides the cost model (safety is refusal SFT).
STAGE_KIND = {"sft": "sft", "reward_model": "reward", "align": "dpo", "reason": "grpo", "safety": "sft",
              "evaluate": "generate"}
STAGES = tuple(STAGE_KIND)
EVALUATIONS_PER_ITERATION = 2  # flows/iteration.py evaluates the base and the final policy

# Bytes per parameter, mixed-precision Adam (ZeRO paper's accounting: 2 + 2 + K with K = 12).
WEIGHT_BYTES = 2      # bf16 compute copy
GRAD_BYTES = 2        # bf16 gradients
OPTIMIZER_BYTES = 12  # fp32 master weights + Adam first and second moments
# Activations of one transformer layer: 34 * s * b * h bytes in 16-bit (Korthikanti et al. 2022, no
# tensor parallelism; flash attention removes their 5 * a * s^2 * b term). With activation
# checkpointing a layer keeps only its 2 * s * b * h input, and one layer is live in recompute.
LAYER_ACTIVATION_BYTES = 34
CHECKPOINTED_LAYER_BYTES = 2
# Logits per token and vocabulary entry: bf16 logits, their fp32 upcast for the loss and its
# gradient buffer. An estimate; with a 128 K vocabulary it is several GiB at 4 K tokens.
LOGIT_BYTES = 8
GATHERED_BLOCKS = 2   # FSDP/ZeRO-3 hold the running and the prefetched block unsharded
RUNTIME_GIB = 3.0     # CUDA context, NCCL buffers, allocator fragmentation (an estimate)

# DOMAIN.md "Scale and cost reference (70B, 64 x H100)", GPU-hours per stage. Compared only for a
# ~70 B model, the size the reference is for.
REFERENCE_70B = {"sft": (3000, 4600), "reward_model": (2300, 3000), "align": (4600, 7700),
                 "reason": (7700, 10800), "safety": (1500, 3000)}
REFERENCE_NOTES = {"safety": "the reference is a safety DPO pass; this stage is refusal SFT (tasks/safety.py), "
                             "which costs 6N instead of 8N FLOPs per token"}

ASSUMPTIONS = (
    "FLOPs: training 6*N per token (forward 2N + backward 4N; Kaplan et al. 2020, C ~ 6ND), plus "
    "attention 6*layers*context*hidden; forward-only passes (DPO reference, rollouts) 2*N per token. "
    "N excludes the input embedding (a lookup, no matmul); the reward model also has no LM head.",
    "Peak: H100 SXM dense BF16 989 TFLOP/s per GPU (NVIDIA datasheet; 1,979 is with 2:4 sparsity).",
    "Training MFU {mfu}: FSDP full shard + activation checkpointing, bf16 (Llama 3 paper: 38-43% BF16 "
    "MFU on H100; recompute is not counted as model FLOPs).",
    "Rollout MFU {rollout_mfu}: decoding is memory-bandwidth bound; one decode step streams all weights "
    "(HBM 3.35 TB/s), so MFU ~ concurrent sequences x 3.35e12/989e12 = 0.34% per sequence: 30-75 "
    "sequences per engine. GRPO wall time is rollout-dominated (DOMAIN.md); prompt prefill is counted "
    "at training MFU, once per prompt (the G samples share it).",
    "Goodput {goodput}: share of paid GPU time spent in training steps (checkpoint saves, evaluation, "
    "restarts; Llama 3 reports > 90% effective training time). GPU-hours = FLOPs / (peak x MFU) / goodput.",
    "Memory per GPU: weights 2 + gradients 2 + optimizer 12 bytes/param (ZeRO, Rajbhandari et al. "
    "2020), divided by the GPUs under full shard (fsdp2/zero3), undivided under ddp; activations per "
    "Korthikanti et al. 2022 at the longest micro-batch (max_length); DPO and reward pairs are "
    "concatenated (2 sequences per pair); GRPO adds vLLM's reserved share of the GPU.",
    "Tokens: rows x mean tokens per row x epochs (plan.* estimates); GRPO rollouts: prompts x epochs "
    "x group size x mean completion length; evaluate: items x max new tokens, base and final.",
)


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class ModelShape:
    """A Llama-style decoder (GQA, SwiGLU MLP, untied input/output embeddings as in Llama 3.1 8B/70B)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @property
    def layer_params(self) -> int:
        head_dim = self.hidden // self.heads
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim  # q, o, k, v
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden  # gate/up/down + 2 norms

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + 2 * self.embedding + self.hidden

    @property
    def matmul_params(self) -> int:
        """Parameters that cost FLOPs per token: all but the input embedding (a table lookup)."""
        return self.params - self.embedding

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * (self.hidden // self.heads) * WEIGHT_BYTES


@dataclass(frozen=True)
class Memory:
    """Per-GPU memory estimate in GiB."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    other: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.other

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity


@dataclass(frozen=True)
class Basis:
    """What every stage of one plan shares (printed in the header and the assumptions)."""

    profile: str
    model_id: str
    params: int
    layers: int
    hidden: int
    accelerator: str
    sharding: str
    price: float
    peak_flops: float           # per GPU, FLOP/s
    use_spot: bool
    mfu: tuple[float, float]
    rollout_mfu: tuple[float, float]
    goodput: float


@dataclass(frozen=True)
class StagePlan:
    stage: str
    kind: str
    nodes: int
    gpus_per_node: int
    memory: Memory
    micro_batch: str            # "sequences x tokens" of the largest micro-batch
    tokens: float               # tokens through forward+backward of the trained model
    flops: float                # all model FLOPs of the stage (training, reference, rollouts)
    generated: float            # tokens generated (GRPO rollouts, evaluation)
    steps: int | None           # optimizer steps
    gpu_hours: tuple[float, float]
    basis: Basis
    reference: tuple[int, int] | None = None
    note: str = ""
    detail: str = ""            # stage-specific breakdown printed under the tables

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def wall_hours(self) -> tuple[float, float]:
        return (self.gpu_hours[0] / self.gpus, self.gpu_hours[1] / self.gpus)

    @property
    def cost(self) -> tuple[float, float]:
        return (self.gpu_hours[0] * self.basis.price, self.gpu_hours[1] * self.basis.price)

    @property
    def within_2x(self) -> bool | None:
        """Whether the estimate overlaps [reference low / 2, reference high x 2]; None without one."""
        if self.reference is None:
            return None
        return self.gpu_hours[1] >= self.reference[0] / 2 and self.gpu_hours[0] <= self.reference[1] * 2


def load_profile(name: str, project: str | Path | None = None, path: str | Path | None = None) -> dict:
    """The mapping of one GPU profile from params.yaml's `profiles:` (or the params file `path`).

    The whole profile is validated by core/config.py first, so a plan never prices a profile
    that `posttrain run` would reject; the plan then reads the profile's own values."""
    from core.config import ConfigError, load_params
    from core.paths import layout

    file = Path(path) if path else layout(project).project / PROFILES
    profiles = (yaml.safe_load(file.read_text()) or {}).get("profiles") or {}
    if name not in profiles:
        raise PlanError(f"unknown profile '{name}'; profiles in {file}: {', '.join(profiles) or 'none'}")
    try:
        load_params(file, name)
    except ConfigError as err:
        raise PlanError(str(err)) from err
    return profiles[name]


def _get(spec: Mapping, dotted: str, default=...):
    """spec[a][b] for "a.b"; a missing key without a default names its full path."""
    node = spec
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise PlanError(f"profile is missing '{dotted}' (see {PROFILES} for the keys a plan needs)")
        node = node[part]
    return node


def _range(value, key: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi <= 1:
        raise PlanError(f"{key}={value!r}: expected [low, high] with 0 < low <= high <= 1")
    return lo, hi


def model_shape(spec: Mapping) -> ModelShape:
    return ModelShape(*(int(_get(spec, f"model.{k}")) for k in
                        ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size")))


def memory_estimate(shape: ModelShape, *, gpus: int, sharding: str, sequences: int, seq_len: int,
                    capacity_gib: float, trained: bool = True, frozen_copies: int = 0, logits: bool = True,
                    activation_checkpointing: bool = True, reserved_gib: float = 0.0) -> Memory:
    """Per-GPU GiB for one trained model (+ `frozen_copies` forward-only models of the same size)
    on `gpus` GPUs. sharding: fsdp2 | zero3 (full shard over all GPUs) | ddp (every GPU holds all)."""
    if sharding not in ("fsdp2", "zero3", "ddp"):
        raise PlanError(f"sharding={sharding!r}: valid choices are fsdp2, zero3, ddp")
    # Training shards over all GPUs under full shard; inference splits the weights over its GPUs
    # (tensor parallel / device map) and gathers nothing.
    shard = gpus if sharding in ("fsdp2", "zero3") or not trained else 1
    n = shape.params
    weights = WEIGHT_BYTES * n * (1 + frozen_copies) / shard
    if shard > 1 and trained:
        weights += GATHERED_BLOCKS * WEIGHT_BYTES * shape.layer_params
    grads = GRAD_BYTES * n / shard if trained else 0.0
    optim = OPTIMIZER_BYTES * n / shard if trained else 0.0
    tokens = sequences * seq_len
    if not trained:
        activations = tokens * shape.kv_bytes_per_token / gpus  # KV cache of a generation batch
    elif activation_checkpointing:
        activations = (shape.layers * CHECKPOINTED_LAYER_BYTES + LAYER_ACTIVATION_BYTES) * tokens * shape.hidden
    else:
        activations = shape.layers * LAYER_ACTIVATION_BYTES * tokens * shape.hidden
    if logits:
        activations += LOGIT_BYTES * tokens * shape.vocab
    return Memory(weights / GIB, grads / GIB, optim / GIB, activations / GIB, RUNTIME_GIB + reserved_gib,
                  float(capacity_gib))


def plan(profile_spec: Mapping, name: str = "") -> list[StagePlan]:
    """One StagePlan per stage of an iteration, in DAG order, from a profile mapping."""
    get = lambda dotted, default=...: _get(profile_spec, dotted, default)  # noqa: E731
    shape = model_shape(profile_spec)
    peak = float(get("cluster.peak_tflops")) * 1e12
    mfu = _range(get("cluster.mfu"), "cluster.mfu")
    rollout_mfu = _range(get("cluster.rollout_mfu"), "cluster.rollout_mfu")
    goodput = float(get("cluster.goodput"))
    sharding = str(get("cluster.distributed"))
    if sharding not in ("fsdp2", "zero3", "ddp"):
        raise PlanError(f"cluster.distributed={sharding!r}: valid choices are fsdp2, zero3, ddp")
    basis = Basis(profile=name, model_id=str(get("model.hub_id", "?")), params=shape.params, layers=shape.layers,
                  hidden=shape.hidden, accelerator=str(get("cluster.accelerator")), sharding=sharding,
                  price=float(get("cluster.price_per_gpu_hour")), peak_flops=peak,
                  use_spot=bool(get("cluster.use_spot")), mfu=mfu, rollout_mfu=rollout_mfu, goodput=goodput)
    capacity = float(get("cluster.gpu_memory_gib"))
    gpn = int(get("cluster.gpus_per_node"))
    nm = shape.matmul_params
    is_70b = abs(shape.params / 70e9 - 1) < 0.1

    def gpu_hours(train_flops: float, gen_flops: float = 0.0) -> tuple[float, float]:
        def hours(m: float, r: float) -> float:
            return (train_flops / (peak * m) + gen_flops / (peak * r)) / goodput / 3600

        return hours(mfu[1], rollout_mfu[1]), hours(mfu[0], rollout_mfu[0])

    plans = []
    for stage in STAGES:
        kind = STAGE_KIND[stage]
        cfg = lambda key, default=...: get(f"{stage}.{key}", default)  # noqa: E731
        est = lambda key: get(f"plan.{stage}.{key}")  # noqa: E731
        nodes = int(get(f"cluster.stage_nodes.{stage}", get("cluster.nodes")))
        gpus = nodes * gpn
        generated = 0.0
        steps = None
        detail = ""
        if kind == "generate":
            max_new = int(cfg("max_new_tokens"))
            generated = EVALUATIONS_PER_ITERATION * (int(cfg("math_items")) * max_new
                                                     + int(cfg("safety_items")) * int(cfg("safety_max_new_tokens")))
            tokens, flops = 0.0, generated * 2 * nm
            hours = gpu_hours(0.0, flops)
            batch = int(cfg("batch_size"))
            mem = memory_estimate(shape, gpus=gpus, sharding=sharding, sequences=batch, seq_len=max_new,
                                  capacity_gib=capacity, trained=False, logits=False)
            micro = f"{batch} x {max_new}"
        else:
            rows = int(cfg("max_examples"))
            epochs = float(cfg("epochs"))
            per_device = int(cfg("per_device_batch_size"))
            max_len = int(cfg("max_length"))
            per_step = per_device * int(cfg("gradient_accumulation_steps", 1)) * gpus
            if kind == "grpo":
                group = int(cfg("num_generations"))
                prompt, completion = float(est("prompt_tokens")), float(est("mean_completion_tokens"))
                prompts = rows * epochs
                generated = prompts * group * completion
                tokens = prompts * group * (prompt + completion)
                per_token = nm + shape.layers * (prompt + completion) * shape.hidden
                frozen = 1 if float(cfg("beta")) > 0 else 0  # a reference model only with a KL term
                train = tokens * (6 + 2 * frozen) * per_token
                prefill = prompts * prompt * 2 * nm
                gen = generated * 2 * per_token
                hours = gpu_hours(train + prefill, gen)
                flops = train + prefill + gen
                # Rollout share of the time at either end of the ranges: DOMAIN.md's "rollout-dominated"
                # holds for long completions; short GSM8K answers leave the trainer the larger part.
                shares = [gen / r / (gen / r + (train + prefill) / m) for m, r in zip(mfu, rollout_mfu)]
                detail = (f"rollouts are {min(shares):.0%}-{max(shares):.0%} of the GPU time "
                          f"(mean completion {completion:.0f} of max {cfg('max_completion_length')} tokens)")
                steps = math.ceil(prompts * group / per_step)
                reserve = float(cfg("vllm_gpu_memory_utilization")) * capacity
                mem = memory_estimate(shape, gpus=gpus, sharding=sharding, sequences=per_device, seq_len=max_len,
                                      capacity_gib=capacity, frozen_copies=frozen, reserved_gib=reserve)
                micro = f"{per_device} x {max_len}"
            else:
                per_row = float(est("tokens_per_example"))
                tokens = rows * per_row * epochs
                pairs = kind in ("reward", "dpo")
                sequences = 2 * per_device if pairs else per_device  # chosen and rejected side by side
                context = per_row / 2 if pairs else per_row
                n_train = nm - shape.embedding if kind == "reward" else nm  # scalar head, no LM head
                flops = tokens * 6 * (n_train + shape.layers * context * shape.hidden)
                if kind == "dpo":  # the frozen reference model's forward on the same tokens
                    flops += tokens * 2 * (nm + shape.layers * context * shape.hidden)
                hours = gpu_hours(flops)
                steps = math.ceil(rows * epochs / per_step)
                mem = memory_estimate(shape, gpus=gpus, sharding=sharding, sequences=sequences, seq_len=max_len,
                                      capacity_gib=capacity, frozen_copies=1 if kind == "dpo" else 0,
                                      logits=kind != "reward")
                micro = f"{sequences} x {max_len}"
        sp = StagePlan(stage=stage, kind=kind, nodes=nodes, gpus_per_node=gpn, memory=mem, micro_batch=micro,
                       tokens=tokens, flops=flops, generated=generated, steps=steps, gpu_hours=hours, basis=basis,
                       reference=REFERENCE_70B.get(stage) if is_70b else None, detail=detail)
        plans.append(_explained(sp, cfg, est))
    return plans


def _explained(sp: StagePlan, cfg: Callable, est: Callable) -> StagePlan:
    """Attach the reason, in numbers, why an estimate is outside 2x of DOMAIN.md's reference."""
    if sp.within_2x is not False:
        return sp
    mid = math.sqrt(sp.gpu_hours[0] * sp.gpu_hours[1])
    ref_mid = math.sqrt(sp.reference[0] * sp.reference[1])
    factor = ref_mid / mid
    side = "below" if factor > 1 else "above"
    shown = factor if factor > 1 else 1 / factor
    epochs = cfg("epochs")
    if sp.kind == "grpo":
        volume = (f"this profile generates {_tokens(sp.generated)} tokens ({cfg('max_examples'):,} prompts x "
                  f"{epochs} epoch(s) x G {cfg('num_generations')} x {est('mean_completion_tokens')} tokens); at the "
                  f"same cost per token the reference pays for ~{_tokens(sp.generated * factor)} generated tokens, "
                  f"i.e. a much larger prompt set and long (R1-style) completions")
    else:
        volume = (f"this profile trains on {_tokens(sp.tokens)} tokens ({cfg('max_examples'):,} rows x "
                  f"{est('tokens_per_example')} tokens x {epochs} epoch(s)); at the same cost per token the "
                  f"reference pays for ~{_tokens(sp.tokens * factor)} tokens")
    # Effective utilisation: the stage's model FLOPs over the paid GPU time (goodput included).
    util = sp.flops / (mid * 3600 * sp.basis.peak_flops)
    note = (f"{shown:,.1f}x {side} DOMAIN.md ({sp.reference[0]:,}-{sp.reference[1]:,} GPU-h): {volume}. "
            f"So the reference assumes ~{shown:,.0f}x {'more' if factor > 1 else 'less'} data (dataset size x "
            f"epochs) than this profile, or an effective utilisation of ~{util / factor:.1%} of peak instead of "
            f"this plan's ~{util:.0%}{' (implausibly low on H100 bf16)' if factor > 3 else ''}; the estimate "
            f"here is this profile's data volume at the assumptions below")
    if sp.stage in REFERENCE_NOTES:
        note += f"; also, {REFERENCE_NOTES[sp.stage]}"
    return replace(sp, note=note + ".")


def _r(pair: tuple[float, float], fmt: str = "") -> str:
    """A low-high range; without a format, whole numbers from 10 up and one decimal below."""
    fmt = fmt or (",.0f" if pair[0] >= 10 else ",.1f")
    return f"{pair[0]:{fmt}}-{pair[1]:{fmt}}"


def _tokens(n: float) -> str:
    return "-" if n == 0 else (f"{n / 1e9:,.2f} B" if n >= 1e9 else f"{n / 1e6:,.1f} M")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: the first left-aligned, the numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def totals(plans: Sequence[StagePlan]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(GPU-hours low, high), (cost low, high) of the whole iteration."""
    gh = (sum(p.gpu_hours[0] for p in plans), sum(p.gpu_hours[1] for p in plans))
    cost = (sum(p.cost[0] for p in plans), sum(p.cost[1] for p in plans))
    return gh, cost


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
        rows.append([p.stage, p.kind, f"{p.nodes} x {p.gpus_per_node}", _tokens(p.tokens), _tokens(p.generated),
                     f"{p.steps:,}" if p.steps else "-", _r(p.gpu_hours), _r(p.wall_hours, ",.1f"), _r(p.cost),
                     ref, flag])
    gh, cost = totals(plans)
    rows.append(["total", "", "", "", "", "", _r(gh), "", _r(cost), "", ""])
    out += _table(["stage", "kind", "nodes x GPUs", "tokens", "generated", "steps", "GPU-h", "wall h",
                   "cost USD", "DOMAIN.md GPU-h", "within 2x"], rows)
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
        out += ["", "Why estimates differ from DOMAIN.md by more than 2x:", *notes]
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
        spec = load_profile(args.profile, args.project, args.profiles)
        print(render(plan(spec, args.profile)))
    except (PlanError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
