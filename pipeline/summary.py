"""What an iteration tells the Prefect UI about itself: a markdown artifact with the run table,
the gate checks and a link to its MLflow parent run (also a link artifact).

The link points at an MLflow UI: POSTTRAIN_MLFLOW_UI (default http://127.0.0.1:5000, what
`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` serves), or the tracking server itself
when MLFLOW_TRACKING_URI is an http(s) URL.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from core import tracking
from pipeline.runner import Iteration

DEFAULT_UI = "http://127.0.0.1:5000"


def mlflow_url(it: Iteration) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    base = uri if uri.startswith(("http://", "https://")) else os.environ.get("POSTTRAIN_MLFLOW_UI", DEFAULT_UI)
    return f"{base.rstrip('/')}/#/experiments/{tracking.experiment_id(it.layout().runs)}/runs/{it.parent_run_id}"


def _gate_rows(it: Iteration) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = []
    for artifact in client.list_artifacts(it.parent_run_id, "gates"):
        with tempfile.TemporaryDirectory() as tmp:
            checks = json.loads(Path(client.download_artifacts(it.parent_run_id, artifact.path, tmp)).read_text())
        failed = [c for c in checks if not c["passed"]]
        gate = Path(artifact.path).stem.removeprefix("gate.").replace("gate", "final")
        rows.append(f"| {gate} | {'passed' if not failed else 'FAILED'} | {len(checks)} | "
                    f"{'; '.join(c['metric'] for c in failed) or '-'} |")
    return rows


def markdown(it: Iteration, records: list, status: str, failure: str = "", card: str = "") -> str:
    """The iteration's card for the Prefect UI: status, every stage (ran or reused), the gates."""
    lines = [f"# Iteration `{it.parent_run_id}` ({it.profile}): {status}", "",
             f"MLflow parent run: [{it.parent_run_id}]({mlflow_url(it)}) · git `{it.git_sha[:12]}`", ""]
    if card:
        lines += [f"Report card: `{card}` (also under `report/` in the MLflow run)", ""]
    if failure:
        lines += [f"**Stopped:** {failure}", ""]
    lines += ["| node | | MLflow run | model version |", "|---|---|---|---|"]
    lines += [f"| {r.stage}{'.' + r.label if r.label and r.stage == 'evaluate' else ''} | "
              f"{'reused' if r.cached else 'ran'} | {r.run_id} | {r.model_version or '-'} |" for r in records]
    gates = _gate_rows(it)
    if gates:
        lines += ["", "| gate | verdict | checks | failed checks |", "|---|---|---|---|", *gates]
    return "\n".join(lines)


def publish(it: Iteration, records: dict, status: str, error: BaseException | None = None, card: str = "") -> None:
    """The iteration's markdown and link artifacts on the current Prefect flow run; `card`: the
    path of its report card, when one was written."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    from pipeline.iterations import failed_at, failure

    stopped = f"{failed_at(error) or 'an error'}: {failure(error)}" if error is not None else ""
    shown = [r for name, r in records.items() if name != "base"]
    key = f"iteration-{it.parent_run_id}"
    create_markdown_artifact(markdown(it, shown, status, stopped, card), key=key, description=f"iteration {status}")
    create_link_artifact(mlflow_url(it), link_text=f"MLflow run {it.parent_run_id}", key=f"mlflow-{it.parent_run_id}",
                         description="the iteration's MLflow parent run")
