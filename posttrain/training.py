"""What every training stage shares: loading checkpoints, trainer arguments, the non-finite guard,
and saving. Stages call TRL trainers directly with these pieces; there is no trainer base class.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from posttrain.config import ModelConfig, TrainConfig
from posttrain.models import check_checkpoint


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

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
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


def trainer_kwargs(cfg: TrainConfig, model_cfg: ModelConfig, out: Path, seed: int) -> dict:
    """Arguments shared by every TRL *Config: schedule, batch, precision, logging, seeds."""
    import torch

    return dict(
        output_dir=str(out / "trainer"),
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a fraction of max_steps
        logging_steps=1,
        logging_nan_inf_filter=False,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=model_cfg.dtype == "bfloat16",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def finish(trainer, out: Path, tokenizer) -> dict[str, float]:
    """Save the trained weights as safetensors under out/model; return the final train metrics."""
    model_dir = out / "model"
    trainer.save_model(str(model_dir))
    # save_model also pickles the TrainingArguments; nothing reads it back, and a pickle in a
    # checkpoint we publish to MLflow is a loading hazard for whoever downloads it.
    (model_dir / "training_args.bin").unlink()
    tokenizer.save_pretrained(model_dir)
    history = trainer.state.log_history
    (out / "log_history.json").write_text(json.dumps(history, indent=1))
    summary = next((h for h in reversed(history) if "train_loss" in h), {})
    metrics = {"train_loss": summary.get("train_loss", float("nan")), "train_runtime_s": summary.get("train_runtime", float("nan")),
               "steps": float(trainer.state.global_step)}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteError(f"non-finite final training metrics {metrics}")
    return metrics


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
