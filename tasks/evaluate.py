"""evaluate: score a policy checkpoint on held-out sets (and its reward model on held-out pairs).

Two sizes of the same evaluation (pipeline/stages.py wires them):
  full      evaluate.base (the input checkpoint) and evaluate.final (the last stage): every suite
            on its configured set. Also logs `boundary.<metric>`: the same scores restricted to
            the boundary items (the first N of each suite), the sft gate's baseline.
  boundary  evaluate.sft / .align / .reason / .safety, after each training stage: the suites of
            `boundary_suites` on their first `boundary_*_items` items, gated per stage.

Suites and metrics (each scorer lives in evaluations/, with its VERSION):
  math (math_score)        math_accuracy (final answer, math-verify), answer_format_rate (\\boxed{}),
                           math_gaming_rate (replies the verifier refused as gaming: hedged,
                           empty or placeholder box, retracted, degenerate, echo; each sample's
                           verdict is in samples.jsonl),
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
from dataclasses import dataclass, field
from pathlib import Path

from core import jsonl, training
from core.config import EvaluateConfig, ModelConfig
from core.generation import generate
from evaluations import diversity, humaneval, ifeval, judges, lm_eval_harness, paired, refusal, sycophancy, win_rate
from evaluations.math_score import final_answer, has_answer_format, verdict
from evaluations.reward import pair_accuracy
from evaluations.reward import score as rm_score
from evaluations.verifiers import prompt_text

SUITE_VERSION = "5"  # 5: math verdict per sample and math_gaming_rate
BOUNDARY_PREFIX = "boundary."


def suite_versions(cfg: EvaluateConfig) -> dict[str, str]:
    from evaluations import math_score, reward

    return {"evaluate": SUITE_VERSION, "math": math_score.VERSION, "refusal": judges.version(cfg),
            "code": humaneval.VERSION,
            "ifeval": f"{ifeval.VERSION}/{ifeval.CHECK_VERSION}", "sycophancy": sycophancy.VERSION,
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


# Math verdicts that are a reply gaming its verifier rather than a wrong answer (math_score.REASONS).
GAMING = frozenset({"hedged", "empty_box", "non_answer", "retracted", "degenerate", "echo"})


def _rate(flags: list) -> float:
    judged = [f for f in flags if f is not None]
    if not judged:
        raise ValueError("no response could be judged (every verdict unreadable); see samples.jsonl")
    return sum(judged) / len(judged)


# The curated splits this stage reads (their DVC md5s are inputs of its version key), and the
# packaged files it reads (their sha256s are too).
SPLITS = ("eval_math", "eval_safety", "preferences_eval")
FILES = (ifeval.PROMPTS,)


@dataclass
class Responses:
    """Every suite's items and what the policy answered (empty lists for a suite that did not run)."""

    math_rows: list[dict]
    math_out: list[str]
    correct: list[bool]
    math_verdicts: list[str]  # why each reply scored as it did (math_score.REASONS: hedged, echo, ...)
    harmful: list[dict]
    harm_out: list[str]
    harm_judgement: refusal.Judgement
    judge_name: str
    benign: list[dict]
    benign_out: list[str]
    over: list[bool]
    problems: list[dict]
    code_out: list[str]
    code_results: list
    if_rows: list[dict]
    if_out: list[str]
    if_flags: list
    syco_rows: list[dict]
    syco_shown: list[dict]
    syco_ll: list
    picks: list
    lm_metrics: dict[str, float]
    rm_scores: list[float] = field(default_factory=list)


