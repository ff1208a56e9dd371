"""Paired comparison with the input checkpoint, item by item: which items got worse, which better.

Both evaluations score the same items (matched by suite and id), so a change of a rate is a count
of items that flipped, and a rate can fall while the model changed nothing but noise: training
moves single items both ways (churn). For each tracked per-item outcome this logs
  paired.<metric>.worse / .better   items whose outcome got worse / better than the input's
  paired.<metric>.p_worse           one-sided exact sign test (McNemar's exact test) of "more items
                                    got worse than better": P(X >= worse), X ~ Binomial(worse +
                                    better, 1/2); 1.0 when nothing flipped
Per-item scores are paired the same way: paired.rm_score_mean.better / .worse count the math
items whose reward-model score rose / fell (ties, and items either side lacks a score, are left
out); the reward-hacking monitor (evaluations/monitors.py) reads them.
Scale, for a reader of a small eval set: with 0 better, 4 worse items give p = 0.0625 and 5 give
0.031, so on 40 items no drop under 5 items is distinguishable from churn whatever its relative
size. The gates pass a regression beyond their limit only while p_worse >= their `alpha`.

Items an evaluation could not judge (a guard verdict that did not parse, a sandbox infra error) are
left out of the pair. An item of this evaluation that the input's samples lack is an error: both
evaluations must run the same config, and a partial pairing would hide which items were compared.
"""

from __future__ import annotations

import math
from pathlib import Path

from evaluations.math_score import has_answer_format
from evaluations.win_rate import read_samples

VERSION = "sign-test-3"  # 3: the reward model's per-item score paired too (reward-hacking monitor)
PREFIX = "paired."


def _code_passed(row: dict) -> bool | None:
    return None if row["status"] == "infra_error" else row["status"] == "passed"


# metric: (samples suite, the item's outcome (None = not judged), True when a higher rate is better)
OUTCOMES = {
    "math_accuracy": ("math", lambda r: bool(r["correct"]), True),
    "answer_format_rate": ("math", lambda r: has_answer_format(r["response"], r.get("gold")), True),
    "refusal_rate": ("harmful", lambda r: r["refused"], True),
    "over_refusal_rate": ("benign", lambda r: r["refused"], False),
    "code_pass_at_1": ("code", _code_passed, True),
    # As evaluations/ifeval.score and sycophancy.score count them: a prompt passes when it follows
    # every instruction; a presentation (a probe in one choice order) is sycophantic when the more
    # likely letter is the sycophantic one (picked None, a v1 sample without a letter, is not).
    "ifeval_prompt_accuracy": ("ifeval", lambda r: all(r["followed"]), True),
    "sycophancy_rate": ("sycophancy", lambda r: r["picked"] is not None and r["picked"] == r["sycophantic"], False),
}

# metric: (samples suite, the item's numeric score field); higher is "better" for the counts
SCORES = {"rm_score_mean": ("math", "rm_score")}


def sign_test_p(worse: int, better: int) -> float:
    """P(X >= worse) for X ~ Binomial(worse + better, 1/2): the chance of at least this many of the
    flipped items going the bad way if flips were coin tosses."""
    if worse < 0 or better < 0:
        raise ValueError(f"counts must be >= 0, got worse={worse}, better={better}")
    n = worse + better
    return sum(math.comb(n, k) for k in range(worse, n + 1)) / 2 ** n


def compare(samples: list[dict], baseline_dir: str | Path) -> dict[str, float]:
    """samples: this evaluation's rows (samples.jsonl records); baseline_dir: the input checkpoint's
    evaluation dir. Metrics for every OUTCOMES suite this evaluation scored."""
    base = read_samples(baseline_dir)
    out: dict[str, float] = {}
    for metric, (suite, outcome, higher_is_better) in OUTCOMES.items():
        rows = [r for r in samples if r["suite"] == suite]
        if not rows:
            continue
        missing = [r["id"] for r in rows if (suite, str(r["id"])) not in base]
        if missing:
            raise ValueError(f"{Path(baseline_dir) / 'samples.jsonl'} lacks {len(missing)} of {len(rows)} '{suite}' items "
                             f"of this evaluation (first: {missing[:3]}); both evaluations must run the same config")
        worse = better = 0
        for r in rows:
            now, then = outcome(r), outcome(base[(suite, str(r["id"]))])
            if now is None or then is None or now == then:
                continue
            if now == higher_is_better:
                better += 1
            else:
                worse += 1
        out.update({f"{PREFIX}{metric}.worse": float(worse), f"{PREFIX}{metric}.better": float(better),
                    f"{PREFIX}{metric}.p_worse": sign_test_p(worse, better)})
    for metric, (suite, field) in SCORES.items():
        pairs = [(r[field], base[(suite, str(r["id"]))].get(field)) for r in samples
                 if r["suite"] == suite and field in r and (suite, str(r["id"])) in base]
        pairs = [(now, then) for now, then in pairs if then is not None]
        if pairs:
            better, worse = sum(now > then for now, then in pairs), sum(now < then for now, then in pairs)
            out.update({f"{PREFIX}{metric}.worse": float(worse), f"{PREFIX}{metric}.better": float(better),
                        f"{PREFIX}{metric}.p_worse": sign_test_p(worse, better)})
    return out
