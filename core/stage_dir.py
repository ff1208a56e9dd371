"""Stage output directories: versioned by content, complete only when the marker exists.

A stage writes into `<runs>/stages/<stage>/<version key>/` and writes `COMPLETE.json` last. A
directory without the marker is never reused, registered or resumed from as if it were finished.
The marker also records the size and sha256 of every file it vouches for (`files`), so that
damage after completion (a truncated or bit-flipped checkpoint) is found by verify() before reuse.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MARKER = "COMPLETE.json"


class MarkerError(ValueError):
    """A COMPLETE.json that cannot be read as a marker: not JSON, not an object, or missing fields."""


def is_complete(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def read_marker(path: Path, required: tuple[str, ...] = ()) -> dict:
    """The marker's contents; MarkerError (naming the file) when it is not a JSON object holding
    every key in `required`."""
    marker = Path(path) / MARKER
    try:
        meta = json.loads(marker.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MarkerError(f"{marker}: not JSON ({err})") from err
    if not isinstance(meta, dict):
        raise MarkerError(f"{marker}: not a JSON object (a {type(meta).__name__})")
    missing = [k for k in required if k not in meta]
    if missing:
        raise MarkerError(f"{marker}: no {', '.join(repr(k) for k in missing)}")
    return meta


def mark_complete(path: Path, meta: dict) -> None:
    """Write the marker last: `meta` plus `files`, the size and sha256 of every file under `path`."""
    path = Path(path)
    record = {**meta, "files": digests(path)}
    tmp = path / (MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path / MARKER)  # atomic on a local filesystem


def _listed(path: Path) -> list[str]:
    """Relative paths (posix) of every file under `path` the marker vouches for. Excluded: the
    marker itself and its temporary (written after the digests, replaced into the marker), and
    `*.lock` files (lock files of concurrent writers: created, emptied and removed by whoever holds
    them, so their content says nothing about the output). Symlinks are followed (a reader loads
    what they point to), each real directory once."""
    found: list[str] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop, or a second link to a directory already listed
            dirs[:] = []
            continue
        seen.add(real)
        rel_root = Path(root).relative_to(path)
        for name in files:
            rel = (rel_root / name).as_posix()
            if rel in (MARKER, MARKER + ".tmp") or name.endswith(".lock"):
                continue
            found.append(rel)
    return sorted(found)


def _sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hash_all(files: list[Path]) -> list[str]:
    """sha256 of each file; several at once (hashlib releases the GIL while hashing)."""
    if len(files) < 2:
        return [_sha256(f) for f in files]
    with ThreadPoolExecutor(max_workers=min(4, len(files), os.cpu_count() or 1)) as pool:
        return list(pool.map(_sha256, files))


def digests(path: Path) -> dict[str, dict]:
    """{relative path: {"size": bytes, "sha256": hex}} of every file the marker vouches for."""
    path = Path(path)
    rels = _listed(path)
    hashes = _hash_all([path / r for r in rels])
    return {r: {"size": (path / r).stat().st_size, "sha256": h} for r, h in zip(rels, hashes)}


def verify(path: Path, required: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with a complete directory, one message per problem (empty: intact).

    The marker must be a JSON object holding `required` and `files`; every listed file must exist
    with its recorded size (checked first, cheap) and sha256 (read in full: a bit flip keeps the
    size). A marker without `files` was written by older code: nothing vouches for its files."""
    path = Path(path)
    try:
        meta = read_marker(path, required)
    except MarkerError as err:
        return [f"{MARKER}: {str(err).removeprefix(str(path / MARKER) + ': ')}"]
    except OSError as err:
        return [f"{MARKER}: unreadable ({err.strerror or err})"]
    files = meta.get("files")
    if files is None:
        return [f"{MARKER}: records no file digests (written by older code), so its files cannot be verified"]
    if not isinstance(files, dict) or not all(_entry_ok(e) for e in files.values()):
        return [f"{MARKER}: 'files' is not a map of {{path: {{size, sha256}}}}"]
    problems: list[str] = []
    to_hash: list[str] = []
    for rel, entry in sorted(files.items()):
        file = path / rel
        try:
            size = file.stat().st_size if file.is_file() else None
        except OSError:
            size = None
        if size is None:
            problems.append(f"{rel}: missing (expected {entry['size']} bytes)")
        elif size != entry["size"]:
            problems.append(f"{rel}: size {size} bytes, expected {entry['size']}")
        else:
            to_hash.append(rel)
    try:
        hashes = _hash_all([path / r for r in to_hash])
    except OSError as err:
        return problems + [f"{err.filename or path}: unreadable ({err.strerror or err})"]
    for rel, found in zip(to_hash, hashes):
        if found != files[rel]["sha256"]:
            problems.append(f"{rel}: sha256 {found[:12]}..., expected {files[rel]['sha256'][:12]}... (same size)")
    return problems


def _entry_ok(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str))


# A stage's version key covers the code of its module and of every project module it imports,
# directly or not (function-level imports included), except these: they place, record or check a
# stage's work and never change what it computes, so editing them does not re-run every stage.
CODE_PACKAGES = ("tasks", "evaluations", "core")
NOT_CODE_OF_A_STAGE = frozenset({"core.config", "core.paths", "core.tracking", "core.stage_dir", "core.dvc",
                                 "core.distributed", "core.progress"})


def covered_modules(module) -> list[str]:
    """The dotted names of the modules a stage's version key covers (see CODE_PACKAGES)."""
    seen: set[str] = set()
    stack = [module.__name__]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(_source(name))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            stack += [f for f in found if f.split(".")[0] in CODE_PACKAGES and f not in NOT_CODE_OF_A_STAGE
                      and f not in seen and _is_module(f)]
    return sorted(seen)


def code_digest(module) -> str:
    """sha256 over the source of `module` and of every module it covers (covered_modules)."""
    h = hashlib.sha256()
    for name in covered_modules(module):
        h.update(name.encode() + b"\0" + _source(name).encode() + b"\0")
    return h.hexdigest()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # `from pkg.mod import NAME`: NAME is not a module
        return False


def _source(name: str) -> str:
    return Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")


def version_key(stage: str, config: dict, inputs: dict[str, str], code: str) -> str:
    """hash(stage, resolved config, input versions, code): same key => same output, reusable."""
    payload = json.dumps({"stage": stage, "config": config, "inputs": inputs, "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
