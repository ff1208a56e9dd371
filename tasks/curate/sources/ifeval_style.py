r"""IFEval-style data (no package ships it): instruction-following demonstrations for sft and
verifiable prompts for rl, each constraint an if-verifiable checker (evaluations/ifeval.py).
Wordings, tasks and constraint tables are ours (tasks/curate/data/ifeval_demos.json,
ifeval_rl.json), deliberately not those of evaluations/ifeval_prompts.v1.jsonl, which
decontamination would flag.

Demonstrations: a GSM-symbolic problem solved, then a second user turn asking for the same
answer under one constraint, and the rewritten answer; a demo that fails its own checker is not
emitted. RL prompts: a task and one or two constraints, every kwarg a checker uses pinned in the
row (a kwarg left out is drawn at random by the checker, so the reward would not match the
prompt); only checkers in evaluations/ifeval.SUPPORTED (deterministic, no NLTK data).

One row it produces (`ifeval_rl_prompts`, split rl):
    {"id": "posttrain/ifeval_rl:df4cf25c3e96",
     "prompt": [{"role": "user", "content": "Describe what a lighthouse keeper might do on a stormy night.
                 Emphasise at least 1 phrases in markdown italics between single asterisks, like *this*."}],
     "verifier": "ifeval",
     "answer": "{\"instruction_id_list\": [\"detectable_format:number_highlighted_sections\"],
                \"kwargs\": [{\"num_highlights\": 1}]}"}
"""

from __future__ import annotations

import json
import random

from tasks.curate.readers import SourceError
from tasks.curate.schema import assistant, user
from tasks.curate.sources import gsm_symbolic
from tasks.curate.sources.common import row_id, table
from tasks.curate.sources.math_rows import cot_to_answer

# Rewrites of a worked solution that a template cannot express.
TRANSFORMS = {
    "json_steps_answer": lambda t: json.dumps({"steps": t.rsplit("\n", 1)[0], "answer": t.rsplit("{", 1)[-1].rstrip("}.")}),
    "drop_commas": lambda t: t.replace(",", ""),
}


def _rewrite(demo: dict, answer: str) -> str:
    return demo["template"].format(answer=answer) if "template" in demo else TRANSFORMS[demo["transform"]](answer)


def demos(n: int, seed: int) -> list[dict]:
    """Up to n two-turn demonstrations, the constraints taken in turn."""
    from evaluations.ifeval import check

    constraints = table("ifeval_demos.json")  # one per demo, in turn
    out = []
    for k, m in enumerate(gsm_symbolic.problems(n, seed, held_out=False)):
        demo = constraints[k % len(constraints)]
        instruction, kwargs, ask = demo["instruction"], demo["kwargs"], demo["ask"]
        answer = cot_to_answer(m["cot"], m["answer"])
        rewritten = _rewrite(demo, answer)
        if not all(check({"id": m["id"], "prompt": ask, "instruction_id_list": [instruction], "kwargs": [kwargs]}, rewritten)):
            continue
        out.append({"id": m["id"] + f":if:{instruction}",
                    "messages": user(m["question"]) + assistant(answer) + user(ask) + assistant(rewritten)})
    return out


def _draw(spec, rng: random.Random, lists: dict):
    """One kwarg of a constraint: a constant, or {choice | sample (with k) | randint} drawn with rng.
    A pool named by a string is one of the table's lists (words, end_phrases)."""
    if not isinstance(spec, dict):
        return spec
    if "randint" in spec:
        return rng.randint(*spec["randint"])
    pool = spec.get("choice", spec.get("sample"))
    pool = lists[pool] if isinstance(pool, str) else pool
    return rng.choice(pool) if "choice" in spec else rng.sample(pool, spec["k"])


def _wording(constraint: dict, kwargs: dict) -> str:
    """The constraint said in words; a wording per `relation` where the relation changes the sentence."""
    wording = constraint["wording"]
    return (wording[kwargs["relation"]] if isinstance(wording, dict) else wording).format(**kwargs)


def _pick(rng: random.Random, constraints: dict, clashes: set[frozenset]) -> list[str]:
    """One constraint id, and about a third of the time a second one that combines with it (a
    constraint marked `alone`, JSON output, combines with nothing: every other adds text outside it)."""
    ids = sorted(constraints)
    chosen = [rng.choice(ids)]
    if rng.random() < 0.35 and not constraints[chosen[0]].get("alone"):
        second = rng.choice(ids)
        if second != chosen[0] and not constraints[second].get("alone") and frozenset((chosen[0], second)) not in clashes:
            chosen.append(second)
    return chosen


def rl_prompts(n: int, seed: int) -> list[dict]:
    """n distinct prompts. Deterministic in (n, seed)."""
    t = table("ifeval_rl.json")
    constraints = t["constraints"]
    # Pairs never combined: they cannot both be satisfied, or their checkers read each other's markup.
    clashes = {frozenset(p) for p in t["clashes"]}
    rng = random.Random(seed)
    out, seen = [], set()
    for attempt in range(n * 50):
        if len(out) == n:
            break
        task = rng.choice(t["tasks"])
        chosen = _pick(rng, constraints, clashes)
        kwargs = [{k: _draw(spec, rng, t) for k, spec in constraints[i]["kwargs"].items()} for i in chosen]
        prompt = " ".join([task] + [_wording(constraints[i], k) for i, k in zip(chosen, kwargs)])
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append({"id": row_id("posttrain/ifeval_rl", f"{seed}:{attempt}"), "prompt": user(prompt), "verifier": "ifeval",
                    "answer": json.dumps({"instruction_id_list": chosen, "kwargs": kwargs})})
    if len(out) < n:
        raise SourceError(f"ifeval_rl_prompts: only {len(out)} distinct prompts for limit {n}. Fix: lower `limit` or add tasks "
                          f"to tasks/curate/data/ifeval_rl.json.")
    return out
