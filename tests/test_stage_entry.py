"""`posttrain stage NAME`: the entry point SkyPilot jobs and torchrun call, on the tiny profile.

Two processes with the gloo backend (torchrun, as `accelerate launch` does on a cluster) train one
sft version: one MLflow run, one registered model, world_size 2 in its metrics. A single process
afterwards reuses that version (distribution does not change what a stage computes). Joining a
recorded iteration (--iteration, what the remote job does) adds the stage as its child, and a
launcher's VERSION_KEY that this checkout does not compute is refused before anything runs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import VENV_BIN, children, make_workspace, mlflow_client, posttrain, workspace_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ws(tmp_path_factory, curated_ws):
    return make_workspace(tmp_path_factory.mktemp("stage"), data_from=curated_ws[0])


def _stage_parents(client):
    exp = client.get_experiment_by_name("posttrain")
    return client.search_runs([exp.experiment_id], "tags.kind = 'stage'", order_by=["attributes.start_time ASC"])


def test_sft_runs_on_two_gloo_processes_with_one_run_and_one_model(ws):
    env = {**workspace_env(ws), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29531",
                           "-m", "posttrain", "stage", "sft", "--profile", "tiny"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("report card:") == 1  # one summary, from rank 0
    assert "'eval_loss'" not in proc.stdout  # the trainers' log dicts stay out of the results
    client = mlflow_client(ws)
    (parent,) = _stage_parents(client)
    assert parent.info.status == "FINISHED"
    runs = {r.data.tags["mlflow.runName"]: r for r in children(client, parent.info.run_id)}
    assert set(runs) == {"curate", "sft"}  # upstream built once, by rank 0
    sft = runs["sft"]
    assert sft.info.status == "FINISHED"
    assert sft.data.metrics["world_size"] == 2.0
    assert sft.data.metrics["param_delta_l2"] > 0
    versions = client.search_model_versions("name = 'posttrain'")
    assert [v.run_id for v in versions] == [sft.info.run_id]


def test_a_single_process_reuses_the_distributed_version(ws):
    proc = posttrain(ws, "stage", "sft", "--profile", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reused" in proc.stdout
    client = mlflow_client(ws)
    assert len(client.search_model_versions("name = 'posttrain'")) == 1


def test_joining_an_iteration_checks_the_launchers_version_key(ws):
    client = mlflow_client(ws)
    parent = _stage_parents(client)[0].info.run_id
    env = {**workspace_env(ws), "VERSION_KEY": "0" * 64}
    bad = subprocess.run([sys.executable, "-m", "posttrain", "stage", "reward_model", "--profile", "tiny",
                          "--iteration", parent], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1
    assert "version key" in bad.stderr and "00000000000000000000" in bad.stderr
    assert "reward_model" not in {r.data.tags["mlflow.runName"] for r in children(client, parent)}

    ok = posttrain(ws, "stage", "reward_model", "--profile", "tiny", "--iteration", parent)
    assert ok.returncode == 0, ok.stderr[-3000:]
    runs = {r.data.tags["mlflow.runName"]: r for r in children(client, parent)}
    assert runs["reward_model"].info.status == "FINISHED"
    tags = client.get_run(parent).data.tags
    assert tags["stage.reward_model.run_id"] == runs["reward_model"].info.run_id
