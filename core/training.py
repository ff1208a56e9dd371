"""What every training stage shares: loading checkpoints, trainer arguments, the non-finite guard,
and saving. Stages call TRL trainers directly with these pieces; there is no trainer base class.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from core import jsonl
from core.config import ModelConfig, TrainConfig
from core.models import check_checkpoint
from core.stage_dir import is_complete, mark_complete

# Trainer checkpoints live in out/trainer/checkpoint-<global step>/ (the HF Trainer's naming); each
# is usable only once its COMPLETE.json exists, written by MarkCheckpoint after the last file.
CHECKPOINT_PREFIX = "checkpoint-"


class NonFiniteError(FloatingPointError):
    pass


def dtype(model_cfg: ModelConfig):
    import torch

    return getattr(torch, model_cfg.dtype)


# Every load refuses custom code and pickled weights first (models.check_checkpoint says why the
# transformers flags alone are not enough); the flags stay as the second line of defence.
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    check_checkpoint(path, weights=False)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def load_policy(path: str, model_cfg: ModelConfig):
    from transformers import AutoModelForCausalLM

    check_checkpoint(path)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype(model_cfg), use_safetensors=True, trust_remote_code=False)


def load_reward_model(path: str, model_cfg: ModelConfig, pad_token_id: int):
    from transformers import AutoModelForSequenceClassification

    check_checkpoint(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=dtype(model_cfg), use_safetensors=True, trust_remote_code=False
    )
    model.config.pad_token_id = pad_token_id
    return model


def load_rows(path: Path, limit: int | None = None):
    """A curated JSONL split as a `datasets.Dataset` (first `limit` rows)."""
    from datasets import Dataset

    rows = jsonl.read(path)
    return Dataset.from_list(rows[:limit] if limit else rows)


def guard_callback():
    """Abort on the first non-finite loss or gradient norm. The HF Trainer would otherwise keep
    training on NaN weights (and by default filters NaN out of the logged loss)."""
    from transformers import TrainerCallback

    class NonFiniteGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(float(value)):
                    raise NonFiniteError(
                        f"{key}={value} at step {state.global_step}: training diverged. Lower the learning "
                        f"rate or check the data; no checkpoint from this run will be registered."
                    )

    return NonFiniteGuard()


def stream_callback():
    """Each logged step's numbers to the stage's MLflow run as they are logged (tracking.stream_metrics),
    as `train/<key>`, or `train.<phase>/<key>` for an intermediate pass (trainer/<phase>/)."""
    from transformers import TrainerCallback

    from core import tracking

    class StreamToMlflow(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:
                return
            out = Path(args.output_dir)
            prefix = f"train.{out.name}" if out.parent.name == "trainer" else "train"
            values = {f"{prefix}/{k}": float(v) for k, v in (logs or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            tracking.stream_metrics(values, state.global_step)

    return StreamToMlflow()


def stage_label(output_dir: str) -> str:
    """`sft`, or `safety/dpo` for a pass: the stage dir is runs/stages/<stage>/<key>/trainer[/<pass>]."""
    out = Path(output_dir)
    if out.parent.name == "trainer":
        return f"{out.parent.parent.parent.name}/{out.name}"
    return out.parent.parent.name


def progress_callback():
    """A live progress line per training run (core/progress.py): step/total, loss, tokens/s, ETA;
    at the end one line saying what ran (steps, minutes, first and last loss)."""
    from transformers import TrainerCallback

    from core.progress import Progress

    class TrainingProgress(TrainerCallback):
        def __init__(self):
            self.progress, self.losses, self.tokens = None, [], (0.0, 0.0)

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = Progress(stage_label(args.output_dir), state.max_steps, done=state.global_step)
                self.losses, self.tokens = [], (time.monotonic(), 0.0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if self.progress is None or "loss" not in logs:
                return
            self.losses.append(float(logs["loss"]))
            shown = {"loss": f"loss {float(logs['loss']):.4g}"}
            if "num_tokens" in logs:
                now, seen = time.monotonic(), float(logs["num_tokens"])
                then, before = self.tokens
                if now > then and seen > before:
                    shown["tok/s"] = f"{(seen - before) / (now - then):.0f} tok/s"
                self.tokens = (now, seen)
            self.progress.shown.update(shown)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.done)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is None:
                return
            minutes = (time.monotonic() - self.progress.started) / 60
            loss = f", loss {self.losses[0]:.4g} -> {self.losses[-1]:.4g}" if self.losses else ""
            self.progress.close(f"{self.progress.label}: ran {state.global_step - self.progress.first} steps in "
                                f"{minutes:.1f} min{loss}")
            self.progress = None

    return TrainingProgress()


def trainer_kwargs(cfg: TrainConfig, model_cfg: ModelConfig, out: Path, seed: int, phase: str = "") -> dict:
    """Arguments shared by every TRL *Config: schedule, batch, precision, logging, seeds.

    phase: names an intermediate training pass of a multi-pass stage (safety: refusal SFT, then
    DPO); its checkpoints go to out/trainer/<phase>/ so each pass resumes only from its own."""
    import torch

    return dict(
        output_dir=str(out / "trainer" / phase) if phase else str(out / "trainer"),
        learning_rate=cfg.learning_rate,
        # epochs > 0 sizes the run by passes over the data (cluster profiles); otherwise max_steps.
        max_steps=-1 if cfg.epochs > 0 else cfg.max_steps,
        num_train_epochs=cfg.epochs if cfg.epochs > 0 else 1.0,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a fraction of max_steps
        logging_steps=1,
        logging_nan_inf_filter=False,
        # In-stage checkpoints for resume (0 = off). Two kept: the Trainer rotates old ones out
        # before our marker lands on the new one, so with one kept a kill in that window would
        # leave no complete checkpoint at all.
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 500,
        save_total_limit=2,
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=model_cfg.trains_in_bf16,
        # Explicit: TRL's configs default gradient checkpointing on (config.TrainConfig says why not).
        activation_checkpointing=cfg.activation_checkpointing,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def checkpoint_callback():
    """Write COMPLETE.json into each trainer checkpoint after all of its files are on disk.

    The Trainer calls on_save after _save_checkpoint has written the weights (safetensors),
    optimizer.pt, scheduler.pt, rng_state.pth and trainer_state.json, so a marker means all of them
    are complete; a kill before it leaves an unmarked directory that resume_point() deletes."""
    from transformers import TrainerCallback

    class MarkCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            # Flush the files before the marker, so a marker never outlives its data on a crash of
            # the machine (not just of the process): one fsync per file of the checkpoint.
            for f in ckpt.rglob("*"):
                if f.is_file():
                    fd = os.open(f, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            mark_complete(ckpt, {"global_step": state.global_step})

    return MarkCheckpoint()


def _step(ckpt: Path) -> int:
    return int(ckpt.name[len(CHECKPOINT_PREFIX):])


def resume_point(trainer_dir: Path) -> Path | None:
    """The last complete checkpoint in a trainer's output_dir from an unfinished earlier attempt, or None.

    Unmarked checkpoint dirs (killed mid-save) are deleted, never loaded. On resume the Trainer
    reads optimizer.pt, scheduler.pt and rng_state.pth with torch.load(weights_only=True), the
    restricted unpickler that only rebuilds tensors and plain containers (no code runs), and it
    never reads training_args.bin back. These files were written by this stage into its own
    version-keyed directory, so we accept them; model weights are read only as safetensors
    (check_checkpoint refuses a pickle-only checkpoint)."""
    root = Path(trainer_dir)
    if not root.is_dir():
        return None
    marked = []
    for ckpt in root.glob(f"{CHECKPOINT_PREFIX}*"):
        if is_complete(ckpt) and ckpt.name[len(CHECKPOINT_PREFIX):].isdigit():
            marked.append(ckpt)
        else:
            shutil.rmtree(ckpt)
    if not marked:
        return None
    last = max(marked, key=_step)
    check_checkpoint(str(last))
    return last


def quiet(trainer):
    """The trainer without transformers' PrinterCallback: its dict per log call (training steps,
    evaluate()) went to stdout, into the command's results; the progress line replaces it and the
    values go to MLflow."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def fit(trainer) -> float:
    """trainer.train(), resumed from the last complete checkpoint in its output_dir if an earlier
    attempt of this same stage version left one. Returns the global step resumed from (0: fresh)."""
    quiet(trainer)
    ckpt = resume_point(Path(trainer.args.output_dir))
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    return float(_step(ckpt)) if ckpt else 0.0


