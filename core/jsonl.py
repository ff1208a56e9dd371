"""JSON Lines files: one object per line, UTF-8, `.gz` read transparently.

`read` is for files the project wrote or a package ships (trusted shape); user-supplied source
files go through tasks/curate's strict reader, which names the line and the fix for every fault.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def read(path: str | Path) -> list[dict]:
    """Every non-blank line of `path` parsed as JSON."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path: str | Path, rows) -> None:
    """One object per line, non-ASCII kept as is; atomic (a reader never sees half a file). Keys
    starting with "_" are working fields and are not written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
    tmp.replace(path)
