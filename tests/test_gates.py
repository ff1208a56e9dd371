"""Gates fail closed: missing or NaN metrics fail, every threshold kind is checked."""

from pathlib import Path

import pytest

from evaluations import gates

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"version": 1, "final": {"floors": {"acc": 0.5}, "ceilings": {"over": 0.1},
                                "min_delta": {"acc": 0.0}, "max_delta": {"over": 0.05}}}


def failed(metrics, base):
    return {(c.metric, c.kind) for c in gates.evaluate(SPEC, "final", metrics, base) if not c.passed}


def test_all_pass():
    assert failed({"acc": 0.6, "over": 0.05}, {"acc": 0.5, "over": 0.05}) == set()


def test_each_threshold_kind_can_fail():
    assert failed({"acc": 0.4, "over": 0.05}, {"acc": 0.3, "over": 0.05}) == {("acc", "floors")}
    assert failed({"acc": 0.6, "over": 0.2}, {"acc": 0.6, "over": 0.2}) == {("over", "ceilings")}
    assert failed({"acc": 0.6, "over": 0.09}, {"acc": 0.7, "over": 0.0}) == {("acc", "min_delta"), ("over", "max_delta")}


def test_missing_or_nan_metric_fails():
    assert ("acc", "floors") in failed({"over": 0.0}, {"acc": 0.5, "over": 0.0})
    assert ("acc", "min_delta") in failed({"acc": float("nan"), "over": 0.0}, {"acc": 0.5, "over": 0.0})
    assert ("acc", "min_delta") in failed({"acc": 0.6, "over": 0.0}, {"over": 0.0})  # no baseline


def test_repo_gates_file_is_valid():
    spec = gates.load(ROOT / "evaluations" / "gates.yaml")
    assert spec["version"] >= 1 and "final" in spec


def test_unknown_kind_rejected(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("version: 1\nfinal:\n  floor: {acc: 1}\n")
    with pytest.raises(ValueError, match="unknown kind"):
        gates.load(f)
