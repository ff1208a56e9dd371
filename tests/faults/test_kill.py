"""A killed `posttrain` leaves no process of its own behind, and the next command says what it
reconciled. The watchdog (posttrain/watchdog.py) is checked on its own first (a stand-in parent,
seconds), then on a real `posttrain run` SIGKILLed inside sft (only that process is killed, not its
process group: whatever it started must be stopped by the watchdog); the steps sft logged before
the kill stay in MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, children, latest_iteration, make_workspace, mlflow_client, posttrain, workspace_env

SLEEP = "import time; time.sleep(600)"
# A stand-in for a posttrain command: its watchdog first, then a child, a child that ignores
# SIGTERM, and a grandchild that detached itself (new session, reparented to init at once).
PARENT = f"""
import os, signal, subprocess, sys, time
from pathlib import Path
from posttrain import watchdog
watchdog.spawn(os.getpid(), Path(sys.argv[2]))
subprocess.Popen([sys.executable, "-c", {SLEEP!r}])
subprocess.Popen([sys.executable, "-c", "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + {SLEEP!r}])
subprocess.Popen([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {SLEEP!r}], "
                                        "start_new_session=True); print(p.pid, flush=True)"]).wait()
print("started", flush=True)
time.sleep(float(sys.argv[1]))
"""


def _alive(recorded: list[tuple[psutil.Process, float]]) -> list[str]:
    alive = []
    for p, started in recorded:
        try:
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            pass
    return alive


def _snapshot(pid: int) -> list[tuple[psutil.Process, float]]:
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            out.append((p, p.create_time()))
        except psutil.Error:
            pass
    return out


def _wait_gone(recorded, within: float) -> list[str]:
    deadline = time.time() + within
    while (alive := _alive(recorded)) and time.time() < deadline:
        time.sleep(0.2)
    return alive


@pytest.mark.parametrize("how", ["SIGKILL", "normal exit"])
def test_watchdog_stops_every_process_the_parent_left(tmp_path, how):
    log = tmp_path / "watchdog.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "600" if how == "SIGKILL" else "2", str(log)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        detached = psutil.Process(int(parent.stdout.readline()))  # no longer anyone's descendant
        assert parent.stdout.readline().strip() == "started"
        time.sleep(1.5)  # the watchdog has recorded them (it polls every 0.5 s)
        recorded = _snapshot(parent.pid)
        if detached.pid not in {p.pid for p, _ in recorded}:  # without a subreaper, init's child now
            recorded.append((detached, detached.create_time()))
        names = [" ".join(p.cmdline()) for p, _ in recorded]
        assert sum("watchdog.py" in n for n in names) == 1 and sum(SLEEP in n for n in names) == 3, names
        if how == "SIGKILL":
            parent.send_signal(signal.SIGKILL)
        assert parent.wait(timeout=30) == (-signal.SIGKILL if how == "SIGKILL" else 0)
        # SIGTERM, then SIGKILL after the 3 s grace for the one that ignores SIGTERM
        assert _wait_gone(recorded, 15) == []
    finally:
        parent.kill()
    text = log.read_text()
    assert f"posttrain pid {parent.pid} is gone; stopped 3 process(es)" in text, text


def test_watchdog_does_not_touch_a_recycled_pid(tmp_path):
    """A recorded pid now held by an unrelated process (another start time) is left alone."""
    from posttrain import watchdog

    other = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        proc = psutil.Process(other.pid)
        stale = {other.pid: (proc, proc.create_time() - 100.0)}
        assert watchdog._leftovers(stale) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.e2e
def test_sigkill_of_posttrain_run_leaves_no_process_and_is_reconciled(tmp_path, curated_ws):
    ws = make_workspace(tmp_path / "ws", data_from=curated_ws[0])
    client = mlflow_client(ws)
    # Long enough to be caught inside sft (~0.2 s/step on the tiny model).
    cmd = [sys.executable, "-m", "posttrain", "run", "--profile", "tiny", "--set", "sft.max_steps=3000"]
    proc = subprocess.Popen(cmd, cwd=ws, env=workspace_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sft_run, deadline = None, time.time() + 300
        while sft_run is None:
            assert proc.poll() is None and time.time() < deadline, "sft never started"
            time.sleep(2)
            exp = client.get_experiment_by_name("posttrain")
            its = exp and client.search_runs([exp.experiment_id], "tags.kind = 'iteration'")
            if its:
                sft_run = next((c for c in children(client, its[0].info.run_id)
                                if c.data.tags.get("stage") == "sft" and c.info.status == "RUNNING"), None)
        # Training metrics reach MLflow while the stage runs: wait for a few streamed steps.
        while len(losses := client.get_metric_history(sft_run.info.run_id, "train/loss")) < 3:
            assert proc.poll() is None and time.time() < deadline, f"sft streamed {len(losses)} losses"
            time.sleep(1)
        recorded = _snapshot(proc.pid)
        names = [" ".join(p.cmdline()) for p, _ in recorded]
        # What would outlive a SIGKILL without the watchdog: the ephemeral Prefect API server.
        assert any("uvicorn" in n and "prefect" in n for n in names), names
        assert any("watchdog.py" in n for n in names), names
        proc.send_signal(signal.SIGKILL)  # this process only: no process group kill to help
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert _wait_gone(recorded, 20) == [], names
        ours = [p.pid for p in psutil.process_iter() if _cwd_in(p, ws)]
        assert ours == [], f"processes still running in the workspace: {ours}"
    finally:
        proc.kill()
    killed = latest_iteration(client)
    assert killed.info.status == "RUNNING"  # nobody alive to say otherwise... until reconciliation
    text = (ws / "runs" / "logs" / "watchdog.log").read_text()
    assert f"posttrain pid {proc.pid} is gone; stopped" in text and "uvicorn" in text, text

    out = posttrain(ws, "reconcile")
    assert out.returncode == 0, out.stdout + out.stderr
    flow_run = killed.data.tags["prefect_flow_run_id"]
    line = (f"reconciled 1 run left RUNNING by a killed process (pid {proc.pid} on {killed.data.tags['host']}): "
            f"MLflow run {killed.info.run_id} and its stage run(s) sft KILLED, Prefect flow run {flow_run} Crashed")
    assert line in out.stdout.splitlines(), out.stdout
    assert client.get_run(sft_run.info.run_id).info.status == "KILLED"
    kept = client.get_metric_history(sft_run.info.run_id, "train/loss")  # the curve up to the kill survives
    assert len(kept) >= len(losses) and max(m.step for m in kept) >= max(m.step for m in losses)


def _cwd_in(p: psutil.Process, ws: Path) -> bool:
    try:
        return Path(p.cwd()).is_relative_to(ws)
    except (psutil.Error, OSError):
        return False


def test_reconcile_a_run_whose_flow_run_lives_on_another_prefect_api(tmp_path):
    """A dead iteration recorded by another Prefect server (since replaced, or another PREFECT_HOME's
    ephemeral one) is still marked KILLED in MLflow; the Prefect side is reported, not fatal: the
    next iteration opens (it reconciles first)."""
    import uuid

    ws = make_workspace(tmp_path / "ws")
    env = workspace_env(ws)
    code = ("import socket, sys, uuid\nfrom pathlib import Path\nfrom mlflow import MlflowClient\n"
            "from core import tracking\nfrom pipeline import recovery\n"
            "runs = Path(sys.argv[1]); tracking.configure(runs); c = MlflowClient()\n"
            "exp = c.get_experiment_by_name(tracking.EXPERIMENT) or c.get_experiment(c.create_experiment(tracking.EXPERIMENT))\n"
            "run = c.create_run(exp.experiment_id, tags={'kind': 'iteration', 'host': socket.gethostname(), 'pid': '4194304',"
            " 'prefect_flow_run_id': sys.argv[2]})\n"
            "fixed = recovery.reconcile(runs, announce=False)\n"
            "print(run.info.run_id, fixed[0]['prefect_state'])\n")
    elsewhere = str(uuid.uuid4())
    proc = subprocess.run([sys.executable, "-c", code, str(ws / "runs"), elsewhere], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id, state = proc.stdout.split(maxsplit=1)
    assert state.strip() == "not on this Prefect API"
    assert mlflow_client(ws).get_run(run_id).info.status == "KILLED"
