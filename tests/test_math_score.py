"""Math answer checking (math-verify): equivalent forms count, only the final answer counts."""

import pytest

from evaluations.math_score import final_answer, has_answer_format, is_correct


@pytest.mark.parametrize("text,gold", [
    ("so the result is \\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "1/2"),
    ("The answer is 1,000.", "1000"),
    ("Total: 3 + 4 = 7\n#### 7", "7"),
    ("we get 0.75", "3/4"),
])
def test_equivalent_forms_are_correct(text, gold):
    assert is_correct(text, gold)


def test_earlier_correct_number_gets_no_credit():
    text = "First 3 + 2 = 5 apples. Then she eats 1, so 5 - 1 = 4.\nThe final answer is \\boxed{4}."
    assert final_answer(text) == "4"
    assert not is_correct(text, "5")
    assert not is_correct("x is 5, hence #### 6", "5")


def test_no_answer_is_wrong_and_format_detected():
    assert not is_correct("I am not sure.", "3")
    assert has_answer_format("\\boxed{3}") and not has_answer_format("#### 3")
