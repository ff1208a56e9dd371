"""Where things live. Nothing is created at import; callers create what they write.

<project>/params.yaml, dvc.yaml, dvc.lock        configuration and data versions (git)
<project>/data/curated/*.jsonl                   curated datasets (DVC-tracked)
<runs>/stages/<stage>/<version key>/             stage outputs; COMPLETE.json marks them finished
<runs>/mlflow.db, <runs>/mlartifacts/            default MLflow store (MLFLOW_TRACKING_URI overrides)
<runs>/dvc-remote/                               default DVC remote (`dvc push`)
<runs> is <project>/runs unless POSTTRAIN_RUNS is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    project: Path

    @property
    def params(self) -> Path:
        return self.project / "params.yaml"

    @property
    def runs(self) -> Path:
        return Path(os.environ.get("POSTTRAIN_RUNS", self.project / "runs")).resolve()

    @property
    def curated(self) -> Path:
        return self.project / "data" / "curated"

    @property
    def dvc_lock(self) -> Path:
        return self.project / "dvc.lock"

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.runs / "stages" / stage / key[:20]


def layout(project: str | Path | None = None) -> Layout:
    root = Path(project or os.environ.get("POSTTRAIN_PROJECT", ".")).resolve()
    if not (root / "params.yaml").is_file():
        raise FileNotFoundError(
            f"{root / 'params.yaml'} not found: run posttrain from the project root or pass --project DIR"
        )
    return Layout(root)
