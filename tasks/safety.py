"""safety: refusal SFT mixed with helpful answers to benign look-alikes and replayed SFT data, then a
constitutional DPO pass.

1. Refusal SFT (tasks/sft.train): calibrated refusals (short, no lecture, a safe alternative) for
   harmful prompts; the benign twins of the same topics answered helpfully, so the model does not
   learn "edgy topic => refuse" (over-refusal); plus `replay_fraction` of the mix drawn from the
   earlier SFT split, to limit the alignment tax (forgetting of math/format).
2. Constitutional critique -> revise (tasks/constitution.md): on `constitutional_prompts` harmful
   prompts, the stage's *input* checkpoint answers (what the model did before safety training;
   the refusal-trained one has just been taught these very prompts and would rarely comply), and
   the refusal-trained model critiques that answer against one principle and rewrites it. A pair
   (chosen = revision, rejected = original) is kept when the revision is a refusal and the
   original was not (evaluations/refusal.py's pattern check: the same one the evaluation uses).
   Over-refusal pairs: the refusal-trained model answers `overrefusal_prompts` benign look-alike
   training prompts; each one it refuses becomes (chosen = the row's helpful answer, rejected =
   that refusal). Refusal SFT alone teaches "edgy topic => refuse"; these pairs are the contrast,
   at most `overrefusal_pair_ratio` of them per constitutional pair (more undoes the refusals).
3. DPO on both kinds of pairs (tasks/align.train). No pair kept skips the pass;
   constitutional_pairs=0 and overrefusal_pairs=0 in the metrics say so.
Run alone: `posttrain stage safety --profile tiny`.
"""

from __future__ import annotations

import math
import random
import re
import shutil
from pathlib import Path

from evaluations.refusal import is_refusal
from posttrain import generation, stage_data, training
from posttrain.config import AlignConfig, ModelConfig, SafetyConfig, TrainConfig
from tasks import align, onpolicy, sft

CONSTITUTION = Path(__file__).with_name("constitution.md")


def principles(path: Path = CONSTITUTION) -> list[str]:
    text = path.read_text(encoding="utf-8").split("## Principles", 1)
    found = re.findall(r"^- (.+)$", text[1] if len(text) == 2 else "", re.M)
    if not found:
        raise ValueError(f"{path}: no principles found; list them as '- ...' lines under a '## Principles' heading")
    return found


def replay_mix(safety_rows, sft_rows, fraction: float, seed: int):
    """The safety rows plus replayed SFT rows making up `fraction` of the result (seeded choice)."""
    from datasets import Dataset, concatenate_datasets

    n = round(len(safety_rows) * fraction / (1.0 - fraction)) if fraction > 0 else 0
    n = min(n, len(sft_rows))
    picked = sorted(random.Random(seed).sample(range(len(sft_rows)), n))
    replay = Dataset.from_list([{"messages": sft_rows[i]["messages"]} for i in picked])
    mixed = concatenate_datasets([safety_rows.select_columns(["messages"]), replay]) if n else \
        safety_rows.select_columns(["messages"])
    return mixed.shuffle(seed=seed), n


def critique_revise(model_dir: str, model_cfg: ModelConfig, prompts: list[list[dict]], max_new_tokens: int,
                    rules: list[str], original_model: str | None = None) -> list[dict]:
    """Original answer (by original_model, default model_dir), then critique and revision by
    model_dir; greedy (deterministic)."""
    source = original_model or model_dir
    tok = training.load_tokenizer(source)
    originals = generation.generate(training.load_policy(source, model_cfg), tok, prompts, max_new_tokens, batch_size=8)
    tok = training.load_tokenizer(model_dir)
    model = training.load_policy(model_dir, model_cfg)
    rule = [rules[i % len(rules)] for i in range(len(prompts))]
    request = [p[-1]["content"] for p in prompts]
    critiques = generation.generate(model, tok, [[{"role": "user", "content": (
        f"Request: {q}\n\nResponse: {a}\n\nPrinciple: {r}\n\nDoes the response follow the principle? Critique it in "
        f"one or two sentences.")}] for q, a, r in zip(request, originals, rule)], max_new_tokens, batch_size=8)
    revisions = generation.generate(model, tok, [[{"role": "user", "content": (
        f"Request: {q}\n\nResponse: {a}\n\nCritique: {c}\n\nRewrite the response so that it follows this principle: "
        f"{r}\nReply with the rewritten response only.")}] for q, a, c, r in zip(request, originals, critiques, rule)],
        max_new_tokens, batch_size=8)
    return [{"prompt": p, "principle": r, "original": a, "critique": c, "revision": v}
            for p, r, a, c, v in zip(prompts, rule, originals, critiques, revisions)]


