"""Whole iterations and a one-stage rerun through the real CLI, read back from MLflow: the
iteration_time, overhead and rerun figures.

Every number comes from a `posttrain run` / `posttrain rerun` process in a throwaway workspace:
- command wall: the process, start to exit (what the user waits for);
- flow wall: the Prefect flow run's start and end time (Prefect's own database in PREFECT_HOME);
- per stage: the MLflow child run's start/end and its `compute_s` metric (the runner's timer
  around the stage body). Where a checkout's runner does not log `compute_s` yet, the child run's
  duration stands in and the record says so (`compute_source`).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import datetime

from bench.workspace import Workspace


class BenchError(RuntimeError):
    pass


def _tail(proc) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])


def _iteration_id(stdout: str) -> str:
    found = re.findall(r"iteration ([0-9a-f]{32})", stdout)
    if not found:
        raise BenchError(f"no iteration id in the run table:\n{stdout[-2000:]}")
    return found[-1]


def client(ws: Workspace):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{ws.runs / 'mlflow.db'}")


def prefect_times(ws: Workspace, flow_run_id: str) -> tuple[float, list[dict]]:
    """Wall time of a Prefect flow run and of each of its task runs (in start order), from the
    ephemeral API's sqlite database: the process that served it has exited, and reading the file
    needs no server."""
    db = ws.root / ".prefect" / "prefect.db"
    if not db.is_file():
        raise BenchError(f"{db} not found: the Prefect database moved (PREFECT_HOME={ws.root / '.prefect'})")
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        flow = con.execute("SELECT start_time, end_time FROM flow_run WHERE id = ?", (flow_run_id,)).fetchone()
        tasks = con.execute("SELECT name, start_time, end_time FROM task_run WHERE flow_run_id = ? ORDER BY start_time",
                            (flow_run_id,)).fetchall()
    if flow is None or not flow[0] or not flow[1]:
        raise BenchError(f"flow run {flow_run_id} has no start/end time in {db}")
    # Task run names are '<task>-<3 hex>'; a task that never started has no times.
    return _span(*flow), [{"task": name.rsplit("-", 1)[0], "wall_s": _span(start, end)} for name, start, end in tasks
                          if start and end]


def _span(start: str, end: str) -> float:
    a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return (b - a).total_seconds()


def read_iteration(ws: Workspace, run_id: str) -> dict:
    """An iteration's (or rerun's) parent run, its child runs and the time outside them."""
    c = client(ws)
    parent = c.get_run(run_id)
    exp = parent.info.experiment_id
    kids = c.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'", order_by=["attributes.start_time ASC"])
    stages = []
    for kid in kids:
        label = kid.data.tags.get("label", "")
        duration = (kid.info.end_time - kid.info.start_time) / 1000
        compute = kid.data.metrics.get("compute_s")
        stages.append({"stage": kid.data.tags["stage"] + (f".{label}" if label else ""), "status": kid.info.status,
                       "run_s": duration, "compute_s": compute if compute is not None else duration,
                       "compute_source": "compute_s" if compute is not None else "child_run_duration"})
    reused = sorted(k.removeprefix("stage.").removesuffix(".reused") for k, v in parent.data.tags.items()
                    if k.startswith("stage.") and k.endswith(".reused") and v == "true")
    flow_id = parent.data.tags.get("prefect_flow_run_id", "")
    flow_wall, tasks = prefect_times(ws, flow_id)
    record = {
        "iteration": run_id,
        "status": parent.info.status,
        "parent_run_s": (parent.info.end_time - parent.info.start_time) / 1000,
        "flow_run_id": flow_id,
        "flow_wall_s": flow_wall,
        "stages": stages,
        "prefect_tasks": tasks,
        "reused": reused,
        "tags": {k: v for k, v in parent.data.tags.items() if k in ("rerun_of", "rerun_stage", "profile", "git_sha")},
    }
    compute = sum(s["compute_s"] for s in stages)
    in_children = sum(s["run_s"] for s in stages)
    record["compute_sum_s"] = compute
    # Where the flow's wall time goes besides the stage bodies (seconds):
    record["outside_compute"] = {
        # params, dataset inputs, artifacts, model logging + registration, marker: inside child runs
        "stage_tracking_s": in_children - compute,
        # Prefect task runs, `dvc repro` status check, base-model hash, reuse checks, gate, aliases
        "between_stages_s": record["flow_wall_s"] - in_children,
    }
    return record


def add_command(record: dict, command_wall: float) -> dict:
    record["command_wall_s"] = command_wall
    # Interpreter start, imports, config validation, Prefect's ephemeral API start and shutdown.
    record["outside_compute"]["process_start_exit_s"] = command_wall - record["flow_wall_s"]
    record["overhead_flow_pct"] = 100 * (record["flow_wall_s"] - record["compute_sum_s"]) / record["compute_sum_s"]
    record["overhead_command_pct"] = 100 * (command_wall - record["compute_sum_s"]) / record["compute_sum_s"]
    return record


def run_iteration(ws: Workspace, profile: str, timeout: int) -> dict:
    """One full iteration in `ws` (a fresh runs dir: every stage executes)."""
    proc, wall = ws.posttrain("run", "--profile", profile, timeout=timeout)
    # A gate that fails is the pipeline working (its checkpoint is not promoted), not a broken
    # measurement: the stages that ran are timed and the record says which gate stopped it.
    gate = proc.stderr.split("FAILED at the gate:", 1)[1].strip() if "FAILED at the gate:" in proc.stderr else None
    if proc.returncode != 0 and not (proc.returncode == 1 and gate):
        raise BenchError(f"`posttrain run --profile {profile}` failed (exit {proc.returncode}) in {ws.root}:\n{_tail(proc)}")
    record = add_command(read_iteration(ws, _iteration_id(proc.stdout) if gate is None else latest_iteration(ws)), wall)
    record["gate_failed"] = gate[:1000] if gate else None
    ran = {s["stage"] for s in record["stages"]}
    if record["reused"]:
        raise BenchError(f"iteration {record['iteration']} reused {record['reused']}: the runs dir {ws.runs} was not fresh")
    record["profile"] = profile
    record["stages_ran"] = sorted(ran)
    return record


def latest_iteration(ws: Workspace) -> str:
    """The newest iteration's run id (a run that ended at a gate prints no table to read it from)."""
    c = client(ws)
    exp = c.get_experiment_by_name("posttrain").experiment_id
    return c.search_runs([exp], "tags.kind = 'iteration'", order_by=["attributes.start_time DESC"],
                         max_results=1)[0].info.run_id


