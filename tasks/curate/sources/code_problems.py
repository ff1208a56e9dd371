r'''Code problems written for this project (Apache-2.0, tasks/curate/data/code_problems.jsonl): a
HumanEval-style prompt, a `check(candidate)` test with >= 3 asserts, and a canonical solution that
tests/test_rl_items.py runs through the reward's sandbox path. The canonical solution never leaves
this module (it would be the answer in the prompt). Topics and wording are ours, kept off
HumanEval's (decontamination scans it).

One row it produces (`code_problems`, split rl); long strings wrapped, the `answer` JSON string shown
as the json.dumps that makes it, and STUB the problem's prompt:
    {"id": "posttrain/code_problems:4ae8aab2a7ec",
     "prompt": [{"role": "user", "content": "Complete the following Python function. Reply with the complete
                 function (signature and body) in a single ```python code block.\n\n```python\n" + STUB + "```"}],
     "verifier": "code",
     "answer": json.dumps({"prompt": STUB,
                           "test": "def check(candidate):\n    assert candidate(234) == 24\n    assert candidate(7) == 7\n"
                                   "    assert candidate(105) == 0\n    assert candidate(1111) == 1\n",
                           "entry_point": "digit_product"})}
    STUB = 'def digit_product(n: int) -> int:\n    """Multiply together the decimal digits of the non-negative
            whole number n.\n    Example: digit_product(234) gives 24, digit_product(7) gives 7.\n    """\n'
'''

from __future__ import annotations

import json
import random

from core import jsonl
from tasks.curate.sources.common import DATA, row_id

CODE_PROBLEMS = DATA / "code_problems.jsonl"


def problems() -> list[dict]:
    """Every problem with its canonical solution."""
    return jsonl.read(CODE_PROBLEMS)


def prompts(seed: int) -> list[dict]:
    """verifiable rows, verifier code, in a seeded order (the mix takes a prefix: which problems is seed-driven)."""
    from evaluations.humaneval import chat_prompt

    items = problems()
    random.Random(seed).shuffle(items)
    return [{"id": row_id("posttrain/code_problems", p["id"]), "prompt": chat_prompt(p), "verifier": "code",
             "answer": json.dumps({k: p[k] for k in ("prompt", "test", "entry_point")})} for p in items]
