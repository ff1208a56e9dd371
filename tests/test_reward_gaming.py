"""Adversarial suite for the verifiers: replies a reward-gaming policy would write score 0, with the
reason named, while honest correct replies keep scoring 1.

Every case runs through both paths that pay for a reply: evaluations.verifiers (the reason stage's
GRPO reward) and what the evaluate stage scores with (math_score.is_correct / has_answer_format,
ifeval.check / score, humaneval.score). Echo detection needs the prompt: the verifiers get it as
TRL's prompts, is_correct as `prompt=`; without it a reply that only restates a question whose last
number is the gold still pays. Real math-verify, if-verifiable and bwrap sandbox; no model.
"""

from __future__ import annotations

import json

import pytest

from evaluations import humaneval, ifeval, verifiers
from evaluations.math_score import REASONS, has_answer_format, is_correct, verdict
from tests.faults.test_sandbox import GAMING


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- math ----------------------------------------------------------------------------------------

COT = ("Natalia sold 48 clips to her friends in April. In May she sold half as many clips as in April, "
       "which is 48 / 2 = 24 clips. To get the total for both months we add the two amounts together: "
       "48 + 24 = 72. Let me double-check this: half of 48 is 24, and 48 plus 24 is indeed 72, so the "
       "numbers are consistent.")
TOM = "Tom has 18 apples and eats none of them. How many apples does Tom have?"

# (reply, gold, reason): each must score 0 on both paths and earn no format credit.
MATH_GAMING = [
    ("The answer is 16 or 18.", "18", "hedged"),
    ("The answer is either 16 or 18.", "16", "hedged"),
    ("Final answer: 16, 18, or 20", "18", "hedged"),
    ("It must be 16 or 18.", "18", "hedged"),
    ("The answer is **16** or **18**.", "16", "hedged"),
    ("It is $16$ or $18$.", "18", "hedged"),
    ("The answer is 18 (or 20).", "18", "hedged"),
    ("\\boxed{18 (or 20)}", "20", "hedged"),
    ("\\boxed{18 \\text{ or maybe } 20}", "20", "hedged"),
    ("\\boxed{18|20}", "18", "hedged"),
    ("Answer: 18 / 20", "18", "wrong"),  # one fraction (0.9), not 18 followed by an aside
    ("\\boxed{16 or 18}", "18", "hedged"),
    ("\\boxed{16 \\text{ or } 18}", "16", "hedged"),
    ("\\boxed{16, 18, 20}", "18", "hedged"),
    ("\\boxed{\\{16, 18\\}}", "18", "hedged"),
    ("\\boxed{16} \\boxed{18}", "18", "hedged"),
    ("It is \\boxed{16}, or maybe \\boxed{18}.", "16", "hedged"),
    ("#### 16\n#### 18", "18", "hedged"),
    ("So we get \\boxed{18}. Hmm, actually the answer is 20.", "20", "hedged"),
    ("The answer is 20. Therefore \\boxed{18}.", "18", "hedged"),
    ("\\boxed{(1, 2)} or \\boxed{(2, 1)}", "(1, 2)", "hedged"),
    ("\\boxed{(1, 2), (2, 1)}", "(1, 2)", "hedged"),
    ("\\boxed{}", "18", "empty_box"),
    ("\\boxed{ }", "18", "empty_box"),
    ("The final answer is \\boxed{}.", "18", "empty_box"),
    ("\\boxed{answer}", "18", "non_answer"),
    ("\\boxed{?}", "18", "non_answer"),
    ("\\boxed{...}", "18", "non_answer"),
    ("\\boxed{\\text{final answer}}", "18", "non_answer"),
    ("\\boxed{\\text{eighteen}}", "18", "non_answer"),
    ("\\boxed{18} Wait, that's wrong.", "18", "retracted"),
    ("The answer is 18. Just kidding!", "18", "retracted"),
    ("\\boxed{18}\nScratch that.", "18", "retracted"),
    ("#### 18\nNo, that is incorrect.", "18", "retracted"),
    ("\\boxed{18} I'm not sure that's right.", "18", "retracted"),
    ("So the total is 18. Actually, no.", "18", "retracted"),
    ("\\boxed{18}. Never mind, ignore my answer.", "18", "retracted"),
    (" ".join(["\\boxed{18}"] * 10), "18", "degenerate"),
    ("\\boxed{18}" * 6, "18", "degenerate"),
    ("18 " * 20, "18", "degenerate"),
    ("The answer is 18. " * 8, "18", "degenerate"),
    ("I think so. " * 15 + "\\boxed{72}", "72", "degenerate"),
    (COT + " 72" * 60 + " \\boxed{72}", "72", "degenerate"),
    ("", "18", "no_answer"),
    ("I don't know.", "18", "no_answer"),
    ("What is 18 times 1?", "18", "no_answer"),
]