def run(cfg: EvaluateConfig, model_cfg: ModelConfig, *, model: str, reward_model: str | None, data: dict[str, Path],
        out: Path, rm_max_length: int, baseline_samples: str | Path | None = None, boundary: bool = False,
        lm_eval_include: Path | None = None) -> dict[str, float]:
    """data: {split: path} of SPLITS; baseline_samples: the previous evaluation's output dir."""
    n = sizes(cfg, boundary)
    tok = training.load_tokenizer(model)
    policy = training.load_policy(model, model_cfg)
    pairs = list(training.load_rows(data["preferences_eval"]))
    r = respond(cfg, model_cfg, policy, tok, n, eval_math=data["eval_math"], eval_safety=data["eval_safety"], pairs=pairs,
                lm_eval_include=lm_eval_include, out=out)
    extra: dict[str, float] = {}
    if reward_model:
        extra.update(_judged_by_rm(r, reward_model, model_cfg, tok, pairs, rm_max_length, boundary, baseline_samples))
    elif baseline_samples is not None:
        raise ValueError("win_rate_vs_input needs a reward model to judge")
    rows = samples(r)
    if baseline_samples is not None:
        extra.update(paired.compare(rows, baseline_samples))
    jsonl.write(out / "samples.jsonl", rows)
    (out / "suite_versions.json").write_text(json.dumps(suite_versions(cfg), indent=2, sort_keys=True))
    metrics = {**scores(r, n, cfg, tok), **extra}
    if not boundary:
        metrics.update({BOUNDARY_PREFIX + k: v for k, v in scores(r, sizes(cfg, True), cfg, tok).items()})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def respond(cfg: EvaluateConfig, model_cfg: ModelConfig, policy, tok, n: dict[str, int], *, eval_math: Path,
            eval_safety: Path, pairs: list[dict], lm_eval_include: Path | None, out: Path) -> Responses:
    """The first n[suite] items of each suite, the policy's responses, and each suite's verdicts."""
    safety_rows = list(training.load_rows(eval_safety)) if n["safety"] else []
    math_rows = list(training.load_rows(eval_math, n["math"])) if n["math"] else []
    harmful = [r for r in safety_rows if r["label"] == "harmful"][: n["safety"]]
    benign = [r for r in safety_rows if r["label"] == "benign"][: n["safety"]]
    syco_rows = sycophancy.items(pairs)[: n["sycophancy"]] if n["sycophancy"] else []
    syco_shown = [s for r in syco_rows for s in sycophancy.presentations(r)]
    problems = humaneval.load_problems(n["code"]) if n["code"] else []
    if_rows = ifeval.load_prompts(n["ifeval"]) if n["ifeval"] else []

    def gen(suite, prompts, max_new):
        return generate(policy, tok, prompts, max_new, cfg.batch_size, label=f"evaluate: {suite}") if prompts else []

    math_out = gen("math", [r["prompt"] for r in math_rows], cfg.max_new_tokens)
    harm_out = gen("harmful", [r["prompt"] for r in harmful], cfg.safety_max_new_tokens)
    benign_out = gen("benign", [r["prompt"] for r in benign], cfg.safety_max_new_tokens)
    code_out = gen("code", [humaneval.chat_prompt(p) for p in problems], cfg.code_max_new_tokens)
    if_out = gen("ifeval", [ifeval.chat_prompt(r) for r in if_rows], cfg.ifeval_max_new_tokens)
    syco_ll = sycophancy.choose(policy, tok, [s["prompt"] for s in syco_shown], cfg.batch_size) if syco_shown else []

    judged = [verdict(t, r["answer"], prompt=prompt_text(r["prompt"])) for t, r in zip(math_out, math_rows)]
    # Code first: a sandbox that cannot isolate (SandboxUnavailable) or too many infra errors
    # fail the stage here, before anything is written.
    code_results = humaneval.score(problems, code_out, cfg.code_max_infra_fraction)[1] if problems else []
    judge = judges.classifier(cfg, model_cfg) if harmful else None
    lm_metrics = {}
    if n["lm_eval"]:
        lm_metrics = lm_eval_harness.run(policy, tok, list(cfg.lm_eval_task_list()), lm_eval_include, cfg.lm_eval_limit,
                                         cfg.lm_eval_batch_size, cfg.lm_eval_allow_code_execution, out)
    return Responses(
        math_rows=math_rows, math_out=math_out, correct=[ok for ok, _ in judged], math_verdicts=[why for _, why in judged],
        harmful=harmful, harm_out=harm_out, judge_name=judge.name if judge else "",
        harm_judgement=judge.judge([r["prompt"] for r in harmful], harm_out) if judge else refusal.Judgement([], []),
        benign=benign, benign_out=benign_out, over=[refusal.is_refusal(t) for t in benign_out],
        problems=problems, code_out=code_out, code_results=code_results,
        if_rows=if_rows, if_out=if_out, if_flags=ifeval.score(if_rows, if_out)[1] if if_rows else [],
        syco_rows=syco_rows, syco_shown=syco_shown, syco_ll=syco_ll,
        picks=sycophancy.score(syco_shown, syco_ll)[1] if syco_shown else [], lm_metrics=lm_metrics)


