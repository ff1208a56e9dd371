"""align: preference optimisation of the SFT policy with a TRL trainer (method: dpo | kto | orpo | simpo),
or online RL against the reward model (method: rloo, TRL RLOOTrainer).

DPO/KTO use the frozen input checkpoint as reference (TRL builds it); ORPO and SimPO need none.
Chosen and rejected log-probs are logged separately (log_history -> MLflow per step): both falling
is margin collapse, flagged as margin_collapse=1. With `on_policy: true` the pairs are sampled
from the input policy and ranked by verifier + reward model (tasks/onpolicy.py) instead of read
from the curated split. Run alone: `posttrain stage align --profile tiny`.
"""

from __future__ import annotations

from pathlib import Path

from core import training
from core.config import AlignConfig, ModelConfig
from tasks import onpolicy, stage_data


def _trainer(cfg: AlignConfig, model_cfg: ModelConfig, policy, tok, dataset, out: Path, seed: int):
    common = dict(**training.trainer_kwargs(cfg, model_cfg, out, seed), beta=cfg.beta,
                  max_length=cfg.max_length, dataset_num_proc=None)
    trainer_args = dict(model=policy, train_dataset=dataset, processing_class=tok, callbacks=training.callbacks(),
                        peft_config=training.peft_config(cfg))
    if cfg.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(args=DPOConfig(**common, loss_type=[cfg.loss_type]), **trainer_args)
    if cfg.method == "kto":
        from datasets import Dataset
        from trl import KTOConfig, KTOTrainer

        # KTO learns from unpaired thumbs-up / thumbs-down: each pair gives one of each.
        rows = [{"prompt": r["prompt"], "completion": r[side], "label": side == "chosen"}
                for r in dataset for side in ("chosen", "rejected")]
        trainer_args["train_dataset"] = Dataset.from_list(rows)
        return KTOTrainer(args=KTOConfig(**common), **trainer_args)
    if cfg.method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(args=ORPOConfig(**common), **trainer_args)
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    # SimPO = CPO's simpo loss without its behaviour-cloning term (cpo_alpha=0).
    return CPOTrainer(args=CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0), **trainer_args)


def margin_metrics(history: list[dict]) -> dict[str, float]:
    steps = [h for h in history if "logps/chosen" in h and "logps/rejected" in h]
    if len(steps) < 2:
        return {}
    first, last = steps[0], steps[-1]
    chosen = last["logps/chosen"] - first["logps/chosen"]
    rejected = last["logps/rejected"] - first["logps/rejected"]
    # Both log-probs falling means the margin grew only by pushing everything down.
    return {"logps_chosen_delta": chosen, "logps_rejected_delta": rejected,
            "margin_collapse": float(chosen < 0 and rejected < 0)}


def rloo(cfg: AlignConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int,
         reward_model: str) -> dict[str, float]:
    """Online RL against the reward model (TRL RLOOTrainer): on_policy_samples completions per
    prompt of the preference split, leave-one-out baseline, KL to the input policy weighted by beta."""
    from trl import RLOOConfig, RLOOTrainer

    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    rm_tok = training.load_tokenizer(reward_model)
    rm = training.load_reward_model(reward_model, model_cfg, rm_tok.pad_token_id)
    dataset = training.load_rows(data, cfg.max_examples).select_columns(["prompt"])
    kwargs = training.trainer_kwargs(cfg, model_cfg, out, seed)
    # A batch holds whole groups: at least on_policy_samples completions (of one prompt).
    kwargs["per_device_train_batch_size"] = max(cfg.per_device_batch_size, cfg.on_policy_samples)
    args = RLOOConfig(**kwargs, num_generations=cfg.on_policy_samples, max_completion_length=cfg.on_policy_max_new_tokens,
                      temperature=cfg.on_policy_temperature, beta=cfg.beta)
    trainer = RLOOTrainer(model=policy, reward_funcs=[rm], args=args, train_dataset=dataset, processing_class=tok,
                          reward_processing_classes=[rm_tok], callbacks=training.callbacks(),
                          peft_config=training.peft_config(cfg))
    resumed = training.fit(trainer)
    metrics, _ = training.finish(trainer, out, tok, resumed, before)
    steps = [h for h in trainer.state.log_history if "reward" in h]
    if steps:
        metrics.update({"reward_first": steps[0]["reward"], "reward_last": steps[-1]["reward"]})
        kls = [h["kl"] for h in steps if "kl" in h]
        if kls:
            metrics["kl_last"] = kls[-1]
    return metrics


