"""align: direct preference optimisation of the SFT policy (TRL DPOTrainer).

The reference model is the frozen input checkpoint (TRL builds it when ref_model is None).
Chosen and rejected log-probs are logged separately: both falling is margin collapse.
Run alone: `posttrain stage align --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain import training
from posttrain.config import AlignConfig, ModelConfig


def run(cfg: AlignConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    from trl import DPOConfig, DPOTrainer

    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    dataset = training.load_rows(data, cfg.max_examples).select_columns(["prompt", "chosen", "rejected"])
    args = DPOConfig(**training.trainer_kwargs(cfg, model_cfg, out, seed), beta=cfg.beta, loss_type=[cfg.loss_type],
                     max_length=cfg.max_length, dataset_num_proc=None)
    trainer = DPOTrainer(model=policy, args=args, train_dataset=dataset, processing_class=tok,
                         callbacks=[training.guard_callback()])
    trainer.train()
    metrics = training.finish(trainer, out, tok)
    metrics["param_delta_l2"] = training.param_change(before, trainer.model)
    metrics["train_rows"] = float(len(dataset))
    steps = [h for h in trainer.state.log_history if "logps/chosen" in h]
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        metrics["logps_chosen_delta"] = last["logps/chosen"] - first["logps/chosen"]
        metrics["logps_rejected_delta"] = last["logps/rejected"] - first["logps/rejected"]
        # Both log-probs falling means the margin grew only by pushing everything down.
        metrics["margin_collapse"] = float(metrics["logps_chosen_delta"] < 0 and metrics["logps_rejected_delta"] < 0)
    return metrics
