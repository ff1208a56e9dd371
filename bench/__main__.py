"""The benchmark harness: one command, every figure of docs/BENCHMARKS.md.

    .venv/bin/python -m bench                                  # full: default profile, ~1.5 h on 2 cores; run it on a quiet machine
    .venv/bin/python -m bench --quick                          # smoke test: tiny profile, a few minutes
    .venv/bin/python -m bench --only sft_vs_trl,packing,flops  # a subset of figures, by name
    .venv/bin/python -m bench.render bench/results/DATE.json   # re-render the table from a results file

Figures: iteration_time, overhead, rerun, sft_vs_trl, packing, generation_engine, generation_batching, flops
(bench/figures/targets.py says what each measures and its target).

Everything runs in one process tree in a throwaway workspace (a git copy of this checkout with
its own runs/ and Prefect home, deleted at the end unless --keep): the real runs/ is never
touched. Results go to bench/results/<date>.json (written after each figure, so an interrupted
run keeps what it measured) and, for a full run of every figure, to docs/BENCHMARKS.md.
Exit status: 0 all selected figures measured, 1 a figure failed (its error is in the results), 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import figures, machine, render, workspace
from bench.iteration_speed import BenchError

RESULTS = workspace.ROOT / "bench" / "results"
DOC = workspace.ROOT / "docs" / "BENCHMARKS.md"


def _parse_only(text: str) -> list[str]:
    """The chosen figure names, in the order the figures run."""
    chosen = {x.strip() for x in text.split(",") if x.strip()}
    bad = sorted(chosen - set(figures.FIGURES))
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"--only {text!r}: unknown figure(s) {', '.join(bad) or '(none given)'}; "
                                         f"figures are {', '.join(figures.FIGURES)}, comma-separated")
    return [name for name in figures.FIGURES if name in chosen]


def _default_out(mode: str) -> Path:
    stem = datetime.now().strftime("%Y-%m-%d") + ("-quick" if mode == "quick" else "")
    out, n = RESULTS / f"{stem}.json", 2
    while out.exists():  # never overwrite an earlier record of the same day
        out, n = RESULTS / f"{stem}-{n}.json", n + 1
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny profile and small sizes: a smoke test in minutes")
    ap.add_argument("--only", type=_parse_only, default=list(figures.FIGURES), metavar="FIGURES",
                    help="comma-separated figure names, e.g. sft_vs_trl,packing (default: all)")
    ap.add_argument("--reps", type=int, help="repetitions per figure (full: 3, quick: 1); medians are reported")
    ap.add_argument("--iteration-reps", type=int,
                    help="repetitions of a default-profile iteration (iteration_time, overhead, rerun; "
                         "default 1: ~35 min each)")
    ap.add_argument("--out", type=Path, help="results file (default: bench/results/<date>[-quick].json)")
    ap.add_argument("--doc", type=Path,
                    help="write the table here (default: docs/BENCHMARKS.md after a full run of all figures; "
                         "otherwise only when given)")
    ap.add_argument("--workdir", type=Path, help="where the throwaway workspace goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (runs, MLflow store) for inspection")
    ap.add_argument("--data-from", type=Path, default=workspace.ROOT, metavar="CHECKOUT",
                    help="a checkout whose curated data (dvc.lock outputs and their DVC cache objects) seeds the "
                         "workspace, so `dvc repro` there rebuilds only what differs (default: this checkout)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)

    plan = figures.QUICK if args.quick else figures.FULL
    changes = {k: v for k, v in (("reps", args.reps), ("iteration_reps", args.iteration_reps)) if v is not None}
    if any(v < 1 for v in changes.values()):
        ap.error("--reps and --iteration-reps must be >= 1")
    plan = dataclasses.replace(plan, **changes)
    out = args.out or _default_out(plan.mode)
    doc = args.doc or (DOC if plan.mode == "full" and args.only == list(figures.FIGURES) else None)

    root = Path(tempfile.mkdtemp(prefix="posttrain-bench-", dir=args.workdir))
    started = time.time()
    results = {
        "schema_version": 2,  # 2: figures, errors and selected keyed by figure name (1: by number)
        "mode": plan.mode,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "plan": dataclasses.asdict(plan),
        "selected": args.only,
        "machine": machine.describe(),
        "versions": machine.versions(),
        "git": machine.git(workspace.ROOT),
        "figures": {},
        "errors": {},
    }
    failed = False
    try:
        ws = workspace.Workspace(workspace.make(root / "project"), root / "project" / "runs")
        print(f"bench ({plan.mode}): workspace {ws.root}, figures {','.join(args.only)} -> {out}", flush=True)
        results["data_prep"] = _curate(ws, plan.timeout_s, args.data_from)
        ctx = figures.Context(plan, ws, root / "scratch")
        ctx.scratch.mkdir()
        for name in args.only:
            t0, load0 = time.time(), machine.load()
            print(f"figure {name}: {figures.TITLES[name]} ...", flush=True)
            try:
                fig = figures.FIGURES[name](ctx)
            except Exception as err:  # noqa: BLE001
                # Any failure of one figure (a stage error, a timeout, a changed interface) is
                # recorded in the results and printed with its traceback, never hidden; the run
                # goes on with the other figures and exits 1.
                failed = True
                results["errors"][name] = f"{type(err).__name__}: {err}"
                print(f"figure {name} FAILED: {err}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            else:
                fig.update(seconds=time.time() - t0, load_before=load0, load_after=machine.load())
                results["figures"][name] = fig
                print(f"figure {name}: {render.headline(fig)} ({fig['seconds']:.0f} s)", flush=True)
            _write(results, started, out)
    finally:
        if args.keep:
            print(f"workspace kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    _write(results, started, out)
    if doc:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render.markdown(results, out))
        print(f"table: {doc}")
    print(f"results: {out}")
    return 1 if failed else 0


def _curate(ws: workspace.Workspace, timeout: int, data_from: Path) -> dict:
    """Curate the data once, before any timer: `dvc repro` (dvc.yaml holds the data pipeline
    only) is data preparation, not the iterations' orchestration, and every figure reads the
    curated splits. Inside an iteration the same command is then an up-to-date check."""
    seeded = workspace.seed_data(ws.root, data_from)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=ws.root, env=ws.env(),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"`dvc repro` failed in {ws.root}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"command": "dvc repro", "wall_s": time.perf_counter() - started, "seeded_from_checkout": len(seeded),
            "ran": [line for line in proc.stdout.splitlines() if line.startswith("Running stage")]}


def _write(results: dict, started: float, out: Path) -> None:
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["duration_s"] = time.time() - started
    results["machine"]["load_at_end"] = machine.load()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    sys.exit(main())
