"""The figures read from whole iterations through the real CLI: iteration_time, overhead and rerun.

Each returns a JSON-able dict (see bench.figures.targets.finish) with its raw records beside the
summary, so that every median can be recomputed from the results file.
"""

from __future__ import annotations

from bench import iteration_speed
from bench.figures.plan import Context
from bench.figures.targets import finish, median
from bench.iteration_speed import BenchError

RERUN_STAGE = "reason"  # the stage failed on purpose and re-run by the rerun figure


def _time_breakdown(records: list[dict]) -> dict:
    """Medians of the time outside stage compute and of each Prefect task, over `records`."""
    return {
        "outside_compute": {k: median(r["outside_compute"][k] for r in records)
                            for k in records[0]["outside_compute"]},
        "prefect_tasks": {t["task"]: median(x["wall_s"] for r in records for x in r["prefect_tasks"]
                                            if x["task"] == t["task"])
                          for t in records[0]["prefect_tasks"]},
        "compute_source": sorted({s["compute_source"] for r in records for s in r["stages"]}),
    }


def _iteration_summary(records: list[dict]) -> dict:
    names = [s["stage"] for s in records[0]["stages"]]
    stages = {n: {"run_s": median(s["run_s"] for r in records for s in r["stages"] if s["stage"] == n),
                  "compute_s": median(s["compute_s"] for r in records for s in r["stages"] if s["stage"] == n)}
              for n in names}
    keys = ("command_wall_s", "flow_wall_s", "compute_sum_s", "overhead_flow_pct", "overhead_command_pct")
    return {
        "reps": len(records),
        "stages": stages,
        **{k: median(r[k] for r in records) for k in keys},
        **_time_breakdown(records),
        "gates_failed": [r["gate_failed"] for r in records if r.get("gate_failed")],
    }


def iteration_time(ctx: Context) -> dict:
    records = ctx.full_iterations(ctx.plan.profile)
    summary = _iteration_summary(records)
    return finish("iteration_time", summary["command_wall_s"], "s", profile=ctx.plan.profile, summary=summary,
                  runs=records)


def overhead(ctx: Context) -> dict:
    per_profile = {p: _iteration_summary(ctx.full_iterations(p)) for p in ctx.plan.overhead_profiles}
    kept = ("reps", "command_wall_s", "flow_wall_s", "compute_sum_s", "overhead_flow_pct", "overhead_command_pct",
            "outside_compute", "prefect_tasks", "compute_source")
    return finish("overhead", per_profile[ctx.plan.profile]["overhead_flow_pct"], "%", profile=ctx.plan.profile,
                  profiles={p: {k: s[k] for k in kept} for p, s in per_profile.items()},
                  runs={p: ctx.iterations[p] for p in per_profile})


def rerun(ctx: Context) -> dict:
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
    full_wall = median(r["command_wall_s"] for r in full)
    rerun_wall = median(r["command_wall_s"] for r in reruns)
    breakdown = _time_breakdown(reruns)
    summary = {
        "stage": RERUN_STAGE,
        "failed_iteration": failed,
        "rerun_command_wall_s": rerun_wall,
        "rerun_flow_wall_s": median(r["flow_wall_s"] for r in reruns),
        "stage_compute_s": median(r["stage_compute_s"] for r in reruns),
        "rerun_minus_stage_s": median(r["command_wall_s"] - r["stage_compute_s"] for r in reruns),
        "full_iteration_command_wall_s": full_wall,
        "rerun_over_full": rerun_wall / full_wall,
        "stage_compute_in_full_iteration_s": median(s["compute_s"] for r in full for s in r["stages"]
                                                     if s["stage"] == RERUN_STAGE),
        "outside_compute": breakdown["outside_compute"],
        "prefect_tasks": breakdown["prefect_tasks"],
        "proof_ok": all(r["proof"]["ok"] for r in reruns),
        "proof": reruns[0]["proof"],
        "compute_source": breakdown["compute_source"],
    }
    if not summary["proof_ok"]:
        raise BenchError(f"a rerun executed more than '{RERUN_STAGE}': {[r['proof'] for r in reruns]}")
    return finish("rerun", summary["rerun_minus_stage_s"], "s", profile=profile, summary=summary, runs=reruns)
