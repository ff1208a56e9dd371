"""The generation figures, from one worker process (bench/generation_speed.py) that times our
evaluation path batched, one prompt at a time, and plain `model.generate` at the same batch size:

- generation_engine: our path ÷ plain `transformers` `generate` (same checkpoint, prompts, batch);
- generation_batching: our path batched ÷ our path one by one."""

from __future__ import annotations

from bench.figures.plan import Context
from bench.figures.targets import finish, median


def _speeds(ctx: Context) -> dict:
    """The worker's measurements, run once and shared by both figures."""
    if "generation" not in ctx.cache:
        profile = ctx.plan.profile
        ctx.base_checkpoint(profile)
        batch = ctx.params(profile).evaluate.batch_size
        raw = ctx.worker("generation_speed", "--project", str(ctx.ws.root), "--profile", profile,
                         "--prompts", str(ctx.plan.gen_prompts), "--max-new-tokens", str(ctx.plan.gen_max_new_tokens),
                         "--batch-size", str(batch), "--reps", str(ctx.plan.reps))
        for r in raw["reps"]:
            r["engine_vs_plain"] = r["engine"]["tokens_per_s"] / r["plain"]["tokens_per_s"]
            r["batched_vs_one"] = r["engine"]["tokens_per_s"] / r["one_by_one"]["tokens_per_s"]
        ctx.cache["generation"] = raw
    return ctx.cache["generation"]


def _summary(raw: dict) -> dict:
    reps = raw["reps"]
    return {
        "prompts": raw["prompts"], "max_new_tokens": raw["max_new_tokens"], "batch_size": raw["batch_size"],
        "dtype": raw["dtype"], "torch_threads": raw["torch_threads"], "agreement": raw["agreement"],
        **{f"{mode}_tokens_per_s": median(r[mode]["tokens_per_s"] for r in reps) for mode in ("engine", "one_by_one", "plain")},
        "engine_vs_plain": median(r["engine_vs_plain"] for r in reps),
        "batched_vs_one": median(r["batched_vs_one"] for r in reps),
    }


def generation_engine(ctx: Context) -> dict:
    raw = _speeds(ctx)
    s = _summary(raw)
    return finish("generation_engine", s["engine_vs_plain"], "x", profile=ctx.plan.profile, summary=s, runs=raw["reps"])


def generation_batching(ctx: Context) -> dict:
    raw = _speeds(ctx)
    s = _summary(raw)
    return finish("generation_batching", s["batched_vs_one"], "x", profile=ctx.plan.profile, summary=s, runs=raw["reps"])
