"""Strict readers of user-supplied source files: JSONL / JSONL.gz, Parquet, and anything
`datasets.load_dataset` reads (a hub id, a local dataset directory or file).

Strict, because a silently skipped line is data nobody reviewed: a truncated line, invalid UTF-8,
an empty file or a line that is not a JSON object raises `SourceError` naming the file, the line
(or row) and the fix. A UTF-8 byte-order mark at the start of a JSONL file is accepted and
stripped (editors on Windows write one; it carries no data). Files the project writes or a
package ships are read with core/jsonl.py instead.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
from pathlib import Path

from core.config import SourceConfig
from tasks.curate.schema import DataValidationError


class SourceError(DataValidationError):
    """Bad source data: the message names file, line/row, id, field and the fix."""


def _decompressed(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise SourceError(f"{path}: not a complete gzip file ({err}). Fix: re-compress it with `gzip -k FILE.jsonl`.") from None
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]  # accepted and stripped, see module doc
    if not raw.strip():
        raise SourceError(f"{path}: empty file (0 rows). Fix: point the source at the right file, or remove the source "
                          f"from params.yaml.")
    return raw


def _parse_line(line: bytes, where: str, truncated: bool) -> dict:
    """One JSON object; `truncated`: this is the last line and the file lacks its final newline."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SourceError(f"{where}: invalid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1}). "
                          f"Fix: re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`.") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        if truncated:
            raise SourceError(f"{where}: truncated last line, not valid JSON ({err.msg} at column {err.colno}): the "
                              f"file was cut off while it was written. Fix: regenerate or re-download the file; "
                              f"do not trim it by hand.") from None
        raise SourceError(f"{where}: not valid JSON ({err.msg} at column {err.colno}). Fix: one JSON object per "
                          f"line.") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{where}: expected one JSON object per line, got {type(obj).__name__}. Fix: write each "
                          f"row as {{\"field\": value, ...}}.")
    return obj


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """[(where, object)] of a .jsonl or .jsonl.gz file; `where` is 'path:line'. Strict (see module doc)."""
    raw = _decompressed(path)
    lines = raw.split(b"\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    return [(f"{path}:{i + 1}", _parse_line(line, f"{path}:{i + 1}", i == last and not raw.endswith(b"\n")))
            for i, line in enumerate(lines) if line.strip()]


def read_parquet(path: Path) -> list[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: not a readable Parquet file ({err}). Fix: rewrite it, e.g. with "
                          f"`pandas.DataFrame.to_parquet`.") from None
    if not rows:
        raise SourceError(f"{path}: empty file (0 rows). Fix: point the source at the right file, or remove it.")
    return [(f"{path} row {i}", r) for i, r in enumerate(rows)]


def read_hf(cfg: SourceConfig, root: Path) -> tuple[list[tuple[str, dict]], str]:
    """The same code path as a hub dataset: `datasets.load_dataset`. A local file is loaded with
    the builder for its extension, a local directory or hub id as it is. HF_DATASETS_OFFLINE makes
    an unreachable hub id fail at once. Returns the rows and the dataset's fingerprint."""
    import datasets

    local = root / cfg.path
    if local.is_file():
        builder = {"jsonl": "json", "json": "json", "gz": "json", "parquet": "parquet", "csv": "csv"}[local.suffix.lstrip(".")]
        ds = datasets.load_dataset(builder, data_files=str(local), split=cfg.hf_split)
    else:
        ds = datasets.load_dataset(str(local) if local.is_dir() else cfg.path, cfg.hf_config or None, split=cfg.hf_split)
    if len(ds) == 0:
        raise SourceError(f"{cfg.path} (split {cfg.hf_split}): 0 rows. Fix: check hf_split / hf_config of the source.")
    return [(f"{cfg.path}[{cfg.hf_split}] row {i}", r) for i, r in enumerate(ds)], f"hf-fingerprint:{ds._fingerprint}"


def file_version(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
