"""Typed, frozen configuration loaded from `params.yaml`.

One section per stage; a profile (`profiles.<name>` in params.yaml) only overrides values of
those sections. Unknown keys, wrong types and out-of-range values raise `ConfigError` naming the
key, the bad value and what is allowed, before any stage starts.

The section classes live in core/config_model.py, config_data.py, config_train.py,
config_evaluate.py and config_cluster.py, each field documented once, at its definition (a `#:`
comment: what it is, its unit, what it changes). They are re-exported here, so
`from core.config import SFTConfig` is the import to use.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.config_base import ConfigError, _checked
from core.config_cluster import ClusterConfig, PlanConfig, RolloutEstimate, TrainingEstimate
from core.config_data import CurateConfig, SourceConfig, SplitConfig
from core.config_evaluate import BOUNDARY_SUITES, EvaluateConfig
from core.config_model import ModelConfig, PipelineConfig
from core.config_train import AlignConfig, ReasonConfig, RewardModelConfig, SafetyConfig, SFTConfig, TrainConfig

__all__ = [
    "BOUNDARY_SUITES", "DVC_OWNED", "PLACEMENT_KEYS", "SECTIONS", "STAGES", "AlignConfig", "ClusterConfig",
    "ConfigError", "CurateConfig", "EvaluateConfig", "ModelConfig", "Params", "PipelineConfig", "PlanConfig",
    "ReasonConfig", "RewardModelConfig", "RolloutEstimate", "SafetyConfig", "SFTConfig", "SourceConfig",
    "SplitConfig", "TrainConfig", "TrainingEstimate", "as_dict", "build_section", "flat", "identity",
    "load_params", "parse_override",
]

STAGES = ("curate", "sft", "reward_model", "align", "reason", "safety", "evaluate")


@dataclass(frozen=True)
class Params:
    """The whole configuration of one profile: one attribute per section of params.yaml."""

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


def build_section(section: str, values: dict):
    """The config object of `section` from a mapping of its keys (checked as in params.yaml)."""
    cls = SECTIONS[section]
    return cls(**_checked(section, cls, values, f"valid keys of '{section}'"))


def parse_override(text: str) -> tuple[str, str, object]:
    """`sft.learning_rate=1e-4` -> ("sft", "learning_rate", 1e-4); the value is parsed as YAML."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. sft.learning_rate=1e-4")
    path, raw = text.split("=", 1)
    section, key = path.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(f"--set {text!r}: unknown section '{section}'; valid: {', '.join(SECTIONS)}")
    return section, key, yaml.safe_load(raw)


def _read_yaml(path: Path) -> dict:
    """The top-level mapping of params.yaml; ConfigError names the file, line and column of a syntax error."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark, start = err.problem_mark or err.context_mark, err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(x) for x in (err.context, err.problem) if x) or "syntax error"
        if mark and start and start.line != mark.line:
            what += f"; it started at line {start.line + 1}"
        raise ConfigError(f"{where}: could not parse YAML ({what}); fix the indentation/quoting on that line") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: could not parse YAML ({str(err).splitlines()[0]}); fix the file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level (sft:, align:, ...), got "
                          f"a {type(raw).__name__}; the file must start with 'SECTION:' lines")
    for name, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: section '{name}' must be a mapping of KEY: VALUE lines, got "
                              f"{type(values).__name__} {str(values)[:40]!r}; indent its keys under '{name}:'")
    for name, prof in (raw.get("profiles") or {}).items():
        if prof is not None and not (isinstance(prof, dict) and all(v is None or isinstance(v, dict)
                                                                    for v in prof.values())):
            raise ConfigError(f"{path}: profile '{name}' must map sections to KEY: VALUE mappings; "
                              f"indent them as profiles: -> {name}: -> SECTION: -> KEY: VALUE")
    return raw


def load_params(path: Path, profile: str = "default", overrides: typing.Sequence[str] = ()) -> Params:
    """params.yaml at `path`: its top-level sections, then `profiles.<profile>` over them, then the
    `--set SECTION.KEY=VALUE` overrides; every value checked. ConfigError names what is wrong."""
    raw = _read_yaml(path)
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
        try:
            section, key, value = parse_override(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {text!r}: the value is not valid YAML ({str(err).splitlines()[0]}); "
                              f"quote it, e.g. --set 'SECTION.KEY=\"...\"'") from None
        if section in DVC_OWNED:
            raise ConfigError(f"--set {text}: '{section}' is read by DVC from params.yaml; edit the file")
        merged[section][key] = value
    built = {s: build_section(s, merged[s]) for s in SECTIONS}
    return Params(profile=profile, **built)


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# Keys that say where or how a stage runs, not what it computes: left out of version keys, so
# moving a stage between this machine and the cluster (or trading memory for recompute) reuses its
# output instead of recomputing it. `gates_file` says what an evaluation is checked against after
# it ran, so another gates file re-gates the same scores.
PLACEMENT_KEYS = ("backend", "activation_checkpointing", "gates_file")


def identity(cfg) -> dict:
    """The part of a stage's config that determines its output (hashed into the version key)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in PLACEMENT_KEYS}


def flat(prefix: str, cfg) -> dict[str, object]:
    return {f"{prefix}.{k}": v for k, v in as_dict(cfg).items()}
