"""`posttrain stage NAME`: one stage outside a Prefect flow, the entry point a SkyPilot job and
`torchrun` / `accelerate launch` call on every process.

    posttrain stage sft --profile tiny                    a new parent run; upstream reused or built
    posttrain stage sft --profile P --iteration RUN_ID    join that iteration (the remote path):
                                                          upstream = what the iteration recorded

Without --iteration the stage's upstream nodes run first through the same versioned runner, so a
complete upstream output is reused and a missing one is built (nothing is trained twice). With
--iteration (MLFLOW_PARENT_RUN_ID on a cluster) the stage becomes a child run of that iteration
and reads its upstream outputs from the iteration's `stage.<name>.version_key` tags; if the
launcher passed VERSION_KEY, the key this checkout computes must equal it, or the stage refuses to
run (a different code or config than the one the iteration launched would be recorded under its
name).

Distributed: every process calls this; rank 0 resolves upstream (it may build it), the others
wait and then read the recorded outputs, and runner.execute splits the work by rank.
"""

from __future__ import annotations

import os

from core import distributed, tracking
from core.config import load_params
from core.paths import layout
from pipeline import dag, iterations, runner
from pipeline.runner import Iteration, Record


def run(project: str, name: str, profile: str, overrides: list[str], iteration: str | None = None) -> tuple[str, Record]:
    """(the parent run id, the stage's record)."""
    if name not in dag.NODE or name in ("base", "curate"):
        raise ValueError(f"unknown stage '{name}'")
    lay = layout(project)
    main = distributed.is_main()
    own_parent = not iteration
    # A fresh sqlite store is created (and migrated) by rank 0 alone: two processes creating it
    # at once race. The others configure once rank 0 has opened the parent run (after _share).
    if main or iteration:
        tracking.configure(lay.runs)
    if iteration:
        it = Iteration(str(lay.project), profile, tuple(overrides), iteration, "", tracking.git_sha(lay.project),
                       load_params(lay.params, profile, overrides))
    else:
        it = _share(iterations.open_iteration(str(lay.project), profile, overrides, kind="stage") if main else None)
        if not main:
            tracking.configure(lay.runs)
    status = "FAILED"
    try:
        if main and own_parent:
            with distributed.solo():
                records = _build_upstream(it, name)
            distributed.barrier()  # upstream is complete and tagged on the parent: the others may read it
        else:
            if own_parent:
                # Rank 0 may be building upstream stages first; gloo's default timeout is 30 min.
                distributed.barrier()
            records = iterations.recorded(it, it.parent_run_id, name, downstream=False, link=False)
        node = dag.NODE[name]
        token = runner.EXPECT_KEY.set(os.environ.get("VERSION_KEY") or None)
        try:
            record = node.fn(it, *[records[i] for i in node.inputs])
        finally:
            runner.EXPECT_KEY.reset(token)
        status = "FINISHED"
        return it.parent_run_id, record
    finally:
        if own_parent and main:
            iterations.close_iteration(it, status)


def _share(it: Iteration | None) -> Iteration:
    """Rank 0 opened the parent run; the other processes learn it through the process group."""
    if distributed.world_size() == 1:
        return it
    import torch.distributed as dist

    distributed.barrier()  # joins (initialises) the process group
    box = [it]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _build_upstream(it: Iteration, name: str) -> dict[str, Record]:
    records: dict[str, Record] = {}
    for up in dag.needed_by([name]):
        node = dag.NODE[up]
        records[up] = node.fn(it, *[records[i] for i in node.inputs])
    return records
