"""Instruction following: our own IFEval-style prompts, checked by the `if-verifiable` package.

Prompts: `ifeval_prompts.v1.jsonl` (written for this project, 22 prompts, 24 instructions), each
row {id, prompt, instruction_id_list, kwargs} in IFEval's format. Only deterministic checkers are
used: no `number_sentences` (NLTK punkt data), no langdetect-based ones (`response_language`,
`english_capital`, `english_lowercase`: langdetect is random unless seeded) and no
`capital_word_frequency` (nltk.word_tokenize needs punkt). A new or changed prompt is a new file
and a new VERSION.

Dependencies: if-verifiable is installed with --no-deps (requirements-data.txt); its imports
`nltk`, `langdetect` and `immutabledict` are our own dependencies (pyproject.toml). SUPPORTED
lists the checkers that need no NLTK data download and are deterministic; others are refused.

Scoring is IFEval's *strict* mode (the response as is), with the checker classes of
`if_verifiable.ifeval.instructions_registry.INSTRUCTION_DICT`. Unlike if-verifiable's
`evaluate_instructions`, an unknown instruction id is an error, not silently skipped.

Substantive replies only (CHECK_VERSION "strict-substantive-1"): many checks pass on a reply that
says nothing (no commas, no forbidden word, fewer than N words), and an RL policy paid for them
learns to say nothing. So a reply follows no instruction when it is (`check_with_reason`, REASONS):
  empty        blank
  degenerate   under MIN_WORDS words, or mostly repeats (evaluations.math_score.degenerate)
  echo         mostly the prompt restated (evaluations.math_score.echo_share >= ECHO_SHARE)
These are judged on the reply's own words: without the prompt a `combination:repeat_prompt`
instruction asks it to start with, the phrase `startend:end_checker` asks it to end with, and the
keywords `keywords:existence` / `keywords:frequency` ask it to use. Otherwise the reason is
followed_all, partial or followed_none. The prompts file is named by VERSION, which these rules
leave unchanged; CHECK_VERSION names the rules.
  ifeval_prompt_accuracy       fraction of prompts whose every instruction is followed
  ifeval_instruction_accuracy  fraction of all instructions followed
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from core import jsonl
from evaluations.math_score import degenerate, echo_share, words

VERSION = "v1"
CHECK_VERSION = "strict-substantive-1"
REASONS = ("followed_all", "partial", "followed_none", "empty", "degenerate", "echo")
# Two, not more: a two-word reply can be a real answer ("Whiskers ****** Mittens" for two names).
MIN_WORDS = 2
ECHO_SHARE = 0.75  # share of the reply's word trigrams found in the prompt above which it restates it
PROMPTS = Path(__file__).with_name(f"ifeval_prompts.{VERSION}.jsonl")
N_PROMPTS = 22
N_INSTRUCTIONS = 24


# Checkers that need neither langdetect, NLTK data nor nltk.word_tokenize.
SUPPORTED = frozenset({
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "length_constraints:number_paragraphs", "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word", "detectable_content:number_placeholders",
    "detectable_content:postscript", "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response", "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections", "detectable_format:json_format", "detectable_format:title",
    "combination:two_responses", "combination:repeat_prompt", "startend:end_checker", "startend:quotation",
    "punctuation:no_comma",
})


@functools.lru_cache(maxsize=1)
def registry() -> dict:
    """if_verifiable's IFEval INSTRUCTION_DICT (id -> checker class)."""
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return dict(INSTRUCTION_DICT)


def load_prompts(n: int | None = None) -> list[dict]:
    rows = jsonl.read(PROMPTS)
    return rows[:n] if n else rows


def chat_prompt(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["prompt"]}]


def _flags(row: dict, response: str) -> list[bool]:
    """One flag per instruction of `row`: its if-verifiable checker passes (strict)."""
    checkers = registry()
    if len(row["instruction_id_list"]) != len(row["kwargs"]):
        raise ValueError(f"{row['id']}: instruction_id_list and kwargs differ in length")
    flags = []
    for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
        if instruction_id not in checkers or instruction_id not in SUPPORTED:
            raise ValueError(f"{row['id']}: IFEval instruction id {instruction_id!r} is unknown or not supported here "
                             f"(supported: {sorted(SUPPORTED)})")
        checker = checkers[instruction_id](instruction_id)
        checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=row["prompt"])
        flags.append(bool(checker.check_following(response)))
    return flags


def _own_words(row: dict, response: str) -> str:
    """The reply without what its instructions make it contain word for word: the prompt it must
    repeat first, the phrase it must end with, the keywords it must use. What is left must say
    something; those alone pass their checks but are no reply."""
    body = response.strip()
    for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
        kwargs = kwargs or {}
        if instruction_id == "combination:repeat_prompt" and kwargs.get("prompt_to_repeat"):
            repeat = kwargs["prompt_to_repeat"].strip()
            body = body[len(repeat):].strip() if body.lower().startswith(repeat.lower()) else body
        elif instruction_id == "startend:end_checker" and kwargs.get("end_phrase"):
            end = kwargs["end_phrase"].strip()
            body = body[:-len(end)].strip() if body.lower().endswith(end.lower()) else body
        elif instruction_id in ("keywords:existence", "keywords:frequency"):
            for keyword in kwargs.get("keywords") or [kwargs.get("keyword") or ""]:
                if keyword:
                    body = re.sub(rf"\b{re.escape(keyword)}\b", " ", body, flags=re.IGNORECASE)
    return body


def _unsubstantive(row: dict, response: str, prompt: str | None) -> str | None:
    """Why the reply says nothing (empty, degenerate, echo), or None."""
    if not response.strip():
        return "empty"
    body = _own_words(row, response)
    if len([w for w in words(body) if any(c.isalnum() for c in w)]) < MIN_WORDS or degenerate(body):
        return "degenerate"
    if prompt and echo_share(body, prompt) >= ECHO_SHARE:
        return "echo"
    return None


def check_with_reason(row: dict, response: str, prompt: str | None = None) -> tuple[list[bool], str]:
    """(one flag per instruction, reason in REASONS). An unsubstantive reply follows nothing. The
    prompt for the echo check is `prompt`, else row["prompt"] when the row has one."""
    flags = _flags(row, response)  # first: an unknown instruction is an error whatever the reply
    why = _unsubstantive(row, response, prompt if prompt is not None else row.get("prompt"))
    if why:
        return [False] * len(flags), why
    return flags, "followed_all" if all(flags) else "partial" if any(flags) else "followed_none"


def check(row: dict, response: str) -> list[bool]:
    """One flag per instruction of `row`: followed (strict, substantive) or not."""
    return check_with_reason(row, response)[0]


def score(rows: list[dict], responses: list[str]) -> tuple[dict[str, float], list[list[bool]]]:
    flags = [check(row, text) for row, text in zip(rows, responses, strict=True)]
    every = [f for fl in flags for f in fl]
    return {"ifeval_prompt_accuracy": sum(all(fl) for fl in flags) / len(flags),
            "ifeval_instruction_accuracy": sum(every) / len(every),
            "ifeval_items": float(len(flags))}, flags
