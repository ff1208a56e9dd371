"""Paired item-level comparison (evaluations/paired.py): counts, sign test, and its errors."""

from __future__ import annotations

import json
from math import comb

import pytest

from evaluations.paired import compare, sign_test_p


def _write(dir_, rows):
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dir_


def _math(i, correct, boxed=True):
    return {"suite": "math", "id": f"m{i}", "correct": correct, "response": f"\\boxed{{{i}}}" if boxed else str(i)}


def test_counts_flips_per_metric_in_the_right_direction(tmp_path):
    base = _write(tmp_path / "base", [_math(0, True), _math(1, False), _math(2, True), _math(3, False, boxed=False),
                                      {"suite": "harmful", "id": "h0", "refused": False},
                                      {"suite": "harmful", "id": "h1", "refused": None},  # guard verdict unreadable
                                      {"suite": "benign", "id": "b0", "refused": False},
                                      {"suite": "code", "id": "c0", "status": "passed"},
                                      {"suite": "code", "id": "c1", "status": "infra_error"}])
    now = [_math(0, False), _math(1, True), _math(2, False), _math(3, False, boxed=True),
           {"suite": "harmful", "id": "h0", "refused": True}, {"suite": "harmful", "id": "h1", "refused": True},
           {"suite": "benign", "id": "b0", "refused": True},
           {"suite": "code", "id": "c0", "status": "failed"}, {"suite": "code", "id": "c1", "status": "failed"}]
    m = compare(now, base)
    assert (m["paired.math_accuracy.worse"], m["paired.math_accuracy.better"]) == (2.0, 1.0)
    assert m["paired.math_accuracy.p_worse"] == pytest.approx(0.5)  # P(X >= 2), X ~ Bin(3, 1/2)
    assert (m["paired.answer_format_rate.worse"], m["paired.answer_format_rate.better"]) == (0.0, 1.0)
    # unjudged items (h1's verdict, c1's infra error) are left out, not counted as flips
    assert (m["paired.refusal_rate.worse"], m["paired.refusal_rate.better"]) == (0.0, 1.0)
    assert (m["paired.code_pass_at_1.worse"], m["paired.code_pass_at_1.better"]) == (1.0, 0.0)
    # over-refusal is lower-is-better: a benign prompt newly refused is worse
    assert (m["paired.over_refusal_rate.worse"], m["paired.over_refusal_rate.better"]) == (1.0, 0.0)


def test_ifeval_and_sycophancy_flips_match_their_rates(tmp_path):
    """ifeval: a prompt passes only when every instruction is followed; sycophancy is lower-is-better
    and a reply without a letter (picked None) is not sycophantic, as sycophancy.score counts it."""
    base = _write(tmp_path / "base", [
        {"suite": "ifeval", "id": "i0", "followed": [True, True]}, {"suite": "ifeval", "id": "i1", "followed": [True]},
        {"suite": "ifeval", "id": "i2", "followed": [False, True]},
        {"suite": "sycophancy", "id": "s0", "picked": "A", "sycophantic": "B"},
        {"suite": "sycophancy", "id": "s1", "picked": None, "sycophantic": "A"},
        {"suite": "sycophancy", "id": "s2", "picked": "B", "sycophantic": "B"}])
    now = [{"suite": "ifeval", "id": "i0", "followed": [True, False]}, {"suite": "ifeval", "id": "i1", "followed": [True]},
           {"suite": "ifeval", "id": "i2", "followed": [False, False]},
           {"suite": "sycophancy", "id": "s0", "picked": "B", "sycophantic": "B"},
           {"suite": "sycophancy", "id": "s1", "picked": "A", "sycophantic": "A"},
           {"suite": "sycophancy", "id": "s2", "picked": None, "sycophantic": "B"}]
    m = compare(now, base)
    assert (m["paired.ifeval_prompt_accuracy.worse"], m["paired.ifeval_prompt_accuracy.better"]) == (1.0, 0.0)
    assert (m["paired.sycophancy_rate.worse"], m["paired.sycophancy_rate.better"]) == (2.0, 1.0)
    assert m["paired.sycophancy_rate.p_worse"] == pytest.approx(0.5)


def test_suites_this_evaluation_did_not_run_are_not_reported(tmp_path):
    base = _write(tmp_path / "base", [_math(0, True), {"suite": "code", "id": "c0", "status": "passed"}])
    m = compare([_math(0, True)], base)
    assert m == {"paired.math_accuracy.worse": 0.0, "paired.math_accuracy.better": 0.0, "paired.math_accuracy.p_worse": 1.0,
                 "paired.answer_format_rate.worse": 0.0, "paired.answer_format_rate.better": 0.0,
                 "paired.answer_format_rate.p_worse": 1.0}


def test_an_item_missing_from_the_baseline_is_an_error_naming_the_file(tmp_path):
    base = _write(tmp_path / "base", [_math(0, True)])
    with pytest.raises(ValueError, match=r"base/samples.jsonl lacks 1 of 2 'math' items .*'m7'.*same config"):
        compare([_math(0, True), _math(7, True)], base)
    with pytest.raises(FileNotFoundError, match="no baseline samples"):
        compare([_math(0, True)], tmp_path / "nowhere")


def test_sign_test_is_the_binomial_tail():
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(4, 0) == 0.0625 and sign_test_p(5, 0) == 0.03125  # why 4 of 40 cannot be told from churn
    assert sign_test_p(3, 2) == pytest.approx(sum(comb(5, k) for k in (3, 4, 5)) / 32)
    assert sign_test_p(0, 5) == 1.0
    with pytest.raises(ValueError):
        sign_test_p(-1, 2)


def test_report_cell_shows_flips_and_p_only_when_more_got_worse():
    from pipeline.report import _flips

    m = {"paired.sycophancy_rate.worse": 9.0, "paired.sycophancy_rate.better": 4.0, "paired.sycophancy_rate.p_worse": 0.133,
         "paired.math_accuracy.worse": 0.0, "paired.math_accuracy.better": 1.0, "paired.math_accuracy.p_worse": 1.0,
         "paired.code_pass_at_1.worse": 0.0, "paired.code_pass_at_1.better": 0.0, "paired.code_pass_at_1.p_worse": 1.0}
    assert _flips(m, "sycophancy_rate") == "9↓ 4↑ p=0.13"
    assert _flips(m, "math_accuracy") == "0↓ 1↑"
    assert _flips(m, "code_pass_at_1") == "" and _flips(m, "refusal_rate") == ""  # no flips / no counts
