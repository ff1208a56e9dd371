"""reason: RL with verifiable rewards (method grpo: TRL GRPOTrainer, whose default loss is
DAPO-style) or rejection-sampling SFT (method rs_sft: best-of-N by verifier, then SFT on the kept
samples via tasks/sft.train).

Rewards (evaluations/verifiers.py, dispatched on each row's `verifier`): math via math-verify (1/0),
code by running its tests in the sandbox (share passed), ifeval by if-verifiable (share
followed); plus a small format reward for a \\boxed{} answer on math rows that bootstraps a model
that never uses the format. Monitors, from TRL's per-step logs (all steps also go to MLflow):
reward first/last, fraction of zero-std groups (no gradient), KL to the reference (only when
beta > 0; TRL does not compute it otherwise), completion length, the share of completions cut
at max_completion_length, and the share of tokens whose ratio was clipped.
What the stage is for is measured on `eval_rows` prompts held out of the rl split (content-keyed,
never trained on): greedy verifiable accuracy of the input checkpoint and of the trained one,
overall and per verifier, and the difference in absolute points; and kl_to_input, the trained
policy's per-token KL to its input on its own held-out replies (evaluations/drift.py), which the
reason gate's monitors read as stage.kl_to_input whatever beta is.
`extra_rewards` adds reward functions by import path (module:function) for experiments; each
module's source is part of the stage's version key (pipeline/stages.py), and the reason gate's
monitors catch one the policy learns to game.
Run alone: `posttrain stage reason --profile tiny`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from core import distributed, training
from core.config import ModelConfig, ReasonConfig, SFTConfig, TrainConfig
from core.generation import STAGE_BATCH, generate
from evaluations import drift, verifiers
from evaluations.math_score import has_answer_format
from tasks import onpolicy, sft, stage_data

FORMAT_WEIGHT = 0.1  # small next to correctness (1.0), so the format cannot be the whole reward
# TRL log key -> our metric (mean over the logged steps).
MONITORS = {"frac_reward_zero_std": "frac_zero_std_groups", "completions/mean_length": "completion_length_mean",
            "completions/clipped_ratio": "completion_clipped_ratio", "clip_ratio/region_mean": "clip_ratio_mean",
            "kl": "kl_mean", "entropy": "entropy_mean"}


def correctness_reward_fn(infra_errors: list[int], reasons: dict[str, int] | None = None):
    """The verifier reward for GRPO. TRL cannot leave one sample out (an all-None row sums to 0, a
    fake wrong answer), so a sample whose code the sandbox could not run gets the mean reward of
    the scored samples of its own prompt in the batch: (about) zero advantage, no gradient push
    either way. Each such sample is counted in infra_errors[0] (-> metric verifier_infra_errors);
    more than verifiers.MAX_INFRA_FRACTION of a batch fails the stage. `reasons` counts every
    sample's verdict as "<verifier>.<reason>" (-> metrics verdicts.math.hedged, ...): what the
    policy was paid or refused for."""

    def correctness_reward(completions, answer, verifier, prompts=None, **_) -> list[float | None]:
        verdicts = verifiers.verdicts(completions, answer, verifier, prompts)
        rewards = [r for r, _ in verdicts]
        if reasons is not None:
            for v, (_, why) in zip(verifier, verdicts):
                reasons[f"{v}.{why}"] = reasons.get(f"{v}.{why}", 0) + 1
        groups = [repr((p, a)) for p, a in zip(prompts or [None] * len(answer), answer)]
        for i, r in enumerate(rewards):
            if r is None and verifier[i] == "code":
                infra_errors[0] += 1
                peers = [x for g, x in zip(groups, rewards) if g == groups[i] and x is not None]
                rewards[i] = sum(peers) / len(peers) if peers else 0.0  # all failed: equal rewards, zero advantage
        return rewards

    return correctness_reward


def format_reward(completions, verifier, answer=None, **_) -> list[float | None]:
    """FORMAT_WEIGHT for one answer-like \\boxed{} (not an empty, placeholder or hedged box) on math rows."""
    golds = answer if answer is not None else [None] * len(completions)
    return [(FORMAT_WEIGHT if has_answer_format(verifiers.text(c), g) else 0.0) if v == "math" else None
            for c, v, g in zip(completions, verifier, golds)]


def monitors(history: list[dict]) -> dict[str, float]:
    steps = [h for h in history if "reward" in h]
    if not steps:
        return {}
    metrics = {"reward_first": steps[0]["reward"], "reward_last": steps[-1]["reward"]}
    for key, name in MONITORS.items():
        values = [h[key] for h in steps if key in h]
        if values:
            metrics[name] = sum(values) / len(values)
    if "kl_mean" in metrics:
        metrics["kl_last"] = next(h["kl"] for h in reversed(steps) if "kl" in h)
    return metrics


def _rows(cfg: ReasonConfig, data: Path):
    rows = stage_data.load(cfg, data, "verifiable")
    missing = {"prompt", "answer", "verifier"} - set(rows.column_names)
    if missing:
        raise ValueError(f"{data}: the rl split lacks column(s) {sorted(missing)}; each row needs prompt, answer and "
                         f"verifier (math | code | ifeval); rebuild it with `dvc repro`")
    return rows.select_columns([c for c in ("id", "prompt", "answer", "verifier") if c in rows.column_names])


def extra_reward_funcs(cfg: ReasonConfig) -> list:
    """The functions `cfg.extra_rewards` names (module:function)."""
    funcs = []
    for module, name in cfg.extra_reward_refs():
        func = getattr(importlib.import_module(module), name, None)
        if not callable(func):
            raise ValueError(f"reason.extra_rewards: {module} has no function {name!r}; name a TRL reward function "
                             f"as package.module:function")
        funcs.append(func)
    return funcs


def verifiable_accuracy(policy, tok, rows, max_new_tokens: int, prefix: str,
                        replies_out: list | None = None) -> dict[str, float]:
    """Greedy accuracy on held-out rows: the share whose reply the row's verifier scores fully
    correct (1.0; code: every test passes, ifeval: every instruction followed), overall and per
    verifier, plus the mean reward (partial credit). A code reply the sandbox could not run is
    left out of both and counted (prefix + _infra_errors). replies_out receives the replies."""
    replies = generate(policy, tok, list(rows["prompt"]), max_new_tokens, STAGE_BATCH, label=f"reason: {prefix}")
    if replies_out is not None:
        replies_out.extend(replies)
    rewards = verifiers.rewards(replies, list(rows["answer"]), list(rows["verifier"]))
    scored = [(v, r) for v, r in zip(rows["verifier"], rewards) if r is not None]
    if not scored:
        raise ValueError(f"none of the {len(replies)} held-out rl rows could be scored (all sandbox errors)")
    metrics = {prefix: sum(r == 1.0 for _, r in scored) / len(scored),
               f"{prefix}_reward": sum(r for _, r in scored) / len(scored),
               f"{prefix}_infra_errors": float(len(replies) - len(scored))}
    for name in sorted({v for v, _ in scored}):
        mine = [r for v, r in scored if v == name]
        metrics[f"{prefix}.{name}"] = sum(r == 1.0 for r in mine) / len(mine)
    return metrics


def heldout_split(cfg: ReasonConfig, data: Path):
    """(train rows, held-out rows or None): cfg.eval_rows prompts never trained on."""
    return sft.holdout(_rows(cfg, data), cfg.eval_rows, column="prompt")


def measure_after(trained, tok, heldout, cfg: ReasonConfig, model: str, model_cfg: ModelConfig,
                  before: dict[str, float]) -> dict[str, float]:
    """Held-out accuracy of the trained policy against `before`, and its KL to the input checkpoint."""
    replies: list[str] = []
    after = verifiable_accuracy(trained, tok, heldout, cfg.max_completion_length, "heldout_accuracy_after", replies)
    reference = training.load_policy(model, model_cfg)
    kl = drift.kl_to_reference(trained, reference, tok, list(heldout["prompt"]), replies,
                               max_length=cfg.max_length)
    return {**heldout_delta(before, after), "heldout_rows": float(len(heldout)), "kl_to_input": kl}


def heldout_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Both evaluations and their difference in absolute points (0.05 = 5 points)."""
    delta = {k.replace("_after", "_delta"): v - before[k.replace("_after", "_before")] for k, v in after.items()
             if not k.endswith("_infra_errors") and k.replace("_after", "_before") in before}
    return {**before, **after, **delta}


