"""posttrain: command line entry point.

    posttrain run [--profile tiny] [--set SECTION.KEY=VALUE ...]   one iteration as a Prefect flow
    posttrain rerun STAGE --iteration ID [--downstream]           re-run one stage of a recorded iteration
    posttrain runs [--json]                                       recorded iterations, newest first
    posttrain serve                                               serve both flows as Prefect deployments
    posttrain lineage NAME@ALIAS|NAME/VERSION [--json]            model -> stages -> data -> git SHA
    posttrain reconcile                                           mark runs of killed processes KILLED/Crashed
    posttrain report ITERATION [--out DIR]                        report card: table + plots, logged to MLflow
    posttrain plan --profile llama70b-h100                        GPU-hours, memory and cost per stage
    posttrain verify [--iteration RUN_ID]                         check stage outputs against their recorded
                                                                  digests (exit 1 on damage)
    posttrain stage NAME [--profile P] [--iteration RUN_ID]       one stage outside a flow (curate: what
                                                                  `dvc repro` runs; others: what a SkyPilot
                                                                  job or torchrun runs on each process)

An iteration ID is its MLflow parent run id, its Prefect flow-run id or its Prefect flow-run name.
Exit codes: 0 success, 1 a stage or gate failed, 2 bad configuration, usage or id.
Errors are one line on stderr; an unexpected one also names the log file holding its traceback
(<runs>/logs/posttrain-<UTC time>-<pid>.log). `posttrain --debug ...` raises it instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ID_HELP = "the iteration: its MLflow parent run id, Prefect flow-run id or Prefect flow-run name (posttrain runs)"
KEY_METRICS = (
    "rows.sft", "rows.preferences", "rows.rl",
    "math_accuracy", "answer_format_rate", "refusal_rate", "over_refusal_rate", "rm_pair_accuracy",
    "code_pass_at_1", "ifeval_prompt_accuracy", "sycophancy_rate", "win_rate_vs_input",
    "heldout_accuracy_before", "heldout_accuracy_after", "heldout_accuracy_delta", "eval_loss_before", "eval_loss",
    "train_loss", "param_delta_l2", "reward_first", "reward_last", "frac_zero_std_groups",
    "logps_chosen_delta", "logps_rejected_delta", "harmful_fraction",
    "rm_calib_refusal_accuracy", "rm_length_corr", "kl_mean", "completion_clipped_ratio",
    "constitutional_pairs", "overrefusal_pairs", "resumed_from_step",
)


def _apply_offline(params) -> None:
    if params.pipeline.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _prepare(args) -> None:
    # Our pipeline's log lines (one per stage: reused, or ran and scored) go where Prefect's own go:
    # the terminal and the run's logs in the Prefect UI (Prefect's extra loggers).
    import logging

    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    from posttrain import errors

    if args.command in ("run", "rerun", "stage"):
        # Nothing this process starts outlives it, even when it is SIGKILLed (posttrain/watchdog.py).
        from posttrain import watchdog

        runs = errors.runs_dir(args.project)
        watchdog.spawn(os.getpid(), runs / "logs" / "watchdog.log" if runs else None)
    if args.command in ("run", "rerun", "stage", "serve", "reconcile"):  # the commands that may start Prefect
        errors.prefect_startup_timeout()


def _table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"iteration {records[0]['iteration']}" if records else "iteration")
    for col in ("stage", "status", "key metrics", "MLflow run id", "model version"):
        table.add_column(col)
    for r in records:
        shown = [k for k in KEY_METRICS if k in r["metrics"]][:9]
        metrics = ", ".join(f"{k}={r['metrics'][k]:.3g}" for k in shown)
        name = f"{r['stage']} ({r['label']})" if r.get("label") else r["stage"]
        table.add_row(name, "reused" if r["cached"] else "ran", metrics, r["run_id"], r.get("model_version") or "-")
    Console(width=200).print(table)


def _next_steps(err: BaseException) -> str:
    """The failure summary's last lines: the iteration and the command that goes on from the failure."""
    from pipeline.iterations import rerun_command

    iteration = getattr(err, "iteration", "")
    if not iteration:
        return ""
    lines = [f"iteration {iteration}{_flow_run_name(iteration)}"]
    command = rerun_command(err, iteration)
    if command:
        lines.append(f"next: fix the cause, then go on from there: {command} [--set SECTION.KEY=VALUE ...]")
    lines.append(f"inspect: posttrain report {iteration}")
    return "\n" + "\n".join(lines)


def _flow_run_name(iteration: str) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        name = MlflowClient().get_run(iteration).data.tags.get("prefect_flow_run_name", "")
    except MlflowException:  # a store that fails now must not hide the failure being reported
        return ""
    return f" (Prefect flow run '{name}')" if name else ""


