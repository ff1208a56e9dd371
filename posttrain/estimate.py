"""The arithmetic of `posttrain plan`: per stage of one iteration, FLOPs, GPU-hours, memory per GPU.

Every input is a field of the parsed configuration (`core.config.Params`): the model's shape,
`cluster` (GPUs, peak, utilisation, price), each stage's section (rows, epochs, batch sizes,
lengths) and `plan` (tokens per row). The throughput model is a range, not a point: the low
GPU-hours use the high end of the utilisation assumptions and vice versa. Where a ~70 B model's
estimate is outside 2x of the published 70B reference, the plan says why, in numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from core.config import ModelConfig, Params, TrainConfig

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

# Published reference GPU-hours per stage for post-training a ~70 B model on 64 H100s (figures
# reported in the literature for a full-scale run). Compared only for a ~70 B model.
REFERENCE_70B = {"sft": (3000, 4600), "reward_model": (2300, 3000), "align": (4600, 7700),
                 "reason": (7700, 10800), "safety": (1500, 3000)}
REFERENCE_NOTES = {"safety": "the reference is a safety DPO pass; this stage is refusal SFT (tasks/safety.py), "
                             "which costs 6N instead of 8N FLOPs per token"}


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


def model_shape(model: ModelConfig) -> ModelShape:
    return ModelShape(model.hidden_size, model.num_layers, model.num_heads, model.num_kv_heads,
                      model.intermediate_size, model.vocab_size)


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


def _range(value, key: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi <= 1:
        raise PlanError(f"{key}={value!r}: expected [low, high] with 0 < low <= high <= 1")
    return lo, hi


def _estimate(params: Params, stage: str, key: str) -> float:
    """plan.<stage>.<key> of the profile; 0 means nobody estimated it, and the plan refuses."""
    value = getattr(getattr(params.plan, stage), key)
    if not value:
        raise PlanError(f"profile '{params.profile}' does not set plan.{stage}.{key} (0 = not estimated); "
                        f"a plan needs it, see core/config_cluster.py")
    return float(value)


def tokens_text(n: float) -> str:
    return "-" if n == 0 else (f"{n / 1e9:,.2f} B" if n >= 1e9 else f"{n / 1e6:,.1f} M")


@dataclass(frozen=True)
class _Work:
    """What one stage computes, before it is priced: the StagePlan fields that differ by kind."""

    tokens: float
    flops: float
    generated: float
    hours: tuple[float, float]
    steps: int | None
    memory: Memory
    micro_batch: str
    detail: str = ""


class _Estimator:
    """One profile's shared inputs; `stage(name)` prices one stage."""

    def __init__(self, params: Params):
        cluster = params.cluster
        self.params = params
        self.shape = shape = model_shape(params.model)
        self.peak = float(cluster.peak_tflops) * 1e12
        self.mfu = _range(cluster.mfu, "cluster.mfu")
        self.rollout_mfu = _range(cluster.rollout_mfu, "cluster.rollout_mfu")
        self.goodput = float(cluster.goodput)
        self.sharding = cluster.distributed
        self.basis = Basis(profile=params.profile, model_id=params.model.hub_id or "?", params=shape.params,
                           layers=shape.layers, hidden=shape.hidden, accelerator=cluster.accelerator,
                           sharding=self.sharding, price=float(cluster.price_per_gpu_hour), peak_flops=self.peak,
                           use_spot=cluster.use_spot, mfu=self.mfu, rollout_mfu=self.rollout_mfu,
                           goodput=self.goodput)
        self.capacity = float(cluster.gpu_memory_gib)
        self.gpn = int(cluster.gpus_per_node)
        self.nm = shape.matmul_params
        self.is_70b = abs(shape.params / 70e9 - 1) < 0.1

    def gpu_hours(self, train_flops: float, gen_flops: float = 0.0) -> tuple[float, float]:
        def hours(m: float, r: float) -> float:
            return (train_flops / (self.peak * m) + gen_flops / (self.peak * r)) / self.goodput / 3600

        return hours(self.mfu[1], self.rollout_mfu[1]), hours(self.mfu[0], self.rollout_mfu[0])

    def stage(self, stage: str) -> StagePlan:
        kind = STAGE_KIND[stage]
        cluster = self.params.cluster
        nodes = int(cluster.stage_nodes.get(stage, cluster.nodes))
        gpus = nodes * self.gpn
        cfg = self.params.section(stage)
        if kind == "generate":
            work = self._generate(cfg, gpus)
        elif kind == "grpo":
            work = self._grpo(cfg, gpus)
        else:
            work = self._train(stage, kind, cfg, gpus)
        sp = StagePlan(stage=stage, kind=kind, nodes=nodes, gpus_per_node=self.gpn, memory=work.memory,
                       micro_batch=work.micro_batch, tokens=work.tokens, flops=work.flops, generated=work.generated,
                       steps=work.steps, gpu_hours=work.hours, basis=self.basis,
                       reference=REFERENCE_70B.get(stage) if self.is_70b else None, detail=work.detail)
        return _explained(sp, cfg, self.params)

    def _generate(self, cfg, gpus: int) -> _Work:
        max_new = cfg.max_new_tokens
        generated = EVALUATIONS_PER_ITERATION * (cfg.math_items * max_new + cfg.safety_items * cfg.safety_max_new_tokens)
        flops = generated * 2 * self.nm
        mem = memory_estimate(self.shape, gpus=gpus, sharding=self.sharding, sequences=cfg.batch_size, seq_len=max_new,
                              capacity_gib=self.capacity, trained=False, logits=False)
        return _Work(0.0, flops, generated, self.gpu_hours(0.0, flops), None, mem, f"{cfg.batch_size} x {max_new}")

    def _per_step(self, cfg: TrainConfig, gpus: int) -> int:
        return cfg.per_device_batch_size * cfg.gradient_accumulation_steps * gpus

    def _grpo(self, cfg, gpus: int) -> _Work:
        shape, nm, mfu, rollout_mfu = self.shape, self.nm, self.mfu, self.rollout_mfu
        group = cfg.num_generations
        prompt, completion = _estimate(self.params, "reason", "prompt_tokens"), _estimate(
            self.params, "reason", "mean_completion_tokens")
        prompts = cfg.max_examples * float(cfg.epochs)
        generated = prompts * group * completion
        tokens = prompts * group * (prompt + completion)
        per_token = nm + shape.layers * (prompt + completion) * shape.hidden
        frozen = 1 if float(cfg.beta) > 0 else 0  # a reference model only with a KL term
        train = tokens * (6 + 2 * frozen) * per_token
        prefill = prompts * prompt * 2 * nm
        gen = generated * 2 * per_token
        # Rollout share of the time at either end of the ranges: rollouts dominate GRPO's wall
        # time for long completions; short GSM8K answers leave the trainer the larger part.
        shares = [gen / r / (gen / r + (train + prefill) / m) for m, r in zip(mfu, rollout_mfu)]
        detail = (f"rollouts are {min(shares):.0%}-{max(shares):.0%} of the GPU time "
                  f"(mean completion {completion:.0f} of max {cfg.max_completion_length} tokens)")
        reserve = float(cfg.vllm_gpu_memory_utilization) * self.capacity
        per_device, max_len = cfg.per_device_batch_size, cfg.max_length
        mem = memory_estimate(shape, gpus=gpus, sharding=self.sharding, sequences=per_device, seq_len=max_len,
                              capacity_gib=self.capacity, frozen_copies=frozen, reserved_gib=reserve)
        return _Work(tokens, train + prefill + gen, generated, self.gpu_hours(train + prefill, gen),
                     math.ceil(prompts * group / self._per_step(cfg, gpus)), mem, f"{per_device} x {max_len}", detail)

    def _train(self, stage: str, kind: str, cfg: TrainConfig, gpus: int) -> _Work:
        shape, nm = self.shape, self.nm
        rows, epochs = cfg.max_examples, float(cfg.epochs)
        per_row = _estimate(self.params, stage, "tokens_per_example")
        tokens = rows * per_row * epochs
        pairs = kind in ("reward", "dpo")
        per_device = cfg.per_device_batch_size
        sequences = 2 * per_device if pairs else per_device  # chosen and rejected side by side
        context = per_row / 2 if pairs else per_row
        n_train = nm - shape.embedding if kind == "reward" else nm  # scalar head, no LM head
        flops = tokens * 6 * (n_train + shape.layers * context * shape.hidden)
        if kind == "dpo":  # the frozen reference model's forward on the same tokens
            flops += tokens * 2 * (nm + shape.layers * context * shape.hidden)
        mem = memory_estimate(shape, gpus=gpus, sharding=self.sharding, sequences=sequences, seq_len=cfg.max_length,
                              capacity_gib=self.capacity, frozen_copies=1 if kind == "dpo" else 0,
                              logits=kind != "reward")
        return _Work(tokens, flops, 0.0, self.gpu_hours(flops), math.ceil(rows * epochs / self._per_step(cfg, gpus)),
                     mem, f"{sequences} x {cfg.max_length}")