def fail_reason(ws: Workspace, profile: str, group_size: int, timeout: int) -> str:
    """A real failure inside `reason` (TRL requires the batch to be a multiple of the group size);
    every stage before it is reused from the iteration already in `ws`. Returns its run id."""
    bad = f"reason.per_device_batch_size={group_size + 1}"
    proc, _ = ws.posttrain("run", "--profile", profile, "--set", bad, timeout=timeout)
    if proc.returncode != 1 or "stage 'reason' failed" not in proc.stderr:
        raise BenchError(f"`posttrain run --set {bad}` was meant to fail in reason (exit 1), got exit {proc.returncode}:\n{_tail(proc)}")
    c = client(ws)
    exp = c.get_experiment_by_name("posttrain").experiment_id
    latest = c.search_runs([exp], "tags.kind = 'iteration'", order_by=["attributes.start_time DESC"], max_results=1)[0]
    if latest.info.status != "FAILED":
        raise BenchError(f"latest iteration {latest.info.run_id} is {latest.info.status}, expected FAILED")
    return latest.info.run_id


def rerun(ws: Workspace, failed: str, stage: str, fix: list[str], upstream: list[str], timeout: int) -> dict:
    """`posttrain rerun STAGE --iteration FAILED --set FIX...`, and the proof that only STAGE ran:
    exactly one child run (STAGE) and every upstream node tagged reused on the rerun's parent."""
    sets = [a for f in fix for a in ("--set", f)]
    proc, wall = ws.posttrain("rerun", stage, "--iteration", failed, *sets, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"`posttrain rerun {stage}` failed (exit {proc.returncode}):\n{_tail(proc)}")
    record = add_command(read_iteration(ws, _iteration_id(proc.stdout)), wall)
    children = [s["stage"] for s in record["stages"]]
    not_reused = [u for u in upstream if u not in record["reused"]]
    record["fix"] = fix
    record["proof"] = {
        "child_runs": children,
        "upstream_expected_reused": upstream,
        "upstream_not_reused": not_reused,
        "rerun_of": record["tags"].get("rerun_of"),
        "ok": children == [stage] and not not_reused and record["tags"].get("rerun_of") == failed,
    }
    stage_rec = next((s for s in record["stages"] if s["stage"] == stage), None)
    if stage_rec is None:
        raise BenchError(f"rerun {record['iteration']} has no child run for '{stage}' (children: {children})")
    record["stage_compute_s"] = stage_rec["compute_s"]
    record["stage_run_s"] = stage_rec["run_s"]
    return record
