"""`posttrain runs`: the recorded iterations, newest first, with the ids every other command accepts.

One row per iteration parent run in MLflow: its run id, Prefect flow-run name, profile, status,
start (UTC), duration, where a failed one stopped (`failed_at`: a stage, or gate.<stage>), what it
reran (rerun_of / rerun_stage), and whether its safety model is the current champion.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

COLUMNS = ("iteration", "flow run", "profile", "status", "started (UTC)", "duration", "failed at", "rerun of", "champion")


def _duration(run) -> str:
    end = run.info.end_time or int(datetime.now(timezone.utc).timestamp() * 1000)
    seconds = max(0, (end - run.info.start_time) // 1000)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def rows(client, limit: int = 50) -> list[dict]:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name("posttrain")
    if exp is None:
        return []
    from pipeline.ids import PARENT_KINDS

    runs = [r for kind in PARENT_KINDS
            for r in client.search_runs([exp.experiment_id], f"tags.kind = '{kind}'",
                                        order_by=["attributes.start_time DESC"], max_results=limit)]
    runs = sorted(runs, key=lambda r: r.info.start_time, reverse=True)[:limit]
    champions: set[str] = set()
    for name in {r.data.tags.get("pipeline", "posttrain") for r in runs}:
        try:
            champions.add(client.get_registered_model(name).tags.get("champion.iteration", ""))
        except MlflowException:  # nothing registered under that name yet
            continue
    out = []
    for r in runs:
        t = r.data.tags
        rerun = f"{t['rerun_stage']} of {t['rerun_of']}" if t.get("rerun_of") else ""
        out.append({"iteration": r.info.run_id,
                    "flow run": t.get("prefect_flow_run_name") or ("" if t.get("kind") == "iteration" else "(posttrain stage)"),
                    "profile": t.get("profile", ""), "status": r.info.status,
                    "started (UTC)": datetime.fromtimestamp(r.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    "duration": _duration(r), "failed at": t.get("failed_at", ""),
                    "failure": t.get("failure", ""), "rerun of": rerun,
                    "champion": "yes" if r.info.run_id in champions else ""})
    return out


def render(found: list[dict], as_json: bool) -> str:
    if as_json:
        return json.dumps(found, indent=2)
    if not found:
        return "no iterations recorded yet; start one with `posttrain run`"
    from rich.console import Console
    from rich.table import Table

    table = Table(title="iterations, newest first")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in found:
        table.add_row(*(row[c] for c in COLUMNS))
    console = Console(width=220, record=True)
    with console.capture() as captured:
        console.print(table)
    return captured.get().rstrip()
