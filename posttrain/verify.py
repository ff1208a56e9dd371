"""`posttrain verify [--iteration RUN_ID]`: check that completed stage outputs are intact.

Every complete stage dir under `<runs>/stages/` (or only those an iteration recorded in its
`stage.<name>.version_key` tags) is checked against the sizes and sha256 digests its COMPLETE.json
recorded (pipeline.runner.damage). One line per damaged dir, then a summary. Read only: a run that
would reuse a damaged dir moves it aside and rebuilds it; a rerun's recorded input is rebuilt with
`posttrain rerun STAGE --iteration RUN_ID`. Dirs already moved aside (`*.damaged-*`) and unfinished
ones (no marker, never reused) are not checked.

Exit codes: 0 everything checked is intact, 1 damage found, 2 unknown iteration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.paths import layout
from core.stage_dir import is_complete
from pipeline.runner import damage

ASIDE = ".damaged-"  # dirs runner.execute moved aside: kept for inspection, never reused


def _all_dirs(stages: Path) -> tuple[list[tuple[str, Path]], int]:
    """(stage name, dir) of every complete stage dir, and how many unfinished ones were skipped."""
    found, unfinished = [], 0
    if not stages.is_dir():
        return found, unfinished
    for stage in sorted(p for p in stages.iterdir() if p.is_dir()):
        for out in sorted(p for p in stage.iterdir() if p.is_dir() and ASIDE not in p.name):
            if is_complete(out):
                found.append((stage.name, out))
            else:
                unfinished += 1  # an attempt still running or killed: never reused, nothing to verify
    return found, unfinished


def _iteration_dirs(lay, iteration: str) -> list[tuple[str, Path]]:
    """(stage name with label, dir) of every stage output the iteration's parent run recorded."""
    from mlflow import MlflowClient

    from core import tracking
    from pipeline import ids

    tracking.configure(lay.runs)
    client = MlflowClient()
    tags = client.get_run(ids.iteration(client, iteration)).data.tags
    dirs = []
    for tag, key in sorted(tags.items()):
        if tag.startswith("stage.") and tag.endswith(".version_key"):
            name = tag.removeprefix("stage.").removesuffix(".version_key")
            dirs.append((name, lay.stage_dir(name.split(".")[0], key)))
    return dirs


def main(project: str | None, iteration: str | None = None) -> int:
    from pipeline.ids import BadId

    lay = layout(project)
    stages = lay.runs / "stages"
    unfinished = 0
    if iteration:
        try:
            dirs = _iteration_dirs(lay, iteration)
        except BadId as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        dirs, unfinished = _all_dirs(stages)
    damaged = 0
    for name, out in dirs:
        problems = damage(out) if is_complete(out) else [f"no complete output at {out}"]
        if problems:
            damaged += 1
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            print(f"DAMAGED {name} {out.relative_to(lay.runs) if out.is_relative_to(lay.runs) else out}: "
                  f"{problems[0]}{more}")
    scope = f"iteration {iteration}" if iteration else str(stages)
    skipped = f"; {unfinished} unfinished dir(s) not checked" if unfinished else ""
    print(f"verified {len(dirs)} stage output(s) of {scope}: {damaged} damaged{skipped}")
    if damaged:
        print("a run that would reuse a damaged output moves it aside and rebuilds it; "
              "for a rerun's recorded input: posttrain rerun STAGE --iteration RUN_ID")
    return 1 if damaged else 0
