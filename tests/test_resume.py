"""A stage killed mid-training resumes from its last *complete* checkpoint, and ends exactly where an
uninterrupted run ends: same weights (allclose), step count continued rather than restarted.

Real `posttrain run --profile tiny` processes (Prefect, MLflow, DVC, TRL) SIGKILLed as a process
group, as a preempted machine or an OOM kill would stop them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_workspace, posttrain, workspace_env

from core import training
from core.stage_dir import is_complete, mark_complete

SFT_STEPS = 40  # ~0.3 s/step on the tiny model: the kill lands well before the end
OVERRIDES = ("--set", f"sft.max_steps={SFT_STEPS}", "--set", "sft.save_steps=5")


def _marked(ws: Path) -> list[Path]:
    return sorted(ws.glob("runs/stages/sft/*/trainer/checkpoint-*/COMPLETE.json"))


def test_resume_point_ignores_and_deletes_unmarked_checkpoints(tmp_path):
    root = tmp_path / "trainer"
    for step in (2, 4, 6):
        (root / f"checkpoint-{step}").mkdir(parents=True)
        (root / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"")
    mark_complete(root / "checkpoint-2", {"global_step": 2})
    mark_complete(root / "checkpoint-4", {"global_step": 4})
    # checkpoint-6 has no marker: killed while saving; it must never be resumed from.
    assert training.resume_point(root) == root / "checkpoint-4"
    assert not (root / "checkpoint-6").exists()
    assert training.resume_point(tmp_path / "nothing-here") is None


@pytest.mark.e2e
def test_sigkill_mid_sft_then_resume_matches_uninterrupted(tmp_path, curated_ws):
    import torch
    from safetensors.torch import load_file

    from core import models
    from core.config import load_params
    from tasks import sft

    ws = make_workspace(tmp_path / "ws", data_from=curated_ws[0])
    # `posttrain stage sft` (what torchrun and SkyPilot call): curate + sft only, so neither run pays
    # for the other nine stages; the flow-level kill and resume is tests/test_orchestration.py's.
    cmd = [sys.executable, "-m", "posttrain", "stage", "sft", "--profile", "tiny", *OVERRIDES]
    proc = subprocess.Popen(cmd, cwd=ws, env=workspace_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # own process group: the kill takes every child with it
    deadline = time.time() + 300
    while not _marked(ws):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no marked sft checkpoint within 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()

    stage_dir = _marked(ws)[0].parents[2]
    assert not is_complete(stage_dir), "sft finished before the kill; the test did not interrupt it"
    killed_at = max(int(p.parent.name.split("-")[1]) for p in _marked(ws))
    assert 0 < killed_at < SFT_STEPS
    # A checkpoint killed mid-save (no marker) with a later step than any complete one: resuming
    # from it would skip to step 999 and the weights could not match.
    fake = stage_dir / "trainer" / "checkpoint-999"
    shutil.copytree(stage_dir / "trainer" / f"checkpoint-{killed_at}", fake)
    (fake / "COMPLETE.json").unlink()

    done = posttrain(ws, "stage", "sft", "--profile", "tiny", *OVERRIDES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert is_complete(stage_dir)
    record = json.loads((stage_dir / "COMPLETE.json").read_text())
    assert record["metrics"]["resumed_from_step"] == killed_at
    assert record["metrics"]["steps"] == SFT_STEPS
    history = json.loads((stage_dir / "log_history.json").read_text())
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == list(range(1, SFT_STEPS + 1))  # continued: each step once, none repeated or skipped
    assert not (stage_dir / "trainer").exists()  # checkpoints removed once the final model is saved

    # The uninterrupted reference: the same stage body, same config, data and seed, never killed.
    p = load_params(ws / "params.yaml", "tiny", [OVERRIDES[1], OVERRIDES[3]])
    ref = tmp_path / "reference"
    ref.mkdir()
    metrics = sft.run(p.sft, p.model, model=models.base_model(p.model, p.pipeline.seed),
                      data={"sft": ws / "data" / "curated" / "sft.jsonl"}, out=ref, seed=p.pipeline.seed)
    assert metrics["resumed_from_step"] == 0
    resumed = load_file(stage_dir / "model" / "model.safetensors")
    reference = load_file(ref / "model" / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.allclose(resumed[name], tensor, rtol=1e-5, atol=1e-6), name
    base = load_file(Path(models.base_model(p.model, p.pipeline.seed)) / "model.safetensors")
    assert any(not torch.equal(base[k], reference[k]) for k in reference)  # training moved the weights
    assert record["metrics"]["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-6)
