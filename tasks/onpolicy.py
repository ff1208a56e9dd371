"""On-policy preference pairs: sample N replies per prompt from the current policy, score them, keep
best vs worst. Used by align (`on_policy: true`, one iterative-DPO round) and by reason's
rejection-sampling SFT (best-of-N only).

Scoring: the verifier first where a row names one (`verifier` + `answer`, evaluations/verifiers.py), then
the reward model as the tie-break and as the only signal for open-ended prompts. A prompt whose
samples all score the same gives no pair (no preference to learn).
"""

from __future__ import annotations

import json
from pathlib import Path

from core import generation, training
from core.config import ModelConfig
from evaluations import verifiers
from evaluations.reward import score


def sample_and_score(*, policy: str, reward_model: str | None, model_cfg: ModelConfig, rows, n: int,
                     max_new_tokens: int, temperature: float, batch_size: int, seed: int,
                     rm_max_length: int) -> list[dict]:
    """[{row, replies, verified, rm}] for each row: n samples, verifier rewards in [0, 1] (None where
    the row names no verifier, or per sample where the sandbox could not run it), and reward-model
    scores (None without a reward model)."""
    tok = training.load_tokenizer(policy)
    model = training.load_policy(policy, model_cfg)
    prompts = [r["prompt"] for r in rows]
    replies = generation.sample(model, tok, prompts, n, max_new_tokens, temperature, batch_size, seed)
    del model
    rm_scores: list[list[float] | None] = [None] * len(rows)
    if reward_model is not None:
        rm_tok = training.load_tokenizer(reward_model)
        rm = training.load_reward_model(reward_model, model_cfg, rm_tok.pad_token_id)
        flat = score(rm, rm_tok, [p + [{"role": "assistant", "content": c}] for p, cs in zip(prompts, replies) for c in cs],
                     rm_max_length, batch_size)
        rm_scores = [flat[i * n : (i + 1) * n] for i in range(len(rows))]
    scored = []
    for row, cs, rs in zip(rows, replies, rm_scores):
        verified = verifiers.rewards(cs, [row["answer"]] * n, [row["verifier"]] * n) if row.get("verifier") else None
        scored.append({"row": row, "replies": cs, "verified": verified, "rm": rs})
    return scored


def _keys(item: dict) -> list[tuple[float, float]]:
    n = len(item["replies"])
    # No verifier: every sample ties on it and the reward model decides.
    verified = item["verified"] or [0.0] * n
    rm = item["rm"] or [0.0] * n
    return [(v, r) for v, r in zip(verified, rm)]


def best_vs_worst(scored: list[dict]) -> list[dict]:
    """{prompt, chosen, rejected} per prompt whose best and worst samples differ in score."""
    pairs = []
    for item in scored:
        keys = _keys(item)
        # A sample the sandbox could not run (None) has no score: neither best nor worst.
        scored_idx = [i for i, (v, _) in enumerate(keys) if v is not None]
        if not scored_idx:
            continue
        best = max(scored_idx, key=keys.__getitem__)
        worst = min(scored_idx, key=keys.__getitem__)
        if keys[best] == keys[worst]:
            continue
        pairs.append({"id": item["row"].get("id", ""), "prompt": item["row"]["prompt"],
                      "chosen": [{"role": "assistant", "content": item["replies"][best]}],
                      "rejected": [{"role": "assistant", "content": item["replies"][worst]}],
                      "chosen_key": list(keys[best]), "rejected_key": list(keys[worst])})
    return pairs


def write(records: list[dict], path: Path) -> None:
    """Keep what was trained on next to the model (the runner logs out/*.jsonl to MLflow)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
