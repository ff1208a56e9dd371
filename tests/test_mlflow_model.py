"""Every registered model version is an MLflow transformers model (core.mlflow_model): in a fresh
process, offline, the champion generates text and the reward model scores one, through the
transformers flavour and through pyfunc (what `mlflow models serve` runs)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import mlflow_client, workspace_env

from core.paths import layout

pytestmark = pytest.mark.e2e
POLICY, REWARD = "posttrain", "posttrain-reward-model"
TASKS = {POLICY: "text-generation", REWARD: "text-classification"}

# Runs in a fresh process against the registry alone: prints what each loaded model produced.
LOAD = r"""
import json

import mlflow.pyfunc
import mlflow.transformers
import torch

prompt, text = "What is 2 + 2?", "Question: what is 2 + 2? Answer: 4"
pipe = mlflow.transformers.load_model("models:/posttrain@champion")
generated = pipe(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)[0]["generated_text"]
ids = pipe(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
served = mlflow.pyfunc.load_model("models:/posttrain@champion").predict([prompt], params={"max_new_tokens": 4})

scorer = mlflow.transformers.load_model("models:/posttrain-reward-model@reward_model")
score = scorer(text, function_to_apply="none")[0]["score"]
parts = mlflow.transformers.load_model("models:/posttrain-reward-model@reward_model", return_type="components")
with torch.no_grad():
    logits = parts["model"](**parts["tokenizer"](text, return_tensors="pt")).logits
scored = mlflow.pyfunc.load_model("models:/posttrain-reward-model@reward_model").predict([text])

print("RESULT " + json.dumps({
    "pipeline": type(pipe).__name__, "generated": generated, "new_tokens": len(ids) - len(pipe.tokenizer(prompt)["input_ids"]),
    "served": served, "scorer": type(scorer).__name__, "score": score, "logits": logits.tolist(),
    "scored": scored["score"].tolist(),
}))
"""


def _versions(client) -> list:
    return [v for name in (POLICY, REWARD) for v in client.search_model_versions(f"name = '{name}'")]


def _local(uri: str) -> Path:
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "file", uri  # the test store keeps its artifacts on this disk
    return Path(urllib.parse.unquote(parsed.path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_every_version_is_an_mlflow_transformers_model_of_the_stage_weights(tiny_ws):
    ws, _, _ = tiny_ws
    versions = _versions(mlflow_client(ws))
    assert {v.name for v in versions} == {POLICY, REWARD}
    for v in versions:
        logged = _local(v.source)
        mlmodel = yaml.safe_load((logged / "MLmodel").read_text())
        flavor = mlmodel["flavors"]["transformers"]
        assert flavor["task"] == TASKS[v.name], (v.name, v.version)
        assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.transformers"
        assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "string", "required": True}]
        assert mlmodel["signature"]["outputs"]
        assert (logged / "components" / "tokenizer" / "tokenizer_config.json").is_file()  # nothing from the Hub
        out = layout(ws).stage_dir(v.tags["stage"], v.tags["version_key"])
        weights = out / "model" / "model.safetensors"
        assert _sha256(logged / flavor["model_binary"] / "model.safetensors") == _sha256(weights), (v.name, v.version)
        # The build's temporary directory is gone, and with it the hard links to the stage's weights.
        assert not list(out.glob(".mlflow_model-*")) and weights.stat().st_nlink == 1


def test_aliases_load_offline_in_a_fresh_process_and_generate_or_score(tiny_ws, tmp_path):
    ws, _, _ = tiny_ws
    env = {**workspace_env(ws), "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'runs' / 'mlflow.db'}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["pipeline"] == "TextGenerationPipeline"
    assert result["generated"].startswith("What is 2 + 2?") and result["new_tokens"] == 4
    assert len(result["served"]) == 1 and isinstance(result["served"][0], str)
    # The reward model: a one-logit head whose raw value the pipeline and pyfunc both return.
    assert result["scorer"] == "TextClassificationPipeline"
    assert result["logits"] == [[pytest.approx(result["score"], abs=1e-4)]]
    assert result["scored"] == [pytest.approx(result["score"], abs=1e-4)]
