"""What several source adapters share: stable row ids, held-out halves and refusal picks chosen by a
hash of the item (never by chance, so the data version depends only on the inputs), and the data
tables under tasks/curate/data/."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"


def table(name: str):
    """A JSON data table of tasks/curate/data/ (word lists, templates, constraint tables, phrasings)."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _hash(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16)


def row_id(source: str, key: str) -> str:
    return f"{source}:{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def held_out(key, fraction: float) -> bool:
    """Whether an item belongs to the share of its source kept for evaluation only: by a hash of the
    item, so the split is the same for every seed and does not move when other items change."""
    return _hash(str(key)) % 1000 < fraction * 1000


@cache
def _refusals() -> tuple[str, ...]:
    # Calibrated refusals: short, no lecture, offer a safe direction.
    return tuple(table("refusals.json"))


def refusal(key: str) -> str:
    """A refusal picked by hash of the prompt: the model sees variety without randomness leaking into
    the data version."""
    return _refusals()[_hash(key) % len(_refusals())]
