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

`verdicts` gives each sample's reward with its reason (REASONS per verifier), so a stage can count
why samples were paid or refused: math the evaluations.math_score.verdict reasons (hedged,
retracted, degenerate, ... score 0), code the sandbox status, ifeval the
evaluations.ifeval.check_with_reason reasons (empty, degenerate and echo replies follow nothing).
With `prompts` (TRL's prompts, chat turns or text) a reply that only restates its prompt is caught
(math and ifeval "echo"); without them that check is skipped. `rewards` is the reward column of it.
"""

from __future__ import annotations

import json

from evaluations import humaneval, ifeval, math_score

VERIFIERS = ("math", "code", "ifeval")
MAX_INFRA_FRACTION = 0.25  # sandbox infra errors tolerated per batch before the rewards are not trusted
CODE_STATUSES = ("passed", "failed", "timeout", "error", "infra_error")  # evaluations.sandbox.results.Status
REASONS = {"math": math_score.REASONS, "code": CODE_STATUSES, "ifeval": ifeval.REASONS}

Verdict = tuple[float | None, str]


def text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def prompt_text(prompt) -> str | None:
    """The user's words of a prompt given as chat turns or as text (None: no prompt)."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt if m.get("role", "user") == "user")


def _check(verifiers: list[str]) -> None:
    unknown = sorted(set(verifiers) - set(VERIFIERS))
    if unknown:
        raise ValueError(f"verifier value(s) {unknown} in the rl split: valid are {', '.join(VERIFIERS)}")


def math_verdicts(completions, answers, verifiers, prompts, require_format: bool = False) -> list[Verdict | None]:
    out: list[Verdict | None] = []
    for c, a, v, p in zip(completions, answers, verifiers, prompts):
        if v != "math":
            out.append(None)
            continue
        correct, why = math_score.verdict(text(c), a, require_format=require_format, prompt=prompt_text(p))
        out.append((1.0 if correct else 0.0, why))
    return out


def code_verdicts(completions, answers, verifiers) -> list[Verdict | None]:
    from evaluations.sandbox import Limits, run_batch, score_batch

    idx = [i for i, v in enumerate(verifiers) if v == "code"]
    out: list[Verdict | None] = [None] * len(completions)
    if not idx:
        return out
    problems = [json.loads(answers[i]) for i in idx]
    results = run_batch(humaneval.jobs(problems, [text(completions[i]) for i in idx]), Limits())
    score_batch(results, MAX_INFRA_FRACTION)  # raises TooManyInfraErrors: a broken verifier fails the stage
    for i, r in zip(idx, results):
        out[i] = (None if r.status == "infra_error" else r.reward, r.status)
    return out


def ifeval_verdicts(completions, answers, verifiers, prompts) -> list[Verdict | None]:
    out: list[Verdict | None] = []
    for c, a, v, p in zip(completions, answers, verifiers, prompts):
        if v != "ifeval":
            out.append(None)
            continue
        flags, why = ifeval.check_with_reason({"id": "rl", **json.loads(a)}, text(c), prompt=prompt_text(p))
        out.append((sum(flags) / len(flags), why))
    return out


def verdicts(completions, answers, verifiers, prompts=None, *, require_format: bool = False) -> list[Verdict]:
    """(reward, reason) per completion from the verifier its row names; reward None: excluded (see above).
    require_format: a math reply without a \\boxed{} answer scores 0 ("unformatted")."""
    verifiers = list(verifiers)
    _check(verifiers)
    prompts = list(prompts) if prompts is not None else [None] * len(completions)
    merged: list[Verdict | None] = [None] * len(completions)
    for got in (math_verdicts(completions, answers, verifiers, prompts, require_format),
                code_verdicts(completions, answers, verifiers),
                ifeval_verdicts(completions, answers, verifiers, prompts)):
        for i, x in enumerate(got):
            if x is not None:
                merged[i] = x
    return [x if x is not None else (None, "") for x in merged]


def rewards(completions, answers, verifiers, prompts=None) -> list[float | None]:
    """One reward per completion from the verifier its row names (None: excluded, see above)."""
    return [r for r, _ in verdicts(completions, answers, verifiers, prompts)]
