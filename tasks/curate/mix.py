"""Mixing and replay: per-split mixture weights and a replay fraction of an earlier stage's data.

A split of `size` rows takes from each source a share proportional to its `weight` (largest
remainder, so shares add up to `size`). A source with fewer clean rows than its share gives all
it has; the shortfall is counted (`short`) in the card rather than filled by repeating rows,
which would only re-weight the same examples. Replay (`curate.replay.<split>.<earlier split>`)
puts round(fraction * size) rows of the earlier split's curated rows into the later split, so
the later stage keeps seeing what the earlier one taught (replaying 5-20 % of earlier data limits
forgetting).
Sampling is seeded per (seed, source), so changing one source's weight moves only the shares.
"""

from __future__ import annotations

import random


def shares(weights: dict[str, float], size: int) -> dict[str, int]:
    total = sum(weights.values())
    exact = {k: size * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: size - sum(out.values())]:
        out[k] += 1
    return out


def mix(pools: dict[str, list[dict]], weights: dict[str, float], size: int, seed: int) -> tuple[list[dict], dict]:
    """pools: {source id: clean rows in source order} -> (mixed rows in a seeded order, per-source stats)."""
    rows, stats = [], {}
    for source, want in shares(weights, size).items():
        pool = pools.get(source, [])
        take = min(want, len(pool))
        picked = sorted(random.Random(f"{seed}:{source}").sample(range(len(pool)), take))
        rows += [pool[i] for i in picked]
        stats[source] = {"weight": weights[source], "available": len(pool), "share": want, "taken": take, "short": want - take}
    random.Random(seed).shuffle(rows)
    return rows, stats


def as_safety_row(row: dict, earlier: str) -> dict:
    """A replayed chat demonstration in the safety format: a helpful answer is a benign example."""
    return {**{k: v for k, v in row.items() if k not in ("label", "category")}, "id": f"replay:{row['id']}",
            "label": "benign", "category": f"replay:{earlier}"}


CONVERT = {("sft", "safety"): as_safety_row}


def replay_count(fraction: float, size: int) -> int:
    return round(fraction * size)


def replay(earlier_rows: list[dict], earlier: str, target: str, n: int, seed: int) -> list[dict]:
    convert = CONVERT[(earlier, target)]
    picked = sorted(random.Random(f"{seed}:replay:{earlier}").sample(range(len(earlier_rows)), min(n, len(earlier_rows))))
    return [convert(earlier_rows[i], earlier) for i in picked]
