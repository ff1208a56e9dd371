"""reasoning-gym's basic_arithmetic: expressions to evaluate, the expression and its value as the
worked solution.

SINGLE_STEP (one operation on two 1-2 digit non-negative numbers, "Calculate 47 + 8.") is the rl
split's rung that a 135M policy solves some of the time. GRPO learns only from groups whose
rewards differ; on reasoning-gym's default arithmetic (2-6 terms of up to 4 digits) SmolLM2-135M
fails every sample, so every group has zero reward spread and the stage has nothing to learn from.

One row it produces (`arithmetic_single_step_prompts`, split rl):
    {"id": "reasoning-gym/basic_arithmetic_single_step:7f821cda92cc",
     "prompt": [{"role": "user", "content": "Calculate 74 * 66."}], "answer": "4884", "verifier": "math"}
"""

from __future__ import annotations

from tasks.curate.sources.common import row_id

SINGLE_STEP = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2, operators=("+", "-", "*"),
                   allow_parentheses=False, allow_negation=False)


def problems(n: int, seed: int, single_step: bool = False) -> list[dict]:
    """n items {id, question, answer, cot}: basic_arithmetic at its own defaults, or at SINGLE_STEP."""
    import reasoning_gym as rg

    name, config = ("basic_arithmetic_single_step", SINGLE_STEP) if single_step else ("basic_arithmetic", {})
    return [{"question": x["question"], "answer": str(x["answer"]), "cot": f"{x['metadata']['expression']} = {x['answer']}",
             "id": row_id(f"reasoning-gym/{name}", f"{seed}:{i}")}
            for i, x in enumerate(rg.create_dataset("basic_arithmetic", size=n, seed=seed, **config))]
