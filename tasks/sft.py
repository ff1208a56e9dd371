"""sft: supervised fine-tuning on curated chat demonstrations (TRL SFTTrainer).

Loss on assistant tokens only: the chat template's {% generation %} markers give TRL the
assistant mask, so prompts are not learned and the end-of-turn token is (or generation never
stops). Run alone: `posttrain stage sft --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain import training
from posttrain.config import ModelConfig, TrainConfig


def train(cfg: TrainConfig, model_cfg: ModelConfig, *, model: str, dataset, out: Path, seed: int) -> dict[str, float]:
    """Assistant-only SFT of `model` on a `messages` dataset; shared with the safety stage."""
    from trl import SFTConfig, SFTTrainer

    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    args = SFTConfig(
        **training.trainer_kwargs(cfg, model_cfg, out, seed),
        max_length=cfg.max_length,
        assistant_only_loss=True,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=policy, args=args, train_dataset=dataset.select_columns(["messages"]),
                         processing_class=tok, callbacks=[training.guard_callback()])
    trainer.train()
    metrics = training.finish(trainer, out, tok)
    metrics["param_delta_l2"] = training.param_change(before, trainer.model)
    metrics["train_rows"] = float(len(dataset))
    return metrics


def run(cfg: TrainConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    return train(cfg, model_cfg, model=model, dataset=training.load_rows(data, cfg.max_examples), out=out, seed=seed)
