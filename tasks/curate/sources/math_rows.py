"""Math items -> rows of each split format. An item is {"id", "question", "answer", "cot"} (the
generators of gsm_symbolic.py and arithmetic.py make them): a chain of thought ending in our one
answer format for SFT, a prompt and gold answer for RL and evaluation, a right vs wrong final
answer for preferences."""

from __future__ import annotations

import random

from tasks.curate.schema import assistant, user

BOXED = "The final answer is \\boxed{{{}}}."


def cot_to_answer(cot: str, answer: str) -> str:
    """GSM-style `#### N` ending -> our one answer format, so training and scoring agree."""
    body = cot.rsplit("####", 1)[0].strip()
    return f"{body}\n{BOXED.format(answer)}"


def wrong_answer(answer: str, rng: random.Random) -> str:
    """A plausible wrong final answer: off by a small non-zero amount."""
    try:
        value = float(answer)
    except ValueError:
        return answer + "0"
    wrong = value + rng.choice([-10, -2, -1, 1, 2, 10])
    return str(int(wrong)) if wrong.is_integer() else str(wrong)


def cot_rows(items: list[dict]) -> list[dict]:
    """messages: the question, and the worked solution ending in the boxed answer."""
    return [{"id": m["id"], "messages": user(m["question"]) + assistant(cot_to_answer(m["cot"], m["answer"]))} for m in items]


def prompt_rows(items: list[dict]) -> list[dict]:
    """verifiable: the question and its gold answer, scored by math-verify."""
    return [{"id": m["id"], "prompt": user(m["question"]), "answer": m["answer"], "verifier": "math"} for m in items]


def pair_rows(items: list[dict], seed: int) -> list[dict]:
    """preference: the worked solution (chosen) vs the same steps ending in a wrong answer (rejected)."""
    rng = random.Random(seed)
    return [{"id": m["id"] + ":pair", "prompt": user(m["question"]), "chosen": assistant(cot_to_answer(m["cot"], m["answer"])),
             "rejected": assistant(cot_to_answer(m["cot"], wrong_answer(m["answer"], rng)))} for m in items]