def stage_plans(params: Params) -> list[StagePlan]:
    """One StagePlan per stage of an iteration, in DAG order, from a profile's parsed configuration."""
    estimator = _Estimator(params)
    return [estimator.stage(stage) for stage in STAGES]


def _explained(sp: StagePlan, cfg, params: Params) -> StagePlan:
    """Attach the reason, in numbers, why an estimate is outside 2x of the published 70B reference."""
    if sp.within_2x is not False:
        return sp
    mid = math.sqrt(sp.gpu_hours[0] * sp.gpu_hours[1])
    ref_mid = math.sqrt(sp.reference[0] * sp.reference[1])
    factor = ref_mid / mid
    side = "below" if factor > 1 else "above"
    shown = factor if factor > 1 else 1 / factor
    epochs = f"{cfg.epochs:g}"
    if sp.kind == "grpo":
        volume = (f"this profile generates {tokens_text(sp.generated)} tokens ({cfg.max_examples:,} prompts x "
                  f"{epochs} epoch(s) x G {cfg.num_generations} x {params.plan.reason.mean_completion_tokens} "
                  f"tokens); at the same cost per token the reference pays for ~{tokens_text(sp.generated * factor)} "
                  f"generated tokens, i.e. a much larger prompt set and long (R1-style) completions")
    else:
        per_row = getattr(params.plan, sp.stage).tokens_per_example
        volume = (f"this profile trains on {tokens_text(sp.tokens)} tokens ({cfg.max_examples:,} rows x "
                  f"{per_row} tokens x {epochs} epoch(s)); at the same cost per token the "
                  f"reference pays for ~{tokens_text(sp.tokens * factor)} tokens")
    # Effective utilisation: the stage's model FLOPs over the paid GPU time (goodput included).
    util = sp.flops / (mid * 3600 * sp.basis.peak_flops)
    note = (f"{shown:,.1f}x {side} the published 70B reference ({sp.reference[0]:,}-{sp.reference[1]:,} GPU-h): "
            f"{volume}. So the reference assumes ~{shown:,.0f}x {'more' if factor > 1 else 'less'} data (dataset size x "
            f"epochs) than this profile, or an effective utilisation of ~{util / factor:.1%} of peak instead of "
            f"this plan's ~{util:.0%}{' (implausibly low on H100 bf16)' if factor > 3 else ''}; the estimate "
            f"here is this profile's data volume at the assumptions below")
    if sp.stage in REFERENCE_NOTES:
        note += f"; also, {REFERENCE_NOTES[sp.stage]}"
    return replace(sp, note=note + ".")


def totals(plans: Sequence[StagePlan]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(GPU-hours low, high), (cost low, high) of the whole iteration."""
    gh = (sum(p.gpu_hours[0] for p in plans), sum(p.gpu_hours[1] for p in plans))
    cost = (sum(p.cost[0] for p in plans), sum(p.cost[1] for p in plans))
    return gh, cost
