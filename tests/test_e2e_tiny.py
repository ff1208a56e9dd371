"""One tiny-profile iteration end to end, against the real Prefect API (ephemeral server), a real
MLflow store, the real `dvc` CLI and real TRL trainers, in a fresh git+DVC workspace."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from conftest import children, mlflow_client, posttrain, prefect_state, tiny_gates, workspace_env

from core.dvc import CURATE_TARGET

pytestmark = pytest.mark.e2e
ALL_STAGES = {"curate", "sft", "reward_model", "align", "reason", "safety", "evaluate"}


def test_table_printed(tiny_ws):
    _, proc, it = tiny_ws
    for stage in ("curate", "sft", "reward_model", "align", "reason", "safety", "evaluate (base)", "evaluate (sft)",
                  "evaluate (align)", "evaluate (reason)", "evaluate (safety)", "evaluate (final)"):
        assert stage in proc.stdout
    assert f"iteration {it}" in proc.stdout


def test_terminal_shows_progress_outcomes_and_the_summary(tiny_ws):
    """stderr: a progress line per training run and one outcome line per stage (also the Prefect
    run's log); stdout: the table and the summary, no trainer chatter."""
    _, proc, it = tiny_ws
    assert "sft: ran 4 steps in" in proc.stderr and "safety/sft: ran 2 steps in" in proc.stderr, proc.stderr[-3000:]
    for node in ("sft", "evaluate.base", "evaluate.final"):
        assert f"pipeline.runner - {node}: ran in " in proc.stderr
    assert "{'loss'" not in proc.stdout + proc.stderr
    tail = proc.stdout.strip().splitlines()[-4:]
    assert tail[0] == f"iteration {it}" and tail[1].startswith("- gates: sft passed, align passed")
    assert tail[2] == "- champion: posttrain/" + tail[2].split("/")[1] and "from this iteration" in tail[2]


def test_mlflow_parent_children_and_model_versions(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    parent = client.get_run(it)
    assert parent.info.status == "FINISHED" and parent.data.tags["kind"] == "iteration"
    kids = children(client, it)
    assert len(kids) >= 11  # 7 stages, 4 of them trained and evaluated at their boundary
    labels = sorted(c.data.tags["label"] for c in kids if c.data.tags["stage"] == "evaluate")
    assert labels == ["align", "base", "final", "reason", "safety", "sft"]
    assert {c.data.tags["stage"] for c in kids} == ALL_STAGES
    for c in kids:
        assert c.info.status == "FINISHED"
        assert c.data.params and c.data.metrics, c.data.tags["stage"]
        for tag in ("git_sha", "prefect_flow_run_id", "profile", "version_key"):
            assert c.data.tags[tag], (c.data.tags["stage"], tag)
        assert c.data.tags["profile"] == "tiny"
    versions = {v.tags["stage"]: v for v in client.search_model_versions("name = 'posttrain'") if v.tags["iteration"] == it}
    assert set(versions) == {"sft", "align", "reason", "safety"}
    rm = [v for v in client.search_model_versions("name = 'posttrain-reward-model'") if v.tags["iteration"] == it]
    assert [v.tags["stage"] for v in rm] == ["reward_model"]
    assert versions["safety"].tags["parent_version"] == str(versions["reason"].version)
    assert versions["sft"].tags["parent_version"] == "base"


def test_dataset_digests_equal_dvc_lock_and_dvc_up_to_date(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    curate_run = next(c for c in children(client, it) if c.data.tags["stage"] == "curate")
    logged = {d.dataset.name: d.dataset.digest for d in curate_run.inputs.dataset_inputs}
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"][CURATE_TARGET]["outs"]
    assert logged == {o["path"].rsplit("/", 1)[1].removesuffix(".jsonl"): o["md5"] for o in lock if o["path"].endswith(".jsonl")}
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=ws, env=workspace_env(ws), capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr


def test_prefect_flow_run_completed(tiny_ws):
    ws, _, it = tiny_ws
    flow_run = mlflow_client(ws).get_run(it).data.tags["prefect_flow_run_id"]
    assert prefect_state(ws, flow_run) == "COMPLETED"


def test_invalid_setting_fails_fast_naming_key_and_range(tiny_ws):
    ws, _, _ = tiny_ws
    start = time.time()
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "sft.learning_rate=-1")
    assert proc.returncode == 2
    assert "sft.learning_rate=-1" in proc.stderr and "valid range is [1e-08, 1.0]" in proc.stderr
    assert time.time() - start < 30  # before Prefect, MLflow or any model is touched


def test_failed_gate_fails_flow_and_moves_nothing(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    champion = client.get_model_version_by_alias("posttrain", "champion").version
    versions = len(client.search_model_versions("name = 'posttrain'"))
    # The repo's gates (every trained stage has a section and passes) with an impossible final floor.
    spec = tiny_gates(ws)
    spec["final"]["floors"] = yaml.safe_load((ws / "tests" / "fixtures" / "impossible_gates.yaml").read_text())["final"]["floors"]
    (ws / "runs" / "impossible_final_gates.yaml").write_text(yaml.safe_dump(spec))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "evaluate.gates_file=runs/impossible_final_gates.yaml")
    assert proc.returncode == 1
    assert "gate 'final'" in proc.stderr and "math_accuracy" in proc.stderr
    assert len(client.search_model_versions("name = 'posttrain'")) == versions  # nothing registered
    assert client.get_model_version_by_alias("posttrain", "champion").version == champion  # no alias moved
    exp = client.get_experiment_by_name("posttrain")
    failed = client.search_runs([exp.experiment_id], "tags.kind = 'iteration' and attributes.status = 'FAILED'",
                                order_by=["attributes.start_time DESC"])[0]
    assert failed.data.tags.get("stage.sft.reused") == "true"  # unchanged stages reused, not recomputed
    candidate = client.get_run(failed.data.tags["stage.safety.run_id"]).data.tags["model_version"].split("/")[1]
    tags = client.get_model_version("posttrain", candidate).tags  # the reused candidate, re-gated
    assert tags["gate.final"] == "failed" and "math_accuracy" in tags["gate.final.failures"]
    assert prefect_state(ws, failed.data.tags["prefect_flow_run_id"]) == "FAILED"
    checks = json.loads(open(client.download_artifacts(failed.info.run_id, "gates/gate.json")).read())
    assert [c["metric"] for c in checks if not c["passed"]] == ["math_accuracy"]


def test_every_iteration_ends_with_its_report_card(tiny_ws):
    """Written by the flow as it ends, before anyone asks: on disk, in MLflow, named in the summary."""
    ws, proc, it = tiny_ws
    card = ws / "runs" / "reports" / it / "report.md"
    assert f"report card: {card}" in proc.stdout
    text = card.read_text()
    assert text.startswith(f"# Iteration {it}") and "- gates: sft passed" in text and "![" in text
    logged = {a.path for a in mlflow_client(ws).list_artifacts(it, "report")}
    assert "report/report.md" in logged and any(p.endswith(".png") for p in logged)


def test_report_card_table_and_plots(tiny_ws, tmp_path):
    ws, _, it = tiny_ws
    out = tmp_path / "report"
    proc = posttrain(ws, "report", it, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| math_accuracy |" in proc.stdout and "| refusal_rate |" in proc.stdout
    assert "| items worse↓ / better↑ than base |" in proc.stdout  # evaluate.final's paired counts vs base
    assert "| checkpoint (boundary items) |" in proc.stdout and "items that got worse / better" in proc.stdout
    assert "- status: FINISHED" in proc.stdout and "- profile: tiny; git SHA: " in proc.stdout
    assert "- gates: sft passed, align passed, reason passed, safety passed, final passed" in proc.stdout
    assert "- champion: posttrain/" in proc.stdout and "Missing:" not in proc.stdout
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6 and all(p.stat().st_size > 5_000 for p in pngs)
    client = mlflow_client(ws)
    logged = {a.path for a in client.list_artifacts(it, "report")}
    assert {f"report/{p.name}" for p in pngs} | {"report/report.md"} <= logged


def test_training_curves_are_streamed_once_per_step(tiny_ws):
    """Per-step training metrics reach MLflow while a stage trains (tracking.stream_metrics), each
    step once; an intermediate pass of a multi-pass stage has its own prefix."""
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    tags = client.get_run(it).data.tags
    steps = [m.step for m in client.get_metric_history(tags["stage.sft.run_id"], "train/loss")]
    assert len(steps) >= 4 and len(steps) == len(set(steps)), steps
    safety = client.get_run(tags["stage.safety.run_id"]).data.metrics
    assert "train.sft/loss" in safety, sorted(safety)  # safety's refusal-SFT pass (trainer/sft/)


def test_mlflow_ui_names_runs_by_node_and_describes_the_iteration(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    parent = client.get_run(it)
    assert parent.info.run_name.startswith("iteration-tiny-20")  # kind, profile, UTC date
    tags = parent.data.tags
    assert tags["mlflow.source.git.commit"] == tags["git_sha"].removesuffix("-dirty")
    assert "**FINISHED**" in tags["mlflow.note.content"] and f"posttrain report {it}" in tags["mlflow.note.content"]
    names = {c.info.run_name for c in children(client, it)}
    assert {"sft", "reward_model", "evaluate.base", "evaluate.sft", "evaluate.final"} <= names, names


ARTIFACT = """
import asyncio, json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
async def main():
    async with get_client() as c:
        run = await c.read_flow_run(sys.argv[1])
        arts = await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=sys.argv[2:])))
        print(json.dumps({"name": run.name, "artifacts": {a.key: a.data for a in arts}}))
asyncio.run(main())
"""


def test_prefect_run_is_named_and_carries_the_iteration_card(tiny_ws):
    """What the Prefect UI shows for an iteration: a run named by profile and date, a markdown
    artifact with every node (ran / reused), the gates and a link to the MLflow parent run."""
    ws, _, it = tiny_ws
    flow_run_id = mlflow_client(ws).get_run(it).data.tags["prefect_flow_run_id"]
    out = subprocess.run([sys.executable, "-c", ARTIFACT, flow_run_id, f"iteration-{it}", f"mlflow-{it}"], cwd=ws,
                         env=workspace_env(ws), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["name"].startswith("tiny-20")
    card = found["artifacts"][f"iteration-{it}"]
    assert f"/runs/{it})" in card and "| sft | ran |" in card and "| final | passed |" in card
    assert found["artifacts"][f"mlflow-{it}"].endswith(f"/runs/{it})")
