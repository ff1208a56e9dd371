"""The seven figures of the benchmark record: what each one runs, and how its repetitions are
summarised (medians) and compared with its target.

Each figure function returns a JSON-able dict with `headline` (the number the table shows, with
its unit), `target` (or None) and `verdict`; its raw repetitions are kept beside the summary so
that every median can be recomputed from the results file.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import iteration_speed, machine
from bench.iteration_speed import BenchError
from bench.workspace import Workspace

# Issue 9's acceptance targets: (comparison, value, unit). One copy; the results file carries it.
TARGETS = {
    "2": ("<=", 5.0, "%", "default"),  # orchestration + tracking overhead, default profile
    "3": ("<=", 10.0, "s", None),  # rerun wall time minus the stage's own compute
    "4": (">=", 0.95, "x", None),  # ours / plain TRL tokens/s
    "5": (">=", 2.0, "x", None),  # packed / unpacked tokens/s
    "6": (">=", 5.0, "x", None),  # batched / one-by-one tokens/s
    "7": (">=", 30.0, "%", None),  # achieved training FLOP/s / bf16 matmul peak
}
TITLES = {
    "1": "Iteration wall time, per stage and in total",
    "2": "Orchestration + tracking overhead (flow wall - stage compute) / stage compute",
    "3": "Rerun of one failed stage: rerun wall - stage compute (and proof upstream did not run)",
    "4": "SFT tokens/s: our sft stage / plain TRL SFTTrainer script",
    "5": "SFT tokens/s: packed (padding-free) / unpacked",
    "6": "Generation tokens/s: batched / one-by-one",
    "7": "Training FLOP/s (6 x params x tokens/s) / bf16 matmul peak",
}
RERUN_STAGE = "reason"  # the stage failed on purpose and re-run in figure 3


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run. quick: the tiny profile, a smoke test in minutes on a busy
    machine; full: the default profile (SmolLM2-135M), about an hour and a half on 2 cores."""

    mode: str
    profile: str  # figures 1 and 3-7
    overhead_profiles: tuple[str, ...]  # figure 2
    reps: int  # repetitions of figures 3-7 and of the tiny-profile iterations
    iteration_reps: int  # repetitions of a non-tiny full iteration (~35 min each on the default profile)
    sft_steps: int | None  # figure 4; None: the profile's sft.max_steps
    packing_steps: int  # figure 5
    gen_prompts: int  # figure 6
    gen_max_new_tokens: int
    matmul_sizes: str  # figure 7
    matmul_seconds: float
    timeout_s: int  # one process (an iteration, a worker)


QUICK = Plan("quick", "tiny", ("tiny",), reps=1, iteration_reps=1, sft_steps=None, packing_steps=4, gen_prompts=8,
             gen_max_new_tokens=16, matmul_sizes="256,512,1024", matmul_seconds=0.3, timeout_s=1200)
# sft_steps 30: half the default profile's 60; figure 4 runs 2 x reps SFTs back to back (~3.3 min each).
FULL = Plan("full", "default", ("tiny", "default"), reps=3, iteration_reps=1, sft_steps=30, packing_steps=10,
            gen_prompts=16, gen_max_new_tokens=128, matmul_sizes="1024,2048,4096", matmul_seconds=2.0, timeout_s=3600)


