"""Math answer checking: extract the *final* answer, then compare with math-verify.

Only the last stated answer counts (a chain of thought whose final answer is wrong gets no credit
for a correct number earlier on). Forms tried, last occurrence first: \\boxed{..}, `#### N`,
"the answer is N", and otherwise the last number in the text. Equivalence (0.5 = 1/2 =
\\frac{1}{2}, 1,000 = 1000) is math-verify's.
"""

from __future__ import annotations

import logging
import re

VERSION = "final-answer-math-verify-1"
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([-+]?[\d.,/]+|\\frac\{[^}]*\}\{[^}]*\})", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def final_answer(text: str) -> str | None:
    for pattern in (_BOXED, _HASHES, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return found[-1].strip().rstrip(".")
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def has_answer_format(text: str) -> bool:
    """The trained answer format: a \\boxed{} final answer."""
    return bool(_BOXED.search(text))


def is_correct(text: str, gold: str) -> bool:
    # parsing_timeout/timeout_seconds=None: math-verify's timeouts use SIGALRM, which only works
    # in the main thread, and Prefect runs tasks in worker threads.
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call without timeouts
    answer = final_answer(text)
    if answer is None:
        return False
    gold_parsed = parse(gold, parsing_timeout=None)
    pred_parsed = parse(f"${answer.replace(',', '')}$" if "\\" not in answer else f"${answer}$", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
