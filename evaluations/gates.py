"""Per-metric gates: every check must pass; a missing or NaN metric fails (gates fail closed)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

KINDS = ("floors", "ceilings", "min_delta", "max_delta")


class GateFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Check:
    gate: str
    metric: str
    kind: str
    threshold: float
    value: float  # the metric, or its delta against the base for *_delta kinds
    passed: bool

    def describe(self) -> str:
        op = ">=" if self.kind in ("floors", "min_delta") else "<="
        what = f"{self.metric} - base" if self.kind.endswith("delta") else self.metric
        return f"{self.gate}: {what} = {self.value:.4g} {'satisfies' if self.passed else 'violates'} {op} {self.threshold:g}"


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
    return spec


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def evaluate(spec: dict, gate: str, metrics: dict[str, float], base: dict[str, float]) -> list[Check]:
    if gate not in spec:
        raise ValueError(f"no gate '{gate}' in gates file (gates: {[g for g in spec if g != 'version']})")
    checks = []
    for kind in KINDS:
        for metric, threshold in (spec[gate].get(kind) or {}).items():
            value = metrics.get(metric, float("nan"))
            if kind.endswith("delta"):
                value = value - base.get(metric, float("nan")) if _finite(value) else float("nan")
            ok = _finite(value) and (value >= threshold if kind in ("floors", "min_delta") else value <= threshold)
            checks.append(Check(gate, metric, kind, float(threshold), float(value), bool(ok)))
    return checks
