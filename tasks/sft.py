"""sft: supervised fine-tuning on curated chat demonstrations (TRL SFTTrainer).

Loss on assistant tokens only: the chat template's {% generation %} markers give TRL the
assistant mask, so prompts are not learned and the end-of-turn token is (or generation never
stops). Optional packing (padding-free best-fit), LoRA (merged on save), and an eval loss on rows
held out of the training file. Run alone: `posttrain stage sft --profile tiny`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core import training
from core.config import ModelConfig, SFTConfig
from tasks import stage_data


def holdout(dataset, n: int, column: str = "messages"):
    """(train, eval): the n rows whose `column` hashes lowest go to eval. Content-keyed, so the same
    rows are held out whatever the order of the file (and whatever the seed)."""
    if n == 0:
        return dataset, None
    if n >= len(dataset):
        raise ValueError(f"eval_rows={n} would leave no training rows (the split has {len(dataset)}); "
                         f"lower eval_rows or raise max_examples")
    keys = [hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest() for m in dataset[column]]
    order = sorted(range(len(dataset)), key=keys.__getitem__)
    held = sorted(order[:n])
    return dataset.select(sorted(order[n:])), dataset.select(held)


def trainer(cfg: SFTConfig, model_cfg: ModelConfig, *, policy, tokenizer, dataset, out: Path, seed: int,
            eval_dataset=None, phase: str = ""):
    """The SFTTrainer for assistant-only SFT of `policy` on a `messages` dataset (tests inspect it)."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    args = TRLSFTConfig(
        **training.trainer_kwargs(cfg, model_cfg, out, seed, phase),
        max_length=cfg.max_length,
        assistant_only_loss=True,
        packing=cfg.packing,
        packing_strategy="bfd",  # keeps conversation boundaries (truncates overflow instead of splitting)
        eval_packing=False,  # eval loss per conversation, comparable across packing settings
        per_device_eval_batch_size=cfg.per_device_batch_size,
        dataset_num_proc=None,
    )
    return SFTTrainer(model=policy, args=args, train_dataset=dataset.select_columns(["messages"]),
                      eval_dataset=eval_dataset.select_columns(["messages"]) if eval_dataset is not None else None,
                      processing_class=tokenizer, callbacks=training.callbacks(), peft_config=training.peft_config(cfg))


def train(cfg: SFTConfig, model_cfg: ModelConfig, *, model: str, dataset, out: Path, seed: int,
          phase: str = "") -> dict[str, float]:
    """Assistant-only SFT of `model` on a `messages` dataset; shared with safety and reason (rs_sft).
    phase: an intermediate pass of a multi-pass stage (see training.trainer_kwargs)."""
    train_rows, eval_rows = holdout(dataset, cfg.eval_rows)
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    sft = training.quiet(trainer(cfg, model_cfg, policy=policy, tokenizer=tok, dataset=train_rows, out=out, seed=seed,
                                 eval_dataset=eval_rows, phase=phase))
    # Eval loss of the input checkpoint on the held-out rows: the baseline the trained one must beat.
    eval_before = sft.evaluate()["eval_loss"] if eval_rows is not None else None
    resumed = training.fit(sft)
    metrics, _ = training.finish(sft, out, tok, resumed, before, phase)
    metrics["train_rows"] = float(len(train_rows))
    if eval_rows is not None:
        metrics["eval_loss_before"] = eval_before
        metrics["eval_loss"] = sft.evaluate()["eval_loss"]
        metrics["eval_rows"] = float(len(eval_rows))
    return metrics


SPLITS = ("sft",)  # the curated splits this stage reads (their DVC md5s are inputs of its version key)
FILES = ()  # other files it reads (their sha256s are inputs too)


def run(cfg: SFTConfig, model_cfg: ModelConfig, *, model: str, data: dict[str, Path], out: Path,
        seed: int) -> dict[str, float]:
    """data: {split: path} of SPLITS."""
    return train(cfg, model_cfg, model=model, dataset=stage_data.load(cfg, data["sft"], "messages"), out=out, seed=seed)
