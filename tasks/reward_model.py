"""reward_model: Bradley-Terry reward model initialised from the SFT checkpoint (TRL RewardTrainer).

Loss -log sigmoid(r_chosen - r_rejected) on a scalar head over the last token. Reports held-out
pair accuracy (a collapsed or inverted RM shows here first). Run alone:
`posttrain stage reward_model --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain import training
from posttrain.config import ModelConfig, RewardModelConfig
from evaluations.reward import pair_accuracy


def run(cfg: RewardModelConfig, model_cfg: ModelConfig, *, model: str, data: Path, eval_data: Path, out: Path,
        seed: int) -> dict[str, float]:
    from trl import RewardConfig, RewardTrainer

    tok = training.load_tokenizer(model)
    rm = training.load_reward_model(model, model_cfg, tok.pad_token_id)
    before = training.snapshot(rm)
    columns = ["prompt", "chosen", "rejected"]
    dataset = training.load_rows(data, cfg.max_examples).select_columns(columns)
    args = RewardConfig(**training.trainer_kwargs(cfg, model_cfg, out, seed), max_length=cfg.max_length, dataset_num_proc=None)
    trainer = RewardTrainer(model=rm, args=args, train_dataset=dataset, processing_class=tok,
                            callbacks=[training.guard_callback()])
    trainer.train()
    metrics = training.finish(trainer, out, tok)
    metrics["param_delta_l2"] = training.param_change(before, trainer.model)
    metrics["train_rows"] = float(len(dataset))
    held_out = training.load_rows(eval_data)
    metrics.update(pair_accuracy(trainer.model, tok, held_out, max_length=cfg.max_length, scores_out=out / "rm_scores.json"))
    return metrics