def grpo(cfg: ReasonConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    before = training.snapshot(policy)
    dataset, heldout = heldout_split(cfg, data)
    # Main process only: plain generation, no collectives (GPU profiles leave eval_rows at 0 and
    # measure in evaluate.reason instead, since a sharded model cannot generate this way).
    measure = heldout is not None and distributed.is_main()
    acc_before = verifiable_accuracy(policy, tok, heldout, cfg.max_completion_length,
                                     "heldout_accuracy_before") if measure else {}
    kwargs = training.trainer_kwargs(cfg, model_cfg, out, seed)
    # One optimizer step consumes batch * accumulation completions = that many / G prompts.
    kwargs["per_device_train_batch_size"] = max(cfg.per_device_batch_size, cfg.num_generations)
    args = GRPOConfig(
        **kwargs,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
    )
    infra_errors, reasons = [0], {}
    reward_funcs = [correctness_reward_fn(infra_errors, reasons), format_reward, *extra_reward_funcs(cfg)]
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_funcs, args=args,
                          train_dataset=dataset, processing_class=tok, callbacks=training.callbacks(),
                          peft_config=training.peft_config(cfg))
    resumed = training.fit(trainer)
    metrics, trained = training.finish(trainer, out, tok, resumed, before)
    metrics.update(monitors(trainer.state.log_history))
    metrics["verifier_infra_errors"] = float(infra_errors[0])
    metrics.update({f"verdicts.{k}": float(n) for k, n in sorted(reasons.items())})
    if measure:
        metrics.update(measure_after(trained, tok, heldout, cfg, model, model_cfg, acc_before))
    return metrics


