"""Versioned stages, reuse across flow runs, re-running one stage, lineage and crash reconciliation
on the tiny profile with real Prefect, MLflow and DVC (the Prefect deployment path: test_prefect_ui.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import (
    children,
    iteration_id,
    latest_iteration,
    make_workspace,
    mlflow_client,
    posttrain,
    prefect_state,
    workspace_env,
)

pytestmark = pytest.mark.e2e
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def stage_status(client, parent_id: str) -> dict[str, str]:
    tags = client.get_run(parent_id).data.tags
    return {k.split(".", 1)[1].rsplit(".", 1)[0]: ("reused" if v == "true" else "ran")
            for k, v in tags.items() if k.startswith("stage.") and k.endswith(".reused")}


def test_second_run_reuses_every_stage(tiny_ws):
    ws, _, first = tiny_ws
    start = time.time()
    proc = posttrain(ws, "run", "--profile", "tiny")
    elapsed = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(ws)
    it = iteration_id(proc.stdout)
    assert set(stage_status(client, it).values()) == {"reused"}
    assert children(client, it) == []  # linked, not new: no stage body ran
    sft_first = client.get_run(first).data.tags["stage.sft.run_id"]
    assert client.get_run(it).data.tags["stage.sft.run_id"] == sft_first
    print(f"second run wall time: {elapsed:.1f} s")


def test_changed_align_setting_reruns_align_and_downstream_only(tiny_ws):
    ws, _, first = tiny_ws
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "align.beta=0.2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(ws)
    status = stage_status(client, iteration_id(proc.stdout))
    assert status == {"curate": "reused", "sft": "reused", "reward_model": "reused", "evaluate.base": "reused",
                      "evaluate.sft": "reused", "align": "ran", "evaluate.align": "ran", "reason": "ran",
                      "evaluate.reason": "ran", "safety": "ran", "evaluate.safety": "ran", "evaluate.final": "ran"}


def test_rerun_one_failed_stage_then_downstream(tiny_ws):
    ws, _, _ = tiny_ws
    client = mlflow_client(ws)
    # A real failure inside `reason`: TRL requires the batch to be a multiple of the group size.
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "reason.per_device_batch_size=6", "--set", "reason.num_generations=4")
    assert proc.returncode == 1 and "stage 'reason' failed" in proc.stderr, proc.stderr[-3000:]
    failed = latest_iteration(client)
    assert failed.info.status == "FAILED"
    assert {c.data.tags["stage"]: c.info.status for c in children(client, failed.info.run_id)}.get("reason") == "FAILED"

    fix = ["--set", "reason.per_device_batch_size=8"]  # a config not run before, so reason must execute
    proc = posttrain(ws, "rerun", "reason", "--iteration", failed.info.run_id, *fix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = iteration_id(proc.stdout)
    assert [c.data.tags["stage"] for c in children(client, rerun)] == ["reason"]  # upstream bodies not executed
    assert client.get_run(rerun).data.tags["rerun_of"] == failed.info.run_id
    assert "reason.per_device_batch_size=8" in client.get_run(rerun).data.params["overrides"]

    proc = posttrain(ws, "rerun", "reason", "--iteration", failed.info.run_id, "--downstream", *fix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = stage_status(client, iteration_id(proc.stdout))
    assert status["reason"] == "reused"  # completed by the previous rerun: same key, same output
    assert {status[s] for s in ("curate", "sft", "reward_model", "align", "evaluate.base", "evaluate.sft",
                                "evaluate.align")} == {"reused"}
    assert {"evaluate.reason", "safety", "evaluate.safety", "evaluate.final"} <= set(status)


def test_lineage_of_champion_reaches_data_and_git(tiny_ws):
    import jsonschema

    ws, _, _ = tiny_ws
    proc = posttrain(ws, "lineage", "posttrain@champion", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, json.loads((ROOT / "posttrain" / "lineage.schema.json").read_text()))
    assert [e["stage"] for e in doc["chain"]] == ["safety", "reason", "align", "sft"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True).stdout.strip()
    assert doc["git_sha"] == head and doc["dvc_lock_revision"] == head
    assert {"sft", "preferences", "rl", "safety"} <= set(doc["datasets"])
    assert all(d["matches_dvc_lock"] for d in doc["datasets"].values())
    text = posttrain(ws, "lineage", "posttrain@champion").stdout
    assert "stage=sft" in text and "matches dvc.lock" in text


def test_sigkill_mid_stage_is_reconciled_and_next_run_resumes(tiny_ws):
    ws, _, _ = tiny_ws
    client = mlflow_client(ws)
    before = latest_iteration(client).info.run_id
    # Long enough to be caught inside sft (~0.2 s/step on the tiny model).
    cmd = [sys.executable, "-m", "posttrain", "run", "--profile", "tiny", "--set", "sft.max_steps=3000"]
    proc = subprocess.Popen(cmd, cwd=ws, env=workspace_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    sft_run = None
    while time.time() < deadline and sft_run is None:
        time.sleep(2)
        it = latest_iteration(client)
        if it.info.run_id != before:
            sft_run = next((c for c in children(client, it.info.run_id) if c.data.tags.get("stage") == "sft"
                            and c.info.status == "RUNNING"), None)
    assert sft_run is not None, "sft never started"
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed = latest_iteration(client)
    assert killed.info.status == "RUNNING"  # nobody alive to say otherwise... until reconciliation

    out = posttrain(ws, "reconcile")
    assert out.returncode == 0 and killed.info.run_id in out.stdout, out.stdout + out.stderr
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert client.get_run(sft_run.info.run_id).info.status == "KILLED"
    assert prefect_state(ws, killed.data.tags["prefect_flow_run_id"]) == "CRASHED"

    # The next run resumes: completed stages reused, the killed stage redone from scratch.
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "sft.max_steps=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = stage_status(client, iteration_id(proc.stdout))
    assert status["curate"] == "reused" and status["sft"] == "ran"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


def test_unreachable_tracking_server_fails_in_seconds(tiny_ws):
    ws, _, _ = tiny_ws
    env = workspace_env(ws)
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{_free_port()}"
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "posttrain", "run", "--profile", "tiny"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert env["MLFLOW_TRACKING_URI"] in proc.stderr and "unreachable" in proc.stderr
    print(f"unreachable server detected after {time.time() - start:.1f} s")


def test_against_a_real_mlflow_server(tmp_path, curated_ws):
    ws = make_workspace(tmp_path / "ws", data_from=curated_ws[0])
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, env=workspace_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", 120)
        env = workspace_env(ws)
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
        proc = subprocess.run([sys.executable, "-m", "posttrain", "run", "--profile", "tiny"], cwd=ws, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        client = MlflowClient()
        it = iteration_id(proc.stdout)
        assert len(children(client, it)) >= 7
        assert client.get_model_version_by_alias("posttrain", "champion").tags["stage"] == "safety"
        lineage = subprocess.run([sys.executable, "-m", "posttrain", "lineage", "posttrain@champion", "--json"], cwd=ws,
                                 env=env, capture_output=True, text=True, timeout=120)
        assert lineage.returncode == 0 and json.loads(lineage.stdout)["chain"][-1]["stage"] == "sft"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_two_iterations_at_once_do_not_corrupt_each_other(tiny_ws):
    """Same workspace, same store, started together: both finish, each with its own safety model.
    (The changed setting is safety's, the last training stage: what is tested is the shared store,
    DVC lock and registry under two writers, not the stages before it twice more.)"""
    ws, _, _ = tiny_ws
    procs = [subprocess.Popen([sys.executable, "-m", "posttrain", "run", "--profile", "tiny", "--set", f"safety.dpo_beta={b}"],
                              cwd=ws, env=workspace_env(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for b in (0.31, 0.32)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    client = mlflow_client(ws)
    runs = [client.get_run(iteration_id(out)) for out, _ in outs]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["stage.safety.version_key"] for r in runs}) == 2  # different configs, different outputs
    assert len({r.data.tags["stage.reason.version_key"] for r in runs}) == 1  # shared upstream reused by both
