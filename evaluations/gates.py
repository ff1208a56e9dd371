"""Per-metric gates: every check must pass; a missing or NaN metric fails (gates fail closed).

Kinds (one section per gate in gates.yaml):
  floors / ceilings        metric >= / <= value
  min_delta / max_delta    metric - base >= / <= value
  max_relative_regression  {limit: 0.05, metrics: {name: higher_is_better | lower_is_better}}:
                           for every listed metric, its regression relative to the base
                           evaluation must be <= limit. Regression = (base - metric) / |base| for
                           higher_is_better, (metric - base) / |base| for lower_is_better; when
                           base is 0, the absolute difference (base - metric, resp. metric - base).
                           An improvement is a negative regression. limit defaults to 0.05.
                           `noise: X` (default 0) passes a drop of at most X in absolute terms:
                           on a 24-item set one item is 0.042, far above 5 % of a small score, so
                           small-set profiles set it to their one-item resolution; full-size eval
                           sets leave it at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

KINDS = ("floors", "ceilings", "min_delta", "max_delta", "max_relative_regression")
DIRECTIONS = ("higher_is_better", "lower_is_better")
DEFAULT_REGRESSION_LIMIT = 0.05


class GateFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Check:
    gate: str
    metric: str
    kind: str
    threshold: float
    value: float  # the metric, its delta against the base for *_delta kinds, its regression for max_relative_regression
    passed: bool

    def describe(self) -> str:
        op = ">=" if self.kind in ("floors", "min_delta") else "<="
        if self.kind == "max_relative_regression":
            what = f"{self.metric} regression vs base"
        else:
            what = f"{self.metric} - base" if self.kind.endswith("delta") else self.metric
        return f"{self.gate}: {what} = {self.value:.4g} {'satisfies' if self.passed else 'violates'} {op} {self.threshold:g}"


def _check_regression_spec(path, gate: str, section) -> None:
    where = f"{path}: gate '{gate}' max_relative_regression"
    if not isinstance(section, dict) or not isinstance(section.get("metrics"), dict) or not section["metrics"]:
        raise ValueError(f"{where} needs `metrics: {{name: higher_is_better|lower_is_better}}` (and optionally `limit`)")
    unknown = set(section) - {"limit", "metrics", "noise"}
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}; valid: limit, metrics, noise")
    if not _finite(section.get("noise", 0.0)) or section.get("noise", 0.0) < 0:
        raise ValueError(f"{where}: noise must be a number >= 0, got {section.get('noise')!r}")
    limit = section.get("limit", DEFAULT_REGRESSION_LIMIT)
    if not _finite(limit) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"{where}: limit must be a number >= 0, got {limit!r}")
    bad = {m: d for m, d in section["metrics"].items() if d not in DIRECTIONS}
    if bad:
        raise ValueError(f"{where}: direction must be one of {DIRECTIONS}, got {bad}")


def load(path: Path) -> dict:
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict) or "version" not in spec:
        raise ValueError(f"{path}: a gates file needs a top-level 'version' and one section per gate")
    for gate, kinds in spec.items():
        if gate == "version":
            continue
        unknown = set(kinds or {}) - set(KINDS)
        if unknown:
            raise ValueError(f"{path}: gate '{gate}' has unknown kind(s) {sorted(unknown)}; valid: {', '.join(KINDS)}")
        if "max_relative_regression" in (kinds or {}):
            _check_regression_spec(path, gate, kinds["max_relative_regression"])
    return spec


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def relative_regression(value: float, base: float, direction: str) -> float:
    """How much worse `value` is than `base` (relative; absolute when base is 0). NaN if either is."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not (_finite(value) and _finite(base)):
        return float("nan")
    worse_by = base - value if direction == "higher_is_better" else value - base
    return worse_by if base == 0 else worse_by / abs(base)


def evaluate(spec: dict, gate: str, metrics: dict[str, float], base: dict[str, float]) -> list[Check]:
    if gate not in spec:
        raise ValueError(f"no gate '{gate}' in gates file (gates: {[g for g in spec if g != 'version']})")
    checks = []
    for kind in KINDS:
        if kind == "max_relative_regression":
            section = spec[gate].get(kind) or {}
            limit = float(section.get("limit", DEFAULT_REGRESSION_LIMIT))
            noise = float(section.get("noise", 0.0))
            for metric, direction in (section.get("metrics") or {}).items():
                now, then = metrics.get(metric, float("nan")), base.get(metric, float("nan"))
                value = relative_regression(now, then, direction)
                within_noise = _finite(value) and abs(now - then) <= noise
                checks.append(Check(gate, metric, kind, limit, float(value), bool(_finite(value) and (value <= limit or within_noise))))
            continue
        for metric, threshold in (spec[gate].get(kind) or {}).items():
            value = metrics.get(metric, float("nan"))
            if kind.endswith("delta"):
                value = value - base.get(metric, float("nan")) if _finite(value) else float("nan")
            ok = _finite(value) and (value >= threshold if kind in ("floors", "min_delta") else value <= threshold)
            checks.append(Check(gate, metric, kind, float(threshold), float(value), bool(ok)))
    return checks
