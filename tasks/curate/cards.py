"""Dataset cards: one markdown file next to each curated split (data/curated/<split>.md) with its
counts, sources, licences, versions, drop reasons, dedup and decontamination stats. Written by
tasks/curate/pipeline.py, logged to MLflow by pipeline/stages.py::curate.
"""

from __future__ import annotations

from collections import Counter


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def card(split: str, fmt: str, rows: list[dict], stats: dict, decon: dict, md5: str) -> str:
    own = [r for r in rows if not r["id"].startswith("replay:")]  # replayed rows are listed under Replay
    by_source = Counter(r["source"] for r in own)
    meta = {}
    for r in own:
        meta.setdefault(r["source"], (r["source_version"], r["license"], r["seed"], r["transform_version"]))
    mixture = stats.get("mixture", {})
    source_rows = [[s, *meta[s][:2], mixture.get(s, {}).get("weight", "replay"), mixture.get(s, {}).get("available", "-"),
                    by_source[s], mixture.get(s, {}).get("short", 0)] for s in sorted(by_source)]
    drops = stats.get("drops", {})
    drop_rows = [[src, reason, n] for src, reasons in sorted(drops.items()) for reason, n in sorted(reasons.items()) if n]
    licences = sorted({r["license"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    parts = [
        f"# Dataset card: `{split}`",
        "",
        f"- format: `{fmt}` (TRL), file `data/curated/{split}.jsonl`, md5 `{md5}`",
        f"- rows: **{len(rows)}** (target size {stats.get('size', '-')})",
        f"- licences: {', '.join(licences)}",
        f"- generator/sampling seeds: {', '.join(map(str, seeds))}; transform version {', '.join(sorted({r['transform_version'] for r in rows}))}",
        "- every row carries `source`, `source_version`, `license`, `seed`, `transform_version`",
        "",
        "## Sources and mixture",
        "",
        _table(["source", "version", "licence", "weight", "clean rows available", "rows in split", "short of share"], source_rows),
        "",
    ]
    if stats.get("replay"):
        parts += ["Replay: " + ", ".join(f"{n} rows of the curated `{s}` split (ids `replay:...`)" for s, n in stats["replay"].items()), ""]
    parts += ["## Dropped rows by reason", "",
              _table(["source", "reason", "rows"], drop_rows) if drop_rows else "No rows dropped.", ""]
    clean = stats.get("clean", {})
    if clean:
        parts += [f"Tokens per row (SmolLM2 chat template): mean {clean.get('tokens_mean')}, max {clean.get('tokens_max')}."]
        if clean.get("near_duplicate_examples"):
            parts += ["Near-duplicate examples (dropped id, kept id): "
                      + "; ".join(f"`{a}` ~ `{b}`" for a, b in clean["near_duplicate_examples"])]
        parts += [""]
    parts += ["## Decontamination", ""]
    if decon.get("role") == "eval":
        parts += [f"Eval set: every training split is scanned against it ({decon.get('items', 0)} items)."]
    else:
        parts += [f"Scanned against {decon.get('eval_items', 0)} eval items "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(decon.get('eval_items_by_set', {}).items()))}) with "
                  f"{' and '.join(str(n) + '-grams' for n in decon.get('ngram_sizes', []))} of normalised tokens; "
                  f"open hits: {decon.get('open', 0)}, waived hits: {decon.get('waived', 0)}."]
    return "\n".join(parts) + "\n"
