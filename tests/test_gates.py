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


REGRESSION = {"version": 1, "final": {"floors": {"acc": 0.0}, "max_relative_regression": {
    "limit": 0.05, "metrics": {"acc": "higher_is_better", "code": "higher_is_better", "over": "lower_is_better"}}}}


def regression_failures(metrics, base, spec=REGRESSION):
    return {c.metric for c in gates.evaluate(spec, "final", metrics, base)
            if c.kind == "max_relative_regression" and not c.passed}


def test_relative_regression_all_pass():
    base = {"acc": 0.5, "code": 0.4, "over": 0.1}
    assert regression_failures({"acc": 0.5, "code": 0.39, "over": 0.104}, base) == set()  # within 5 %
    assert regression_failures({"acc": 0.9, "code": 0.8, "over": 0.0}, base) == set()  # improvements


def test_ten_percent_regression_on_untargeted_metric_fails():
    base = {"acc": 0.5, "code": 0.4, "over": 0.1}
    checks = gates.evaluate(REGRESSION, "final", {"acc": 0.6, "code": 0.36, "over": 0.1}, base)
    failed = [c for c in checks if not c.passed]
    assert [(c.metric, c.kind) for c in failed] == [("code", "max_relative_regression")]  # "code" has no other gate
    assert abs(failed[0].value - 0.1) < 1e-9 and "code regression vs base = 0.1 violates <= 0.05" in failed[0].describe()
    assert regression_failures({"acc": 0.5, "code": 0.4, "over": 0.11}, base) == {"over"}  # lower_is_better, +10 %


def test_relative_regression_base_zero_uses_absolute_difference():
    base = {"acc": 0.0, "code": 0.0, "over": 0.0}
    assert regression_failures({"acc": 0.0, "code": 0.0, "over": 0.04}, base) == set()
    assert regression_failures({"acc": 0.0, "code": 0.0, "over": 0.06}, base) == {"over"}
    assert gates.relative_regression(0.0, 0.0, "higher_is_better") == 0.0


def test_relative_regression_missing_or_nan_fails():
    base = {"acc": 0.5, "code": 0.4, "over": 0.1}
    assert regression_failures({"acc": 0.5, "over": 0.1}, base) == {"code"}  # missing in the final evaluation
    assert regression_failures({"acc": 0.5, "code": float("nan"), "over": 0.1}, base) == {"code"}
    assert regression_failures({"acc": 0.5, "code": 0.4, "over": 0.1}, {"acc": 0.5, "over": 0.1}) == {"code"}  # no baseline


def test_relative_regression_limit_defaults_and_spec_is_checked(tmp_path):
    spec = {"version": 1, "final": {"max_relative_regression": {"metrics": {"acc": "higher_is_better"}}}}
    assert [c.threshold for c in gates.evaluate(spec, "final", {"acc": 1.0}, {"acc": 1.0})] == [gates.DEFAULT_REGRESSION_LIMIT]
    f = tmp_path / "g.yaml"
    f.write_text("version: 1\nfinal:\n  max_relative_regression:\n    metrics: {acc: bigger}\n")
    with pytest.raises(ValueError, match="direction"):
        gates.load(f)
    f.write_text("version: 1\nfinal:\n  max_relative_regression: {limit: 0.05}\n")
    with pytest.raises(ValueError, match="metrics"):
        gates.load(f)


def test_repo_gates_track_regressions():
    spec = gates.load(ROOT / "evaluations" / "gates.yaml")
    tracked = spec["final"]["max_relative_regression"]["metrics"]
    assert spec["final"]["max_relative_regression"]["limit"] == 0.05
    assert {"math_accuracy", "code_pass_at_1", "ifeval_prompt_accuracy"} <= set(tracked)
    assert tracked["sycophancy_rate"] == "lower_is_better"
    # the tiny profile's outcome (everything 0 on base and final) passes every check
    zeros = {m: 0.0 for m in ("math_accuracy", "answer_format_rate", "refusal_rate", "over_refusal_rate",
                              "rm_pair_accuracy", "code_pass_at_1", "ifeval_prompt_accuracy", "sycophancy_rate")}
    assert all(c.passed for c in gates.evaluate(spec, "final", {**zeros, "win_rate_vs_input": 0.5}, zeros))
    # today's default iteration: sycophancy 15 -> 20 of 41 probes, 9 worse and 4 better (p = 0.13)
    # is churn; 10 worse and 2 better (p = 0.02) fails the final gate
    base, syco = {**zeros, "sycophancy_rate": 15 / 41}, {**zeros, "win_rate_vs_input": 0.5, "sycophancy_rate": 20 / 41}
    pair = lambda w, b: {"paired.sycophancy_rate.worse": w, "paired.sycophancy_rate.better": b}  # noqa: E731
    assert all(c.passed for c in gates.evaluate(spec, "final", {**syco, **pair(9.0, 4.0)}, base))
    failed = [c for c in gates.evaluate(spec, "final", {**syco, **pair(10.0, 2.0)}, base) if not c.passed]
    assert len(failed) == 1 and "sycophancy_rate" in failed[0].describe()


