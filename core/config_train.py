"""The training sections of params.yaml: sft, reward_model, align, reason and safety."""

from __future__ import annotations

from dataclasses import dataclass

from core.config_base import ConfigError, _c, _r


@dataclass(frozen=True)
class TrainConfig:
    """Knobs every trainer shares; each stage has its own copy so they can differ."""

    # Optimisation
    learning_rate: float = _r(1e-8, 1.0, 2e-5)  #: peak learning rate of the optimizer.
    max_steps: int = _r(1, 10_000_000, 30)  #: optimizer steps to train for; ignored when `epochs` > 0.
    #: examples per device in one forward/backward pass (preference stages: pairs; GRPO: completions).
    per_device_batch_size: int = _r(1, 4096, 4)
    #: passes per optimizer step; an optimizer step sees per_device_batch_size x devices x this many examples.
    gradient_accumulation_steps: int = _r(1, 4096, 1)
    # Length, warmup and budget
    max_length: int = _r(16, 131_072, 384)  #: tokens per example, prompt + completion.
    #: share of the training steps over which the learning rate rises to its peak.
    warmup_ratio: float = _r(0.0, 0.5, 0.1)
    max_examples: int = _r(1, 10_000_000, 100_000)  #: at most this many training rows are used (a profile's budget).
    # Placement and data
    #: where the stage runs: `local` (this machine) or `skypilot` (a managed job on the cluster of the `cluster`
    #: section). Never part of a version key, so moving a stage to the cluster (or back) reuses an output that already
    #: exists.
    backend: str = _c(("local", "skypilot"), "local")
    #: an HF datasets id (or a local dataset directory or file) to train on instead of the curated split; GPU profiles
    #: name hub datasets here. "" = data/curated/<split>.jsonl from `curate`.
    dataset: str = ""
    dataset_config: str = ""  #: configuration name of `dataset`.
    dataset_split: str = "train"  #: split of `dataset`.
    #: passes over the data; 0 = stop at max_steps. When > 0, max_steps is ignored (the trainer gets max_steps=-1 and
    #: num_train_epochs), which is how cluster profiles size a run.
    epochs: float = _r(0.0, 1000.0, 0.0)
    # Checkpoints
    #: save a resumable checkpoint every N optimizer steps (0 = never). A killed stage restarts from the last complete
    #: one. Each save writes the weights plus twice their size in Adam state.
    save_steps: int = _r(0, 10_000_000, 0)
    # LoRA
    #: LoRA (PEFT) rank; 0 = full fine-tune. The saved checkpoint is always merged (a plain model).
    lora_r: int = _r(0, 1024, 0)
    lora_alpha: float = _r(0.0, 4096.0, 16.0)  #: LoRA scale; the update is scaled by lora_alpha / lora_r.
    lora_dropout: float = _r(0.0, 0.9, 0.05)  #: dropout on the LoRA branch's input.
    #: modules that get LoRA adapters: "all-linear", or comma-separated module names, e.g. "q_proj,v_proj".
    lora_target_modules: str = "all-linear"
    # Memory
    #: recompute each layer's activations in the backward pass instead of keeping them: activation memory about
    #: num_layers times smaller, for more compute per step. Off by default (TRL's configs default it on): a small model
    #: on a CPU has memory to spare, and there the recompute only costs time. With FSDP (sky/accelerate/fsdp2.yaml) the
    #: accelerate config already checkpoints each wrapped block, so keep this off or every layer is checkpointed twice
    #: with a redundant all-gather; with ZeRO-3 (sky/accelerate/zero3.yaml) this is the only activation checkpointing,
    #: so turn it on for long sequences. It changes memory and speed only, not the gradients, so it is not part of the
    #: version key.
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """Supervised fine-tuning on chat demonstrations: TrainConfig's fields and these."""

    #: pack several conversations into each max_length row (TRL best-fit-decreasing, padding-free: position ids restart
    #: per conversation, so attention stays within it). Labels are masked to assistant tokens before packing, so the
    #: loss stays on assistant tokens only (tests/test_training.py).
    packing: bool = False
    #: rows held out of training to measure eval_loss before and after training, picked by a hash of the row id (the
    #: same rows whatever the file order). 0 = no eval loss.
    eval_rows: int = _r(0, 100_000, 32)


@dataclass(frozen=True)
class RewardModelConfig(TrainConfig):
    """The reward model, trained on preference pairs; TrainConfig's fields with their own defaults."""

    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 20)


