"""lm-evaluation-harness through the evaluate stage: local-file tasks on the tiny model, offline
(HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1 from conftest), scores as MLflow metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import children, iteration_id, mlflow_client, posttrain

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "evaluations" / "lm_eval_tasks"
LOCAL = ["posttrain_math_local", "posttrain_mc_local"]


def test_runs_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_metric_names_are_mlflow_safe():
    from evaluations.lm_eval_harness import flatten, metric_name

    assert metric_name("gsm8k", "exact_match,strict-match") == "lm_eval.gsm8k.exact_match_strict-match"
    assert metric_name("mmlu", "acc,none") == "lm_eval.mmlu.acc"
    scores = flatten({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A", "sample_len": 8}})
    assert scores == {"lm_eval.t.acc": 0.5}
    with pytest.raises(FloatingPointError):
        flatten({"t": {"acc,none": float("nan")}})


def test_local_task_data_files_resolve_next_to_the_yaml(tmp_path, monkeypatch):
    from evaluations.lm_eval_harness import task_specs

    monkeypatch.chdir(tmp_path)  # not the project: a relative data_files path must not depend on the cwd
    _, specs = task_specs(LOCAL, TASKS)
    files = [s["dataset_kwargs"]["data_files"]["test"] for s in specs]
    assert files == [str(TASKS / f"{n}.jsonl") for n in LOCAL] and all(Path(f).is_file() for f in files)


def test_unknown_task_and_missing_data_are_clear_errors(tmp_path):
    from evaluations.lm_eval_harness import task_specs

    with pytest.raises(ValueError, match="unknown lm-eval task or group 'no_such_task'"):
        task_specs(["no_such_task"], TASKS)
    broken = tmp_path / "tasks"
    broken.mkdir()
    (broken / "broken.yaml").write_text((TASKS / "posttrain_mc_local.yaml").read_text()
                                        .replace("task: posttrain_mc_local", "task: broken_local")
                                        .replace("posttrain_mc_local.jsonl", "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"broken.yaml: dataset_kwargs.data_files names missing.jsonl"):
        task_specs(["broken_local"], broken)


def test_local_tasks_on_the_tiny_model(tmp_path):
    """Both lm-eval request types (generate_until as gsm8k, loglikelihood as mmlu) on the tiny
    model: scores are fractions of the items asked for, and the results JSON is written."""
    from core import models, training
    from core.config import build_section
    from evaluations import lm_eval_harness

    model_cfg = build_section("model", {"source": "micro_llama"})
    path = str(models.micro_llama_dir(model_cfg, 0))
    tok, policy = training.load_tokenizer(path), training.load_policy(path, model_cfg)
    metrics = lm_eval_harness.run(policy, tok, LOCAL, TASKS, limit=8, batch_size=4, allow_code_execution=False, out=tmp_path)
    assert set(metrics) == {"lm_eval.posttrain_math_local.exact_match_last_number", "lm_eval.posttrain_mc_local.acc"}
    for v in metrics.values():
        assert v * 8 == round(v * 8) and 0.0 <= v <= 1.0  # k correct out of 8 items
    doc = json.loads((tmp_path / "lm_eval_results.json").read_text())
    assert {t: doc["n-samples"][t]["effective"] for t in LOCAL} == {t: 8 for t in LOCAL}
    assert doc["results"]["posttrain_mc_local"]["acc,none"] == metrics["lm_eval.posttrain_mc_local.acc"]


@pytest.mark.e2e
def test_lm_eval_through_the_evaluate_stage(tiny_ws):
    """`posttrain rerun evaluate.final` with lm-eval tasks selected: the scores are metrics of the
    evaluate run and the results JSON is its artifact."""
    ws, _, it = tiny_ws
    proc = posttrain(ws, "rerun", "evaluate.final", "--iteration", it,
                     "--set", f"evaluate.lm_eval_tasks={','.join(LOCAL)}", "--set", "evaluate.lm_eval_limit=4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = mlflow_client(ws)
    rerun = iteration_id(proc.stdout)
    [run] = [c for c in children(client, rerun) if c.data.tags.get("label") == "final"]
    m = run.data.metrics
    assert {"lm_eval.posttrain_math_local.exact_match_last_number", "lm_eval.posttrain_mc_local.acc"} <= set(m)
    assert run.data.params["config.stage.lm_eval_tasks"] == ",".join(LOCAL)
    assert run.data.params["config.suite_versions.lm_eval"]
    assert "lm_eval_results.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
