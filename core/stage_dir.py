"""Stage output directories: versioned by content, complete only when the marker exists.

A stage writes into `<runs>/stages/<stage>/<version key>/` and writes `COMPLETE.json` last. A
directory without the marker is never reused, registered or resumed from as if it were finished.
"""

from __future__ import annotations

import hashlib
import inspect
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


def code_digest(*modules) -> str:
    """sha256 over the source of the modules that implement a stage."""
    h = hashlib.sha256()
    for module in modules:
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()


def version_key(stage: str, config: dict, inputs: dict[str, str], code: str) -> str:
    """hash(stage, resolved config, input versions, code): same key => same output, reusable."""
    payload = json.dumps({"stage": stage, "config": config, "inputs": inputs, "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