def constitutional_pairs(records: list[dict]) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["revision"]}],
             "rejected": [{"role": "assistant", "content": r["original"]}]}
            for r in records if r["revision"].strip() and is_refusal(r["revision"]) and not is_refusal(r["original"])]


def overrefusal_probe(model_dir: str, model_cfg: ModelConfig, rows: list[dict], max_new_tokens: int) -> list[dict]:
    """The model's greedy replies to benign rows (their `messages` end with the helpful answer)."""
    tok = training.load_tokenizer(model_dir)
    prompts = [r["messages"][:-1] for r in rows]
    replies = generation.generate(training.load_policy(model_dir, model_cfg), tok, prompts, max_new_tokens, batch_size=8)
    return [{"prompt": p, "helpful": r["messages"][-1]["content"], "reply": t} for p, r, t in zip(prompts, rows, replies)]


def overrefusal_pairs(records: list[dict]) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["helpful"]}],
             "rejected": [{"role": "assistant", "content": r["reply"]}]} for r in records if is_refusal(r["reply"])]


def run(cfg: SafetyConfig, model_cfg: ModelConfig, *, model: str, data: Path, sft_data: Path, out: Path,
        seed: int) -> dict[str, float]:
    from datasets import Dataset

    # A hub dataset (GPU profiles: hh-rlhf harmless-base) has dialogues but no harm labels.
    safety_rows = stage_data.load(cfg, data, "messages" if cfg.dataset else "safety_messages")
    mixed, replayed = replay_mix(safety_rows, training.load_rows(sft_data), cfg.replay_fraction, seed)
    # Pass 1 is final only if pass 3 does not run; until then it is the intermediate phase "sft".
    metrics = sft.train(cfg, model_cfg, model=model, dataset=mixed, out=out, seed=seed, phase="sft")
    labels = safety_rows["label"] if "label" in safety_rows.column_names else []
    if labels:
        metrics["harmful_fraction"] = labels.count("harmful") / len(labels)
    metrics.update({"replay_rows": float(replayed),
                    "replay_fraction_actual": replayed / len(mixed)})

    # Without harm labels (a hub dialogue dataset) there is nothing to critique or probe.
    harmful = [r["messages"][:-1] for r in safety_rows if r["label"] == "harmful"][: cfg.constitutional_prompts] \
        if labels else []
    pairs = []
    if harmful:
        records = critique_revise(str(out / "model.sft"), model_cfg, harmful, cfg.critique_max_new_tokens, principles(),
                                  original_model=model)
        pairs = constitutional_pairs(records)
        onpolicy.write(records, out / "constitutional.jsonl")
        metrics["constitutional_prompts"] = float(len(records))
        metrics["constitutional_original_refusal_rate"] = sum(is_refusal(r["original"]) for r in records) / len(records)
        metrics["constitutional_revision_refusal_rate"] = sum(is_refusal(r["revision"]) for r in records) / len(records)
    metrics["constitutional_pairs"] = float(len(pairs))
    benign = [r for r in safety_rows if r["label"] == "benign"][: cfg.overrefusal_prompts] if labels else []
    over: list[dict] = []
    if benign:
        probe = overrefusal_probe(str(out / "model.sft"), model_cfg, benign, cfg.critique_max_new_tokens)
        over = overrefusal_pairs(probe)
        onpolicy.write(probe, out / "overrefusal_probe.jsonl")
        metrics["overrefusal_probe_rate"] = len(over) / len(probe)
    metrics["overrefusal_pairs_found"] = float(len(over))
    # Balanced against the refusal side (config.SafetyConfig.overrefusal_pair_ratio says why); the
    # probe keeps every refused prompt, so the dropped pairs stay inspectable.
    over = over[: math.floor(cfg.overrefusal_pair_ratio * len(pairs))]
    metrics["overrefusal_pairs"] = float(len(over))
    pairs += over
    if not pairs:
        # The refusal-SFT model is the stage's output.
        (out / "model.sft").rename(out / "model")
        (out / "log_history.sft.json").rename(out / "log_history.json")
        return metrics
    shared = {f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__}
    dpo_cfg = AlignConfig(**{**shared, "learning_rate": cfg.dpo_learning_rate, "max_steps": cfg.dpo_max_steps,
                             "beta": cfg.dpo_beta})
    dpo = align.train(dpo_cfg, model_cfg, model=str(out / "model.sft"), dataset=Dataset.from_list(pairs), out=out,
                      seed=seed)
    shutil.rmtree(out / "model.sft")  # out/model (after DPO) is the stage's output
    metrics.update({f"dpo_{k}": v for k, v in dpo.items()})
    return metrics