@dataclass
class Context:
    plan: Plan
    ws: Workspace
    scratch: Path
    iterations: dict[str, list[dict]] = field(default_factory=dict)  # profile -> full-iteration records
    iteration_ws: dict[str, Workspace] = field(default_factory=dict)  # profile -> workspace of its last one
    ours_sft: list[dict] = field(default_factory=list)  # figure 4's runs of our stage (figure 7 reads them)
    base: dict[str, str] = field(default_factory=dict)  # profile -> base checkpoint dir
    _n: int = 0

    def params(self, profile: str, sets: list[str] | tuple[str, ...] = ()):
        from core.config import load_params

        return load_params(self.ws.root / "params.yaml", profile, list(sets))

    def worker(self, module: str, *args: str) -> dict:
        """Run bench/<module>.py in its own process in the workspace; its JSON result."""
        self._n += 1
        result = self.scratch / f"{self._n:03d}-{module}.json"
        proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args, "--result", str(result)],
                              cwd=self.ws.root, env=self.ws.env(), capture_output=True, text=True,
                              timeout=self.plan.timeout_s)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BenchError(f"bench.{module} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())

    def out_dir(self, name: str) -> Path:
        self._n += 1
        return self.scratch / f"{self._n:03d}-{name}"

    def base_checkpoint(self, profile: str) -> str:
        """The profile's base checkpoint, converted/built before any timer starts (one-time cost)."""
        if profile not in self.base:
            code = ("import sys; from posttrain import models; from core.config import load_params; "
                    "p = load_params('params.yaml', sys.argv[1]); print(models.base_model(p.model, p.pipeline.seed))")
            proc = subprocess.run([sys.executable, "-c", code, profile], cwd=self.ws.root, env=self.ws.env(),
                                  capture_output=True, text=True, timeout=self.plan.timeout_s)
            if proc.returncode != 0:
                raise BenchError(f"base checkpoint of profile '{profile}' failed:\n{proc.stderr[-3000:]}")
            self.base[profile] = proc.stdout.strip().splitlines()[-1]
        return self.base[profile]

    def full_iterations(self, profile: str) -> list[dict]:
        """Full iterations of `profile`, each in a fresh runs dir (nothing reused); run once per
        bench run and shared by figures 1, 2 and 3."""
        if profile not in self.iterations:
            self.base_checkpoint(profile)
            reps = self.plan.reps if profile == "tiny" and self.plan.mode == "full" else self.plan.iteration_reps
            records = []
            for rep in range(reps):
                ws = self.ws.with_runs(f"runs-{profile}-{rep}")
                records.append(iteration_speed.run_iteration(ws, profile, self.plan.timeout_s))
                self.iteration_ws[profile] = ws
            self.iterations[profile] = records
        return self.iterations[profile]


def median(values) -> float:
    return statistics.median(list(values))


def verdict(number: str, value: float) -> dict | None:
    """attainment: value / target for a floor, target / value for a ceiling (1 = on target,
    0.5 = halfway there, i.e. missed by a factor of 2)."""
    if number not in TARGETS:
        return None
    op, target, unit, _ = TARGETS[number]
    if op == ">=":
        met, attainment = value >= target, value / target
    else:
        met, attainment = value <= target, (target / value if value > 0 else float("inf"))
    return {"met": met, "attainment": attainment}


def target(number: str) -> dict | None:
    if number not in TARGETS:
        return None
    op, value, unit, profile = TARGETS[number]
    return {"op": op, "value": value, "unit": unit, "profile": profile}


def _finish(number: str, headline: float, unit: str, **rest) -> dict:
    return {"title": TITLES[number], "headline": {"value": headline, "unit": unit}, "target": target(number),
            "verdict": verdict(number, headline), **rest}


# -- figures 1-3: iterations ---------------------------------------------------------------------

def _iteration_summary(records: list[dict]) -> dict:
    names = [s["stage"] for s in records[0]["stages"]]
    stages = {n: {"run_s": median(s["run_s"] for r in records for s in r["stages"] if s["stage"] == n),
                  "compute_s": median(s["compute_s"] for r in records for s in r["stages"] if s["stage"] == n)}
              for n in names}
    keys = ("command_wall_s", "flow_wall_s", "compute_sum_s", "overhead_flow_pct", "overhead_command_pct")
    parts = records[0]["outside_compute"].keys()
    tasks = [t["task"] for t in records[0]["prefect_tasks"]]
    return {
        "reps": len(records),
        "stages": stages,
        **{k: median(r[k] for r in records) for k in keys},
        "outside_compute": {k: median(r["outside_compute"][k] for r in records) for k in parts},
        "prefect_tasks": {t: median(x["wall_s"] for r in records for x in r["prefect_tasks"] if x["task"] == t)
                          for t in dict.fromkeys(tasks)},
        "compute_source": sorted({s["compute_source"] for r in records for s in r["stages"]}),
        "gates_failed": [r["gate_failed"] for r in records if r.get("gate_failed")],
    }


def figure_1(ctx: Context) -> dict:
    records = ctx.full_iterations(ctx.plan.profile)
    summary = _iteration_summary(records)
    return _finish("1", summary["command_wall_s"], "s", profile=ctx.plan.profile, summary=summary, runs=records)


def figure_2(ctx: Context) -> dict:
    per_profile = {p: _iteration_summary(ctx.full_iterations(p)) for p in ctx.plan.overhead_profiles}
    return _finish("2", per_profile[ctx.plan.profile]["overhead_flow_pct"], "%", profile=ctx.plan.profile,
                   profiles={p: {k: s[k] for k in ("reps", "command_wall_s", "flow_wall_s", "compute_sum_s",
                                                    "overhead_flow_pct", "overhead_command_pct", "outside_compute",
                                                    "prefect_tasks", "compute_source")}
                             for p, s in per_profile.items()},
                   runs={p: ctx.iterations[p] for p in per_profile})


def figure_3(ctx: Context) -> dict:
    from pipeline import dag

    profile = ctx.plan.profile
    full = ctx.full_iterations(profile)
    ws = ctx.iteration_ws[profile]
    cfg = ctx.params(profile).reason
    failed = iteration_speed.fail_reason(ws, profile, cfg.num_generations, ctx.plan.timeout_s)
    upstream = [n for n in dag.needed_by([RERUN_STAGE]) if n != "base"]  # base is not a tracked stage
    reruns = []
    for rep in range(ctx.plan.reps):
        # The fix restores the batch size; a learning rate new to this workspace makes the stage's
        # version key new, so its body runs (a key seen before would be reused, not re-run).
        fix = [f"reason.per_device_batch_size={cfg.per_device_batch_size}",
               f"reason.learning_rate={cfg.learning_rate * (1 + (rep + 1) / 1000):.6g}"]
        reruns.append(iteration_speed.rerun(ws, failed, RERUN_STAGE, fix, upstream, ctx.plan.timeout_s))
    extra = [r["command_wall_s"] - r["stage_compute_s"] for r in reruns]
    full_wall = median(r["command_wall_s"] for r in full)
    rerun_wall = median(r["command_wall_s"] for r in reruns)
    summary = {
        "stage": RERUN_STAGE,
        "failed_iteration": failed,
        "rerun_command_wall_s": rerun_wall,
        "rerun_flow_wall_s": median(r["flow_wall_s"] for r in reruns),
        "stage_compute_s": median(r["stage_compute_s"] for r in reruns),
        "rerun_minus_stage_s": median(extra),
        "full_iteration_command_wall_s": full_wall,
        "rerun_over_full": rerun_wall / full_wall,
        "stage_compute_in_full_iteration_s": median(s["compute_s"] for r in full for s in r["stages"]
                                                     if s["stage"] == RERUN_STAGE),
        "outside_compute": {k: median(r["outside_compute"][k] for r in reruns) for k in reruns[0]["outside_compute"]},
        "prefect_tasks": {t["task"]: median(x["wall_s"] for r in reruns for x in r["prefect_tasks"] if x["task"] == t["task"])
                          for t in reruns[0]["prefect_tasks"]},
        "proof_ok": all(r["proof"]["ok"] for r in reruns),
        "proof": reruns[0]["proof"],
        "compute_source": sorted({s["compute_source"] for r in reruns for s in r["stages"]}),
    }
    if not summary["proof_ok"]:
        raise BenchError(f"a rerun executed more than '{RERUN_STAGE}': {[r['proof'] for r in reruns]}")
    return _finish("3", summary["rerun_minus_stage_s"], "s", profile=profile, summary=summary, runs=reruns)


# -- figures 4, 5, 7: SFT throughput --------------------------------------------------------------

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
        train, _ = holdout(training.load_rows(ctx.ws.root / "data" / "curated" / "sft.jsonl", cfg.max_examples), cfg.eval_rows)
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
    if p.model.dtype == "bfloat16":  # training.trainer_kwargs: bf16 from model.dtype
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


def figure_4(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    sets = [f"sft.max_steps={ctx.plan.sft_steps}"] if ctx.plan.sft_steps else []
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
        pairs.append({"ours": ours, "plain": plain, "load": machine.load(),
                      "ratio_wall": ours["tokens_per_s_wall"] / plain["tokens_per_s_wall"],
                      "ratio_train": ours["tokens_per_s_train"] / plain["tokens_per_s_train"]})
        ctx.ours_sft.append(ours)
    summary = {
        "steps": p.sft.max_steps, "batch": p.sft.per_device_batch_size, "max_length": p.sft.max_length,
        "model_dtype": p.model.dtype, "plain_bf16": [x["plain"]["bf16"] for x in pairs],
        "activation_checkpointing": p.sft.activation_checkpointing,
        "plain_activation_checkpointing": [x["plain"].get("activation_checkpointing") for x in pairs],
        "ratio_wall": median(x["ratio_wall"] for x in pairs),
        "ratio_train": median(x["ratio_train"] for x in pairs),
        "ours_tokens_per_s_wall": median(x["ours"]["tokens_per_s_wall"] for x in pairs),
        "plain_tokens_per_s_wall": median(x["plain"]["tokens_per_s_wall"] for x in pairs),
        "ours_tokens_per_s_train": median(x["ours"]["tokens_per_s_train"] for x in pairs),
        "plain_tokens_per_s_train": median(x["plain"]["tokens_per_s_train"] for x in pairs),
        # Outside the training loop: loading data and model, building the trainer, saving (+ for
        # ours: the weight snapshot and parameter-change metric).
        "ours_outside_loop_s": median(x["ours"]["wall_s"] - x["ours"]["train_runtime_s"] for x in pairs),
        "plain_outside_loop_s": median(x["plain"]["wall_s"] - x["plain"]["train_runtime_s"] for x in pairs),
        # Same data order and tokenisation: both must have seen the same number of tokens.
        "same_tokens": all(x["ours"]["num_tokens"] == x["plain"]["num_tokens"] for x in pairs),
        "num_tokens": pairs[0]["ours"]["num_tokens"],
        "ours_phases_s": _phases(x["ours"] for x in pairs),
        "plain_phases_s": _phases(x["plain"] for x in pairs),
        "ours_eval_rows": p.sft.eval_rows,
        "ours_save_steps": p.sft.save_steps,
    }
    return _finish("4", summary["ratio_wall"], "x", profile=profile, summary=summary, runs=pairs)


def packing_in_stage() -> bool:
    """Whether our sft stage has a `packing` setting yet (another change adds `sft.packing`)."""
    import dataclasses

    from core.config import SFTConfig

    return "packing" in {f.name for f in dataclasses.fields(SFTConfig)}


def figure_5(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    steps = ctx.plan.packing_steps
    p = ctx.params(profile, [f"sft.max_steps={steps}"])
    ours = packing_in_stage()

    def one(packing: bool, padding_batches: int = 0) -> dict:
        if ours:
            return _ours(ctx, profile, [f"sft.max_steps={steps}", f"sft.packing={str(packing).lower()}"])
        return _plain(ctx, p, steps, packing, padding_batches)

    pairs = []
    for rep in range(ctx.plan.reps):
        measure_padding = steps if rep == 0 and not ours else 0  # untimed, after training
        order = (False, True) if rep % 2 == 0 else (True, False)
        done = {packing: one(packing, measure_padding) for packing in order}
        pairs.append({"unpacked": done[False], "packed": done[True], "load": machine.load(),
                      "ratio_train": done[True]["tokens_per_s_train"] / done[False]["tokens_per_s_train"],
                      "ratio_wall": done[True]["tokens_per_s_wall"] / done[False]["tokens_per_s_wall"]})
    if ours:  # the stage does not expose its dataloader: measure padding with TRL's, same settings
        padding = {"unpacked": _plain(ctx, p, 1, False, steps)["padding"],
                   "packed": _plain(ctx, p, 1, True, steps)["padding"]}
    else:
        padding = {"unpacked": pairs[0]["unpacked"]["padding"], "packed": pairs[0]["packed"]["padding"]}
    summary = {
        "implementation": "our sft stage (sft.packing)" if ours else "plain TRL SFTTrainer (SFTConfig.packing=True, "
                                                                    "BFD, padding-free); sft.packing not in our stage yet",
        "steps": steps, "batch": p.sft.per_device_batch_size, "max_length": p.sft.max_length,
        "ratio_train": median(x["ratio_train"] for x in pairs),
        "ratio_wall": median(x["ratio_wall"] for x in pairs),
        "unpacked_tokens_per_s_train": median(x["unpacked"]["tokens_per_s_train"] for x in pairs),
        "packed_tokens_per_s_train": median(x["packed"]["tokens_per_s_train"] for x in pairs),
        "unpacked_tokens_per_step": median(x["unpacked"]["num_tokens"] / x["unpacked"]["steps"] for x in pairs),
        "packed_tokens_per_step": median(x["packed"]["num_tokens"] / x["packed"]["steps"] for x in pairs),
        "padding_fraction_unpacked": padding["unpacked"]["fraction"],
        "padding_fraction_packed": padding["packed"]["fraction"],
        "padding": padding,
        # If time were proportional to token slots, packing could gain at most 1 / (1 - padding).
        "slot_bound_ratio": 1 / (1 - padding["unpacked"]["fraction"]),
    }
    return _finish("5", summary["ratio_train"], "x", profile=profile, summary=summary, runs=pairs)


def figure_6(ctx: Context) -> dict:
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
    return _finish("6", summary["ratio"], "x", profile=profile, summary=summary, runs=reps)


def figure_7(ctx: Context) -> dict:
    profile = ctx.plan.profile
    ctx.base_checkpoint(profile)
    if not ctx.ours_sft:  # figure 4 not selected: one run of our stage for the training rate
        sets = [f"sft.max_steps={ctx.plan.sft_steps}"] if ctx.plan.sft_steps else []
        ctx.ours_sft.append(_ours(ctx, profile, sets))
    peaks = [ctx.worker("matmul_peak", "--sizes", ctx.plan.matmul_sizes, "--min-seconds", str(ctx.plan.matmul_seconds))
             for _ in range(ctx.plan.reps)]
    peak = {d: max(x["dtypes"][d]["peak_flops_per_s"] for x in peaks) for d in ("float32", "bfloat16")}
    params = ctx.ours_sft[0]["params"]
    tokens_per_s = median(r["tokens_per_s_train"] for r in ctx.ours_sft)
    achieved = 6 * params * tokens_per_s
    summary = {
        "params": params, "model_dtype": ctx.params(profile).model.dtype,
        "train_tokens_per_s": tokens_per_s, "achieved_flops_per_s": achieved,
        "peak_fp32_flops_per_s": peak["float32"], "peak_bf16_flops_per_s": peak["bfloat16"],
        "pct_of_fp32_peak": 100 * achieved / peak["float32"], "pct_of_bf16_peak": 100 * achieved / peak["bfloat16"],
        "fp32_peak_over_bf16_peak": peak["float32"] / peak["bfloat16"],
        "sft_runs": len(ctx.ours_sft), "torch_threads": peaks[0]["torch_threads"],
    }
    return _finish("7", summary["pct_of_bf16_peak"], "%", profile=profile, summary=summary, matmul=peaks)


FIGURES = {"1": figure_1, "2": figure_2, "3": figure_3, "4": figure_4, "5": figure_5, "6": figure_6, "7": figure_7}
