"""The generation_batching figure: core/generation.py batched against one prompt at a time, in
one worker process (bench/generation_speed.py)."""

from __future__ import annotations

from bench.figures.plan import Context
from bench.figures.targets import finish, median


def generation_batching(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    batch = ctx.params(profile).evaluate.batch_size
    raw = ctx.worker("generation_speed", "--project", str(ctx.ws.root), "--profile", profile,
                     "--prompts", str(ctx.plan.gen_prompts), "--max-new-tokens", str(ctx.plan.gen_max_new_tokens),
                     "--batch-size", str(batch), "--reps", str(ctx.plan.reps))
    reps = raw["reps"]
    for r in reps:
        r["ratio"] = r["batched"]["tokens_per_s"] / r["one_by_one"]["tokens_per_s"]
    summary = {
        "prompts": raw["prompts"], "max_new_tokens": raw["max_new_tokens"], "batch_size": batch,
        "ratio": median(r["ratio"] for r in reps),
        "batched_tokens_per_s": median(r["batched"]["tokens_per_s"] for r in reps),
        "one_by_one_tokens_per_s": median(r["one_by_one"]["tokens_per_s"] for r in reps),
        "batched_slot_use": median(r["batched"]["slot_use"] for r in reps),
        "torch_threads": raw["torch_threads"],
    }
    return finish("generation_batching", summary["ratio"], "x", profile=profile, summary=summary, runs=reps)
