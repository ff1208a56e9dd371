"""Fault injection for checkpoint loading: pickled weights and custom model code are refused.

Run: .venv/bin/python -m pytest -q tests/faults/test_safe_loading.py
Every `core.training.load_*` calls `core.models.check_checkpoint` first; these tests put
what an attacker (or a careless export) would put where a checkpoint is expected and check that
nothing of it runs. The payloads write a canary file when executed; a test passes only if the load
is refused with an error naming the file or directory and the fix, and the canary stays absent.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

from core import training
from core.config import ModelConfig
from core.models import UnsafeCheckpoint

ROOT = Path(__file__).resolve().parents[2]
OUR_CODE = ("posttrain", "flows", "pipeline", "tasks", "evaluations", "core")  # what runs in the pipeline (tests excluded)
MODEL_CFG = ModelConfig(source="micro_llama")  # float32; only dtype is read by the loaders

LOADERS = {
    "policy": lambda path: training.load_policy(str(path), MODEL_CFG),
    "reward_model": lambda path: training.load_reward_model(str(path), MODEL_CFG, pad_token_id=0),
}


class CanaryPayload:
    """Unpickling this runs code: `pickle` calls exec(source), which writes the canary file."""

    def __init__(self, canary: Path):
        self.source = f"open({str(canary)!r}, 'w').write('pickle payload ran')"

    def __reduce__(self):
        return (exec, (self.source,))


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=32)
    return LlamaForCausalLM(config)


def _pickle_only_checkpoint(directory: Path, canary: Path | None) -> Path:
    """config.json + pytorch_model.bin (a torch.save pickle), as `save_pretrained(safe_serialization=False)`
    used to write. With `canary`, the pickle also carries the code-executing payload."""
    import torch

    model = _tiny_llama()
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    state = dict(model.state_dict())
    if canary is not None:
        state["payload"] = CanaryPayload(canary)
    torch.save(state, directory / "pytorch_model.bin")
    return directory


def test_the_canary_payload_runs_when_unpickled_unsafely(tmp_path):
    """Positive control: the payload below is live, so its canary staying absent means something."""
    import torch

    canary = tmp_path / "canary"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", canary)
    torch.load(ckpt / "pytorch_model.bin", weights_only=False)  # what an unsafe loader would do
    assert canary.read_text() == "pickle payload ran"


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("payload", [False, True], ids=["plain-pickle", "code-executing-pickle"])
def test_pickle_only_checkpoint_is_refused_naming_dir_and_fix(tmp_path, loader, payload):
    canary = tmp_path / "canary"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", canary if payload else None)
    with pytest.raises(UnsafeCheckpoint) as err:
        LOADERS[loader](ckpt)
    message = str(err.value)
    assert str(ckpt) in message and "pytorch_model.bin" in message
    assert "only from safetensors" in message and "save_pretrained" in message  # why, and the fix
    assert not canary.exists()


@pytest.mark.parametrize("name", ["model.pt", "weights.ckpt", "model.pkl"])
def test_other_pickle_names_are_refused_too(tmp_path, name):
    canary = tmp_path / "canary"
    ckpt = _pickle_only_checkpoint(tmp_path / "ckpt", canary)
    (ckpt / "pytorch_model.bin").rename(ckpt / name)
    with pytest.raises(UnsafeCheckpoint, match=name):
        LOADERS["policy"](ckpt)
    assert not canary.exists()


def test_directory_without_any_weights_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    _tiny_llama().config.save_pretrained(ckpt)
    with pytest.raises(UnsafeCheckpoint, match="holds no weights and no \\*.safetensors"):
        LOADERS["policy"](ckpt)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_pickles_beside_safetensors_are_never_opened(tmp_path, loader):
    """Real checkpoints carry pickles (the HF Trainer writes training_args.bin next to the weights):
    the safetensors load, and the pickles, payload included, are not read."""
    canary = tmp_path / "canary"
    ckpt = tmp_path / "ckpt"
    _tiny_llama().save_pretrained(ckpt, safe_serialization=True)
    evil = _pickle_only_checkpoint(tmp_path / "evil", canary) / "pytorch_model.bin"
    for name in ("pytorch_model.bin", "training_args.bin"):
        shutil.copy(evil, ckpt / name)
    model = LOADERS[loader](ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not canary.exists()


def _with_auto_map(ckpt: Path, file: str, canary: Path) -> Path:
    """Declare custom code in `file` (and ship it): transformers would import modeling_evil.py."""
    path = ckpt / file
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel",
                          "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
                          "AutoTokenizer": ["modeling_evil.EvilTokenizer", None]}
    path.write_text(json.dumps(config))
    (ckpt / "modeling_evil.py").write_text(f"open({str(canary)!r}, 'w').write('custom code ran')\n")
    return path


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    from core.models import gguf_tokenizer_dir

    return Path(shutil.copytree(gguf_tokenizer_dir(ModelConfig()), tmp_path / "tokenizer"))


def test_auto_map_in_config_is_refused_by_every_loader(tmp_path, tokenizer_dir):
    """model_type stays `llama`: transformers alone (trust_remote_code=False) would silently load its
    built-in Llama instead of the shipped code; we refuse instead."""
    canary = tmp_path / "canary"
    ckpt = tmp_path / "ckpt"
    _tiny_llama().save_pretrained(ckpt, safe_serialization=True)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, ckpt / f.name)
    config = _with_auto_map(ckpt, "config.json", canary)
    loaders = {**LOADERS, "tokenizer": lambda path: training.load_tokenizer(str(path))}
    for name, load in loaders.items():
        with pytest.raises(UnsafeCheckpoint) as err:
            load(ckpt)
        message = str(err.value)
        assert str(config) in message and "remote code is disabled" in message, name
    assert not canary.exists()
    assert "modeling_evil" not in sys.modules


def test_auto_map_in_tokenizer_config_is_refused(tmp_path, tokenizer_dir):
    canary = tmp_path / "canary"
    config = _with_auto_map(tokenizer_dir, "tokenizer_config.json", canary)
    with pytest.raises(UnsafeCheckpoint, match="remote code is disabled") as err:
        training.load_tokenizer(str(tokenizer_dir))
    assert str(config) in str(err.value)
    assert not canary.exists()


def test_a_clean_checkpoint_still_loads(tmp_path, tokenizer_dir):
    """Control for the refusals above: the same loaders accept a plain safetensors checkpoint."""
    ckpt = tmp_path / "ckpt"
    _tiny_llama().save_pretrained(ckpt, safe_serialization=True)
    assert training.load_policy(str(ckpt), MODEL_CFG).config.model_type == "llama"
    assert training.load_reward_model(str(ckpt), MODEL_CFG, pad_token_id=0).config.num_labels == 1
    assert training.load_tokenizer(str(tokenizer_dir)).pad_token == "<|endoftext|>"


# --- source checks: no unsafe deserialisation and no remote code anywhere in our code ---------

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle"}


def _unsafe_calls(source: str) -> list[str]:
    """Calls that can execute code from a file: torch.load without weights_only=True, any
    pickle-family load, and from_pretrained & co. with trust_remote_code or use_safetensors=False."""
    tree = ast.parse(source)
    torch_load_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                        and node.module in ("torch", "torch.serialization") for alias in node.names if alias.name == "load"}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else "")
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        kwargs = {k.arg: k.value for k in node.keywords}

        def const(key):
            return kwargs[key].value if isinstance(kwargs.get(key), ast.Constant) else kwargs.get(key, "absent")

        is_torch_load = (name == "load" and owner in ("torch", "torch.serialization")) or (
            isinstance(func, ast.Name) and func.id in torch_load_names)
        if is_torch_load and const("weights_only") is not True:
            found.append(f"line {node.lineno}: {ast.unparse(node)} (needs weights_only=True)")
        if name in ("load", "loads", "Unpickler") and owner in PICKLE_MODULES:
            found.append(f"line {node.lineno}: {ast.unparse(node)} (unpickles)")
        if "trust_remote_code" in kwargs and const("trust_remote_code") is not False:
            found.append(f"line {node.lineno}: {ast.unparse(node)} (trust_remote_code must be False)")
        if "use_safetensors" in kwargs and const("use_safetensors") is not True:
            found.append(f"line {node.lineno}: {ast.unparse(node)} (use_safetensors must be True)")
    return found


def test_the_source_scan_catches_what_it_looks_for():
    """Control: each forbidden form is reported, the allowed forms are not."""
    bad = ("import torch, pickle\nfrom torch import load as tl\n"
           "torch.load(f)\ntorch.load(f, weights_only=False)\ntl(f)\npickle.loads(b)\n"
           "M.from_pretrained(p, trust_remote_code=True)\nM.from_pretrained(p, trust_remote_code=flag)\n"
           "M.from_pretrained(p, use_safetensors=False)\n")
    assert len(_unsafe_calls(bad)) == 7
    good = "import torch\ntorch.load(f, weights_only=True)\nM.from_pretrained(p, use_safetensors=True, trust_remote_code=False)\n"
    assert _unsafe_calls(good) == []


def test_our_code_never_unpickles_or_enables_remote_code():
    files = sorted(f for d in OUR_CODE for f in (ROOT / d).rglob("*.py"))
    assert len(files) > 20  # the scan reads the real tree
    found = {str(f.relative_to(ROOT)): calls for f in files if (calls := _unsafe_calls(f.read_text(encoding="utf-8")))}
    assert found == {}


# --- end to end: a pickle where the pipeline expects its base checkpoint ------------------------

@pytest.mark.e2e
def test_pipeline_refuses_a_pickled_base_checkpoint(tiny_ws, tmp_path, tokenizer_dir):
    from conftest import mlflow_client, posttrain

    ws, _, _ = tiny_ws
    canary = tmp_path / "canary"
    ckpt = _pickle_only_checkpoint(tmp_path / "pickled-base", canary)
    for f in tokenizer_dir.iterdir():  # the tokenizer loads; the weights must not
        shutil.copy(f, ckpt / f.name)
    client = mlflow_client(ws)
    versions = len(client.search_model_versions("name = 'posttrain'"))
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "model.source=hub", "--set", f"model.hub_id={ckpt}")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage 'sft' failed" in proc.stderr and "UnsafeCheckpoint" in proc.stderr
    assert f"checkpoint directory {ckpt} holds only pickled weights (pytorch_model.bin)" in proc.stderr
    assert not canary.exists()
    assert len(client.search_model_versions("name = 'posttrain'")) == versions  # nothing registered