def callbacks() -> list:
    """Callbacks every trainer gets: the non-finite guard, the checkpoint marker, the MLflow stream
    and the progress line."""
    return [guard_callback(), checkpoint_callback(), stream_callback(), progress_callback()]


def peft_config(cfg: TrainConfig, task_type: str = "CAUSAL_LM"):
    """A LoRA config for the TRL trainer's `peft_config`, or None for a full fine-tune (lora_r=0).

    task_type SEQ_CLS (the reward model) also trains the fresh scalar head in full: a LoRA delta
    on a randomly initialised head would leave it almost random."""
    if cfg.lora_r == 0:
        return None
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    return LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none", task_type=task_type,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )


def finish(trainer, out: Path, tokenizer, resumed_from: float, before: dict, phase: str = ""):
    """Save the trained weights as plain safetensors under out/model (LoRA adapters merged, so every
    later stage and evaluation loads an ordinary checkpoint). Returns (train metrics, the saved
    model); resumed_from is what fit() returned; before is snapshot() of the input weights.
    An intermediate phase saves to out/model.<phase> and out/log_history.<phase>.json instead."""
    from peft import PeftModel

    model_dir = out / (f"model.{phase}" if phase else "model")
    if isinstance(trainer.model, PeftModel):
        model = trainer.model.merge_and_unload()
        if trainer.is_world_process_zero():
            model.save_pretrained(model_dir, safe_serialization=True)
    else:
        model = trainer.model
        trainer.save_model(str(model_dir))  # every process: FSDP gathers the shards through it
        # save_model also pickles the TrainingArguments; nothing reads it back, and a pickle in a
        # checkpoint we publish to MLflow is a loading hazard for whoever downloads it.
        if trainer.is_world_process_zero():
            (model_dir / "training_args.bin").unlink()
    history = trainer.state.log_history
    if trainer.is_world_process_zero():  # distributed: one writer per file
        tokenizer.save_pretrained(model_dir)
        (out / (f"log_history.{phase}.json" if phase else "log_history.json")).write_text(json.dumps(history, indent=1))
    summary = next((h for h in reversed(history) if "train_loss" in h), {})
    # Mean of the per-step losses over the whole run: the Trainer's own train_loss averages only
    # the steps of the last attempt, so it would differ between a resumed and an uninterrupted run.
    losses = [h["loss"] for h in history if "loss" in h]
    metrics = {"train_loss": sum(losses) / len(losses) if losses else float("nan"),
               "train_runtime_s": summary.get("train_runtime", float("nan")),
               "steps": float(trainer.state.global_step), "resumed_from_step": resumed_from,
               "param_delta_l2": param_change(before, model)}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteError(f"non-finite final training metrics {metrics}")
    # The final weights are in out/model; the checkpoints (weights + 2x optimizer state each) would
    # only triple the size of a stage dir that is kept as long as its version is.
    if trainer.is_world_process_zero() and Path(trainer.args.output_dir).exists():
        shutil.rmtree(trainer.args.output_dir)
    return metrics, model


def param_change(before: dict, model) -> float:
    """L2 distance between a state-dict snapshot and the trained weights: 0 means nothing learned."""
    import torch

    total = 0.0
    for name, p in model.state_dict().items():
        if name in before:
            total += torch.sum((p.detach().float().cpu() - before[name]) ** 2).item()
    return math.sqrt(total)


def snapshot(model) -> dict:
    return {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
