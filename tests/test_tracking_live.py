"""What reaches MLflow while a stage is still running: its per-step metrics as they are logged,
and MLflow's own system metrics (a real sqlite tracking store)."""

from __future__ import annotations

import time

from mlflow import MlflowClient

from core import tracking


def test_stream_and_system_metrics_reach_the_run_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(tmp_path)
    run_id = tracking.start_child(tmp_path, "", "evaluate", {}, run_name="evaluate.sft")
    client = MlflowClient()
    assert client.get_run(run_id).info.run_name == "evaluate.sft"
    assert not tracking.stream_metrics({"train/loss": 1.0}, 1)  # outside a stage: nowhere to stream
    with tracking.streaming_to(run_id) as state, tracking.system_metrics(run_id, interval_s=0.3):
        for step, loss in ((3, 2.0), (4, 1.5), (5, 1.2)):
            assert tracking.stream_metrics({"train/loss": loss}, step)
            assert [m.value for m in client.get_metric_history(run_id, "train/loss")][-1] == loss  # there already
        time.sleep(1.0)
    assert state["steps"] == 3 and state["first_step"] == 3
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [(3, 2.0), (4, 1.5), (5, 1.2)]
    assert "system/cpu_utilization_percentage" in client.get_run(run_id).data.metrics
    tracking.log_history(run_id, [{"step": s, "loss": 9.0} for s in (1, 2, 3, 4)], before_step=state["first_step"])
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == [1, 2, 3, 4, 5]  # gap filled, once