def _judged_by_rm(r: Responses, reward_model: str, model_cfg: ModelConfig, tok, pairs: list[dict], rm_max_length: int,
                  boundary: bool, baseline_samples: str | Path | None) -> dict[str, float]:
    """The reward model's score of each math response (r.rm_scores), its accuracy on held-out pairs
    (full evaluations), and the win rate against the baseline's responses."""
    rm = training.load_reward_model(reward_model, model_cfg, tok.pad_token_id)
    rm_tok = training.load_tokenizer(reward_model)
    math_prompts = [row["prompt"] for row in r.math_rows]
    r.rm_scores = rm_score(rm, rm_tok, [p + [{"role": "assistant", "content": t}] for p, t in zip(math_prompts, r.math_out)],
                           rm_max_length)
    extra: dict[str, float] = {}
    if not boundary:
        extra.update(pair_accuracy(rm, rm_tok, pairs, rm_max_length))
    if baseline_samples is not None:
        prompts = {"math": math_prompts, "benign": [row["prompt"] for row in r.benign],
                   "ifeval": [ifeval.chat_prompt(row) for row in r.if_rows]}
        outs = {"math": r.math_out, "benign": r.benign_out, "ifeval": r.if_out}
        ids = {"math": [row["id"] for row in r.math_rows], "benign": [row["id"] for row in r.benign],
               "ifeval": [row["id"] for row in r.if_rows]}
        items = [{"suite": s, "id": i, "prompt": p, "response": t}
                 for s in win_rate.SUITES for i, p, t in zip(ids[s], prompts[s], outs[s])]
        extra.update(win_rate.score(rm, rm_tok, items, baseline_samples, rm_max_length)[0])
    return extra


def samples(r: Responses) -> list[dict]:
    """One record per item and response (out/samples.jsonl): for audit, and as the baseline the
    next evaluation's win rate and paired comparison read."""
    rows = [{"suite": "math", "id": row["id"], "response": text, "extracted": final_answer(text), "gold": row["answer"],
             "correct": ok, "verdict": why, **({"rm_score": r.rm_scores[i]} if r.rm_scores else {})}
            for i, (row, text, ok, why) in enumerate(zip(r.math_rows, r.math_out, r.correct, r.math_verdicts))]
    rows += [{"suite": "harmful", "id": row["id"], "response": t, "refused": f, "verdict": v}
             for row, t, f, v in zip(r.harmful, r.harm_out, r.harm_judgement.refused, r.harm_judgement.verdicts)]
    rows += [{"suite": "benign", "id": row["id"], "response": t, "refused": f}
             for row, t, f in zip(r.benign, r.benign_out, r.over)]
    rows += [{"suite": "code", "id": p["task_id"], "response": t, "status": res.status, "tests_passed": res.n_passed,
              "tests": res.n_total, "detail": res.detail[:300]} for p, t, res in zip(r.problems, r.code_out, r.code_results)]
    rows += [{"suite": "ifeval", "id": row["id"], "response": t, "instructions": row["instruction_id_list"], "followed": f}
             for row, t, f in zip(r.if_rows, r.if_out, r.if_flags)]
    rows += [{"suite": "sycophancy", "id": s["id"], "loglik": ll, "picked": p, "sycophantic": s["sycophantic"]}
             for s, ll, p in zip(r.syco_shown, r.syco_ll, r.picks)]
    return rows


def scores(r: Responses, k: dict[str, int], cfg: EvaluateConfig, tok) -> dict[str, float]:
    """Metrics over the first k[suite] items of each suite that ran (k = sizes(...): all of them)."""
    m: dict[str, float] = {}
    if k["math"] and r.math_out:
        c = r.correct[: k["math"]]
        m["math_accuracy"] = sum(c) / len(c)
        m["answer_format_rate"] = sum(has_answer_format(t, row["answer"])
                                      for t, row in zip(r.math_out[: k["math"]], r.math_rows)) / len(c)
        m["math_gaming_rate"] = sum(v in GAMING for v in r.math_verdicts[: k["math"]]) / len(c)
        if r.rm_scores:
            m["rm_score_mean"] = sum(r.rm_scores[: k["math"]]) / len(c)
    if k["safety"] and r.harm_out:
        m["refusal_rate"] = _rate(r.harm_judgement.refused[: k["safety"]])
        m["over_refusal_rate"] = _rate(r.over[: k["safety"]])
        if r.judge_name and r.judge_name != "pattern":
            m["guard_unparseable"] = float(sum(f is None for f in r.harm_judgement.refused[: k["safety"]]))
    if k["code"] and r.code_results:
        m.update(humaneval.metrics(r.code_results[: k["code"]], cfg.code_max_infra_fraction))
    if k["ifeval"] and r.if_rows:
        m.update(ifeval.score(r.if_rows[: k["ifeval"]], r.if_out[: k["ifeval"]])[0])
    if k["sycophancy"] and r.syco_rows:
        shown = 2 * k["sycophancy"]  # presentations: each probe in both choice orders
        m.update(sycophancy.score(r.syco_shown[:shown], r.syco_ll[:shown])[0])
    if k["lm_eval"]:
        m.update(r.lm_metrics)
    every = r.math_out[: k["math"]] + r.harm_out[: k["safety"]] + r.benign_out[: k["safety"]]
    generated = every + r.code_out[: k["code"]] + r.if_out[: k["ifeval"]]
    if every:
        m["mean_response_chars"] = sum(len(t) for t in every) / len(every)
    if generated:
        m["eval_items"] = float(len(generated))
        m.update(diversity.score(generated, tok))
    return m
