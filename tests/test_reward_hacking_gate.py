"""A policy trained on a reward it can game is stopped at the reason gate by a monitor, while the
same run on the real rewards passes (evaluations/monitors.py, gates.yaml's reason monitors)."""

from __future__ import annotations

import json

from conftest import latest_iteration, mlflow_client, posttrain

# Enough GRPO steps on the tiny profile for a reward to change what its greedy replies look like.
STEPS = ("--set", "reason.max_steps=30")


def test_length_paying_reward_is_stopped_at_the_reason_gate_and_real_rewards_pass(tiny_ws):
    ws, _, _ = tiny_ws
    client = mlflow_client(ws)
    honest = posttrain(ws, "run", "--profile", "tiny", *STEPS)
    assert honest.returncode == 0, honest.stdout[-3000:] + honest.stderr[-3000:]
    champion = client.get_model_version_by_alias("posttrain", "champion").version

    hacked = posttrain(ws, "run", "--profile", "tiny", *STEPS,
                       "--set", "reason.extra_rewards=tests.fixtures.hackable_reward:length")
    assert hacked.returncode == 1, hacked.stdout[-3000:]
    assert "gate 'reason'" in hacked.stderr, hacked.stderr[-3000:]
    fired = [line for line in hacked.stderr.splitlines() if "monitor" in line and "FIRED" in line]
    assert fired and all(("length_drift" in f or "reward_hacking" in f) for f in fired), hacked.stderr[-3000:]
    assert any("response_tokens_mean" in f or "rm_score_mean" in f for f in fired)  # the numbers, not just a name

    run = latest_iteration(client)
    checks = json.loads(open(client.download_artifacts(run.info.run_id, "gates/gate.reason.json")).read())
    assert {c["metric"] for c in checks if not c["passed"]} <= {"length_drift", "reward_hacking"}
    assert not [k for k in run.data.tags if k.startswith(("stage.safety.", "stage.evaluate.final."))]
    assert client.get_model_version_by_alias("posttrain", "champion").version == champion  # nothing promoted
