"""full-iteration: the post-training DAG as a Prefect flow. It only wires stage functions.

    posttrain run [--profile tiny] [--set sft.learning_rate=1e-4 ...]

curate -> sft -> reward_model (from sft) -> align (from sft) -> reason -> safety
       -> evaluate (base and final) -> gate. A failing task stops everything downstream and the
flow run ends Failed naming the stage. Prefect's own result caching is off: stages are
versioned by content (posttrain.runner), which also works across flow runs.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from posttrain import stages

TASK = dict(cache_policy=NO_CACHE, persist_result=False, retries=0)


@task(name="open_iteration", **TASK)
def open_iteration(project: str, profile: str, overrides: list[str]):
    return stages.open_iteration(project, profile, overrides, flow_run_id=str(flow_run.get_id() or ""))


@task(name="close_iteration", **TASK)
def close_iteration(it, status: str):
    stages.close_iteration(it, status)


curate = task(name="curate", **TASK)(stages.curate)
base_model = task(name="base_model", **TASK)(stages.base_model)
sft = task(name="sft", **TASK)(stages.sft)
reward_model = task(name="reward_model", **TASK)(stages.reward_model)
align = task(name="align", **TASK)(stages.align)
reason = task(name="reason", **TASK)(stages.reason)
safety = task(name="safety", **TASK)(stages.safety)
evaluate = task(name="evaluate", task_run_name="evaluate-{label}", **TASK)(stages.evaluate)
gate = task(name="gate", **TASK)(stages.gate)


@flow(name="full-iteration")
def full_iteration(profile: str = "default", overrides: list[str] | None = None, project: str = ".") -> list[dict]:
    """Run every stage of one post-training iteration. `overrides` are SECTION.KEY=VALUE strings."""
    it = open_iteration(project, profile, list(overrides or []))
    try:
        data = curate(it)
        base = base_model(it)
        sft_rec = sft(it, base, data)
        rm = reward_model(it, sft_rec, data)
        align_rec = align(it, sft_rec, data)
        reason_rec = reason(it, align_rec, data)
        safety_rec = safety(it, reason_rec, data)
        base_eval = evaluate(it, base, rm, data, "base")
        final_eval = evaluate(it, safety_rec, rm, data, "final")
        versions = {r.stage: r.model_version for r in (sft_rec, align_rec, reason_rec, safety_rec)}
        gate(it, final_eval, base_eval, versions, rm)
    except BaseException:
        close_iteration(it, "FAILED")
        raise
    close_iteration(it, "FINISHED")
    records = [data, sft_rec, rm, align_rec, reason_rec, safety_rec, base_eval, final_eval]
    return [{"iteration": it.parent_run_id, **r.__dict__} for r in records]
