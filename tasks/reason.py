"""reason: GRPO with verifiable rewards (TRL GRPOTrainer; its default loss is DAPO-style).

Rewards: correctness of the final answer checked with math-verify (1/0), plus a small format
reward for a \\boxed{} answer that bootstraps a model that never uses the format. Monitors
logged per step: reward mean/std, fraction of zero-std groups (no gradient), KL, completion
length, clipped ratio. Run alone: `posttrain stage reason --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain import training
from posttrain.config import ModelConfig, ReasonConfig
from evaluations.math_score import has_answer_format, is_correct

FORMAT_WEIGHT = 0.1  # small next to correctness (1.0), so the format cannot be the whole reward


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def correctness_reward(completions, answer, **_) -> list[float]:
    return [1.0 if is_correct(_text(c), gold) else 0.0 for c, gold in zip(completions, answer)]


def format_reward(completions, **_) -> list[float]:
    return [FORMAT_WEIGHT if has_answer_format(_text(c)) else 0.0 for c in completions]


def run(cfg: ReasonConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    dataset = training.load_rows(data, cfg.max_examples).select_columns(["prompt", "answer"])
    kwargs = training.trainer_kwargs(cfg, model_cfg, out, seed)
    # One optimizer step consumes batch * accumulation completions = that many / G prompts.
    kwargs["per_device_train_batch_size"] = max(cfg.per_device_batch_size, cfg.num_generations)
    args = GRPOConfig(
        **kwargs,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
    )
    trainer = GRPOTrainer(model=policy, reward_funcs=[correctness_reward, format_reward], args=args,
                          train_dataset=dataset, processing_class=tok, callbacks=[training.guard_callback()])
    trainer.train()
    metrics = training.finish(trainer, out, tok)
    metrics["param_delta_l2"] = training.param_change(before, trainer.model)
    steps = [h for h in trainer.state.log_history if "reward" in h]
    if steps:
        metrics["reward_first"] = steps[0]["reward"]
        metrics["reward_last"] = steps[-1]["reward"]
        metrics["frac_zero_std_groups"] = sum(h.get("frac_reward_zero_std", 0.0) for h in steps) / len(steps)
        metrics["completion_length_mean"] = sum(h.get("completions/mean_length", 0.0) for h in steps) / len(steps)
    return metrics
