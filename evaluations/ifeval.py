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
`if_verifiable.ifeval.instructions_registry.INSTRUCTION_DICT`. An empty response follows nothing
(as in if-verifiable). Unlike if-verifiable's `evaluate_instructions`, an unknown instruction id
is an error, not silently skipped.
  ifeval_prompt_accuracy       fraction of prompts whose every instruction is followed
  ifeval_instruction_accuracy  fraction of all instructions followed
"""

from __future__ import annotations

import functools
from pathlib import Path

from core import jsonl

VERSION = "v1"
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


def check(row: dict, response: str) -> list[bool]:
    """One flag per instruction of `row`: followed (strict) or not."""
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
        flags.append(bool(response.strip()) and bool(checker.check_following(response)))
    return flags


def score(rows: list[dict], responses: list[str]) -> tuple[dict[str, float], list[list[bool]]]:
    flags = [check(row, text) for row, text in zip(rows, responses, strict=True)]
    every = [f for fl in flags for f in fl]
    return {"ifeval_prompt_accuracy": sum(all(fl) for fl in flags) / len(flags),
            "ifeval_instruction_accuracy": sum(every) / len(every),
            "ifeval_items": float(len(flags))}, flags
