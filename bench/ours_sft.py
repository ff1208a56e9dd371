"""Worker for the sft_vs_trl, packing and flops figures: our `sft` stage body (tasks/sft.run), timed.

    python -m bench.ours_sft --project WS --profile tiny --out DIR --result result.json [--set sft.max_steps=8 ...]

In its own process, it times exactly what the runner's `compute_s` times (the stage body: load
data and model, train, save), without the runner's tracking. Library imports happen before the
timer, as in bench/plain_trl_sft.py, so both sides pay the same start-up outside the measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True, help="workspace holding params.yaml and data/curated/sft.jsonl")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--result", required=True)
    args = ap.parse_args()

    import torch
    import trl  # noqa: F401  (import cost outside the timer, as in the plain script)

    from core import models
    from core.config import load_params
    from tasks import sft

    project = Path(args.project)
    p = load_params(project / "params.yaml", args.profile, args.set)
    base = models.base_model(p.model, p.pipeline.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    phases, missing = time_phases()
    started = time.perf_counter()
    metrics = sft.run(p.sft, p.model, model=base, data={"sft": project / "data" / "curated" / "sft.jsonl"}, out=out,
                      seed=p.pipeline.seed)
    wall = time.perf_counter() - started
    history = json.loads((out / "log_history.json").read_text())
    result = {
        "wall_s": wall,
        "train_runtime_s": metrics["train_runtime_s"],
        "num_tokens": max(h["num_tokens"] for h in history if "num_tokens" in h),
        "steps": int(metrics["steps"]),
        "torch_threads": torch.get_num_threads(),
        "model": base,
        "params": param_count(Path(base)),
        "sft_config": dataclasses.asdict(p.sft),
        "phases": phases,
        "untimed_s": wall - sum(v["s"] for k, v in phases.items() if k not in NESTED),
        "phases_not_found": missing,
        "data": str(project / "data" / "curated" / "sft.jsonl"),
    }
    Path(args.result).write_text(json.dumps(result))


# Parts of the stage body timed separately (module, attribute), so the record says where the time
# outside the training loop goes. `fit` is the training loop (with in-stage checkpoints).
PHASES = (("core.training", "load_tokenizer"), ("core.training", "load_policy"),
          ("core.training", "load_rows"), ("core.training", "snapshot"), ("tasks.sft", "holdout"),
          ("tasks.sft", "trainer"), ("trl", "SFTTrainer.evaluate"), ("core.training", "fit"),
          ("core.training", "finish"), ("core.training", "param_change"))
NESTED = ("param_change",)  # runs inside `finish`: not added again to the total


def time_phases() -> tuple[dict, list[str]]:
    """Wrap each PHASES function (in this worker process only) to add its wall time and call count
    to the returned dict; the functions still run unchanged. Names the code no longer has are
    returned as the second value, so a refactor shows up in the record instead of as a zero."""
    import functools
    import importlib

    phases: dict[str, dict] = {}
    missing = []
    for module_name, attr in PHASES:
        owner = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, name, None) if owner is not None else None
        if fn is None:
            missing.append(f"{module_name}.{attr}")
            continue
        slot = phases.setdefault(attr, {"s": 0.0, "calls": 0})

        def timed(*a, _fn=fn, _slot=slot, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                _slot["s"] += time.perf_counter() - t0
                _slot["calls"] += 1

        setattr(owner, name, functools.wraps(fn)(timed))
    return phases, missing


def param_count(checkpoint: Path) -> int:
    """Parameters stored in a safetensors checkpoint (a tied embedding is stored, and counted, once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():
                total += _numel(st.get_slice(name).get_shape())
    return total


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