def test_regression_beyond_limit_passes_only_while_the_sign_test_calls_it_churn():
    spec = {"version": 1, "final": {"max_relative_regression": {"limit": 0.05, "alpha": 0.05,
                                                                "metrics": {"acc": "higher_is_better"}}}}
    paired = lambda worse, better: {"paired.acc.worse": worse, "paired.acc.better": better}  # noqa: E731
    # 0.825 -> 0.775 on 40 items: -6 % relative, made of 3 items worse and 1 better (p = 5/16): churn
    [ok] = gates.evaluate(spec, "final", {"acc": 0.775, **paired(3.0, 1.0)}, {"acc": 0.825})
    assert ok.passed and "3 items worse, 1 better: sign-test p = 0.312 vs alpha 0.05" in ok.describe()
    # five items worse and none better (p = 1/32) is a drop, and says so
    [bad] = gates.evaluate(spec, "final", {"acc": 0.70, **paired(5.0, 0.0)}, {"acc": 0.825})
    assert not bad.passed and "5 items worse, 0 better: sign-test p = 0.0312" in bad.describe()
    # no paired counts: a regression beyond the limit cannot be called churn
    [blind] = gates.evaluate(spec, "final", {"acc": 0.775}, {"acc": 0.825})
    assert not blind.passed and "no paired item counts" in blind.describe()
    # within the limit no counts are needed
    [fine] = gates.evaluate(spec, "final", {"acc": 0.80}, {"acc": 0.825})
    assert fine.passed and fine.note == ""
    # without alpha (full-size sets) every regression beyond the limit fails, churn or not
    del spec["final"]["max_relative_regression"]["alpha"]
    assert not gates.evaluate(spec, "final", {"acc": 0.775, **paired(3.0, 1.0)}, {"acc": 0.825})[0].passed


def test_alpha_must_be_a_significance_level(tmp_path):
    f = tmp_path / "g.yaml"
    for bad in ("0", "1.5", "-0.1", "true", "high"):
        f.write_text(f"version: 1\nfinal:\n  max_relative_regression:\n    alpha: {bad}\n    metrics: {{acc: higher_is_better}}\n")
        with pytest.raises(ValueError, match=r"alpha must be a significance level in \(0, 1\]"):
            gates.load(f)
    f.write_text("version: 1\nfinal:\n  max_relative_regression:\n    noise: 0.05\n    metrics: {acc: higher_is_better}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['noise'\]"):
        gates.load(f)


def test_every_trained_stage_has_a_boundary_gate():
    from pipeline.dag import POLICY_STAGES, STAGE_GATES

    spec = gates.load(ROOT / "evaluations" / "gates.yaml")
    assert set(POLICY_STAGES) <= set(spec)
    assert sorted(s for s, *_ in STAGE_GATES.values()) == sorted(POLICY_STAGES)
    for stage in POLICY_STAGES:
        section = spec[stage]["max_relative_regression"]
        assert section["limit"] == 0.05 and section["alpha"] == 0.05  # churn passes, a sign-test drop fails
        assert {"math_accuracy", "refusal_rate"} <= set(section["metrics"])


def checks(spec, gate, metrics, base):
    """The threshold checks alone (tests/test_monitors.py covers the monitors)."""
    return [c for c in gates.evaluate(spec, gate, metrics, base) if c.kind != "monitors"]


def test_boundary_gate_passes_churn_and_fails_a_drop():
    spec = gates.load(ROOT / "evaluations" / "gates.yaml")
    before = {"math_accuracy": 0.1, "answer_format_rate": 0.825, "refusal_rate": 0.25, "over_refusal_rate": 0.0}
    now = {**before, "rm_score_mean": 0.1, "win_rate_vs_input": 0.5}
    flips = lambda worse, better: {"paired.answer_format_rate.worse": worse, "paired.answer_format_rate.better": better}  # noqa: E731
    assert all(c.passed for c in checks(spec, "align", {**now, "answer_format_rate": 0.775, **flips(3, 1)}, before))
    failed = [c for c in checks(spec, "align", {**now, "answer_format_rate": 0.70, **flips(5, 0)}, before) if not c.passed]
    assert [(c.metric, c.kind) for c in failed] == [("answer_format_rate", "max_relative_regression")]
    # reason's own target: at most one math item of 40 lost, churn or not
    failed = [(c.metric, c.kind) for c in checks(
        spec, "reason", {**now, "math_accuracy": 0.05, "paired.math_accuracy.worse": 2, "paired.math_accuracy.better": 0}, before)
        if not c.passed]
    assert failed == [("math_accuracy", "min_delta")]
    # the safety stage's target: refusals may not fall at all
    failed = [c for c in checks(spec, "safety", {**now, "refusal_rate": 0.1875}, before) if not c.passed]
    assert ("refusal_rate", "min_delta") in [(c.metric, c.kind) for c in failed]
    # missing monitors fail too: a boundary that did not log its RM score or win rate is not gated blind
    failed = [c.metric for c in checks(spec, "sft", before, before) if not c.passed]
    assert sorted(failed) == ["rm_score_mean", "win_rate_vs_input"]


def test_boundary_view_of_a_full_evaluation():
    from tasks.evaluate import boundary_view

    full = {"math_accuracy": 0.2, "boundary.math_accuracy": 0.25, "rm_pair_accuracy": 0.6}
    assert boundary_view(full) == {"math_accuracy": 0.25}
    assert boundary_view({"math_accuracy": 0.125}) == {"math_accuracy": 0.125}  # a boundary evaluation as it is
