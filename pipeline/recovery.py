"""Crash reconciliation: a SIGKILLed flow process cannot report its own death, so the next
`posttrain` command (or `posttrain reconcile`) does it for the dead process.

Every iteration's parent run records the host and pid that own it. A run still RUNNING whose
owner is gone (same host, pid not alive or reused by a newer process) is marked KILLED in MLflow,
together with its RUNNING stage runs, and its Prefect flow run is set to Crashed. Stage outputs
without a COMPLETE.json marker are never reused, so the next run redoes exactly the unfinished
stage and reuses everything that completed. (SIGTERM is handled in-process: Prefect raises
TerminationSignal, the runner marks the stage run KILLED and the flow closes the parent FAILED.)
What was reconciled is said in one line per dead iteration (`describe`), on stderr of the command
that found it, or on stdout of `posttrain reconcile`. The processes a killed command left running
are stopped by its watchdog (posttrain/watchdog.py), not here.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def owner_tags() -> dict[str, str]:
    import psutil

    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": str(pid), "pid_started": f"{psutil.Process(pid).create_time():.3f}"}


def _alive(tags: dict[str, str]) -> bool:
    import psutil

    if tags.get("host") != socket.gethostname():
        return True  # another machine's run: not ours to judge
    pid = int(tags.get("pid", "0") or 0)
    if not pid or not psutil.pid_exists(pid):
        return False
    return f"{psutil.Process(pid).create_time():.3f}" == tags.get("pid_started")


def _crash_prefect(flow_run_id: str, message: str) -> str:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    async def go():
        async with get_client() as client:
            try:
                run = await client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                # Recorded on another Prefect API (a server since replaced, or the ephemeral one
                # of another PREFECT_HOME): nothing here to mark; the MLflow side is fixed.
                return "not on this Prefect API"
            if run.state is not None and not run.state.is_final():
                await client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
                return "Crashed"
            return run.state.type.value if run.state else "unknown"

    return asyncio.run(go())


def describe(entry: dict) -> str:
    """One line: what `reconcile` changed for one dead iteration, and whose death it was."""
    stages = [s for s in entry["stages"] if s]
    runs = f"MLflow run {entry['iteration']}" + (f" and its stage run(s) {', '.join(stages)}" if stages else "")
    prefect = (f", Prefect flow run {entry['flow_run_id']} {entry.get('prefect_state', 'unknown')}"
               if entry.get("flow_run_id") else ", no Prefect flow run")
    return (f"reconciled 1 run left RUNNING by a killed process (pid {entry['pid']} on {entry['host']}): "
            f"{runs} KILLED{prefect}")


def reconcile(runs: Path, announce: bool = True) -> list[dict]:
    """Mark runs of dead owners KILLED (MLflow) / Crashed (Prefect); returns what was changed.
    announce: say it on stderr, one `describe` line per dead iteration."""
    from mlflow import MlflowClient

    from core import tracking

    client = MlflowClient()
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    if exp is None:
        return []
    fixed = []
    for parent in client.search_runs([exp.experiment_id], "tags.kind = 'iteration' and attributes.status = 'RUNNING'"):
        if _alive(parent.data.tags):
            continue
        message = f"owner process {parent.data.tags.get('pid')} on {parent.data.tags.get('host')} is gone (killed or crashed)"
        children = client.search_runs([exp.experiment_id],
                                      f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'RUNNING'")
        for run in [*children, parent]:
            client.set_tag(run.info.run_id, "error", message)
            client.set_terminated(run.info.run_id, "KILLED")
        flow_run_id = parent.data.tags.get("prefect_flow_run_id")
        entry = {"iteration": parent.info.run_id, "stages": [c.data.tags.get("stage") for c in children],
                 "pid": parent.data.tags.get("pid", "?"), "host": parent.data.tags.get("host", "?"),
                 "flow_run_id": flow_run_id or ""}
        if flow_run_id:
            entry["prefect_state"] = _crash_prefect(flow_run_id, message)
        fixed.append(entry)
        if announce:
            print(describe(entry), file=sys.stderr, flush=True)
    return fixed


ZOMBIE_AUTOMATION = "posttrain: crash zombie flow runs"


def ensure_zombie_automation(window_s: int) -> str:
    """For flow runs started by `posttrain serve` (deployments, the Prefect UI): served runs emit a
    heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, and this automation (Prefect's
    documented zombie detection) marks a run Crashed when neither a heartbeat nor a terminal state
    arrives within `window_s`. Idempotent: an automation of the same name is replaced."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(name=ZOMBIE_AUTOMATION):
            client.delete_automation(old.id)
    automation = Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=f"no heartbeat for {window_s} s: the process died")],
    ).create()
    return str(automation.id)

