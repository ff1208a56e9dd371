"""Stress check (not a timed figure, not a test): several iterations started together on one fresh
MLflow store while a CPU-bound background load competes for the cores.

    .venv/bin/python -m bench.stress --iterations 4 --load 1

In a throwaway workspace (a git copy of this checkout, its data seeded and `dvc repro` run first),
it starts N busy background processes, then ITERATIONS `posttrain run --profile PROFILE` at once
(same workspace, same runs/ and MLflow store), waits for all, and reports how many exited 0, each
one's wall time, the total, and whether the registry is consistent afterwards (versions 1..N
without gaps, every alias on versions of one iteration). The iterations compute the same stage
version keys, so one builds each stage and the others wait on its stage lock and reuse it: what is
stressed is the store (creation, concurrent writes, registry, alias moves), not training.
Results: bench/results/<date>-stress.json (never overwriting). Exit 0 when every iteration exited 0
and the registry is consistent, else 1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import machine, workspace

RESULTS = workspace.ROOT / "bench" / "results"
ALIASES = ("sft", "align", "reason", "safety", "champion")


def _spin() -> None:
    while True:
        pass


def _default_out() -> Path:
    stem = datetime.now().strftime("%Y-%m-%d") + "-stress"
    out, n = RESULTS / f"{stem}.json", 2
    while out.exists():
        out, n = RESULTS / f"{stem}-{n}.json", n + 1
    return out


def _prepare(root: Path, data_from: Path, timeout: int) -> tuple[workspace.Workspace, float]:
    ws = workspace.Workspace(workspace.make(root / "project"), root / "project" / "runs")
    workspace.seed_data(ws.root, data_from)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=ws.root, env=ws.env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc repro` failed in {ws.root}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return ws, time.perf_counter() - started


def _launch(ws: workspace.Workspace, n: int, profile: str, logs: Path, separate_prefect: bool) -> list[dict]:
    """N iterations started back to back, their output in files (pipes could fill and stall one).
    One Prefect home for all (as with one Prefect UI), or one each with `separate_prefect`."""
    runs = []
    for k in range(n):
        out, err = logs / f"iteration-{k}.out", logs / f"iteration-{k}.err"
        env = {**ws.env(), **({"PREFECT_HOME": str(ws.root / f".prefect-{k}")} if separate_prefect else {})}
        with open(out, "w") as fo, open(err, "w") as fe:
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "posttrain", "run", "--profile", profile], cwd=ws.root,
                                    env=env, stdout=fo, stderr=fe)
        runs.append({"proc": proc, "started": started, "out": out, "err": err})
    return runs


def _wait(runs: list[dict], t0: float, timeout: int) -> list[dict]:
    deadline = time.perf_counter() + timeout
    while any(r["proc"].poll() is None for r in runs) and time.perf_counter() < deadline:
        for r in runs:
            if r["proc"].poll() is not None and "ended" not in r:
                r["ended"] = time.perf_counter()
        time.sleep(0.2)
    records = []
    for k, r in enumerate(runs):
        if r["proc"].poll() is None:
            r["proc"].kill()
            r["proc"].wait()
        ended = r.get("ended", time.perf_counter())
        out, err = r["out"].read_text(), r["err"].read_text()
        found = re.findall(r"iteration ([0-9a-f]{32})", out)  # the run table's title
        records.append({"index": k, "exit": r["proc"].returncode, "start_offset_s": r["started"] - t0,
                        "wall_s": ended - r["started"], "iteration": found[-1] if found else None,
                        "stderr_tail": "" if r["proc"].returncode == 0 else err[-2000:]})
    return records


def _registry(ws: workspace.Workspace) -> dict:
    """Versions of `posttrain` numbered 1..N, every alias on versions of one iteration, one champion."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws.runs / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'posttrain'")
    numbers = sorted(int(v.version) for v in versions)
    model = client.get_registered_model("posttrain") if versions else None
    aliases = dict(model.aliases) if model else {}
    owners = {a: client.get_model_version("posttrain", aliases[a]).tags.get("iteration") for a in ALIASES if a in aliases}
    state = {"versions": numbers, "aliases": {a: str(v) for a, v in aliases.items()}, "alias_iterations": owners,
             "champion_stamp": {k: v for k, v in (model.tags if model else {}).items() if k.startswith("champion.")}}
    state["consistent"] = bool(numbers) and numbers == list(range(1, len(numbers) + 1)) \
        and set(owners) == set(ALIASES) and len(set(owners.values())) == 1
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stress", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=4, help="iterations started together (default 4)")
    ap.add_argument("--load", type=int, default=1, help="busy background processes (default 1)")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds for all iterations together")
    ap.add_argument("--out", type=Path, help="results file (default: bench/results/<date>-stress.json)")
    ap.add_argument("--workdir", type=Path, help="where the throwaway workspace goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (runs, MLflow store, logs)")
    ap.add_argument("--separate-prefect-homes", action="store_true",
                    help="one PREFECT_HOME per iteration (default: one shared, as with one Prefect UI)")
    ap.add_argument("--data-from", type=Path, default=workspace.ROOT, metavar="CHECKOUT",
                    help="a checkout whose curated data seeds the workspace (default: this checkout)")
    args = ap.parse_args(argv)
    if args.iterations < 1 or args.load < 0:
        ap.error("--iterations must be >= 1 and --load >= 0")
    out = args.out or _default_out()
    root = Path(tempfile.mkdtemp(prefix="posttrain-stress-", dir=args.workdir))
    result = {"command": " ".join([".venv/bin/python", "-m", "bench.stress", *(sys.argv[1:] if argv is None else argv)]),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "iterations": args.iterations,
              "load_processes": args.load, "profile": args.profile,
              "prefect_homes": "separate" if args.separate_prefect_homes else "shared", "machine": machine.describe(),
              "git": machine.git(workspace.ROOT)}
    spinners = []
    try:
        ws, result["data_prep_s"] = _prepare(root, args.data_from, args.timeout)
        logs = root / "logs"
        logs.mkdir()
        spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.load)]
        for s in spinners:
            s.start()
        result["load_before"] = machine.load()
        print(f"stress: {args.iterations} x `posttrain run --profile {args.profile}` with {args.load} busy "
              f"process(es) in {ws.root}", flush=True)
        t0 = time.perf_counter()
        runs = _launch(ws, args.iterations, args.profile, logs, args.separate_prefect_homes)
        result["runs"] = _wait(runs, t0, args.timeout)
        result["total_s"] = time.perf_counter() - t0
        result["load_after"] = machine.load()
        for s in spinners:
            s.terminate()
        result["exit_0"] = sum(r["exit"] == 0 for r in result["runs"])
        result["registry"] = _registry(ws)
    finally:
        for s in spinners:
            if s.is_alive():
                s.terminate()
        if args.keep:
            print(f"workspace kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["runs"]:
        print(f"  iteration {r['index']}: exit {r['exit']}, {r['wall_s']:.1f} s (started +{r['start_offset_s'] * 1000:.0f} ms)")
    print(f"{result['exit_0']}/{args.iterations} exited 0; total {result['total_s']:.1f} s; registry consistent: "
          f"{result['registry']['consistent']} (versions {result['registry']['versions']}); results: {out}")
    return 0 if result["exit_0"] == args.iterations and result["registry"]["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
