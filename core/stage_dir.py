"""Stage output directories: versioned by content, complete only when the marker exists.

A stage writes into `<runs>/stages/<stage>/<version key>/` and writes `COMPLETE.json` last. A
directory without the marker is never reused, registered or resumed from as if it were finished.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from pathlib import Path

MARKER = "COMPLETE.json"


def is_complete(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def read_marker(path: Path) -> dict:
    return json.loads((Path(path) / MARKER).read_text())


def mark_complete(path: Path, meta: dict) -> None:
    tmp = Path(path) / (MARKER + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    os.replace(tmp, Path(path) / MARKER)  # atomic on a local filesystem


# A stage's version key covers the code of its module and of every project module it imports,
# directly or not (function-level imports included), except these: they place, record or check a
# stage's work and never change what it computes, so editing them does not re-run every stage.
CODE_PACKAGES = ("tasks", "evaluations", "core")
NOT_CODE_OF_A_STAGE = frozenset({"core.config", "core.paths", "core.tracking", "core.stage_dir", "core.dvc",
                                 "core.distributed"})


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
