"""safety: refusal SFT on harmful prompts, mixed with helpful answers to benign look-alikes.

Calibrated refusals (short, no lecture, a safe alternative) for harmful prompts; the benign
twins of the same topics are answered helpfully so the model does not learn "edgy topic =>
refuse" (over-refusal). Run alone: `posttrain stage safety --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain import training
from posttrain.config import ModelConfig, SafetyConfig
from tasks import sft


def run(cfg: SafetyConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    dataset = training.load_rows(data, cfg.max_examples)
    metrics = sft.train(cfg, model_cfg, model=model, dataset=dataset, out=out, seed=seed)
    labels = dataset["label"]
    metrics["harmful_fraction"] = labels.count("harmful") / len(labels)
    return metrics