@dataclass(frozen=True)
class AlignConfig(TrainConfig):
    """Preference alignment of the SFT policy: TrainConfig's fields and these."""

    # TrainConfig fields with this stage's defaults
    learning_rate: float = _r(1e-8, 1.0, 5e-6)
    max_steps: int = _r(1, 10_000_000, 15)
    # The preference objective
    #: the TRL trainer. `dpo`: DPOTrainer with `loss_type`. `kto`: KTOTrainer; each pair becomes one desirable and one
    #: undesirable example. `orpo` and `simpo`: reference-free, TRL's experimental ORPOTrainer and CPOTrainer with
    #: loss_type=simpo. `rloo`: online RL against the reward model (RLOOTrainer), sampling with the on_policy_*
    #: settings.
    method: str = _c(("dpo", "kto", "orpo", "simpo", "rloo"), "dpo")
    #: strength of the preference term: DPO's temperature on the implicit reward, ORPO's lambda, SimPO's beta, RLOO's KL
    #: coefficient.
    beta: float = _r(0.0, 10.0, 0.1)
    #: DPOConfig.loss_type of TRL 1.16 (method dpo only).
    loss_type: str = _c(("sigmoid", "ipo", "hinge", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                         "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"), "sigmoid")
    # On-policy pairs
    #: train on pairs sampled from the input policy instead of the curated ones: on_policy_samples replies per prompt,
    #: scored (by the verifier where the row has an answer, then by the reward model), best vs worst. One round of
    #: iterative DPO; sampling costs about on_policy_samples times the generation time of the prompts.
    on_policy: bool = False
    on_policy_prompts: int = _r(1, 1_000_000, 64)  #: prompts sampled from (on_policy).
    on_policy_samples: int = _r(2, 256, 4)  #: replies sampled per prompt (on_policy).
    on_policy_max_new_tokens: int = _r(1, 65_536, 96)  #: longest sampled reply, in tokens (on_policy).
    on_policy_temperature: float = _r(0.05, 2.0, 1.0)  #: sampling temperature of the replies (on_policy).


@dataclass(frozen=True)
class ReasonConfig(TrainConfig):
    """RL on verifiable rewards (math, code, instruction constraints): TrainConfig's fields and these."""

    # TrainConfig fields with this stage's defaults
    learning_rate: float = _r(1e-8, 1.0, 1e-6)
    max_steps: int = _r(1, 10_000_000, 10)
    # Sampling and the KL term
    #: group size G, the completions sampled per prompt; each one's advantage is its reward relative to its group's.
    num_generations: int = _r(2, 256, 4)
    max_completion_length: int = _r(8, 65_536, 64)  #: longest completion, in tokens; longer ones are cut off.
    temperature: float = _r(0.0, 2.0, 1.0)  #: sampling temperature of the completions.
    #: KL coefficient against the input policy; 0 = no reference model (as in DAPO), which saves its memory and forward
    #: pass.
    beta: float = _r(0.0, 1.0, 0.0)
    # Method
    #: `grpo`: online RL on the verifier rewards. `rs_sft`: rejection-sampling SFT: num_generations samples for each of
    #: rs_prompts prompts, the best fully correct one kept, SFT on those.
    method: str = _c(("grpo", "rs_sft"), "grpo")
    rs_prompts: int = _r(1, 1_000_000, 64)  #: prompts sampled from (method rs_sft).
    # Held-out accuracy
    #: prompts held out of the rl split to measure greedy verifiable accuracy before and after training (the stage's own
    #: metric, heldout_accuracy_delta in absolute points). 0 = off (GPU profiles measure it in evaluate.reason instead).
    eval_rows: int = _r(0, 100_000, 48)
    # Extra rewards
    #: comma-separated `module:function` reward functions added to the verifier rewards, each with TRL's reward
    #: signature (completions, **dataset columns) -> one float or None per completion. Each module's source is part of
    #: the stage's version key; the reason gate's monitors stop a reward the policy learns to game. Empty = none.
    extra_rewards: str = ""

    def __post_init__(self):
        for module, name in self.extra_reward_refs():
            if not module or not name:
                raise ConfigError(f"reason.extra_rewards={self.extra_rewards!r}: write each reward as "
                                  f"package.module:function, comma-separated")

    def extra_reward_refs(self) -> tuple[tuple[str, str], ...]:
        """(module, function) of each `extra_rewards` entry."""
        return tuple(tuple(p.strip() for p in ref.partition(":")[::2])
                     for ref in self.extra_rewards.split(",") if ref.strip())
    # vLLM rollouts
    #: generate the rollouts with vLLM (TRL GRPOConfig.use_vllm); GPU profiles only, vLLM is not installed on CPU
    #: machines.
    use_vllm: bool = False
    #: `colocate`: the engine shares each training GPU (vllm_gpu_memory_utilization). `server`: a separate `trl
    #: vllm-serve` process.
    vllm_mode: str = _c(("colocate", "server"), "colocate")
    #: share of each GPU's memory a colocated engine reserves for its weights and KV cache; the trainer has the rest.
    vllm_gpu_memory_utilization: float = _r(0.05, 0.95, 0.3)
    vllm_tensor_parallel_size: int = _r(1, 64, 1)  #: GPUs one vLLM engine spans.


