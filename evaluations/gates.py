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
                           `alpha: A` (default 1) lets a regression beyond the limit pass when,
                           item by item against the base (the evaluation's
                           `paired.<metric>.worse/.better`, evaluations/paired.py; missing counts
                           fail), the exact sign test cannot tell it from churn: p_worse >= A.
                           The default 1 fails every regression beyond the limit (full-size eval
                           sets); small-set profiles use 0.05: on 40 items one item is 0.025, half
                           of a 0.05 score, and training flips a few items both ways.
  monitors                 {name: {type: ..., ...}}: reward-hacking and collapse monitors
                           (evaluations/monitors.py); each named monitor is one check.

A gates file may start from another: `extends: gates.yaml` (a path relative to it) takes every
section of that file and overrides, kind by kind and entry by entry, what this one names; an entry
set to null is removed. Its version reads `<base version>+<own version>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from evaluations import monitors
from evaluations.monitors import finite
from evaluations.paired import PREFIX as PAIRED
from evaluations.paired import sign_test_p

KINDS = ("floors", "ceilings", "min_delta", "max_delta", "max_relative_regression", "monitors")
DIRECTIONS = ("higher_is_better", "lower_is_better")
DEFAULT_REGRESSION_LIMIT = 0.05


class GateFailed(RuntimeError):
    def __init__(self, message: str, gate: str = ""):
        super().__init__(message)
        self.gate = gate  # the gates.yaml section that failed (a stage name, or "final")


@dataclass(frozen=True)
class Check:
    gate: str
    metric: str
    kind: str
    threshold: float
    value: float  # the metric, its delta against the base for *_delta kinds, its regression for max_relative_regression
    passed: bool
    note: str = ""  # max_relative_regression: the paired item counts behind a regression beyond the limit

    def describe(self) -> str:
        if self.kind == "monitors":
            return f"{self.gate}: monitor {self.metric} {'passed' if self.passed else 'FIRED'}: {self.note}"
        op = ">=" if self.kind in ("floors", "min_delta") else "<="
        if self.kind == "max_relative_regression":
            what = f"{self.metric} regression vs base"
        else:
            what = f"{self.metric} - base" if self.kind.endswith("delta") else self.metric
        verdict = f"{self.gate}: {what} = {self.value:.4g} {'satisfies' if self.passed else 'violates'} {op} {self.threshold:g}"
        return f"{verdict} ({self.note})" if self.note else verdict


def _check_regression_spec(path, gate: str, section) -> None:
    where = f"{path}: gate '{gate}' max_relative_regression"
    if not isinstance(section, dict) or not isinstance(section.get("metrics"), dict) or not section["metrics"]:
        raise ValueError(f"{where} needs `metrics: {{name: higher_is_better|lower_is_better}}` (and optionally `limit`)")
    unknown = set(section) - {"limit", "metrics", "alpha"}
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}; valid: limit, metrics, alpha")
    alpha = section.get("alpha", 1.0)
    if not finite(alpha) or not 0 < alpha <= 1:
        raise ValueError(f"{where}: alpha must be a significance level in (0, 1], got {alpha!r}")
    limit = section.get("limit", DEFAULT_REGRESSION_LIMIT)
    if not finite(limit) or limit < 0:
        raise ValueError(f"{where}: limit must be a number >= 0, got {limit!r}")
    bad = {m: d for m, d in section["metrics"].items() if d not in DIRECTIONS}
    if bad:
        raise ValueError(f"{where}: direction must be one of {DIRECTIONS}, got {bad}")


def _merge(base: dict, override: dict) -> dict:
    """Section by section, kind by kind, entry by entry; None removes an entry."""
    merged = {gate: {kind: dict(entries) if isinstance(entries, dict) else entries
                     for kind, entries in (kinds or {}).items()} if isinstance(kinds, dict) else kinds
              for gate, kinds in base.items()}
    for gate, kinds in override.items():
        if gate in ("version", "extends") or not isinstance(kinds, dict):
            merged[gate] = kinds
            continue
        target = merged.setdefault(gate, {})
        for kind, entries in kinds.items():
            if not isinstance(entries, dict) or not isinstance(target.get(kind), dict):
                target[kind] = entries
                continue
            for name, value in entries.items():
                if value is None:
                    target[kind].pop(name, None)
                else:
                    target[kind][name] = value
    return merged


def _read(path: Path, seen: tuple = ()) -> dict:
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "version" not in spec:
        raise ValueError(f"{path}: a gates file needs a top-level 'version' and one section per gate")
    if "extends" not in spec:
        return spec
    parent = (path.parent / str(spec["extends"])).resolve()
    if parent in seen or not parent.is_file():
        raise ValueError(f"{path}: extends {spec['extends']!r}, which is "
                         f"{'a cycle' if parent in seen else 'not a file'}; name a gates file relative to this one")
    base = _read(parent, (*seen, path.resolve()))
    merged = _merge(base, spec)
    merged["version"] = f"{base['version']}+{spec['version']}"
    merged.pop("extends")
    return merged


def load(path: Path) -> dict:
    spec = _read(path)
    for gate, kinds in spec.items():
        if gate == "version":
            continue
        unknown = set(kinds or {}) - set(KINDS)
        if unknown:
            raise ValueError(f"{path}: gate '{gate}' has unknown kind(s) {sorted(unknown)}; valid: {', '.join(KINDS)}")
        if "max_relative_regression" in (kinds or {}):
            _check_regression_spec(path, gate, kinds["max_relative_regression"])
        for name, entry in ((kinds or {}).get("monitors") or {}).items():
            monitors.check_spec(f"{path}: gate '{gate}'", name, entry)
    return spec


def relative_regression(value: float, base: float, direction: str) -> float:
    """How much worse `value` is than `base` (relative; absolute when base is 0). NaN if either is."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not (finite(value) and finite(base)):
        return float("nan")
    worse_by = base - value if direction == "higher_is_better" else value - base
    return worse_by if base == 0 else worse_by / abs(base)


def _churn(metrics: dict[str, float], metric: str, alpha: float) -> tuple[bool, str]:
    """Whether a regression beyond the limit is indistinguishable from churn: the paired sign
    test's p_worse >= alpha (recomputed from the counts)."""
    worse, better = (metrics.get(f"{PAIRED}{metric}.{k}", float("nan")) for k in ("worse", "better"))
    if not (finite(worse) and finite(better)):
        return False, f"no paired item counts ({PAIRED}{metric}.worse/.better) to tell churn from a drop"
    p = sign_test_p(int(worse), int(better))
    return p >= alpha, f"{int(worse)} items worse, {int(better)} better: sign-test p = {p:.3g} vs alpha {alpha:g}"


def evaluate(spec: dict, gate: str, metrics: dict[str, float], base: dict[str, float]) -> list[Check]:
    if gate not in spec:
        raise ValueError(f"no gate '{gate}' in gates file (gates: {[g for g in spec if g != 'version']})")
    checks = []
    for kind in KINDS:
        if kind == "max_relative_regression":
            section = spec[gate].get(kind) or {}
            limit = float(section.get("limit", DEFAULT_REGRESSION_LIMIT))
            alpha = float(section.get("alpha", 1.0))
            for metric, direction in (section.get("metrics") or {}).items():
                now, then = metrics.get(metric, float("nan")), base.get(metric, float("nan"))
                value = relative_regression(now, then, direction)
                passed, note = finite(value) and value <= limit, ""
                if finite(value) and not passed:
                    passed, note = _churn(metrics, metric, alpha)
                checks.append(Check(gate, metric, kind, limit, float(value), bool(passed), note))
            continue
        if kind == "monitors":
            for name, entry in (spec[gate].get(kind) or {}).items():
                value, threshold, passed, note = monitors.check(entry, metrics, base)
                checks.append(Check(gate, name, kind, float(threshold), float(value), bool(passed), note))
            continue
        for metric, threshold in (spec[gate].get(kind) or {}).items():
            value = metrics.get(metric, float("nan"))
            if kind.endswith("delta"):
                value = value - base.get(metric, float("nan")) if finite(value) else float("nan")
            ok = finite(value) and (value >= threshold if kind in ("floors", "min_delta") else value <= threshold)
            checks.append(Check(gate, metric, kind, float(threshold), float(value), bool(ok)))
    return checks
