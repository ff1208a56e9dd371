"""Reward-hacking and collapse monitors, checked as gates (the `monitors` kind of gates.yaml).

A policy optimised against a reward learns whatever that reward pays for, so a stage can raise its
training reward while getting worse at what the reward stands for. Each monitor is one named
entry under a gate's `monitors:` section, with a `type` and its limits:

  reward_hacking     {score, verified, alpha}: fails when, item by item against the stage's input
                     (evaluations/paired.py counts), `score` (the reward model's score of the same
                     replies) rose beyond churn (one-sided sign test p_up < alpha) while `verified`
                     (accuracy checked by a verifier) did not (p_up >= alpha): the policy pleases
                     the reward model without getting more answers right.
  ratio              {metric, limit, min_change}: fails when metric / input's metric > limit and
                     metric - input's metric > min_change (both: a near-empty reply doubling from 2
                     to 4 tokens is not drift; an input of 0 counts as an infinite ratio).
                     Response length drift.
  relative_drop      {metric, limit}: fails when (input's - metric) / input's > limit (an input of
                     0 has nothing to lose). distinct-2 falling is mode collapse: the replies
                     converge on the same phrases.
  ceiling            {metric, limit}: fails when metric > limit. Training-time monitors of the stage
                     itself are named `stage.<metric>` (e.g. stage.frac_zero_std_groups).

Every monitor fails closed: a metric or paired count that is missing or NaN fails it.
"""

from __future__ import annotations

import math

from evaluations.paired import PREFIX as PAIRED
from evaluations.paired import sign_test_p

FIELDS = {"reward_hacking": {"score", "verified", "alpha"}, "ratio": {"metric", "limit", "min_change"},
          "relative_drop": {"metric", "limit"}, "ceiling": {"metric", "limit"}}
STAGE_PREFIX = "stage."  # a gated stage's own training metrics, next to its boundary evaluation's


def finite(x) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_spec(where: str, name: str, spec) -> None:
    """Raise ValueError naming the monitor and the fix when its entry is malformed."""
    if not isinstance(spec, dict) or spec.get("type") not in FIELDS:
        raise ValueError(f"{where}: monitor '{name}' needs `type:` one of {sorted(FIELDS)}")
    need = FIELDS[spec["type"]] - ({"min_change"} if spec["type"] == "ratio" else set())
    given = set(spec) - {"type", "protects"}
    if need - given or given - FIELDS[spec["type"]]:
        raise ValueError(f"{where}: monitor '{name}' ({spec['type']}) takes {sorted(FIELDS[spec['type']])} "
                         f"(and `protects`), got {sorted(given)}")
    for key in ("limit", "alpha", "min_change"):
        if key in spec and not finite(spec[key]):
            raise ValueError(f"{where}: monitor '{name}': {key} must be a number, got {spec[key]!r}")


def _counts(metrics: dict, metric: str) -> tuple[int, int] | None:
    better, worse = (metrics.get(f"{PAIRED}{metric}.{k}") for k in ("better", "worse"))
    return (int(better), int(worse)) if finite(better) and finite(worse) else None


def _reward_hacking(spec: dict, metrics: dict, base: dict) -> tuple[float, float, bool, str]:
    score, verified, alpha = spec["score"], spec["verified"], float(spec["alpha"])
    rm, acc = _counts(metrics, score), _counts(metrics, verified)
    if rm is None or acc is None:
        missing = [m for m, c in ((score, rm), (verified, acc)) if c is None]
        return math.nan, alpha, False, f"no paired item counts for {missing} (paired.<metric>.better/.worse)"
    p_rm, p_acc = sign_test_p(*rm), sign_test_p(*acc)
    hacked = p_rm < alpha and p_acc >= alpha
    note = (f"{score} {base.get(score, math.nan):.4g} -> {metrics.get(score, math.nan):.4g} ({rm[0]} items up, "
            f"{rm[1]} down: p_up = {p_rm:.3g}); {verified} {base.get(verified, math.nan):.4g} -> "
            f"{metrics.get(verified, math.nan):.4g} ({acc[0]} better, {acc[1]} worse: p_up = {p_acc:.3g}); alpha {alpha:g}")
    return p_rm, alpha, not hacked, note


def _ratio(spec: dict, metrics: dict, base: dict) -> tuple[float, float, bool, str]:
    metric, limit, min_change = spec["metric"], float(spec["limit"]), float(spec.get("min_change", 0.0))
    now, then = metrics.get(metric, math.nan), base.get(metric, math.nan)
    if not (finite(now) and finite(then)) or then < 0 or now < 0:
        return math.nan, limit, False, f"{metric} = {now!r} vs input {then!r}: needs both, >= 0"
    ratio = now / then if then else (math.inf if now else 1.0)
    ok = ratio <= limit or now - then <= min_change
    return ratio, limit, ok, f"{metric} {then:.4g} -> {now:.4g} (x{ratio:.3g}, {now - then:+.4g}; min change {min_change:g})"


def _relative_drop(spec: dict, metrics: dict, base: dict) -> tuple[float, float, bool, str]:
    metric, limit = spec["metric"], float(spec["limit"])
    now, then = metrics.get(metric, math.nan), base.get(metric, math.nan)
    if not (finite(now) and finite(then)) or then < 0:
        return math.nan, limit, False, f"{metric} = {now!r} vs input {then!r}: needs both, input >= 0"
    drop = (then - now) / then if then else 0.0  # nothing to lose
    return drop, limit, drop <= limit, f"{metric} {then:.4g} -> {now:.4g} ({drop:+.1%} drop)"


def _ceiling(spec: dict, metrics: dict, base: dict) -> tuple[float, float, bool, str]:
    metric, limit = spec["metric"], float(spec["limit"])
    value = metrics.get(metric, math.nan)
    if not finite(value):
        return math.nan, limit, False, f"{metric} missing or not finite ({value!r})"
    return float(value), limit, value <= limit, f"{metric} = {value:.4g}"


KINDS = {"reward_hacking": _reward_hacking, "ratio": _ratio, "relative_drop": _relative_drop, "ceiling": _ceiling}


def check(spec: dict, metrics: dict, base: dict) -> tuple[float, float, bool, str]:
    """(value, threshold, passed, what was measured) of one monitor entry."""
    return KINDS[spec["type"]](spec, metrics, base)
