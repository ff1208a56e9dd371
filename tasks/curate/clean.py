"""Cleaning of one split's rows (after tasks/curate/sources checked their shape): exact duplicates on
normalised text, MinHash near-duplicates (datasketch), rows over the token budget. Every drop is
counted by reason; the counts go into the dataset card and data/curate_stats.json.

Thresholds live in params.yaml (`curate.near_dup_threshold`, `minhash_num_perm`, `shingle_words`,
`max_tokens`). The first occurrence of a duplicate is kept, so the result depends on source order
(the order of `sources` in params.yaml), never on chance.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

from core.config import CurateConfig

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
TEXT_FIELDS = ("messages", "prompt", "chosen", "rejected")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed. Punctuation stays: '3 + 4' and '3 - 4' differ."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def words(text: str) -> list[str]:
    """Normalised word tokens (punctuation dropped): what n-gram and shingle matching compare."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def turns_text(turns) -> str:
    return "\n".join(t["content"] for t in turns)


def row_text(row: dict) -> str:
    """All the text of a row: every turn of every chat field, and a gold answer if any."""
    parts = [turns_text(row[f]) for f in TEXT_FIELDS if f in row]
    if "answer" in row:
        parts.append(str(row["answer"]))
    return "\n".join(parts)


def exact_dedup(rows: list[dict]) -> tuple[list[dict], int]:
    seen, kept = set(), []
    for r in rows:
        key = hashlib.sha1(normalise(row_text(r)).encode()).digest()
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(rows) - len(kept)


def _minhash(text: str, cfg: CurateConfig):
    from datasketch import MinHash

    toks = words(text)
    n = cfg.shingle_words
    shingles = {" ".join(toks[i:i + n]) for i in range(max(1, len(toks) - n + 1))}
    m = MinHash(num_perm=cfg.minhash_num_perm, seed=1)  # fixed seed: same rows -> same decisions
    m.update_batch([s.encode() for s in shingles])
    return m


def near_dedup(rows: list[dict], cfg: CurateConfig) -> tuple[list[dict], int, list[tuple[str, str]]]:
    """Drop rows whose estimated Jaccard similarity (word shingles) with an earlier kept row is at
    least `near_dup_threshold`. LSH finds candidates; each is confirmed on the MinHash estimate.
    Returns kept rows, the drop count and (dropped id, kept id) examples."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.minhash_num_perm)
    hashes, kept, pairs = {}, [], []
    for i, r in enumerate(rows):
        m = _minhash(row_text(r), cfg)
        match = next((k for k in lsh.query(m) if m.jaccard(hashes[k]) >= cfg.near_dup_threshold), None)
        if match is not None:
            pairs.append((r["id"], rows[match]["id"]))
            continue
        key = i
        lsh.insert(key, m)
        hashes[key] = m
        kept.append(r)
    return kept, len(rows) - len(kept), pairs


def token_lengths(rows: list[dict], tokenizer) -> list[int]:
    """Tokens of each row as the trainers see it: the chat template applied to the longest
    conversation the row makes (prompt + chosen or + rejected for pairs)."""
    convs = []
    for r in rows:
        if "messages" in r:
            convs.append([r["messages"]])
        elif "chosen" in r:
            convs.append([r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]])
        else:
            convs.append([r["prompt"]])
    flat = [tokenizer.apply_chat_template(c, tokenize=False) for cs in convs for c in cs]
    lengths = [len(ids) for ids in tokenizer(flat, add_special_tokens=False)["input_ids"]]
    out, k = [], 0
    for cs in convs:
        out.append(max(lengths[k:k + len(cs)]))
        k += len(cs)
    return out


def tokenizer():
    """The default model's tokenizer (SmolLM2, from the packaged GGUF; cached after the first call)."""
    from transformers import AutoTokenizer

    from core.config import ModelConfig
    from core.models import gguf_tokenizer_dir

    return AutoTokenizer.from_pretrained(gguf_tokenizer_dir(ModelConfig()), trust_remote_code=False)


def clean(rows: list[dict], cfg: CurateConfig, tok) -> tuple[list[dict], Counter, dict]:
    """rows -> (kept rows, drops by reason, details for the card)."""
    drops: Counter = Counter()
    rows, drops["exact_duplicate"] = exact_dedup(rows)
    rows, drops["near_duplicate"], pairs = near_dedup(rows, cfg)
    lengths = token_lengths(rows, tok)
    kept = [r for r, n in zip(rows, lengths) if n <= cfg.max_tokens]
    drops["over_max_tokens"] = len(rows) - len(kept)
    kept_lengths = [n for n, r in zip(lengths, rows) if n <= cfg.max_tokens]
    details = {"near_duplicate_examples": pairs[:5],
               "tokens_max": max(kept_lengths, default=0),
               "tokens_mean": round(sum(kept_lengths) / max(1, len(kept_lengths)), 1)}
    return kept, drops, details