# Without a gold, a set is one value (the answer to "find all x"): format credit, still no correctness.
ONE_VALUE_WITHOUT_GOLD = {"\\boxed{\\{16, 18\\}}"}

# (reply, gold): honest correct replies, several phrasings; 1 on both paths.
MATH_HONEST = [
    ("\\boxed{18}", "18"),
    ("The final answer is \\boxed{18}.", "18"),
    ("Total: 3 * 6 = 18\n#### 18", "18"),
    ("The answer is 18.", "18"),
    ("The answer is **18**.", "18"),
    ("\\boxed{18}\n\nSo the answer is \\boxed{18}.", "18"),  # the same value boxed twice
    ("so the result is \\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "1/2"),
    ("we get 0.75", "3/4"),
    ("The answer is 1,000.", "1000"),
    ("\\boxed{1,250}", "1250"),
    ("\\boxed{(2, 1)}", "(2, 1)"),
    ("The point is (2, 1), so the answer is (2, 1).", "(2, 1)"),
    ("\\boxed{[1, 2)}", "[1, 2)"),
    ("\\boxed{18 \\text{ apples}}", "18"),
    ("The answer is 3 / 4.", "0.75"),
    ("47 - 85 = -38", "-38"),
    ("\\boxed{18}. Let me verify: 3 * 6 = 18. Yes, that is correct.", "18"),
    (COT + "\n\nThe final answer is \\boxed{72}.", "72"),
    ("Weng earns $12 an hour for babysitting and yesterday she babysat for 50 minutes. First convert the "
     "hourly rate to a rate per minute: 12 / 60 = 0.2 dollars per minute. Then multiply by the number of "
     "minutes she worked: 0.2 * 50 = 10. Checking another way, 50 minutes is 5/6 of an hour, and 5/6 of 12 "
     "dollars is 10 dollars. Both methods agree, so she earned 10 dollars.\n#### 10", "10"),
    ("Harper hid 9 dozen eggs, which is 9 * 12 = 108 eggs. Benjamin finds 9 eggs. Isabella finds 2 times as "
     "many, so 2 * 9 = 18 eggs. Sophia finds 2 less than Isabella: 18 - 2 = 16 eggs. James finds half as "
     "many as Sophia: 0.5 * 16 = 8 eggs. Altogether they found 9 + 18 + 16 + 8 = 51 eggs. The eggs still "
     "hidden are 108 - 51 = 57. I hope this helps!\n\nThe answer is 57.", "57"),
    ("There are 3 red and 5 blue marbles, 8 in all. I'm not sure at first whether order matters, but since "
     "we draw without replacement we multiply the step probabilities. The first marble is red with "
     "probability 3/8. After that 2 red marbles remain among 7, so the second is red with probability 2/7. "
     "Multiplying gives 3/8 * 2/7 = 6/56, which simplifies to 3/28, about 0.107 as a decimal. So the "
     "probability is \\boxed{\\frac{3}{28}}.", "3/28"),
    ("The lines are y = 2x - 3 and y = -x + 3. Setting them equal gives 2x - 3 = -x + 3, so 3x = 6 and "
     "x = 2. Substituting into the second line, y = -2 + 3 = 1. Checking in the first line, 2 * 2 - 3 = 1, "
     "which matches. The lines meet at the point \\boxed{(2, 1)}.", "(2, 1)"),
    ("A factory makes 250 widgets per day, 5 days a week. That is 250 * 5 = 1,250 widgets per week. Over "
     "4 weeks the factory makes 1,250 * 4 = 5,000 widgets. Each widget sells for $2, but the question only "
     "asks for the count, so the monthly output is 5,000 widgets.\n\n**Final answer:** \\boxed{5,000}", "5000"),
    ("Tom has 18 apples and eats none of them, so he still has 18 apples.", "18"),
    ("\n".join(f"- Box {i} has 3 red balls and 2 blue balls, so 5 balls." for i in range(1, 8))
     + "\nSo 7 * 5 = 35. \\boxed{35}", "35"),  # an honest enumeration is not a repeat
    ("Check: 3 + 4 = 7. Correct. Check: 7 + 2 = 9. Correct. Check: 9 + 1 = 10. Correct. So \\boxed{10}.", "10"),
    ("\\boxed{18}. Let me know if that's wrong!", "18"),  # an offer, not a retraction
]


@pytest.mark.parametrize("reply, gold, reason", MATH_GAMING)
def test_math_gaming_scores_zero_on_both_paths(reply, gold, reason):
    assert verifiers.verdicts([reply], [gold], ["math"]) == [(0.0, reason)]
    assert verifiers.rewards([reply], [gold], ["math"]) == [0.0]  # the GRPO correctness reward
    assert verdict(reply, gold) == (False, reason)
    assert not is_correct(reply, gold)  # the evaluate stage's math_accuracy
    assert not has_answer_format(reply, gold)
    if reply not in ONE_VALUE_WITHOUT_GOLD:
        assert not has_answer_format(reply)  # the GRPO format reward and answer_format_rate (no gold)


@pytest.mark.parametrize("reply, gold", MATH_HONEST)
def test_math_honest_replies_keep_scoring(reply, gold):
    assert verifiers.verdicts([reply], [gold], ["math"], prompts=[_user(TOM)]) == [(1.0, "correct")]
    assert verifiers.rewards([reply], [gold], ["math"]) == [1.0]
    assert is_correct(reply, gold) and is_correct(reply, gold, prompt=TOM)
    assert has_answer_format(reply, gold) == ("\\boxed" in reply)


def test_honest_wrong_answer_keeps_its_format_credit():
    reply = COT + "\n\nThe final answer is \\boxed{70}."
    assert verifiers.verdicts([reply], ["72"], ["math"]) == [(0.0, "wrong")]
    assert has_answer_format(reply)


def test_echo_of_the_question_scores_zero_when_the_prompt_is_known():
    for reply in (TOM, "Tom has 18 apples and eats none of them."):
        assert verifiers.verdicts([reply], ["18"], ["math"], prompts=[_user(TOM)]) == [(0.0, "echo")]
        assert verifiers.rewards([reply], ["18"], ["math"], prompts=[TOM]) == [0.0]
        assert not is_correct(reply, "18", prompt=TOM)


def test_format_reward_needs_one_real_boxed_answer():
    assert has_answer_format("The final answer is \\boxed{18}.")
    assert has_answer_format("\\boxed{(1, 2)}")  # one tuple is one value
    for reply in ("\\boxed{}", "\\boxed{ }", "\\boxed{answer}", "\\boxed{?}", "\\boxed{\\text{the answer}}",
                  "\\boxed{16} \\boxed{18}", "\\boxed{16, 18}", "\\boxed{18} Just kidding.", "#### 18",
                  "The answer is 18."):
        assert not has_answer_format(reply), reply
    assert has_answer_format("\\boxed{16, 18}", gold="16, 18")  # a two-value gold allows two values


def test_require_format_refuses_unboxed_answers():
    replies = ["#### 18", "The answer is 18.", "\\boxed{18}", "\\boxed{}"]
    got = verifiers.verdicts(replies, ["18"] * 4, ["math"] * 4, require_format=True)
    assert got == [(0.0, "unformatted"), (0.0, "unformatted"), (1.0, "correct"), (0.0, "empty_box")]


def test_reason_vocabulary_is_published():
    cases = [r for _, _, r in MATH_GAMING] + ["correct", "wrong", "echo", "unformatted"]
    assert set(cases) == set(REASONS) == set(verifiers.REASONS["math"])
    assert {"followed_all", "partial", "empty", "degenerate", "echo"} <= set(verifiers.REASONS["ifeval"])
    assert {"passed", "failed", "infra_error"} <= set(verifiers.REASONS["code"])


# --- ifeval --------------------------------------------------------------------------------------

def _spec(ids: list[str], kwargs: list[dict], prompt: str) -> dict:
    return {"instruction_id_list": ids, "kwargs": kwargs, "prompt": prompt}


NO_COMMA = _spec(["punctuation:no_comma"], [{}], "Write a short note inviting a neighbour to a garden party. "
                 "Do not use any commas in your response.")
FORBIDDEN = _spec(["keywords:forbidden_words"], [{"forbidden_words": ["wet", "umbrella"]}],
                  "Describe a rainy evening in town. Do not use the words listed in the instructions.")
SHORT = _spec(["length_constraints:number_words"], [{"num_words": 40, "relation": "less than"}],
              "Explain photosynthesis in fewer than 40 words.")
LETTER = _spec(["keywords:letter_frequency"], [{"letter": "z", "let_frequency": 2, "let_relation": "less than"}],
               "Describe a morning walk. Use the letter z fewer than 2 times.")
END = _spec(["punctuation:no_comma", "startend:end_checker"], [{}, {"end_phrase": "Happy reading!"}],
            "Welcome a new member to the library without commas. End with: Happy reading!")
EXIST = _spec(["keywords:existence"], [{"keywords": ["durable", "leak-proof"]}],
              "Describe a water bottle. Include the keywords durable and leak-proof.")
REPEAT = _spec(["combination:repeat_prompt"], [{"prompt_to_repeat": "Name three primary colours."}],
               "First repeat the request word for word without change, then give your answer. "
               "Name three primary colours.")
WAVES = _spec(["keywords:frequency"], [{"keyword": "wave", "frequency": 3, "relation": "at least"}],
              "Describe the sea. Use the word wave at least 3 times.")
TWO = _spec(["combination:two_responses"], [{}], "Suggest two names for a cat, separated by six asterisks.")
YES_NO = _spec(["detectable_format:constrained_response"], [{}], "Is tea healthy? Answer with My answer is yes/no.")

IFEVAL_GAMING = [
    (NO_COMMA, "", "empty"),
    (NO_COMMA, "   \n", "empty"),
    (NO_COMMA, "Hello", "degenerate"),
    (FORBIDDEN, "Yes.", "degenerate"),
    (SHORT, "Okay.", "degenerate"),
    (LETTER, "Hi", "degenerate"),
    (NO_COMMA, "ok " * 30, "degenerate"),
    (FORBIDDEN, "The sky is grey. " * 10, "degenerate"),
    (SHORT, "yes yes yes yes", "degenerate"),
    (END, "Happy reading!", "degenerate"),
    (EXIST, "durable leak-proof", "degenerate"),
    (REPEAT, "Name three primary colours.", "degenerate"),
    (REPEAT, "Name three primary colours. Name three primary colours.", "echo"),
    (NO_COMMA, NO_COMMA["prompt"], "echo"),
    (SHORT, "Explain photosynthesis in fewer than 40 words.", "echo"),
]

IFEVAL_HONEST = [
    (NO_COMMA, "Dear neighbour please join us for a garden party this Saturday afternoon. We will have "
               "lemonade and cake in the back garden."),
    (FORBIDDEN, "Grey clouds rolled over the town and the streets shone under the lamps."),
    (SHORT, "Plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
    (LETTER, "I walked along the river and watched the ducks."),
    (END, "Welcome to the library. Happy reading!"),
    (EXIST, "This bottle is durable and leak-proof, so it survives a long hike."),
    (REPEAT, "Name three primary colours. Red, yellow and blue."),
    (WAVES, "The first wave rose slowly. A second wave crashed on the rocks. The last wave washed the sand."),
    (TWO, "Whiskers\n******\nMittens"),
    (YES_NO, "My answer is yes."),
]


def _rl_answer(spec: dict) -> str:
    """The rl split's ifeval `answer`: the instructions, without the prompt."""
    return json.dumps({k: spec[k] for k in ("instruction_id_list", "kwargs")})


@pytest.mark.parametrize("spec, reply, reason", IFEVAL_GAMING)
def test_ifeval_gaming_follows_nothing_on_both_paths(spec, reply, reason):
    answer, prompt = _rl_answer(spec), _user(spec["prompt"])
    assert verifiers.verdicts([reply], [answer], ["ifeval"], prompts=[prompt]) == [(0.0, reason)]
    assert verifiers.rewards([reply], [answer], ["ifeval"], prompts=[prompt]) == [0.0]
    row = {"id": "gaming", **spec}  # an evaluation row carries its prompt
    assert ifeval.check_with_reason(row, reply) == ([False] * len(spec["kwargs"]), reason)
    metrics, _ = ifeval.score([row], [reply])
    assert metrics["ifeval_instruction_accuracy"] == 0.0


@pytest.mark.parametrize("spec, reply", IFEVAL_HONEST)
def test_ifeval_honest_replies_keep_scoring(spec, reply):
    answer = _rl_answer(spec)
    assert verifiers.verdicts([reply], [answer], ["ifeval"], prompts=[_user(spec["prompt"])]) == [(1.0, "followed_all")]
    assert verifiers.rewards([reply], [answer], ["ifeval"]) == [1.0]
    assert ifeval.score([{"id": "honest", **spec}], [reply])[0]["ifeval_prompt_accuracy"] == 1.0


def test_ifeval_partial_and_none_are_named():
    answer = _rl_answer(END)
    got = verifiers.verdicts(["Welcome, all. Happy reading!", "Welcome, all, to the library."], [answer] * 2,
                             ["ifeval"] * 2)
    assert got == [(0.5, "partial"), (0.0, "followed_none")]


# --- code ----------------------------------------------------------------------------------------

ADD_PROBLEM = {"prompt": 'def add(a, b):\n    """Return the sum of a and b."""\n',
               "test": ("def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 5) == 4\n"
                        "    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"),
               "entry_point": "add"}
CODE_GAMING = {**{name: f"```python\n{program}```" for name, program in GAMING.items()},
               "empty reply": "", "prose": "I cannot run code, but the tests will pass.",
               "the prompt restated": f"```python\n{ADD_PROBLEM['prompt']}```"}
CODE_HONEST = {"whole function": "```python\ndef add(a, b):\n    return a + b\n```",
               "body only": "    return a + b\n"}


@pytest.fixture(scope="module")
def code_scored() -> dict[str, tuple]:
    """Every code case in one batch (one sandbox pool), on both paths."""
    names = list(CODE_GAMING) + list(CODE_HONEST)
    replies = [{**CODE_GAMING, **CODE_HONEST}[n] for n in names]
    answer = json.dumps(ADD_PROBLEM)
    got = verifiers.verdicts(replies, [answer] * len(names), ["code"] * len(names))
    _, results = humaneval.score([ADD_PROBLEM] * len(names), replies, max_infra_fraction=0.25)
    return {n: (g, r) for n, g, r in zip(names, got, results)}


@pytest.mark.parametrize("name", list(CODE_GAMING))
def test_code_gaming_scores_zero_on_both_paths(code_scored, name):
    (reward, reason), result = code_scored[name]
    assert reward == 0.0 and reason in ("failed", "error"), (reward, reason)
    assert result.n_passed == 0 and result.status in ("failed", "error"), result  # the evaluate stage's pass@1


@pytest.mark.parametrize("name", list(CODE_HONEST))
def test_code_honest_replies_pass(code_scored, name):
    (reward, reason), result = code_scored[name]
    assert (reward, reason) == (1.0, "passed") and result.status == "passed"
