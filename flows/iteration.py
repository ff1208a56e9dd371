"""Prefect flows: they only wire the stage functions of pipeline.dag's nodes, their gates
(pipeline.gating) and the iteration's open/close (pipeline.iterations).

    posttrain run [--profile tiny] [--set sft.learning_rate=1e-4 ...]      -> full-iteration
    posttrain rerun STAGE --iteration RUN_ID [--downstream] [--set ...]      -> rerun-stage
    posttrain serve                                                          -> both as deployments

A failing task stops everything downstream and the flow run ends Failed naming the stage.
Prefect's own result caching is off: stages are versioned by content (pipeline.runner), which
also works across flow runs, so a retried or new run reuses every completed stage; such a stage's
task run ends in a Completed state named Reused, which the Prefect UI shows as its own badge. Each
iteration ends with its report card (pipeline.report) and its Prefect card (pipeline.summary).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed

from pipeline import dag, gating, iterations, report, summary

TASK = dict(cache_policy=NO_CACHE, persist_result=False, retries=0)
StageName = Literal["curate", "sft", "reward_model", "align", "reason", "safety", "evaluate.base", "evaluate.sft",
                    "evaluate.align", "evaluate.reason", "evaluate.safety", "evaluate.final"]


# The profiles of this checkout's params.yaml: the Prefect UI's form offers them as a choice.
_PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text()) or {}
Profile = Literal[tuple(["default", *(_PARAMS.get("profiles") or {})])]


def _iteration_name() -> str:
    return f"{flow_run.parameters.get('profile', 'default')}-{datetime.now(timezone.utc):%Y-%m-%d-%H%M%S}"


def _rerun_name() -> str:
    return f"rerun-{flow_run.parameters.get('stage', '')}-{datetime.now(timezone.utc):%Y-%m-%d-%H%M%S}"


def _flow_run_id() -> str:
    return str(flow_run.get_id() or "")


def _flow_run_name() -> str:
    return str(flow_run.get_name() or "")


open_iteration = task(name="open_iteration", **TASK)(iterations.open_iteration)
open_rerun = task(name="open_rerun", **TASK)(iterations.open_rerun)
recorded = task(name="recorded_outputs", **TASK)(iterations.recorded)
close_iteration = task(name="close_iteration", **TASK)(iterations.close_iteration)
publish = task(name="publish", **TASK)(summary.publish)
report_card = task(name="report_card", **TASK)(report.write_card)
gate = task(name="gate", **TASK)(gating.gate_final)
GATE_TASKS = {name: task(name=f"gate.{spec[0]}", **TASK)(gating.gate_stage) for name, spec in dag.STAGE_GATES.items()}


def _reused(record, why: str):
    """A reused stage's task run ends in a state named Reused (type Completed), so the Prefect UI
    tells it from one that computed; the message says where the output came from."""
    source = f"MLflow run {record.run_id}" if record.run_id else record.out  # base: a cached conversion, no run
    return Completed(name="Reused", message=f"{why}: version {record.key[:12]}, {source}", data=record)


def _node_task(node):
    def run(it, *inputs):
        record = node.fn(it, *inputs)
        return _reused(record, "an earlier run computed this version") if record.cached else record

    run.__name__ = run.__qualname__ = node.fn.__name__
    run.__doc__ = node.fn.__doc__
    return task(name=node.name, **TASK)(run)


NODE_TASKS = {node.name: _node_task(node) for node in dag.NODES}


@task(**TASK)
def reused(record, iteration: str):
    """An upstream output a rerun takes from the iteration it reruns, shown as its own task run."""
    return _reused(record, f"recorded by iteration {iteration}")


def _call(t, *args, **kwargs):
    """The task's result; a task that returned a named state (Reused) hands back that state's data."""
    return t(*args, return_state=True, **kwargs).result()


def _run_nodes(it, records: dict, names: list[str]) -> dict:
    for name in names:
        node = dag.NODE[name]
        records[name] = _call(NODE_TASKS[name], it, *[records[i] for i in node.inputs])
        if name in dag.STAGE_GATES:  # a failed stage gate raises: nothing after it starts
            stage, *gate_inputs = dag.STAGE_GATES[name]
            GATE_TASKS[name](it, stage, *[records[i] for i in gate_inputs])
    return records


def _finish(it, records: dict) -> list[dict]:
    gate(it, records["evaluate.final"], records["evaluate.base"], dag.policy_versions(records), records["reward_model"])
    return [{"iteration": it.parent_run_id, **records[n].__dict__} for n in dag.ORDER if n in records and n != "base"]


@flow(name="full-iteration", flow_run_name=_iteration_name)
def full_iteration(profile: Profile = "default", overrides: list[str] | None = None, project: str = ".") -> list[dict]:
    """Run every stage of one post-training iteration.

    Args:
        profile: which profile of params.yaml: default (SmolLM2-135M on CPU), tiny (a random micro-model, seconds per
            stage) or a GPU-cluster profile.
        overrides: settings on top of the profile, each SECTION.KEY=VALUE, e.g. sft.learning_rate=1e-4.
        project: the project directory holding params.yaml, on the machine that runs the flow.
    """
    it = open_iteration(project, profile, list(overrides or []), _flow_run_id(), flow_run_name=_flow_run_name())
    records: dict = {}
    try:
        _run_nodes(it, records, list(dag.ORDER))
        table = _finish(it, records)
    except BaseException as err:
        close_iteration(it, "FAILED", err)
        publish(it, records, "FAILED", err, report_card(it) if isinstance(err, Exception) else "")
        err.iteration = it.parent_run_id  # the id the command's failure summary names
        raise
    close_iteration(it, "FINISHED")
    publish(it, records, "FINISHED", card=report_card(it))
    return table


@flow(name="rerun-stage", flow_run_name=_rerun_name)
def rerun_stage(iteration: str, stage: StageName, downstream: bool = False, overrides: list[str] | None = None,
                project: str = ".") -> list[dict]:
    """Re-run one stage of a recorded iteration on that iteration's recorded upstream outputs
    (upstream stage bodies are not executed).

    Args:
        iteration: the iteration: its MLflow parent run id, Prefect flow-run id or flow-run name.
        stage: the stage (or evaluation) to run again.
        downstream: also re-run every stage that depends on it, through the final gate.
        overrides: settings on top of the iteration's recorded ones, each SECTION.KEY=VALUE.
        project: the project directory holding params.yaml, on the machine that runs the flow.
    """
    it = open_rerun(project, iteration, stage, list(overrides or []), _flow_run_id(), _flow_run_name())
    records: dict = {}
    try:
        records.update(recorded(it, iteration, stage, downstream))
        for name in (n for n in dag.ORDER if n in records):
            _call(reused.with_options(name=name, task_run_name=f"{name} (recorded)"), records[name], iteration)
        names = dag.downstream_of(stage) if downstream else [stage]
        _run_nodes(it, records, names)
        table = _finish(it, records) if "evaluate.final" in names else \
            [{"iteration": it.parent_run_id, **records[n].__dict__} for n in names]
    except BaseException as err:
        close_iteration(it, "FAILED", err)
        publish(it, records, "FAILED", err, report_card(it) if isinstance(err, Exception) else "")
        err.iteration = it.parent_run_id  # the id the command's failure summary names
        raise
    close_iteration(it, "FINISHED")
    publish(it, records, "FINISHED", card=report_card(it))
    return table
