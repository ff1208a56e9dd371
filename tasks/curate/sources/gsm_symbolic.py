"""reasoning-gym's gsm_symbolic: grade-school word problems from 85 GSM8K-derived templates, with a
worked solution. Items of one template share most of their words, so training and evaluation use
disjoint templates: every 5th template is held out (sft, preferences, rl train on the others;
eval_math and preferences_eval use only the held-out ones).

One row it produces (`gsm_symbolic_prompts`, split rl):
    {"id": "reasoning-gym/gsm_symbolic:e0a8ae1e1336",
     "prompt": [{"role": "user", "content": "Harper hid 9 dozen eggs in the yard for the Easter egg hunt. Benjamin
                 finds 9 eggs. Isabella finds 2 times as many as Benjamin. Sophia finds 2 less than Isabella, and
                 James finds 0.5 as many as Sophia. How many eggs are still hidden in the yard? Give the result as
                 your final answer. Do not include units."}],
     "answer": "57", "verifier": "math"}
"""

from __future__ import annotations

from tasks.curate.sources.common import row_id

HELD_OUT_TEMPLATE_EVERY = 5


def problems(n: int, seed: int, held_out: bool) -> list[dict]:
    """n items {id, question, answer, cot} from the training (or held-out) templates."""
    import reasoning_gym as rg

    ds = rg.create_dataset("gsm_symbolic", size=n * HELD_OUT_TEMPLATE_EVERY * 3, seed=seed)
    out = []
    for i, template in enumerate(ds.task_indices):
        if (template % HELD_OUT_TEMPLATE_EVERY == 0) != held_out:
            continue
        x = ds[i]
        out.append({"question": x["question"], "answer": str(x["answer"]), "cot": x["metadata"]["answer_cot"],
                    "id": row_id("reasoning-gym/gsm_symbolic", f"{seed}:{i}")})
        if len(out) == n:
            break
    return out