def _run_flow(call, args) -> int:
    from evaluations.gates import GateFailed
    from pipeline.runner import StageFailed
    from posttrain import errors

    if not args.debug and "prefect" in sys.modules:  # Prefect's console: message lines, tracebacks to the log
        errors.quiet_prefect_tracebacks(args.project)
    try:
        records = call()
    except StageFailed as err:
        print(f"\nFAILED at stage '{err.stage}': {err.reason}{errors.where()}{_next_steps(err)}", file=sys.stderr)
        return 1
    except GateFailed as err:
        print(f"\nFAILED at the gate: {err}{errors.where()}{_next_steps(err)}", file=sys.stderr)
        return 1
    if records:  # empty on the non-main processes of a distributed stage: one table, from rank 0
        _table(records)
        _summary(records[0]["iteration"], args.project)
    return 0


def _summary(iteration: str, project: str) -> None:
    """Under the table: the iteration, its gate verdicts, where the champion alias points and its
    report card (written as the flow ended; `posttrain report` writes one for a standalone stage)."""
    from mlflow import MlflowClient

    from core.paths import layout
    from pipeline.report import card_dir, header

    client = MlflowClient()
    lines = [line for line in header(client, client.get_run(iteration)) if line.startswith(("- gates", "- champion"))]
    card = card_dir(layout(project).runs, iteration) / "report.md"
    shown = str(card) if card.exists() else f"posttrain report {iteration}"
    print(f"iteration {iteration}\n" + "\n".join(lines) + f"\nreport card: {shown}")


def _load(args):
    """Validate the configuration before anything starts; exit code 2 names the bad key."""
    from core.config import load_params
    from core.paths import layout

    lay = layout(args.project)
    params = load_params(lay.params, args.profile, args.set)
    _apply_offline(params)
    return lay, params


def cmd_run(args) -> int:
    lay, _ = _load(args)
    from flows.iteration import full_iteration

    return _run_flow(lambda: full_iteration(profile=args.profile, overrides=list(args.set), project=str(lay.project)),
                     args)


def cmd_rerun(args) -> int:
    from core.paths import layout

    lay = layout(args.project)
    from core import tracking

    tracking.configure(lay.runs)
    from mlflow import MlflowClient

    from pipeline import ids

    client = MlflowClient()
    args.iteration = ids.iteration(client, args.iteration)
    args.profile = client.get_run(args.iteration).data.params["profile"]
    _load(args)  # the recorded profile with the new overrides must validate before anything runs
    from flows.iteration import rerun_stage

    return _run_flow(lambda: rerun_stage(iteration=args.iteration, stage=args.stage, downstream=args.downstream,
                                         overrides=list(args.set), project=str(lay.project)), args)


def cmd_serve(args) -> int:
    """Serve `full-iteration` and `rerun-stage` as deployments of the Prefect API in
    PREFECT_API_URL (start one with `prefect server start`); trigger them from the UI."""
    args.set = []
    lay, _ = _load(args)
    # Served runs heartbeat every 30 s; the automation crashes a run silent for the window.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    from prefect import serve

    from flows.iteration import full_iteration, rerun_stage
    from pipeline import recovery

    recovery.ensure_zombie_automation(args.zombie_window)

    defaults = {"project": str(lay.project)}
    serve(full_iteration.to_deployment(name="full-iteration", parameters={**defaults, "profile": args.profile}),
          rerun_stage.to_deployment(name="rerun-stage", parameters=defaults))
    return 0


def cmd_reconcile(args) -> int:
    """Mark iterations whose process died (SIGKILL, OOM) KILLED in MLflow and Crashed in Prefect."""
    from core import tracking
    from core.paths import layout
    from pipeline import recovery

    lay = layout(args.project)
    tracking.configure(lay.runs)
    fixed = recovery.reconcile(lay.runs, announce=False)
    for f in fixed:
        print(recovery.describe(f))
    if not fixed:
        print("nothing to reconcile")
    return 0


def cmd_report(args) -> int:
    from mlflow import MlflowClient

    from core import tracking
    from core.paths import layout
    from pipeline import ids, report

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the report is the output
    lay = layout(args.project)
    tracking.configure(lay.runs)
    args.iteration = ids.iteration(MlflowClient(), args.iteration)
    out = Path(args.out or report.card_dir(lay.runs, args.iteration))
    text, plots = report.report(args.iteration, out)
    print(text)
    print(f"\nwrote {out / 'report.md'} and {len(plots)} plots; logged to MLflow run {args.iteration} under report/")
    return 0


def cmd_runs(args) -> int:
    from mlflow import MlflowClient

    from core import tracking
    from core.paths import layout
    from posttrain import runs

    tracking.configure(layout(args.project).runs)
    print(runs.render(runs.rows(MlflowClient(), args.limit), args.json))
    return 0


def cmd_plan(args) -> int:
    from posttrain import plan

    return plan.main(["--profile", args.profile] + (["--project", args.project] if args.project else []))


