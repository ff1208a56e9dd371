"""The figures on SFT throughput: sft_vs_trl (our stage against a plain TRL script), packing
(packed against unpacked batches) and flops (training FLOP/s against the measured matmul peak).

Each side runs in its own worker process (bench/ours_sft.py, bench/plain_trl_sft.py); each figure
returns a JSON-able dict (see bench.figures.targets.finish) with its raw runs beside the summary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench import machine
from bench.figures.plan import Context
from bench.figures.targets import finish, median


def _tokens_per_s(run: dict) -> dict:
    run["tokens_per_s_wall"] = run["num_tokens"] / run["wall_s"]
    run["tokens_per_s_train"] = run["num_tokens"] / run["train_runtime_s"]
    return run


def _ours(ctx: Context, profile: str, sets: list[str]) -> dict:
    out = ctx.out_dir("ours-sft")
    args = ["--project", str(ctx.ws.root), "--profile", profile, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    try:
        return _tokens_per_s(ctx.worker("ours_sft", *args))
    finally:
        shutil.rmtree(out, ignore_errors=True)  # a checkpoint per run; only the numbers are kept


def _stage_train_rows(ctx: Context, cfg) -> Path:
    """The rows our sft stage trains on (the curated split less the rows it holds out for its eval
    loss), as JSONL for the plain script: the same data in the same order, hence the same batches."""
    from core import training
    from tasks.sft import holdout

    path = ctx.scratch / f"sft-train-rows-{cfg.max_examples}-{cfg.eval_rows}.jsonl"
    if not path.is_file():
        rows = training.load_rows(ctx.ws.root / "data" / "curated" / "sft.jsonl", cfg.max_examples)
        train, _ = holdout(rows, cfg.eval_rows)
        path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in train["messages"]))
    return path


def _plain(ctx: Context, p, steps: int, packing: bool, padding_batches: int = 0) -> dict:
    """The plain TRL script on params `p`'s sft settings, model and seed (what our stage would use)."""
    cfg, seed = p.sft, p.pipeline.seed
    out = ctx.out_dir("plain-sft")
    args = ["--model", ctx.base_checkpoint(p.profile), "--data", str(_stage_train_rows(ctx, cfg)),
            "--max-length", str(cfg.max_length), "--batch", str(cfg.per_device_batch_size),
            "--grad-accum", str(cfg.gradient_accumulation_steps), "--steps", str(steps),
            "--lr", repr(cfg.learning_rate), "--warmup", repr(cfg.warmup_ratio), "--seed", str(seed), "--out", str(out)]
    if packing:
        args.append("--packing")
    if p.model.trains_in_bf16:  # as training.trainer_kwargs sets bf16
        args.append("--bf16")
    if cfg.activation_checkpointing:  # training.trainer_kwargs passes it to TRL explicitly
        args.append("--activation-checkpointing")
    if padding_batches:
        args += ["--padding-batches", str(padding_batches)]
    try:
        return _tokens_per_s(ctx.worker("plain_trl_sft", *args))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _phases(runs) -> dict[str, float]:
    """Median seconds per timed part of a worker's body, plus what no part covers."""
    runs = list(runs)
    out = {k: median(r["phases"].get(k, {"s": 0.0})["s"] for r in runs) for k in runs[0]["phases"]}
    out["(not in a timed part)"] = median(r["untimed_s"] for r in runs)
    return out


def _ratios(a: dict, b: dict) -> dict:
    """a / b in tokens/s, of the training loop and of the whole worker body."""
    return {"ratio_train": a["tokens_per_s_train"] / b["tokens_per_s_train"],
            "ratio_wall": a["tokens_per_s_wall"] / b["tokens_per_s_wall"]}


def _sft_sets(ctx: Context) -> list[str]:
    return [f"sft.max_steps={ctx.plan.sft_steps}"] if ctx.plan.sft_steps else []


