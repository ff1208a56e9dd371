"""The baseline of the sft_vs_trl and packing figures: a plain TRL SFT script, as a user would write it by hand.

    python -m bench.plain_trl_sft --model DIR --data sft.jsonl --max-length 384 --batch 4 --steps 30 \
        --lr 2e-5 --seed 0 --out DIR --result result.json [--packing] [--bf16] [--activation-checkpointing] [--padding-batches N]

It imports only datasets, transformers and TRL (nothing of posttrain) and trains with the same
semantics as our `sft` stage (assistant-only loss, cosine schedule, warmup fraction, precision, seed,
logging every step so TRL's `num_tokens` counter covers every step). The timer starts before the
data and the model are loaded and stops after the weights are saved, like the stage body's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--packing", action="store_true", help="TRL packing (BFD, padding-free)")
    # TRL's configs default to bf16=True (mixed precision, autocast on CPU too); our stage sets it
    # from model.dtype, so the baseline must be told, or it trains in bf16 against our fp32.
    ap.add_argument("--bf16", action="store_true", help="bf16 mixed precision (as our stage with model.dtype bfloat16)")
    # TRL's configs also default gradient checkpointing on; our stage follows
    # sft.activation_checkpointing (off on the default profile). Same setting, same compute.
    ap.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute activations in backward (as our stage with sft.activation_checkpointing)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--padding-batches", type=int, default=0,
                    help="after training (untimed), measure the padding share of this many batches of the trainer's dataloader")
    args = ap.parse_args()

    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    dataset = load_dataset("json", data_files=args.data, split="train").select_columns(["messages"])
    loaded = time.perf_counter()
    config = SFTConfig(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr,
        lr_scheduler_type="cosine", warmup_steps=args.warmup, max_length=args.max_length, assistant_only_loss=True,
        packing=args.packing, bf16=args.bf16, logging_steps=1, save_strategy="no", report_to="none", seed=args.seed,
        data_seed=args.seed, use_cpu=not torch.cuda.is_available(), activation_checkpointing=args.activation_checkpointing,
    )
    trainer = SFTTrainer(model=args.model, args=config, train_dataset=dataset)
    built = time.perf_counter()
    trainer.train()
    trained = time.perf_counter()
    trainer.save_model(args.out)
    wall = time.perf_counter() - started
    phases = {"load_dataset": loaded - started, "build_trainer (model load, tokenisation)": built - loaded,
              "train": trained - built, "save_model": started + wall - trained}

    history = trainer.state.log_history
    result = {
        "wall_s": wall,
        "train_runtime_s": next(h["train_runtime"] for h in reversed(history) if "train_runtime" in h),
        "num_tokens": max(h["num_tokens"] for h in history if "num_tokens" in h),
        "steps": trainer.state.global_step,
        "packing": args.packing,
        "bf16": config.bf16,
        "activation_checkpointing": config.activation_checkpointing,
        "phases": {k: {"s": v, "calls": 1} for k, v in phases.items()},
        "untimed_s": 0.0,  # the phases cover the whole timed span
        "torch_threads": torch.get_num_threads(),
    }
    if args.padding_batches:
        result["padding"] = padding_share(trainer, args.padding_batches)
    Path(args.result).write_text(json.dumps(result))


def padding_share(trainer, batches: int) -> dict:
    """Share of padding in the token slots of `batches` batches from the trainer's own dataloader
    (same collator, batch size and truncation as training). A padding-free batch is one flattened
    row with position_ids and no attention mask: no padding slots."""
    real = slots = seen = 0
    for batch in trainer.get_train_dataloader():
        if seen == batches:
            break
        seen += 1
        ids = batch["input_ids"]
        slots += ids.numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
    return {"batches": seen, "real_tokens": real, "token_slots": slots, "fraction": 1 - real / slots}


if __name__ == "__main__":
    main()
