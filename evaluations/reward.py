"""Reward-model scoring: held-out pair accuracy, the RM's basic sanity check (near-human
agreement is ~0.70-0.75; 0.5 is chance; well below 0.5 means the preference is inverted)."""

from __future__ import annotations

VERSION = "pair-accuracy-1"


def score(model, tokenizer, conversations: list[list[dict]], max_length: int, batch_size: int = 8) -> list[float]:
    import torch

    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    scores: list[float] = []
    model.eval()
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length, add_special_tokens=False).to(device)
            scores += model(**enc).logits[:, 0].float().cpu().tolist()
    return scores


def pair_accuracy(model, tokenizer, pairs, max_length: int, scores_out=None) -> dict[str, float]:
    """Held-out pair accuracy; `scores_out` (a path) also keeps every score for the report's
    histogram (one spike = a collapsed RM, two humps = a surface feature)."""
    import json

    chosen = score(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length)
    rejected = score(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], max_length)
    if scores_out is not None:
        ids = [p["id"] for p in pairs]
        scores_out.write_text(json.dumps({"ids": ids, "chosen": chosen, "rejected": rejected}))
    wins = [c > r for c, r in zip(chosen, rejected)]
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"rm_pair_accuracy": sum(wins) / len(wins), "rm_mean_margin": sum(margins) / len(margins),
            "rm_eval_pairs": float(len(wins))}
