"""Building blocks of the configuration classes: the error, the field helpers and the value checks.

Every config module imports from here and nothing else of the configuration, so the section
modules (config_model, config_data, config_train, config_evaluate, config_cluster) never import
each other, and core/config.py puts them together.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import field


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range. The message names the key,
    the bad value and what is allowed; it is raised before any stage starts."""


def _r(lo: float, hi: float, default):
    """A numeric field with its valid closed range [lo, hi]."""
    return field(default=default, metadata={"range": (lo, hi)})


def _c(choices: tuple[str, ...], default: str):
    """A string field that must be one of `choices`."""
    return field(default=default, metadata={"choices": choices})


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _check_value(section: str, f: dataclasses.Field, value, ftype):
    """`value` for field `f` of `section`, coerced where YAML is loose (ints and "3e-4" for floats,
    lists for tuples, mappings for nested config classes); ConfigError if it does not fit."""
    key = f"{section}.{f.name}"
    if ftype is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    if ftype is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if ftype is tuple and isinstance(value, list):
        value = tuple(value)  # YAML has lists; frozen config holds tuples
    if dataclasses.is_dataclass(ftype) and isinstance(value, dict):
        value = _nested(key, ftype, value)
    if not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r}: expected {ftype.__name__}, got {type(value).__name__}")
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if not lo <= value <= hi:
            raise ConfigError(f"{key}={value!r} is out of range: valid range is [{lo}, {hi}]")
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        raise ConfigError(f"{key}={value!r}: valid choices are {', '.join(f.metadata['choices'])}")
    return value


def _nested(key: str, cls: type, values) -> object:
    """A nested config block (a dict in params.yaml) -> `cls`, with the same checks as a section:
    unknown keys, wrong types and out-of-range values raise ConfigError naming `key`."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{key}={values!r}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}")
    checked = _checked(key, cls, values)
    try:
        return cls(**checked)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


def _checked(key: str, cls: type, values: dict, valid: str = "valid keys") -> dict:
    """`values` for `cls`, each checked by _check_value; unknown or missing required keys raise
    ConfigError naming `key` (`valid` introduces the list of valid keys in the message)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(key + '.' + k for k in unknown)}; {valid}: {', '.join(sorted(fields))}")
    missing = sorted(n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{key}: missing required key(s) {', '.join(missing)}")
    return {k: _check_value(key, fields[k], v, hints[k]) for k, v in values.items()}
