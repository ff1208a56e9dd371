"""Evaluation at every stage boundary and its per-stage gate, on the tiny profile with real
Prefect, MLflow, DVC and TRL: scores logged per boundary, a failed stage gate stops the flow
before the next stage, tags the model version and moves no alias."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import children, iteration_id, latest_iteration, mlflow_client, posttrain, prefect_state, tiny_gates

pytestmark = pytest.mark.e2e
BOUNDARIES = ("sft", "align", "reason", "safety")


def _evals(client, it: str) -> dict:
    return {c.data.tags["label"]: c for c in children(client, it) if c.data.tags["stage"] == "evaluate"}


def test_every_boundary_is_evaluated_and_gated(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    evals = _evals(client, it)
    for stage in BOUNDARIES:
        run = evals[stage]
        m = run.data.metrics
        assert {"math_accuracy", "answer_format_rate", "refusal_rate", "over_refusal_rate", "rm_score_mean",
                "win_rate_vs_input"} <= set(m), stage
        assert m["eval_items"] == 8 + 8 + 8  # boundary subsets: 8 math, 8 harmful, 8 benign
        assert run.data.params["config.boundary"] == "True"
        assert run.data.params["config.suite_versions.evaluate"] and run.data.params["config.suite_versions.math"]
        assert "samples.jsonl" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # Item-level pairing with the previous boundary (sft: evaluate.base's first items): the flips
    # account for each rate's change exactly.
    previous = {k[len("boundary."):]: v for k, v in evals["base"].data.metrics.items() if k.startswith("boundary.")}
    for stage in BOUNDARIES:
        m = evals[stage].data.metrics
        for metric in ("math_accuracy", "answer_format_rate", "refusal_rate"):
            flips = m[f"paired.{metric}.better"] - m[f"paired.{metric}.worse"]
            assert flips / 8 == pytest.approx(m[metric] - previous[metric]), (stage, metric)
            assert 0.0 < m[f"paired.{metric}.p_worse"] <= 1.0
        previous = m
    # The full evaluations keep their sets and carry the boundary view the sft gate compares with.
    base = evals["base"].data.metrics
    assert base["eval_items"] > evals["sft"].data.metrics["eval_items"]
    assert {"boundary.math_accuracy", "boundary.refusal_rate", "boundary.rm_score_mean"} <= set(base)
    parent = client.get_run(it)
    versions = {v.tags["stage"]: v for v in client.search_model_versions("name = 'posttrain'") if v.tags["iteration"] == it}
    for stage in BOUNDARIES:
        assert parent.data.metrics[f"gate.{stage}.passed"] == 1.0
        checks = json.loads(open(client.download_artifacts(it, f"gates/gate.{stage}.json")).read())
        assert checks and all(c["passed"] and c["gate"] == stage for c in checks)
        assert versions[stage].tags[f"gate.{stage}"] == "passed"


def test_failed_stage_gate_stops_the_flow_there(tiny_ws, tmp_path):
    ws, _, _ = tiny_ws
    client = mlflow_client(ws)
    aliases = {a: client.get_model_version_by_alias("posttrain", a).version for a in ("champion", "align", "reason")}
    spec = tiny_gates(ws)
    spec["align"] = {**spec["align"], "floors": {**spec["align"]["floors"], "math_accuracy": 1.5, "refusal_rate": 1.5}}
    gates_file = tmp_path / "impossible_align.yaml"
    gates_file.write_text(yaml.safe_dump(spec))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", f"evaluate.gates_file={gates_file}")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "gate 'align'" in proc.stderr and "math_accuracy" in proc.stderr and "refusal_rate" in proc.stderr  # every failing check
    failed = latest_iteration(client)
    assert failed.info.status == "FAILED"
    assert prefect_state(ws, failed.data.tags["prefect_flow_run_id"]) == "FAILED"
    tags = failed.data.tags
    assert "stage.evaluate.align.run_id" in tags  # evaluated, then gated
    assert not [k for k in tags if k.startswith(("stage.reason.", "stage.evaluate.reason.", "stage.safety.",
                                                  "stage.evaluate.final."))]  # nothing downstream started
    checks = json.loads(open(client.download_artifacts(failed.info.run_id, "gates/gate.align.json")).read())
    assert sorted(c["metric"] for c in checks if not c["passed"]) == ["math_accuracy", "refusal_rate"]
    assert failed.data.metrics["gate.align.passed"] == 0.0
    align_version = client.get_run(tags["stage.align.run_id"]).data.tags["model_version"].split("/")[1]
    version_tags = client.get_model_version("posttrain", align_version).tags
    assert version_tags["gate.align"] == "failed" and "math_accuracy" in version_tags["gate.align.failures"]
    assert {a: client.get_model_version_by_alias("posttrain", a).version for a in aliases} == aliases  # no alias moved


def test_missing_stage_section_or_metric_fails_closed(tiny_ws, tmp_path):
    ws, _, _ = tiny_ws
    spec = tiny_gates(ws)
    del spec["reason"]
    spec["sft"] = {**spec["sft"], "floors": {**spec["sft"]["floors"], "no_such_metric": 0.0}}
    gates_file = tmp_path / "gaps.yaml"
    gates_file.write_text(yaml.safe_dump(spec))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", f"evaluate.gates_file={gates_file}")
    assert proc.returncode == 1 and "gate 'sft'" in proc.stderr and "no_such_metric = nan violates" in proc.stderr, \
        proc.stderr[-2000:]
    del spec["sft"]["floors"]["no_such_metric"]
    gates_file.write_text(yaml.safe_dump(spec))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", f"evaluate.gates_file={gates_file}")
    assert proc.returncode == 1 and "gate 'reason'" in proc.stderr and "no section 'reason'" in proc.stderr, proc.stderr[-2000:]


def test_rerun_boundary_evaluation_is_regated(tiny_ws):
    ws, _, it = tiny_ws
    # A new generation batch size: a new version key, the same items, so evaluate.align must run.
    proc = posttrain(ws, "rerun", "evaluate.align", "--iteration", it, "--set", "evaluate.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(ws)
    rerun = iteration_id(proc.stdout)
    assert [c.data.tags["label"] for c in children(client, rerun)] == ["align"]  # only that evaluation ran
    assert client.get_run(rerun).data.metrics["gate.align.passed"] == 1.0
