"""DVC lineage of the data pipeline, with the real `dvc` CLI in fresh workspaces: a second
`dvc repro` (in another checkout holding the first's outputs) changes nothing, and changing one
mixture weight re-runs only the stages that depend on it (its split's stage and curate_publish);
then stages.curate records every split's dvc.lock md5 as an MLflow dataset digest and logs the
dataset cards."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import children, make_workspace, mlflow_client, workspace_env


def _dvc(ws, *args):
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, env=workspace_env(ws), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


@pytest.mark.e2e
def test_repro_twice_is_a_noop_and_one_weight_reruns_only_its_dependents(tmp_path, monkeypatch, curated_ws):
    seed, first = curated_ws  # the first `dvc repro`, in a fresh checkout
    assert _ran(first) == {"curate_eval", "curate_sft", "curate_preferences", "curate_rl", "curate_safety", "curate_publish"}
    # The second, in another checkout holding the first's outputs and cache (as after `dvc pull`).
    ws = make_workspace(tmp_path, data_from=seed)
    second = _dvc(ws, "repro")
    assert _ran(second) == set() and "Data and pipelines are up to date" in second
    params = (ws / "params.yaml").read_text()
    # One mixture weight of the rl split, whatever its current value, moved by 0.05.
    line = re.search(r"arithmetic_prompts: \{kind: packaged, name: \w+, limit: \d+, weight: ([\d.]+),", params)
    assert line, "params.yaml: curate.splits.rl.sources.arithmetic_prompts not found"
    weight = float(line.group(1))
    (ws / "params.yaml").write_text(params.replace(line.group(0), line.group(0).replace(f"weight: {line.group(1)}", f"weight: {weight + 0.05:.2f}")))
    third = _dvc(ws, "repro")
    assert _ran(third) == {"curate_rl", "curate_publish"}, third[-2000:]
    assert "curate_sft' didn't change" in third
    status = _dvc(ws, "status")
    assert "up to date" in status
    pushed = _dvc(ws, "push")  # the default remote (runs/dvc-remote) works out of the box
    assert "pushed" in pushed and any((ws / "runs" / "dvc-remote").rglob("*")), pushed

    # stages.curate (what `posttrain run` calls): dvc repro is a no-op now; every split's md5 from
    # dvc.lock is an MLflow dataset digest of the curate run, and every card is logged next to it.
    from core import dvc
    from pipeline import iterations, stages

    monkeypatch.setenv("POSTTRAIN_RUNS", str(ws / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PATH", workspace_env(ws)["PATH"])
    it = iterations.open_iteration(str(ws), "tiny", [])
    record = stages.curate(it)
    iterations.close_iteration(it, "FINISHED")
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"][dvc.CURATE_TARGET]["outs"]
    expected = {o["path"].rsplit("/", 1)[1].removesuffix(".jsonl"): o["md5"] for o in lock if o["path"].endswith(".jsonl")}
    client = mlflow_client(ws)
    run = next(c for c in children(client, it.parent_run_id) if c.data.tags["stage"] == "curate")
    assert {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs} == expected and len(expected) == 8
    assert record.extra["md5"] == expected
    cards = {a.path for a in client.list_artifacts(run.info.run_id, "dataset_cards")}
    assert cards == {f"dataset_cards/{s}.md" for s in expected}
    assert all(run.data.metrics[f"rows.{s}"] > 0 for s in expected)
