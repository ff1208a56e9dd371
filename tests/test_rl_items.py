"""The rl split's code and IFEval items (tasks/curate/sources/) hold up under the rewards that will score
them (evaluations/verifiers.py): canonical code solutions pass every test in the bwrap sandbox, wrong ones
score 0; every IFEval item's kwargs fully configure its if-verifiable checker, and compliant replies
score 1. Real sandbox, real if-verifiable; no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluations import verifiers
from evaluations.ifeval import registry
from evaluations.sandbox import humaneval_tests
from tasks.curate.schema import answer_problem
from tasks.curate.sources import code_problems, ifeval_style

ROOT = Path(__file__).resolve().parents[1]


def _fenced(code: str) -> list[dict]:
    return [{"role": "assistant", "content": f"Here it is:\n```python\n{code}```"}]


@pytest.fixture(scope="module")
def code_rows() -> list[dict]:
    return code_problems.prompts(seed=1234)


def test_code_problems_are_well_formed():
    problems = code_problems.problems()
    assert len(problems) >= 40
    assert len({p["entry_point"] for p in problems}) == len(problems)
    for p in problems:
        assert len(humaneval_tests(p["test"], p["entry_point"])) >= 3, p["id"]


def test_canonical_solutions_pass_and_wrong_ones_score_zero(code_rows):
    by_answer = {json.dumps({k: p[k] for k in ("prompt", "test", "entry_point")}): p for p in code_problems.problems()}
    answers = [r["answer"] for r in code_rows]
    assert all(answer_problem("code", a) is None for a in answers)
    n = len(answers)
    # A whole function in a fence, as a model replies; the reward rebuilds it on the problem's prompt.
    right = [_fenced(by_answer[a]["prompt"] + by_answer[a]["canonical_solution"]) for a in answers]
    assert verifiers.rewards(right, answers, ["code"] * n) == [1.0] * n
    wrong = [_fenced(by_answer[a]["prompt"] + "    return None\n") for a in answers]
    assert verifiers.rewards(wrong, answers, ["code"] * n) == [0.0] * n


# Compliant replies per instruction, built from the item's kwargs (as a careful human would write).
def _reply(instruction: str, kw: dict) -> str:
    body = "Start early and bring water. Walk along the harbour and eat lunch by the sea."
    return {
        "punctuation:no_comma": body,
        "detectable_format:title": f"<<A Day Out>>\n\n{body}",
        "startend:end_checker": f"{body} {kw.get('end_phrase')}",
        "startend:quotation": f'"{body}"',
        "detectable_content:postscript": f"{body}\n\n{kw.get('postscript_marker')} Check the tide times.",
        "detectable_format:number_bullet_lists": "\n".join(f"* Point {i + 1}." for i in range(kw.get("num_bullets") or 0)),
        "keywords:existence": f"{body} " + " ".join(kw.get("keywords") or []),
        "detectable_content:number_placeholders": body + "".join(f" [slot{i}]" for i in range(kw.get("num_placeholders") or 0)),
        "detectable_format:json_format": json.dumps({"plan": body}),
    }[instruction]


def test_ifeval_items_configure_their_checkers_and_compliant_replies_pass():
    items = ifeval_style.rl_prompts(60, seed=1239)
    assert len(items) == 60 and len({json.dumps(x["prompt"]) for x in items}) == 60
    assert {len(json.loads(x["answer"])["instruction_id_list"]) for x in items} == {1, 2}
    checkers = registry()
    for x in items:
        spec = json.loads(x["answer"])
        assert answer_problem("ifeval", x["answer"]) is None
        for instruction, kw in zip(spec["instruction_id_list"], spec["kwargs"]):
            checker = checkers[instruction](instruction)
            checker.build_description(**kw)
            # every argument the checker uses is pinned by the item (none drawn at random)
            assert set(checker.get_instruction_args() or {}) == set(kw), (x["id"], instruction, kw)
    singles = [x for x in items if len(json.loads(x["answer"])["instruction_id_list"]) == 1
               and json.loads(x["answer"])["instruction_id_list"][0] in {
                   "punctuation:no_comma", "detectable_format:title", "startend:end_checker", "startend:quotation",
                   "detectable_content:postscript", "detectable_format:number_bullet_lists", "keywords:existence",
                   "detectable_content:number_placeholders", "detectable_format:json_format"}]
    assert len(singles) >= 5
    answers = [x["answer"] for x in singles]
    replies = [_reply(json.loads(a)["instruction_id_list"][0], json.loads(a)["kwargs"][0]) for a in answers]
    assert verifiers.rewards(replies, answers, ["ifeval"] * len(answers)) == [1.0] * len(answers)
    # and a reply that ignores the constraint does not get the reward for free
    ignored = ['Sure, here, and there, you go: {"not json"' for _ in answers]
    assert all(r < 1.0 for r in verifiers.rewards(ignored, answers, ["ifeval"] * len(answers)))


def test_curated_rl_split_has_all_three_verifiers(curated):
    # `curated`: the splits built by the real curate stage (data/curated/ is a DVC output, absent
    # from a fresh clone).
    rows = [json.loads(line) for line in (curated / "rl.jsonl").read_text().splitlines() if line.strip()]
    kinds = {r["verifier"] for r in rows}
    assert kinds == {"math", "code", "ifeval"}
    assert sum(r["verifier"] == "math" for r in rows) > len(rows) / 2  # math stays the majority
    assert all(answer_problem(r["verifier"], r["answer"]) is None for r in rows)