def sft_vs_trl(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    sets = _sft_sets(ctx)
    p = ctx.params(profile, sets)
    pairs = []
    for rep in range(ctx.plan.reps):
        # Back to back, the order alternating per repetition, so drift in machine load is shared.
        if rep % 2 == 0:
            ours = _ours(ctx, profile, sets)
            plain = _plain(ctx, p, p.sft.max_steps, packing=False)
        else:
            plain = _plain(ctx, p, p.sft.max_steps, packing=False)
            ours = _ours(ctx, profile, sets)
        pairs.append({"ours": ours, "plain": plain, "load": machine.load(), **_ratios(ours, plain)})
        ctx.ours_sft.append(ours)
    return finish("sft_vs_trl", median(x["ratio_wall"] for x in pairs), "x", profile=profile,
                  summary=_sft_vs_trl_summary(p, pairs), runs=pairs)


def _sft_vs_trl_summary(p, pairs: list[dict]) -> dict:
    def both(key: str) -> dict:
        return {f"{side}_{key}": median(x[side][key] for x in pairs) for side in ("ours", "plain")}

    return {
        "steps": p.sft.max_steps, "batch": p.sft.per_device_batch_size, "max_length": p.sft.max_length,
        "model_dtype": p.model.dtype, "plain_bf16": [x["plain"]["bf16"] for x in pairs],
        "activation_checkpointing": p.sft.activation_checkpointing,
        "plain_activation_checkpointing": [x["plain"].get("activation_checkpointing") for x in pairs],
        "ratio_wall": median(x["ratio_wall"] for x in pairs),
        "ratio_train": median(x["ratio_train"] for x in pairs),
        **both("tokens_per_s_wall"),
        **both("tokens_per_s_train"),
        # Outside the training loop: loading data and model, building the trainer, saving (+ for
        # ours: the weight snapshot and parameter-change metric).
        **{f"{side}_outside_loop_s": median(x[side]["wall_s"] - x[side]["train_runtime_s"] for x in pairs)
           for side in ("ours", "plain")},
        # Same data order and tokenisation: both must have seen the same number of tokens.
        "same_tokens": all(x["ours"]["num_tokens"] == x["plain"]["num_tokens"] for x in pairs),
        "num_tokens": pairs[0]["ours"]["num_tokens"],
        "ours_phases_s": _phases(x["ours"] for x in pairs),
        "plain_phases_s": _phases(x["plain"] for x in pairs),
        "ours_eval_rows": p.sft.eval_rows,
        "ours_save_steps": p.sft.save_steps,
    }


def packing_in_stage() -> bool:
    """Whether our sft stage has a `packing` setting (`sft.packing`)."""
    import dataclasses

    from core.config import SFTConfig

    return "packing" in {f.name for f in dataclasses.fields(SFTConfig)}


def packing(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    steps = ctx.plan.packing_steps
    p = ctx.params(profile, [f"sft.max_steps={steps}"])
    ours = packing_in_stage()

    def one(packed: bool, padding_batches: int = 0) -> dict:
        if ours:
            return _ours(ctx, profile, [f"sft.max_steps={steps}", f"sft.packing={str(packed).lower()}"])
        return _plain(ctx, p, steps, packed, padding_batches)

    pairs = []
    for rep in range(ctx.plan.reps):
        measure_padding = steps if rep == 0 and not ours else 0  # untimed, after training
        order = (False, True) if rep % 2 == 0 else (True, False)
        done = {packed: one(packed, measure_padding) for packed in order}
        pairs.append({"unpacked": done[False], "packed": done[True], "load": machine.load(),
                      **_ratios(done[True], done[False])})
    if ours:  # the stage does not expose its dataloader: measure padding with TRL's, same settings
        padding = {"unpacked": _plain(ctx, p, 1, False, steps)["padding"],
                   "packed": _plain(ctx, p, 1, True, steps)["padding"]}
    else:
        padding = {"unpacked": pairs[0]["unpacked"]["padding"], "packed": pairs[0]["packed"]["padding"]}
    summary = {
        "implementation": "our sft stage (sft.packing)" if ours else
                          "plain TRL SFTTrainer (SFTConfig.packing=True, BFD, padding-free); sft.packing not in our stage yet",
        "steps": steps, "batch": p.sft.per_device_batch_size, "max_length": p.sft.max_length,
        "ratio_train": median(x["ratio_train"] for x in pairs),
        "ratio_wall": median(x["ratio_wall"] for x in pairs),
        **{f"{side}_tokens_per_s_train": median(x[side]["tokens_per_s_train"] for x in pairs)
           for side in ("unpacked", "packed")},
        **{f"{side}_tokens_per_step": median(x[side]["num_tokens"] / x[side]["steps"] for x in pairs)
           for side in ("unpacked", "packed")},
        "padding_fraction_unpacked": padding["unpacked"]["fraction"],
        "padding_fraction_packed": padding["packed"]["fraction"],
        "padding": padding,
        # If time were proportional to token slots, packing could gain at most 1 / (1 - padding).
        "slot_bound_ratio": 1 / (1 - padding["unpacked"]["fraction"]),
    }
    return finish("packing", summary["ratio_train"], "x", profile=profile, summary=summary, runs=pairs)


def flops(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    if not ctx.ours_sft:  # sft_vs_trl not selected: one run of our stage for the training rate
        ctx.ours_sft.append(_ours(ctx, profile, _sft_sets(ctx)))
    peaks = [ctx.worker("matmul_peak", "--sizes", ctx.plan.matmul_sizes, "--min-seconds", str(ctx.plan.matmul_seconds))
             for _ in range(ctx.plan.reps)]
    peak = {d: max(x["dtypes"][d]["peak_flops_per_s"] for x in peaks) for d in ("float32", "bfloat16")}
    params = ctx.ours_sft[0]["params"]
    tokens_per_s = median(r["tokens_per_s_train"] for r in ctx.ours_sft)
    achieved = 6 * params * tokens_per_s
    summary = {
        "params": params, "model_dtype": ctx.params(profile).model.dtype, "autocast": ctx.params(profile).model.autocast,
        "train_tokens_per_s": tokens_per_s, "achieved_flops_per_s": achieved,
        "peak_fp32_flops_per_s": peak["float32"], "peak_bf16_flops_per_s": peak["bfloat16"],
        "pct_of_fp32_peak": 100 * achieved / peak["float32"], "pct_of_bf16_peak": 100 * achieved / peak["bfloat16"],
        "fp32_peak_over_bf16_peak": peak["float32"] / peak["bfloat16"],
        "sft_runs": len(ctx.ours_sft), "torch_threads": peaks[0]["torch_threads"],
    }
    return finish("flops", summary["pct_of_bf16_peak"], "%", profile=profile, summary=summary, matmul=peaks)