@dataclass(frozen=True)
class SafetyConfig(SFTConfig):
    """Safety training: a refusal-SFT pass (SFTConfig's fields), then a DPO pass on constitutional and
    over-refusal pairs (the fields below)."""

    # SFTConfig fields with this stage's defaults
    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 15)
    # The refusal-SFT mix
    #: share of the refusal-SFT mix replayed from the sft split; replaying earlier data limits forgetting what SFT
    #: taught.
    replay_fraction: float = _r(0.0, 0.9, 0.1)
    # Constitutional pairs
    #: harmful training prompts the model critiques and revises against tasks/constitution.md; the (revision, original)
    #: pairs train the DPO pass. 0 = no constitutional pairs.
    constitutional_prompts: int = _r(0, 1_000_000, 16)
    #: longest generation, in tokens, of each answer, critique, revision and probe.
    critique_max_new_tokens: int = _r(1, 65_536, 64)
    # Over-refusal pairs
    #: benign look-alike training prompts the refusal-trained model answers; each refused one becomes a (helpful answer
    #: > that refusal) pair for the DPO pass. 0 = no over-refusal pairs.
    overrefusal_prompts: int = _r(0, 1_000_000, 32)
    #: at most this many over-refusal pairs per constitutional (refusal) pair in the DPO pass. DPO weighs every pair
    #: alike, so a majority of "answer this" pairs teaches the model to answer everything and undoes the refusals.
    overrefusal_pair_ratio: float = _r(0.0, 100.0, 1.0)
    # Self-answered benign prompts
    #: benign but edgy-sounding prompts (the `safety_benign` split, no answers) that the input checkpoint answers before
    #: safety training; its non-refusals join the refusal-SFT mix as helpful rows and head the over-refusal probe.
    #: Without them the look-alikes are plainly benign ("bake cookies") and the model learns "edgy topic => refuse". 0 =
    #: none.
    self_answered_prompts: int = _r(0, 1_000_000, 0)
    #: longest self-answer, in tokens, cut back to the last whole sentence.
    self_answer_max_new_tokens: int = _r(1, 65_536, 96)
    # Self-replay
    #: math prompts of the rl split that the input checkpoint answers before safety training; its \boxed{} answers that
    #: do not loop head the replayed share of the mix. 0 = replay the sft split only.
    self_replay_prompts: int = _r(0, 1_000_000, 0)
    #: longest self-replay answer, in tokens; as evaluate's max_new_tokens, room to reach \boxed{}.
    self_replay_max_new_tokens: int = _r(1, 65_536, 192)
    #: which self-replay answers are kept: `correct` (math-verify accepts them) or `formatted` (right or wrong).
    self_replay_keep: str = _c(("correct", "formatted"), "correct")
    # The DPO pass
    dpo_learning_rate: float = _r(1e-8, 1.0, 5e-6)  #: learning rate of the DPO pass.
    dpo_max_steps: int = _r(1, 10_000_000, 8)  #: optimizer steps of the DPO pass.
    dpo_beta: float = _r(0.0, 10.0, 0.1)  #: DPO temperature of the DPO pass.
    #: pairs of the `preferences` split (align's data: math, sycophancy and look-alike pairs), drawn seeded and
    #: uniformly, that join the DPO pass next to its safety pairs: replay against losing what align taught. 0 = safety
    #: pairs only. More than the split holds is an error. They do not make a pass on their own: with no safety pair the
    #: pass is skipped.
    dpo_replay_pairs: int = _r(0, 1_000_000, 0)
