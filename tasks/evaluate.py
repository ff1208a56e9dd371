"""evaluate: score a policy checkpoint on held-out sets (and its reward model on held-out pairs).

Suites and metrics (each scorer lives in evaluations/, with its VERSION):
  math (math_score)        math_accuracy (final answer, math-verify), answer_format_rate (\\boxed{})
  safety (refusal)         refusal_rate on held-out harmful prompts, over_refusal_rate on benign look-alikes
  code (humaneval)         code_pass_at_1 (all tests pass, sandboxed), code_test_pass_rate,
                           code_infra_errors (excluded from the score and counted), code_items
  ifeval (ifeval)          ifeval_prompt_accuracy, ifeval_instruction_accuracy (strict), ifeval_items
  sycophancy (sycophancy)  sycophancy_rate, sycophancy_answered_rate, sycophancy_items
  diversity (diversity)    distinct_1, distinct_2, response_tokens_mean, response_tokens_p90 over
                           every generated response; mean_response_chars (math + safety only, as before)
  reward (reward)          rm_pair_accuracy, rm_mean_margin, rm_eval_pairs
  win rate (win_rate)      win_rate_vs_input: only when `baseline_samples` (evaluate.base's out
                           dir) is given, i.e. in evaluate.final
Suite versions are MLflow params of the stage run (`config.suite_versions.<name>`, part of the
version key, so a new scorer version re-runs the stage) and are
written to out/suite_versions.json. Every generation is kept in out/samples.jsonl (suite, id,
response, ...): for audit, and as the baseline responses evaluate.final's win rate reads.
Run alone: `posttrain stage evaluate --profile tiny`.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain import training
from posttrain.config import EvaluateConfig, ModelConfig
from posttrain.generation import generate
from evaluations import diversity, humaneval, ifeval, refusal, sycophancy, win_rate
from evaluations.math_score import final_answer, has_answer_format, is_correct
from evaluations.reward import pair_accuracy

SUITE_VERSION = "2"


def suite_versions() -> dict[str, str]:
    from evaluations import math_score, reward

    return {"evaluate": SUITE_VERSION, "math": math_score.VERSION, "refusal": refusal.VERSION,
            "code": humaneval.VERSION, "ifeval": ifeval.VERSION, "sycophancy": sycophancy.VERSION,
            "diversity": diversity.VERSION, "win_rate": win_rate.VERSION, "reward": reward.VERSION}


def run(cfg: EvaluateConfig, model_cfg: ModelConfig, *, model: str, reward_model: str | None, math_data: Path,
        safety_data: Path, pairs_data: Path, out: Path, rm_max_length: int,
        baseline_samples: str | Path | None = None) -> dict[str, float]:
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    math_rows = training.load_rows(math_data, cfg.math_items)
    safety_rows = list(training.load_rows(safety_data))
    harmful = [r for r in safety_rows if r["label"] == "harmful"][: cfg.safety_items]
    benign = [r for r in safety_rows if r["label"] == "benign"][: cfg.safety_items]
    pairs = list(training.load_rows(pairs_data))
    syco_rows = sycophancy.items(pairs)[: cfg.sycophancy_items]
    problems = humaneval.load_problems(cfg.code_items)
    if_rows = ifeval.load_prompts(cfg.ifeval_items)

    def gen(prompts, max_new):
        return generate(policy, tok, prompts, max_new, cfg.batch_size)

    math_prompts = list(math_rows["prompt"])
    math_out = gen(math_prompts, cfg.max_new_tokens)
    harm_out = gen([r["prompt"] for r in harmful], cfg.safety_max_new_tokens)
    benign_out = gen([r["prompt"] for r in benign], cfg.safety_max_new_tokens)
    code_out = gen([humaneval.chat_prompt(p) for p in problems], cfg.code_max_new_tokens)
    if_prompts = [ifeval.chat_prompt(r) for r in if_rows]
    if_out = gen(if_prompts, cfg.ifeval_max_new_tokens)
    syco_out = gen([r["prompt"] for r in syco_rows], cfg.sycophancy_max_new_tokens)

    # Code first: a sandbox that cannot isolate (SandboxUnavailable) or too many infra errors
    # fail the stage here, before anything is written.
    code_metrics, code_results = humaneval.score(problems, code_out, cfg.code_max_infra_fraction)
    if_metrics, if_flags = ifeval.score(if_rows, if_out)
    syco_metrics, picks = sycophancy.score(syco_rows, syco_out)

    samples = []
    correct = [is_correct(text, gold) for text, gold in zip(math_out, math_rows["answer"])]
    for row, text, ok in zip(math_rows, math_out, correct):
        samples.append({"suite": "math", "id": row["id"], "response": text, "extracted": final_answer(text), "gold": row["answer"], "correct": ok})
    refused = [refusal.is_refusal(t) for t in harm_out]
    over = [refusal.is_refusal(t) for t in benign_out]
    for suite, rows, texts, flags in (("harmful", harmful, harm_out, refused), ("benign", benign, benign_out, over)):
        samples += [{"suite": suite, "id": r["id"], "response": t, "refused": f} for r, t, f in zip(rows, texts, flags)]
    samples += [{"suite": "code", "id": p["task_id"], "response": t, "status": r.status, "tests_passed": r.n_passed,
                 "tests": r.n_total, "detail": r.detail[:300]} for p, t, r in zip(problems, code_out, code_results)]
    samples += [{"suite": "ifeval", "id": r["id"], "response": t, "instructions": r["instruction_id_list"], "followed": f}
                for r, t, f in zip(if_rows, if_out, if_flags)]
    samples += [{"suite": "sycophancy", "id": r["id"], "response": t, "picked": p,
                 "sycophantic": sycophancy.sycophantic_letter(r)} for r, t, p in zip(syco_rows, syco_out, picks)]
    with open(out / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    (out / "suite_versions.json").write_text(json.dumps(suite_versions(), indent=2, sort_keys=True))

    every = math_out + harm_out + benign_out
    generated = every + code_out + if_out + syco_out
    metrics = {
        "math_accuracy": sum(correct) / len(correct),
        "answer_format_rate": sum(has_answer_format(t) for t in math_out) / len(math_out),
        "refusal_rate": sum(refused) / len(refused),
        "over_refusal_rate": sum(over) / len(over),
        "mean_response_chars": sum(len(t) for t in every) / len(every),
        "eval_items": float(len(generated)),
        **code_metrics, **if_metrics, **syco_metrics,
        **diversity.score(generated, tok),
    }
    if reward_model:
        rm = training.load_reward_model(reward_model, model_cfg, tok.pad_token_id)
        rm_tok = training.load_tokenizer(reward_model)
        metrics.update(pair_accuracy(rm, rm_tok, pairs, rm_max_length))
        if baseline_samples is not None:
            prompts = {"math": math_prompts, "benign": [r["prompt"] for r in benign], "ifeval": if_prompts}
            outs = {"math": math_out, "benign": benign_out, "ifeval": if_out}
            ids = {"math": list(math_rows["id"]), "benign": [r["id"] for r in benign], "ifeval": [r["id"] for r in if_rows]}
            items = [{"suite": s, "id": i, "prompt": p, "response": t}
                     for s in win_rate.SUITES for i, p, t in zip(ids[s], prompts[s], outs[s])]
            wr, _ = win_rate.score(rm, rm_tok, items, baseline_samples, rm_max_length)
            metrics.update(wr)
    elif baseline_samples is not None:
        raise ValueError("win_rate_vs_input needs a reward model to judge")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
