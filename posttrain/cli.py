"""posttrain: command line entry point.

    posttrain run [--profile tiny] [--set SECTION.KEY=VALUE ...]   one iteration as a Prefect flow
    posttrain stage curate                                        the data stage (what `dvc repro` runs)

Exit codes: 0 success, 1 a stage or gate failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

KEY_METRICS = (
    "rows.sft", "rows.preferences", "rows.rl",
    "math_accuracy", "answer_format_rate", "refusal_rate", "over_refusal_rate", "rm_pair_accuracy",
    "train_loss", "param_delta_l2", "reward_first", "reward_last", "frac_zero_std_groups",
    "logps_chosen_delta", "logps_rejected_delta", "harmful_fraction",
)


def _apply_offline(params) -> None:
    if params.pipeline.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def _table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"iteration {records[0]['iteration']}" if records else "iteration")
    for col in ("stage", "status", "key metrics", "MLflow run id", "model version"):
        table.add_column(col)
    for r in records:
        shown = [k for k in KEY_METRICS if k in r["metrics"]][:5]
        metrics = ", ".join(f"{k}={r['metrics'][k]:.3g}" for k in shown)
        name = f"{r['stage']} ({r['label']})" if r.get("label") else r["stage"]
        table.add_row(name, "reused" if r["cached"] else "ran", metrics, r["run_id"], r.get("model_version") or "-")
    Console(width=200).print(table)


def cmd_run(args) -> int:
    from posttrain.config import ConfigError, load_params
    from posttrain.paths import layout

    try:
        lay = layout(args.project)
        params = load_params(lay.params, args.profile, args.set)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _apply_offline(params)
    from flows.iteration import full_iteration
    from posttrain.runner import StageFailed
    from evaluations.gates import GateFailed

    try:
        records = full_iteration(profile=args.profile, overrides=list(args.set), project=str(lay.project))
    except StageFailed as err:
        print(f"\nFAILED at stage '{err.stage}': {err.reason}", file=sys.stderr)
        return 1
    except GateFailed as err:
        print(f"\nFAILED at the gate: {err}", file=sys.stderr)
        return 1
    _table(records)
    return 0


def cmd_stage(args) -> int:
    from posttrain.config import ConfigError, load_params
    from posttrain.paths import layout

    try:
        lay = layout(args.project)
        params = load_params(lay.params, args.profile, args.set)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _apply_offline(params)
    if args.name != "curate":
        print(f"error: `posttrain stage {args.name}` is not a standalone entry point yet; run `posttrain run`, "
              f"which reuses every stage whose inputs did not change", file=sys.stderr)
        return 2
    from tasks import curate
    from tasks.validate import DataValidationError

    try:
        counts = curate.run(params.curate, lay.curated)
    except (DataValidationError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(f"{k}: {int(v)}" for k, v in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posttrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=None, help="project root holding params.yaml (default: current dir)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (("run", cmd_run, "run one iteration of the pipeline"),
                               ("stage", cmd_stage, "run one stage's body (curate: what dvc repro calls)")):
        p = sub.add_parser(name, help=helptext)
        if name == "stage":
            p.add_argument("name", choices=["curate"])
        p.add_argument("--profile", default="default", help="profile from params.yaml (default, tiny, ...)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value, e.g. --set sft.learning_rate=1e-4 (repeatable)")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    if args.project:
        args.project = str(Path(args.project).resolve())
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
