"""Verifiable rewards, dispatched on a row's `verifier` column (math | code | ifeval).

What `answer` holds per verifier (the curated rl split's contract):
  math    the gold final answer; math-verify compares the reply's last \\boxed{} / final number
  code    JSON of a HumanEval-style problem {"prompt", "test", "entry_point"}; the reply's code runs
          against each assert of `test` in the bwrap sandbox (evaluations/sandbox/); reward = share
          of tests passed
  ifeval  JSON {"instruction_id_list", "kwargs"}; reward = share of instructions followed
          (if-verifiable checkers, evaluations/ifeval.py)
A sample whose code could not be run (sandbox infra_error) gets None, which TRL's GRPO leaves out
of the reward instead of scoring it 0; more than MAX_INFRA_FRACTION of a batch fails the stage.
"""

from __future__ import annotations

import json

from evaluations import humaneval, ifeval
from evaluations.math_score import is_correct

VERIFIERS = ("math", "code", "ifeval")
MAX_INFRA_FRACTION = 0.25  # sandbox infra errors tolerated per batch before the rewards are not trusted


def text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def _check(verifiers: list[str]) -> None:
    unknown = sorted(set(verifiers) - set(VERIFIERS))
    if unknown:
        raise ValueError(f"verifier value(s) {unknown} in the rl split: valid are {', '.join(VERIFIERS)}")


def math_rewards(completions, answers, verifiers) -> list[float | None]:
    return [(1.0 if is_correct(text(c), a) else 0.0) if v == "math" else None
            for c, a, v in zip(completions, answers, verifiers)]


def code_rewards(completions, answers, verifiers) -> list[float | None]:
    from evaluations.sandbox import Limits, run_batch, score_batch

    idx = [i for i, v in enumerate(verifiers) if v == "code"]
    rewards: list[float | None] = [None] * len(completions)
    if not idx:
        return rewards
    problems = [json.loads(answers[i]) for i in idx]
    results = run_batch(humaneval.jobs(problems, [text(completions[i]) for i in idx]), Limits())
    score_batch(results, MAX_INFRA_FRACTION)  # raises TooManyInfraErrors: a broken verifier fails the stage
    for i, r in zip(idx, results):
        rewards[i] = None if r.status == "infra_error" else r.reward
    return rewards


def ifeval_rewards(completions, answers, verifiers) -> list[float | None]:
    rewards: list[float | None] = []
    for c, a, v in zip(completions, answers, verifiers):
        if v != "ifeval":
            rewards.append(None)
            continue
        flags = ifeval.check({"id": "rl", **json.loads(a)}, text(c))
        rewards.append(sum(flags) / len(flags))
    return rewards


def rewards(completions, answers, verifiers) -> list[float | None]:
    """One reward per completion from the verifier its row names (None: excluded, see above)."""
    _check(list(verifiers))
    merged: list[float | None] = [None] * len(completions)
    for fn in (math_rewards, code_rewards, ifeval_rewards):
        for i, r in enumerate(fn(completions, answers, verifiers)):
            if r is not None:
                merged[i] = r
    return merged
