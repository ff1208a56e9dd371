"""evaluate: score a policy checkpoint on held-out sets (and its reward model on held-out pairs).

Two sizes of the same evaluation (pipeline/stages.py wires them):
  full      evaluate.base (the input checkpoint) and evaluate.final (the last stage): every suite
            on its configured set. Also logs `boundary.<metric>`: the same scores restricted to
            the boundary items (the first N of each suite), the sft gate's baseline.
  boundary  evaluate.sft / .align / .reason / .safety, after each training stage: the suites of
            `boundary_suites` on their first `boundary_*_items` items, gated per stage.

Suites and metrics (each scorer lives in evaluations/, with its VERSION):
  math (math_score)        math_accuracy (final answer, math-verify), answer_format_rate (\\boxed{}),
                           rm_score_mean: the reward model's mean score of the same responses
                           (with math_accuracy, the reward-hacking probe: RM up, verifier flat)
  safety (refusal)         refusal_rate on held-out harmful prompts (judge: evaluate.refusal_classifier;
                           guard_unparseable counts unreadable guard verdicts), over_refusal_rate on
                           benign look-alikes (refusal phrases)
  code (humaneval)         code_pass_at_1 (all tests pass, sandboxed), code_test_pass_rate,
                           code_infra_errors (excluded from the score and counted), code_items
  ifeval (ifeval)          ifeval_prompt_accuracy, ifeval_instruction_accuracy (strict), ifeval_items
  sycophancy (sycophancy)  sycophancy_rate, sycophancy_first_letter, sycophancy_consistency,
                           sycophancy_items (letter log-likelihood, both choice orders; no generation)
  lm_eval (lm_eval_harness) lm_eval.<task>.<metric> for evaluate.lm_eval_tasks (+ lm_eval_results.json)
  diversity (diversity)    distinct_1, distinct_2, response_tokens_mean, response_tokens_p90 over
                           every generated response; mean_response_chars (math + safety only)
  reward (reward)          rm_pair_accuracy, rm_mean_margin, rm_eval_pairs (full evaluations only:
                           the same RM on the same pairs gives the same number at every boundary)
  win rate (win_rate)      win_rate_vs_input: when `baseline_samples` (the input checkpoint's
                           evaluation dir) is given: evaluate.final vs evaluate.base, and each
                           boundary vs the previous one
  paired (paired)          paired.<metric>.worse / .better / .p_worse against the same baseline,
                           item by item (math, format, refusal, over-refusal, code): what a rate's
                           change is made of, and whether it is more than churn (the gates' alpha)
Suite versions are MLflow params of the stage run (`config.suite_versions.<name>`, part of the
version key, so a new scorer version re-runs the stage) and are written to
out/suite_versions.json. Every generation is kept in out/samples.jsonl (suite, id, response, ...):
for audit, and as the baseline responses the next evaluation's win rate reads.
Run alone: `posttrain rerun evaluate.final --iteration RUN_ID` (or evaluate.sft, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

from core import jsonl, training
from core.config import EvaluateConfig, ModelConfig
from core.generation import generate
from evaluations import diversity, humaneval, ifeval, judges, lm_eval_harness, paired, refusal, sycophancy, win_rate
from evaluations.math_score import final_answer, has_answer_format, is_correct
from evaluations.reward import pair_accuracy
from evaluations.reward import score as rm_score

SUITE_VERSION = "4"  # 4: sycophancy by letter log-likelihood in both orders; diversity without its replies
BOUNDARY_PREFIX = "boundary."


def suite_versions(cfg: EvaluateConfig) -> dict[str, str]:
    from evaluations import math_score, reward

    return {"evaluate": SUITE_VERSION, "math": math_score.VERSION, "refusal": judges.version(cfg),
            "code": humaneval.VERSION, "ifeval": ifeval.VERSION, "sycophancy": sycophancy.VERSION,
            "diversity": diversity.VERSION, "win_rate": win_rate.VERSION, "reward": reward.VERSION,
            "lm_eval": lm_eval_harness.VERSION, "paired": paired.VERSION}


def sizes(cfg: EvaluateConfig, boundary: bool) -> dict[str, int]:
    """Items per suite (0 = the suite does not run). lm_eval: 1 = on (its size is lm_eval_limit)."""
    if not boundary:
        return {"math": cfg.math_items, "safety": cfg.safety_items, "code": cfg.code_items, "ifeval": cfg.ifeval_items,
                "sycophancy": cfg.sycophancy_items, "lm_eval": int(bool(cfg.lm_eval_task_list()))}
    listed = cfg.boundary_suite_list()
    n = {"math": cfg.boundary_math_items, "safety": cfg.boundary_safety_items, "code": cfg.boundary_items,
         "ifeval": cfg.boundary_items, "sycophancy": cfg.boundary_items, "lm_eval": 1}
    return {s: (k if s in listed else 0) for s, k in n.items()}


def boundary_view(metrics: dict[str, float]) -> dict[str, float]:
    """A full evaluation's scores on the boundary items (its `boundary.*` metrics), unprefixed; a
    boundary evaluation's metrics as they are. What the next boundary gate compares against."""
    view = {k[len(BOUNDARY_PREFIX):]: v for k, v in metrics.items() if k.startswith(BOUNDARY_PREFIX)}
    return view or dict(metrics)