SPLITS = ("preferences",)  # the curated splits this stage reads (their DVC md5s are inputs of its version key)
FILES = ()  # other files it reads (their sha256s are inputs too)


def uses_reward_model(cfg: AlignConfig) -> bool:
    """On-policy pairs are ranked by the reward model, and RLOO optimises it: only then is the
    reward model an input (a new one does not re-run offline DPO)."""
    return cfg.on_policy or cfg.method == "rloo"


def run(cfg: AlignConfig, model_cfg: ModelConfig, *, model: str, data: dict[str, Path], out: Path, seed: int,
        reward_model: str | None = None, rm_max_length: int = 384) -> dict[str, float]:
    """data: {split: path} of SPLITS; reward_model: needed when uses_reward_model(cfg)."""
    preferences = data["preferences"]
    if uses_reward_model(cfg) and reward_model is None:
        raise ValueError("align.on_policy and align.method=rloo need the reward model checkpoint (reward_model=...); "
                         "stages.align passes the iteration's reward_model output")
    if cfg.method == "rloo":
        return rloo(cfg, model_cfg, model=model, data=preferences, out=out, seed=seed, reward_model=reward_model)
    dataset = stage_data.load(cfg, preferences, "preference").select_columns(["prompt", "chosen", "rejected"])
    metrics: dict[str, float] = {}
    if cfg.on_policy:
        from datasets import Dataset

        rows = training.load_rows(preferences, cfg.on_policy_prompts).to_list()
        scored = onpolicy.sample_and_score(policy=model, reward_model=reward_model, model_cfg=model_cfg, rows=rows,
                                           n=cfg.on_policy_samples, max_new_tokens=cfg.on_policy_max_new_tokens,
                                           temperature=cfg.on_policy_temperature, batch_size=8, seed=seed,
                                           rm_max_length=rm_max_length)
        pairs = onpolicy.best_vs_worst(scored)
        onpolicy.write(pairs, out / "onpolicy_pairs.jsonl")
        if not pairs:
            raise ValueError(f"on-policy sampling gave no pair: all {cfg.on_policy_samples} samples of each of "
                             f"{len(rows)} prompts scored the same. Raise align.on_policy_temperature or "
                             f"on_policy_samples, or train on the curated pairs (align.on_policy=false)")
        metrics.update({"onpolicy_prompts": float(len(rows)), "onpolicy_pairs": float(len(pairs)),
                        "onpolicy_rm_margin": sum(p["chosen_key"][1] - p["rejected_key"][1] for p in pairs) / len(pairs)})
        dataset = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    metrics.update(train(cfg, model_cfg, model=model, dataset=dataset, out=out, seed=seed))
    return metrics


def train(cfg: AlignConfig, model_cfg: ModelConfig, *, model: str, dataset, out: Path, seed: int) -> dict[str, float]:
    """Preference-train `model` on a {prompt, chosen, rejected} dataset; shared with safety's DPO pass."""
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    trainer = _trainer(cfg, model_cfg, policy, tok, dataset, out, seed)
    resumed = training.fit(trainer)
    metrics, _ = training.finish(trainer, out, tok, resumed, before)
    metrics["train_rows"] = float(len(dataset))
    metrics.update(margin_metrics(trainer.state.log_history))
    return metrics
