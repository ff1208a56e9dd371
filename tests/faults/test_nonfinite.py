"""A diverging stage aborts within one step, loudly, and leaves nothing that looks finished."""

from __future__ import annotations

import math
import shutil

import pytest
from safetensors.torch import load_file, save_file

from core import training
from core.config import ModelConfig, SFTConfig
from core.models import micro_llama_dir
from tasks import sft


@pytest.fixture()
def nan_model(tmp_path):
    """The tiny model with one poisoned weight: the first forward pass yields a NaN loss."""
    src = micro_llama_dir(ModelConfig(source="micro_llama"), seed=0)
    dst = tmp_path / "nan-model"
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    name = next(k for k in weights if k.endswith("input_layernorm.weight"))
    weights[name][0] = float("nan")
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_nan_loss_aborts_within_one_step(nan_model, tmp_path, curated):
    cfg = SFTConfig(max_steps=5, per_device_batch_size=2, max_length=64, learning_rate=1e-3)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(training.NonFiniteError, match=r"at step [01]: training diverged"):
        sft.run(cfg, ModelConfig(source="micro_llama"), model=str(nan_model), data={"sft": curated / "sft.jsonl"},
                out=out, seed=0)
    assert not (out / "model").exists()  # nothing saved that a later stage could pick up


def test_guard_flags_nan_and_inf_grad_norm():
    guard = training.guard_callback()

    class State:
        global_step = 7

    for bad in (math.nan, math.inf):
        with pytest.raises(training.NonFiniteError, match="grad_norm"):
            guard.on_log(None, State(), None, logs={"loss": 1.0, "grad_norm": bad})
    guard.on_log(None, State(), None, logs={"loss": 1.0, "grad_norm": 2.0})  # finite passes


@pytest.mark.e2e
def test_nan_stage_fails_flow_and_registers_nothing(nan_model, tiny_ws):
    from conftest import latest_iteration, mlflow_client, posttrain

    ws, _, _ = tiny_ws
    client = mlflow_client(ws)
    versions = len(client.search_model_versions("name = 'posttrain'"))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "model.source=hub", "--set", f"model.hub_id={nan_model}")
    assert proc.returncode == 1
    assert "stage 'sft' failed: NonFiniteError" in proc.stderr, proc.stderr[-2000:]
    assert len(client.search_model_versions("name = 'posttrain'")) == versions
    assert latest_iteration(client).info.status == "FAILED"
