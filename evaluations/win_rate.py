"""Win rate against the input checkpoint, judged by the iteration's reward model.

For each prompt of a fixed set (the samples of the suites in SUITES, matched by (suite, id)), the
RM scores the evaluated model's response and the input checkpoint's response to the same prompt
(the baseline's responses are read from evaluate.base's samples.jsonl, not regenerated).
win_rate_vs_input = mean over prompts of 1 if the evaluated response scores higher, 0.5 on an
exact tie, 0 otherwise. Both sides are scored in the same process by the same RM, so the ranking
does not depend on recorded scores. A prompt with no baseline response is an error (the two
evaluations must cover the same items), so the metric is never NaN.

The judge is the pipeline's own small RM (held-out pair accuracy is logged next to it): treat the
number as a trend against the input, not as a human-preference estimate.
"""

from __future__ import annotations

from pathlib import Path

from core import jsonl

VERSION = "rm-judge-v1"
SUITES = ("math", "benign", "ifeval")  # helpfulness prompts; code (unseen by the RM) and refusal/sycophancy have their own metrics
SAMPLES = "samples.jsonl"


def read_samples(out_dir: str | Path) -> dict[tuple[str, str], dict]:
    path = Path(out_dir) / SAMPLES
    if not path.is_file():
        raise FileNotFoundError(f"no baseline samples at {path}: re-run evaluate.base with this code")
    rows = jsonl.read(path)
    return {(r["suite"], str(r["id"])): r for r in rows}


def win_rate(candidate: list[float], baseline: list[float]) -> float:
    if not candidate or len(candidate) != len(baseline):
        raise ValueError(f"need equal, non-empty score lists, got {len(candidate)} and {len(baseline)}")
    return sum(1.0 if c > b else 0.5 if c == b else 0.0 for c, b in zip(candidate, baseline)) / len(candidate)


def score(rm, rm_tokenizer, items: list[dict], baseline_dir: str | Path, max_length: int) -> tuple[dict[str, float], list]:
    """items: {suite, id, prompt (chat messages), response} of the evaluated model, SUITES only."""
    from evaluations.reward import score as rm_score

    base = read_samples(baseline_dir)
    missing = [(i["suite"], i["id"]) for i in items if (i["suite"], str(i["id"])) not in base]
    if missing or not items:
        raise ValueError(f"baseline samples in {baseline_dir} lack {len(missing)} of {len(items)} win-rate prompts "
                         f"(first: {missing[:3]}); both evaluations must run the same config")
    reply = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    ours = rm_score(rm, rm_tokenizer, [i["prompt"] + reply(i["response"]) for i in items], max_length)
    theirs = rm_score(rm, rm_tokenizer, [i["prompt"] + reply(base[(i["suite"], str(i["id"]))]["response"]) for i in items],
                      max_length)
    return {"win_rate_vs_input": win_rate(ours, theirs), "win_rate_items": float(len(items))}, list(zip(ours, theirs))
