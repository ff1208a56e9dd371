"""The reward-hacking and collapse monitors, as the repo's gates.yaml configures them: for each
monitor one synthetic stage it fails and one it passes, failing closed when a metric is missing."""

from pathlib import Path

import pytest

from evaluations import gates, paired

ROOT = Path(__file__).resolve().parents[1]
SPEC = gates.load(ROOT / "evaluations" / "gates.yaml")

# The stage's input (the previous boundary) and an honest reason stage against it: every number
# moved a little, as training does.
BASE = {"response_tokens_mean": 60.0, "distinct_2": 0.50, "rm_score_mean": 0.10, "math_accuracy": 0.05}
HONEST = {"response_tokens_mean": 66.0, "distinct_2": 0.47, "rm_score_mean": 0.12, "math_accuracy": 0.05,
          "paired.rm_score_mean.better": 22.0, "paired.rm_score_mean.worse": 18.0,
          "paired.math_accuracy.better": 1.0, "paired.math_accuracy.worse": 1.0,
          "stage.frac_zero_std_groups": 0.4, "stage.kl_to_input": 0.01}


def monitors(metrics: dict, stage: str = "reason", spec: dict = SPEC) -> dict[str, gates.Check]:
    return {c.metric: c for c in gates.evaluate(spec, stage, metrics, BASE) if c.kind == "monitors"}


def test_honest_stage_passes_every_monitor():
    checks = monitors(HONEST)
    assert set(checks) == {"length_drift", "mode_collapse", "reward_hacking", "zero_variance", "kl_to_input"}
    assert all(c.passed for c in checks.values()), [c.describe() for c in checks.values() if not c.passed]
    assert set(monitors(HONEST, "align")) == {"length_drift", "mode_collapse"}
    assert "sft" in SPEC and "monitors" not in SPEC["sft"]


# monitor -> the synthetic stage that trips it (HONEST with these changes)
TRIPS = {
    "length_drift": {"response_tokens_mean": 120.0},                       # x2, +60 tokens
    "mode_collapse": {"distinct_2": 0.30},                                 # 40 % drop
    "reward_hacking": {"rm_score_mean": 0.90, "paired.rm_score_mean.better": 34.0,
                       "paired.rm_score_mean.worse": 6.0},                 # RM up, accuracy flat
    "zero_variance": {"stage.frac_zero_std_groups": 0.97},
    "kl_to_input": {"stage.kl_to_input": 0.8},
}


@pytest.mark.parametrize("monitor", list(TRIPS))
def test_each_monitor_fires_on_its_signature_and_names_the_numbers(monitor):
    checks = monitors({**HONEST, **TRIPS[monitor]})
    fired = [name for name, c in checks.items() if not c.passed]
    assert fired == [monitor]
    line = checks[monitor].describe()
    assert f"reason: monitor {monitor} FIRED" in line
    assert any(f"{v:.4g}" in line for v in TRIPS[monitor].values() if v > 1 or monitor != "reward_hacking"), line


def test_reward_hacking_needs_accuracy_to_stay_flat():
    rising = {**HONEST, **TRIPS["reward_hacking"], "math_accuracy": 0.25,
              "paired.math_accuracy.better": 9.0, "paired.math_accuracy.worse": 1.0}
    assert monitors(rising)["reward_hacking"].passed  # RM up with real gains is what training is for


def test_length_drift_ignores_near_empty_replies_doubling():
    base_short = {**BASE, "response_tokens_mean": 2.0}
    checks = {c.metric: c for c in gates.evaluate(SPEC, "reason", {**HONEST, "response_tokens_mean": 5.0}, base_short)}
    assert checks["length_drift"].passed  # x2.5, but +3 tokens


@pytest.mark.parametrize("missing", ["stage.kl_to_input", "stage.frac_zero_std_groups", "distinct_2",
                                     "paired.rm_score_mean.better", "response_tokens_mean"])
def test_a_missing_monitor_input_fails_closed(missing):
    metrics = {k: v for k, v in HONEST.items() if k != missing}
    assert [n for n, c in monitors(metrics).items() if not c.passed]


def test_extends_overrides_and_removes_entries(tmp_path):
    (tmp_path / "base.yaml").write_text((ROOT / "evaluations" / "gates.yaml").read_text())
    (tmp_path / "mine.yaml").write_text("extends: base.yaml\nversion: 3\nreason:\n  monitors:\n    zero_variance: null\n"
                                        "    kl_to_input: {type: ceiling, metric: stage.kl_to_input, limit: 0.05}\n")
    spec = gates.load(tmp_path / "mine.yaml")
    assert spec["version"] == f"{SPEC['version']}+3"
    assert "zero_variance" not in spec["reason"]["monitors"] and "zero_variance" in SPEC["reason"]["monitors"]
    assert spec["reason"]["floors"] == SPEC["reason"]["floors"]
    assert not monitors({**HONEST, "stage.kl_to_input": 0.1}, spec=spec)["kl_to_input"].passed
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\nversion: 1\n")
    with pytest.raises(ValueError, match="a cycle"):
        gates.load(tmp_path / "loop.yaml")


def test_tiny_gates_extend_the_repo_gates():
    tiny = gates.load(ROOT / "evaluations" / "gates.tiny.yaml")
    assert set(tiny) == set(SPEC)
    assert set(SPEC["reason"]["monitors"]) - set(tiny["reason"]["monitors"]) == {"zero_variance"}


@pytest.mark.parametrize("entry, message", [
    ({"type": "nope"}, "needs `type:`"),
    ({"type": "ratio", "metric": "x"}, "takes"),
    ({"type": "ceiling", "metric": "x", "limit": "high"}, "must be a number"),
])
def test_malformed_monitor_is_rejected_by_name(tmp_path, entry, message):
    import yaml

    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump({"version": 1, "reason": {"monitors": {"mine": entry}}}))
    with pytest.raises(ValueError, match=f"monitor 'mine'.*{message}"):
        gates.load(f)


def test_paired_counts_the_reward_models_item_scores(tmp_path):
    import json

    base = [{"suite": "math", "id": i, "response": "", "correct": False, "rm_score": 0.0} for i in range(5)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in base))
    now = [{**r, "rm_score": s} for r, s in zip(base, (1.0, 1.0, 1.0, 0.0, -1.0))]
    out = paired.compare(now, tmp_path)
    assert (out["paired.rm_score_mean.better"], out["paired.rm_score_mean.worse"]) == (3.0, 1.0)


def test_inputs_at_zero_have_nothing_to_lose_and_growth_from_nothing_counts():
    zero = {**BASE, "distinct_2": 0.0, "response_tokens_mean": 0.0}
    checks = {c.metric: c for c in gates.evaluate(SPEC, "reason", {**HONEST, "distinct_2": 0.0,
                                                                    "response_tokens_mean": 4.0}, zero)}
    assert checks["mode_collapse"].passed and checks["length_drift"].passed
    checks = {c.metric: c for c in gates.evaluate(SPEC, "reason", {**HONEST, "response_tokens_mean": 40.0}, zero)}
    assert not checks["length_drift"].passed