def rs_sft(cfg: ReasonConfig, model_cfg: ModelConfig, *, model: str, data: Path, out: Path, seed: int) -> dict[str, float]:
    """Sample num_generations replies to rs_prompts prompts, keep the best one where it is fully
    correct (reward 1), and SFT on those. It can only amplify what the policy sometimes does."""
    from datasets import Dataset

    all_rows, heldout = heldout_split(cfg, data)
    rows = all_rows.select(range(min(cfg.rs_prompts, len(all_rows)))).to_list()
    measure = heldout is not None and distributed.is_main()
    if measure:
        tok = training.load_tokenizer(model)
        acc_before = verifiable_accuracy(training.load_policy(model, model_cfg), tok, heldout,
                                         cfg.max_completion_length, "heldout_accuracy_before")
    scored = onpolicy.sample_and_score(policy=model, reward_model=None, model_cfg=model_cfg, rows=rows,
                                       n=cfg.num_generations, max_new_tokens=cfg.max_completion_length,
                                       temperature=cfg.temperature, batch_size=8, seed=seed, rm_max_length=cfg.max_length)
    kept = []
    for item in scored:
        rewards = item["verified"]
        best = max(range(len(rewards)), key=lambda i: -1.0 if rewards[i] is None else rewards[i])
        if rewards[best] == 1.0:
            kept.append({"id": item["row"].get("id", ""), "reward": rewards[best],
                         "messages": item["row"]["prompt"] + [{"role": "assistant", "content": item["replies"][best]}]})
    onpolicy.write(kept, out / "rs_kept.jsonl")
    samples = len(rows) * cfg.num_generations
    if not kept:
        raise ValueError(f"rejection sampling kept nothing: none of {samples} samples ({len(rows)} prompts x "
                         f"{cfg.num_generations}) was fully correct. The policy cannot solve these prompts yet; use "
                         f"reason.method=grpo, easier prompts, or more samples (reason.num_generations)")
    sft_cfg = SFTConfig(**{f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__}, eval_rows=0)
    metrics = sft.train(sft_cfg, model_cfg, model=model, dataset=Dataset.from_list(kept), out=out, seed=seed)
    metrics.update({"rs_prompts": float(len(rows)), "rs_kept": float(len(kept)),
                    "rs_pass_rate": len(kept) / len(rows)})
    if measure:
        metrics.update(measure_after(training.load_policy(str(out / "model"), model_cfg), tok, heldout, cfg, model,
                                     model_cfg, acc_before))
    return metrics


SPLITS = ("rl",)  # the curated splits this stage reads (their DVC md5s are inputs of its version key)
FILES = ()  # other files it reads (their sha256s are inputs too)


def run(cfg: ReasonConfig, model_cfg: ModelConfig, *, model: str, data: dict[str, Path], out: Path,
        seed: int) -> dict[str, float]:
    """data: {split: path} of SPLITS."""
    method = grpo if cfg.method == "grpo" else rs_sft
    return method(cfg, model_cfg, model=model, data=data["rl"], out=out, seed=seed)
