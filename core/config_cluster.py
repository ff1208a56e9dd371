"""The `cluster` and `plan` sections of params.yaml: where `backend: skypilot` stages run, what a
GPU-hour costs, and the size estimates `posttrain plan` prices an iteration with. Neither is ever
part of a version key: they say where and how much, not what."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config_base import _c, _r


@dataclass(frozen=True)
class ClusterConfig:
    """The GPU cluster of `backend: skypilot` stages (sky/stage.yaml + these resources) and the
    throughput assumptions of `posttrain plan`."""

    # Resources
    accelerator: str = "H100"  #: SkyPilot accelerator name of every node's GPUs, e.g. H100.
    gpus_per_node: int = _r(1, 16, 8)  #: GPUs per node.
    nodes: int = _r(1, 1024, 1)  #: SkyPilot num_nodes of every stage that stage_nodes does not name.
    stage_nodes: dict = field(default_factory=dict)  #: {stage: nodes} for stages that run on another number of nodes.
    gpu_memory_gib: float = _r(1, 1024, 80)  #: memory of one GPU, GiB; `posttrain plan` checks each stage fits in it.
    #: dense bf16 peak of one GPU, TFLOP/s (H100 SXM: 989; 1,979 is with 2:4 sparsity). GPU-hours scale with its
    #: inverse.
    peak_tflops: float = _r(1, 100_000, 989)
    # Price and recovery
    price_per_gpu_hour: float = _r(0.0, 1000.0, 3.0)  #: USD per GPU-hour; `posttrain plan`'s cost is GPU-hours x this.
    #: run on spot (preemptible) instances: cheaper, but a preemption loses the progress since the last checkpoint, of
    #: every node of a multi-node stage.
    use_spot: bool = False
    #: SkyPilot job_recovery restarts after a non-zero exit (preemptions are recovered regardless).
    max_restarts_on_errors: int = _r(0, 100, 2)
    # Launch
    #: sharding of training, sky/accelerate/<name>.yaml: fsdp2 or zero3 (both shard weights, gradients and optimizer
    #: state over all GPUs).
    distributed: str = _c(("fsdp2", "zero3"), "fsdp2")
    checkpoint_bucket: str = "s3://posttrain-checkpoints"  #: bucket mounted at /checkpoints on the cluster.
    data_bucket: str = "s3://posttrain-data"  #: bucket mounted at /data on the cluster.
    #: the MLflow server as the cluster reaches it (often not the URL this machine uses, e.g. behind a tunnel). "" =
    #: this process's tracking URI, which must then be http(s)://.
    tracking_uri: str = ""
    # Throughput assumptions of `posttrain plan`
    #: (low, high) model-FLOPs utilisation of training; `posttrain plan` requires 0 < low <= high <= 1, and its
    #: high GPU-hours use the low end.
    mfu: tuple = (0.35, 0.45)
    #: (low, high) utilisation of decoding (generation is memory-bandwidth bound, so far below training's).
    rollout_mfu: tuple = (0.10, 0.25)
    #: share of paid GPU time spent in training steps (the rest: checkpoint saves, evaluation, restarts); GPU-hours are
    #: divided by it.
    goodput: float = _r(0.01, 1.0, 0.90)


@dataclass(frozen=True)
class TrainingEstimate:
    """The size estimate of one training stage (sft, reward_model, align, safety)."""

    #: mean tokens of one training row after the chat template (a pair: prompt + chosen + prompt + rejected). Rows x
    #: epochs x this are the stage's training tokens, hence its FLOPs and GPU-hours. 0 = not estimated: `posttrain plan`
    #: refuses the profile and names this key.
    tokens_per_example: int = _r(0, 1_000_000, 0)


@dataclass(frozen=True)
class RolloutEstimate:
    """The size estimate of the reason stage (GRPO): prompts and the completions sampled for them."""

    prompt_tokens: int = _r(0, 1_000_000, 0)  #: mean tokens of one prompt after the chat template. 0 = not estimated.
    #: mean tokens of one sampled completion (at most reason.max_completion_length); rollouts are prompts x epochs x
    #: group size x this tokens. 0 = not estimated.
    mean_completion_tokens: int = _r(0, 1_000_000, 0)


@dataclass(frozen=True)
class PlanConfig:
    """Estimates only `posttrain plan` reads, per stage. Never hashed, so a better estimate never
    re-runs a stage. In params.yaml a mapping per stage, e.g. `sft: {tokens_per_example: 775}`."""

    sft: TrainingEstimate = field(default_factory=TrainingEstimate)
    reward_model: TrainingEstimate = field(default_factory=TrainingEstimate)
    align: TrainingEstimate = field(default_factory=TrainingEstimate)
    reason: RolloutEstimate = field(default_factory=RolloutEstimate)
    safety: TrainingEstimate = field(default_factory=TrainingEstimate)