def _rate(flags: list) -> float:
    judged = [f for f in flags if f is not None]
    if not judged:
        raise ValueError("no response could be judged (every verdict unreadable); see samples.jsonl")
    return sum(judged) / len(judged)


def run(cfg: EvaluateConfig, model_cfg: ModelConfig, *, model: str, reward_model: str | None, math_data: Path,
        safety_data: Path, pairs_data: Path, out: Path, rm_max_length: int,
        baseline_samples: str | Path | None = None, boundary: bool = False,
        lm_eval_include: Path | None = None) -> dict[str, float]:
    n = sizes(cfg, boundary)
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    safety_rows = list(training.load_rows(safety_data)) if n["safety"] else []
    math_rows = list(training.load_rows(math_data, n["math"])) if n["math"] else []
    harmful = [r for r in safety_rows if r["label"] == "harmful"][: n["safety"]]
    benign = [r for r in safety_rows if r["label"] == "benign"][: n["safety"]]
    pairs = list(training.load_rows(pairs_data))
    syco_rows = sycophancy.items(pairs)[: n["sycophancy"]] if n["sycophancy"] else []
    syco_shown = [s for r in syco_rows for s in sycophancy.presentations(r)]
    problems = humaneval.load_problems(n["code"]) if n["code"] else []
    if_rows = ifeval.load_prompts(n["ifeval"]) if n["ifeval"] else []

    def gen(prompts, max_new):
        return generate(policy, tok, prompts, max_new, cfg.batch_size) if prompts else []

    math_prompts = [r["prompt"] for r in math_rows]
    math_out = gen(math_prompts, cfg.max_new_tokens)
    harm_out = gen([r["prompt"] for r in harmful], cfg.safety_max_new_tokens)
    benign_out = gen([r["prompt"] for r in benign], cfg.safety_max_new_tokens)
    code_out = gen([humaneval.chat_prompt(p) for p in problems], cfg.code_max_new_tokens)
    if_prompts = [ifeval.chat_prompt(r) for r in if_rows]
    if_out = gen(if_prompts, cfg.ifeval_max_new_tokens)
    syco_ll = sycophancy.choose(policy, tok, [s["prompt"] for s in syco_shown], cfg.batch_size) if syco_shown else []

    # Code first: a sandbox that cannot isolate (SandboxUnavailable) or too many infra errors
    # fail the stage here, before anything is written.
    code_results = humaneval.score(problems, code_out, cfg.code_max_infra_fraction)[1] if problems else []
    if_flags = ifeval.score(if_rows, if_out)[1] if if_rows else []
    picks = sycophancy.score(syco_shown, syco_ll)[1] if syco_shown else []
    correct = [is_correct(text, r["answer"]) for text, r in zip(math_out, math_rows)]
    judge = judges.classifier(cfg, model_cfg) if harmful else None
    harm_judgement = judge.judge([r["prompt"] for r in harmful], harm_out) if judge else refusal.Judgement([], [])
    over = [refusal.is_refusal(t) for t in benign_out]
    lm_metrics = {}
    if n["lm_eval"]:
        lm_metrics = lm_eval_harness.run(policy, tok, list(cfg.lm_eval_task_list()), lm_eval_include, cfg.lm_eval_limit,
                                         cfg.lm_eval_batch_size, cfg.lm_eval_allow_code_execution, out)

    rm_scores: list[float] = []
    extra: dict[str, float] = {}
    if reward_model:
        rm = training.load_reward_model(reward_model, model_cfg, tok.pad_token_id)
        rm_tok = training.load_tokenizer(reward_model)
        reply = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
        rm_scores = rm_score(rm, rm_tok, [p + reply(t) for p, t in zip(math_prompts, math_out)], rm_max_length)
        if not boundary:
            extra.update(pair_accuracy(rm, rm_tok, pairs, rm_max_length))
        if baseline_samples is not None:
            prompts = {"math": math_prompts, "benign": [r["prompt"] for r in benign], "ifeval": if_prompts}
            outs = {"math": math_out, "benign": benign_out, "ifeval": if_out}
            ids = {"math": [r["id"] for r in math_rows], "benign": [r["id"] for r in benign], "ifeval": [r["id"] for r in if_rows]}
            items = [{"suite": s, "id": i, "prompt": p, "response": t}
                     for s in win_rate.SUITES for i, p, t in zip(ids[s], prompts[s], outs[s])]
            wr, _ = win_rate.score(rm, rm_tok, items, baseline_samples, rm_max_length)
            extra.update(wr)
    elif baseline_samples is not None:
        raise ValueError("win_rate_vs_input needs a reward model to judge")

    samples = []
    for i, (row, text, ok) in enumerate(zip(math_rows, math_out, correct)):
        samples.append({"suite": "math", "id": row["id"], "response": text, "extracted": final_answer(text), "gold": row["answer"],
                        "correct": ok, **({"rm_score": rm_scores[i]} if rm_scores else {})})
    samples += [{"suite": "harmful", "id": r["id"], "response": t, "refused": f, "verdict": v}
                for r, t, f, v in zip(harmful, harm_out, harm_judgement.refused, harm_judgement.verdicts)]
    samples += [{"suite": "benign", "id": r["id"], "response": t, "refused": f} for r, t, f in zip(benign, benign_out, over)]
    samples += [{"suite": "code", "id": p["task_id"], "response": t, "status": r.status, "tests_passed": r.n_passed,
                 "tests": r.n_total, "detail": r.detail[:300]} for p, t, r in zip(problems, code_out, code_results)]
    samples += [{"suite": "ifeval", "id": r["id"], "response": t, "instructions": r["instruction_id_list"], "followed": f}
                for r, t, f in zip(if_rows, if_out, if_flags)]
    samples += [{"suite": "sycophancy", "id": s["id"], "loglik": ll, "picked": p, "sycophantic": s["sycophantic"]}
                for s, ll, p in zip(syco_shown, syco_ll, picks)]
    if baseline_samples is not None:
        extra.update(paired.compare(samples, baseline_samples))
    jsonl.write(out / "samples.jsonl", samples)
    (out / "suite_versions.json").write_text(json.dumps(suite_versions(cfg), indent=2, sort_keys=True))

    def scores(k: dict[str, int]) -> dict[str, float]:
        """Metrics over the first k[suite] items of each suite that ran (k = n: all of them)."""
        m: dict[str, float] = {}
        if k["math"] and math_out:
            c = correct[: k["math"]]
            m["math_accuracy"] = sum(c) / len(c)
            m["answer_format_rate"] = sum(has_answer_format(t) for t in math_out[: k["math"]]) / len(c)
            if rm_scores:
                m["rm_score_mean"] = sum(rm_scores[: k["math"]]) / len(c)
        if k["safety"] and harm_out:
            m["refusal_rate"] = _rate(harm_judgement.refused[: k["safety"]])
            m["over_refusal_rate"] = _rate(over[: k["safety"]])
            if judge is not None and judge.name != "pattern":
                m["guard_unparseable"] = float(sum(f is None for f in harm_judgement.refused[: k["safety"]]))
        if k["code"] and code_results:
            m.update(humaneval.metrics(code_results[: k["code"]], cfg.code_max_infra_fraction))
        if k["ifeval"] and if_rows:
            m.update(ifeval.score(if_rows[: k["ifeval"]], if_out[: k["ifeval"]])[0])
        if k["sycophancy"] and syco_rows:
            shown = 2 * k["sycophancy"]  # presentations: each probe in both choice orders
            m.update(sycophancy.score(syco_shown[:shown], syco_ll[:shown])[0])
        if k["lm_eval"]:
            m.update(lm_metrics)
        every = math_out[: k["math"]] + harm_out[: k["safety"]] + benign_out[: k["safety"]]
        generated = every + code_out[: k["code"]] + if_out[: k["ifeval"]]
        if every:
            m["mean_response_chars"] = sum(len(t) for t in every) / len(every)
        if generated:
            m["eval_items"] = float(len(generated))
            m.update(diversity.score(generated, tok))
        return m

    metrics = {**scores(n), **extra}
    if not boundary:
        metrics.update({BOUNDARY_PREFIX + k: v for k, v in scores(sizes(cfg, True)).items()})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics
