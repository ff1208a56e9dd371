"""evaluate: score a policy checkpoint on held-out sets (and its reward model on held-out pairs).

Metrics: math_accuracy (final answer, math-verify), answer_format_rate (\\boxed{} present),
refusal_rate on held-out harmful prompts, over_refusal_rate on held-out benign look-alikes,
rm_pair_accuracy, mean_response_chars. Generations are kept in out/samples.jsonl for audit.
Run alone: `posttrain stage evaluate --profile tiny`.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain import training
from posttrain.config import EvaluateConfig, ModelConfig
from posttrain.generation import generate
from evaluations import refusal
from evaluations.math_score import final_answer, has_answer_format, is_correct
from evaluations.reward import pair_accuracy

SUITE_VERSION = "1"


def run(cfg: EvaluateConfig, model_cfg: ModelConfig, *, model: str, reward_model: str | None, math_data: Path,
        safety_data: Path, pairs_data: Path, out: Path, rm_max_length: int) -> dict[str, float]:
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    math_rows = training.load_rows(math_data, cfg.math_items)
    safety_rows = list(training.load_rows(safety_data))
    harmful = [r for r in safety_rows if r["label"] == "harmful"][: cfg.safety_items]
    benign = [r for r in safety_rows if r["label"] == "benign"][: cfg.safety_items]

    math_out = generate(policy, tok, list(math_rows["prompt"]), cfg.max_new_tokens, cfg.batch_size)
    harm_out = generate(policy, tok, [r["prompt"] for r in harmful], cfg.safety_max_new_tokens, cfg.batch_size)
    benign_out = generate(policy, tok, [r["prompt"] for r in benign], cfg.safety_max_new_tokens, cfg.batch_size)

    samples = []
    correct = [is_correct(text, gold) for text, gold in zip(math_out, math_rows["answer"])]
    for row, text, ok in zip(math_rows, math_out, correct):
        samples.append({"suite": "math", "id": row["id"], "response": text, "extracted": final_answer(text), "gold": row["answer"], "correct": ok})
    refused = [refusal.is_refusal(t) for t in harm_out]
    over = [refusal.is_refusal(t) for t in benign_out]
    for suite, rows, texts, flags in (("harmful", harmful, harm_out, refused), ("benign", benign, benign_out, over)):
        samples += [{"suite": suite, "id": r["id"], "response": t, "refused": f} for r, t, f in zip(rows, texts, flags)]
    with open(out / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")

    every = math_out + harm_out + benign_out
    metrics = {
        "math_accuracy": sum(correct) / len(correct),
        "answer_format_rate": sum(has_answer_format(t) for t in math_out) / len(math_out),
        "refusal_rate": sum(refused) / len(refused),
        "over_refusal_rate": sum(over) / len(over),
        "mean_response_chars": sum(len(t) for t in every) / len(every),
        "eval_items": float(len(every)),
    }
    if reward_model:
        rm = training.load_reward_model(reward_model, model_cfg, tok.pad_token_id)
        metrics.update(pair_accuracy(rm, training.load_tokenizer(reward_model), list(training.load_rows(pairs_data)), rm_max_length))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
