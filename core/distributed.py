"""Process-group facts for stages launched by `torchrun` / `accelerate launch` (one process per
device, every process running `posttrain stage NAME`).

Only the main process (global rank 0) talks to MLflow, owns the stage directory's lifecycle
(lock, clean start, marker) and registers the model; every process runs the stage body, because
the trainers' collectives need all of them. The process group is accelerate's PartialState, the
same one the HF Trainer joins later: gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar

# Set while rank 0 alone builds the upstream of a distributed stage: no collectives then, since
# the other processes are not there to join them.
_SOLO: ContextVar[bool] = ContextVar("_SOLO", default=False)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@contextmanager
def solo():
    """Rank 0 working alone (the other processes wait at a barrier after it)."""
    token = _SOLO.set(True)
    try:
        yield
    finally:
        _SOLO.reset(token)


def in_solo() -> bool:
    return _SOLO.get() and world_size() > 1


def barrier() -> None:
    """Wait for every process of the stage; a no-op in a single process or in solo()."""
    if world_size() == 1 or _SOLO.get():
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