def cmd_verify(args) -> int:
    from posttrain import verify

    return verify.main(args.project, args.iteration)


def cmd_lineage(args) -> int:
    import json

    from core import tracking
    from core.paths import layout
    from posttrain import lineage

    lay = layout(args.project)
    tracking.configure(lay.runs)
    doc = lineage.lineage(args.model, lay.project)
    lineage.validate(doc)
    print(json.dumps(doc, indent=2) if args.json else lineage.render(doc))
    return 0


def cmd_stage(args) -> int:
    """One stage without a flow: `curate` is what `dvc repro` calls; every other stage runs through
    pipeline.standalone (also on every process of a torchrun / accelerate launch)."""
    lay, params = _load(args)
    if args.name == "curate":
        from tasks.curate import pipeline as curate
        from tasks.curate.validate import DataValidationError

        try:
            counts = curate.run(params.curate, lay.curated)
        except (DataValidationError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print("\n".join(f"{k}: {int(v)}" for k, v in counts.items()))
        return 0
    from core import distributed
    from pipeline import standalone

    iteration = args.iteration or os.environ.get("MLFLOW_PARENT_RUN_ID") or None

    def call():
        parent, record = standalone.run(str(lay.project), args.name, args.profile, list(args.set), iteration)
        return [{"iteration": parent, **record.__dict__}] if distributed.is_main() else []

    return _run_flow(call, args)


def _call(args) -> int:
    from core.config import ConfigError
    from pipeline.ids import BadId

    try:
        _prepare(args)
        return args.fn(args)
    except (ConfigError, BadId) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            raise
        from posttrain import errors

        return errors.unexpected(args.project, err)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("error: interrupted (Ctrl-C); a stage it stopped is redone by the next run", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posttrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=None, help="project root holding params.yaml (default: current dir)")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, print its traceback instead of writing it to runs/logs/")
    sub = parser.add_subparsers(dest="command", required=True)
    from pipeline.dag import ORDER

    stages = [n for n in ORDER if n != "base"]
    for name, fn, helptext in (("run", cmd_run, "run one iteration of the pipeline"),
                               ("rerun", cmd_rerun, "re-run one stage of a recorded iteration"),
                               ("runs", cmd_runs, "list recorded iterations, newest first"),
                               ("serve", cmd_serve, "serve the flows as Prefect deployments"),
                               ("lineage", cmd_lineage, "print a model version's lineage"),
                               ("reconcile", cmd_reconcile, "mark runs of killed processes KILLED / Crashed"),
                               ("report", cmd_report, "report card of an iteration: table + plots"),
                               ("verify", cmd_verify, "check completed stage outputs against their recorded digests"),
                               ("plan", cmd_plan, "GPU budget of a cluster profile before launch (profiles in params.yaml)"),
                               ("stage", cmd_stage, "run one stage outside a flow (what dvc repro, SkyPilot and torchrun call)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == "stage":
            p.add_argument("name", choices=stages)
            p.add_argument("--iteration", default=None,
                           help="join this iteration (its MLflow parent run id; default $MLFLOW_PARENT_RUN_ID) and "
                                "use its recorded upstream outputs; without it, a new parent run and upstream "
                                "reused or built")
        if name == "rerun":
            p.add_argument("stage", choices=stages)
            p.add_argument("--iteration", required=True, help=ID_HELP)
            p.add_argument("--downstream", action="store_true", help="also re-run every stage that depends on it")
        if name == "lineage":
            p.add_argument("model", help="NAME@ALIAS or NAME/VERSION, e.g. posttrain@champion")
            p.add_argument("--json", action="store_true", help="machine-readable (validated against lineage.schema.json)")
        if name in ("run", "stage", "serve"):
            p.add_argument("--profile", default="default", help="profile from params.yaml (default, tiny, ...)")
        if name == "report":
            p.add_argument("iteration", help=ID_HELP)
            p.add_argument("--out", default=None, help="folder (default: runs/reports/ITERATION)")
        if name == "runs":
            p.add_argument("--json", action="store_true", help="machine-readable rows")
            p.add_argument("--limit", type=int, default=50, help="newest N iterations (default 50)")
        if name == "serve":
            p.add_argument("--zombie-window", type=int, default=90, metavar="SECONDS",
                           help="mark a served run Crashed after this long without a heartbeat (default 90)")
        if name == "verify":
            p.add_argument("--iteration", default=None,
                           help="only the stage outputs this iteration (MLflow parent run id) recorded")
        if name == "plan":
            p.add_argument("--profile", required=True, help="a cluster profile in params.yaml, e.g. llama70b-h100")
        if name in ("run", "stage", "rerun"):
            p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                           help="override one config value, e.g. --set sft.learning_rate=1e-4 (repeatable)")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    if args.project:
        args.project = str(Path(args.project).resolve())
    return _call(args)


if __name__ == "__main__":
    sys.exit(main())
