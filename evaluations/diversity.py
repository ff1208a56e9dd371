"""Diversity and length of generated responses (mode collapse shows as a sharp distinct-n drop).

distinct-n (Li et al., 2016): unique n-grams / total n-grams, pooled over all responses (n-grams
do not cross response boundaries). Tokens for distinct-n are lower-cased words and single
punctuation marks (`\\w+|[^\\w\\s]`), so the number does not depend on the model's tokenizer. No
n-grams at all (only empty responses) gives 0.0, not NaN.

Length in tokens uses the evaluated model's tokenizer (no special tokens): mean and p90 (linear
interpolation between closest ranks, numpy's default percentile).
"""

from __future__ import annotations

import re

VERSION = "distinct-words-v1"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    grams: list[tuple[str, ...]] = []
    for text in texts:
        w = words(text)
        grams += [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def length_stats(token_counts: list[int]) -> dict[str, float]:
    import numpy as np

    if not token_counts:
        raise ValueError("no responses to measure")
    return {"response_tokens_mean": float(np.mean(token_counts)),
            "response_tokens_p90": float(np.percentile(token_counts, 90))}


def score(texts: list[str], tokenizer) -> dict[str, float]:
    counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), **length_stats(counts)}
