"""An iteration's life: open its MLflow parent run (fresh, or as a rerun of a recorded one), read
the recorded outputs a rerun builds on, close it. The config is parsed here, once per iteration,
and travels in the `Iteration` every stage receives."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from core import distributed, tracking
from core.config import load_params
from core.paths import layout
from core.stage_dir import is_complete
from pipeline import dag, recovery, stages
from pipeline.runner import Iteration, Record, StageFailed, damage


def _open(project: str, profile: str, overrides: list[str], flow_run_id: str, kind: str, name: str,
          tags: dict[str, str], flow_run_name: str = "") -> Iteration:
    lay = layout(project)
    params = load_params(lay.params, profile, overrides)  # raises ConfigError naming the key
    tracking.configure(lay.runs)  # raises in seconds if a tracking server is unreachable
    recovery.reconcile(lay.runs)  # runs left RUNNING by a killed process become KILLED / Crashed
    sha = tracking.git_sha(lay.project)
    name = f"{name}-{datetime.now(timezone.utc):%Y-%m-%dT%H:%MZ}"  # what the MLflow UI lists: kind, profile, date
    tags = {"profile": profile, "git_sha": sha, "prefect_flow_run_id": flow_run_id,
            "mlflow.source.git.commit": sha.removesuffix("-dirty"), "mlflow.source.type": "PROJECT",
            "mlflow.source.name": f"posttrain ({flow_run_name or kind})",
            "prefect_flow_run_name": flow_run_name, "kind": kind,
            "pipeline": params.pipeline.name, **tags, **recovery.owner_tags()}
    run_id = tracking.start_parent(lay.runs, name, tags,
                                   {"profile": profile, "overrides": json.dumps(list(overrides)), "git_sha": sha})
    return Iteration(str(lay.project), profile, tuple(overrides), run_id, flow_run_id, sha, params)


def open_iteration(project: str, profile: str, overrides: list[str], flow_run_id: str = "",
                   kind: str = "iteration", flow_run_name: str = "") -> Iteration:
    """Validate the config (fails fast, before any work) and open the iteration's parent run.
    kind: "iteration" for a flow, "stage" for `posttrain stage NAME` on its own."""
    return _open(project, profile, list(overrides), flow_run_id, kind, f"{kind}-{profile}", {}, flow_run_name)


def open_rerun(project: str, iteration: str, stage: str, overrides: list[str], flow_run_id: str = "",
               flow_run_name: str = "") -> Iteration:
    """A new parent run that re-runs `stage` of `iteration` with that iteration's recorded profile
    and overrides, plus `overrides` on top (later wins): the way to fix a failed stage's cause."""
    from mlflow import MlflowClient

    from pipeline import ids

    tracking.configure(layout(project).runs)
    client = MlflowClient()
    iteration = ids.iteration(client, iteration)  # a Prefect flow-run id or name works too
    original = client.get_run(iteration)
    profile = original.data.params["profile"]
    merged = json.loads(original.data.params["overrides"]) + list(overrides)
    return _open(project, profile, merged, flow_run_id, "iteration", f"rerun-{stage}-{profile}",
                 {"rerun_of": iteration, "rerun_stage": stage}, flow_run_name)


def stage_tags(client, iteration: str) -> dict[str, str]:
    """The `stage.*` tags of `iteration`, completed through the iterations it reran (`rerun_of`):
    a rerun records only the nodes it needed, and a rerun of it may need more (evaluate.base for a
    --downstream rerun of a stage rerun). The newest record of a node wins."""
    chain, run_id = [], iteration
    while run_id and run_id not in [c[0] for c in chain]:
        tags = client.get_run(run_id).data.tags
        chain.append((run_id, tags))
        run_id = tags.get("rerun_of")
    merged: dict[str, str] = {}
    for _, tags in reversed(chain):
        merged.update({k: v for k, v in tags.items() if k.startswith("stage.")})
    return merged


def recorded(it: Iteration, iteration: str, stage: str, downstream: bool, link: bool = True) -> dict[str, Record]:
    """The recorded outputs of `iteration` for every node the rerun does not execute.
    link=False reads only (no tags on it.parent_run_id): every process of a distributed stage may call it.

    A recorded output whose files no longer match its marker (runner.damage) is not used: StageFailed
    names it and the command that rebuilds it. Not rebuilt here: a rerun never executes upstream
    bodies, and a rebuild would put new weights under the recorded iteration's name; the rerun of
    that stage rebuilds it (runner.execute moves the damaged dir aside). Rank 0 checks; the other
    processes of a distributed launch read the same files and end with it (torchrun stops them)."""
    from mlflow import MlflowClient

    from pipeline import ids

    tracking.configure(it.layout().runs)
    client = MlflowClient()
    iteration = ids.iteration(client, iteration)
    tags = stage_tags(client, iteration)
    rerun = dag.downstream_of(stage) if downstream else [stage]
    records: dict[str, Record] = {}
    for name in dag.needed_by(rerun):
        if name == "base":
            records[name] = stages.base_model(it)
            continue
        key = tags.get(f"stage.{name}.version_key")
        out = it.layout().stage_dir(name.split(".")[0], key) if key else None
        if out is None or not is_complete(out):
            raise RuntimeError(f"iteration {iteration} has no complete output of '{name}'; "
                               f"rerun it first: posttrain rerun {name} --iteration {iteration}")
        problems = damage(out) if distributed.is_main() else []
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StageFailed(name, f"the output iteration {iteration} recorded ({out}) is damaged: {problems[0]}{more}; "
                                    f"rebuild it: posttrain rerun {name} --iteration {iteration}")
        records[name] = Record.from_marker(out)
        if link:
            tracking.set_tags(it.parent_run_id, {f"stage.{name}.run_id": records[name].run_id,
                                                 f"stage.{name}.version_key": key, f"stage.{name}.reused": "true"})
    return records


def failed_at(err: BaseException) -> str:
    """The node a failure stopped at: a stage ("reason"), a gate ("gate.reason") or "" (elsewhere)."""
    if isinstance(err, StageFailed):
        return err.stage
    gate = getattr(err, "gate", "")
    return f"gate.{gate}" if gate else ""


def failure(err: BaseException) -> str:
    """Why it failed, in one line (a stage's reason, or every line of a gate's checks joined)."""
    if isinstance(err, StageFailed):
        return err.reason
    return " ".join(line.strip() for line in str(err).strip().splitlines()) or type(err).__name__


def rerun_command(err: BaseException, iteration: str) -> str | None:
    """The command that goes on from the failure: rerun the failed stage (for a gate, the stage it
    gates; for the final gate, the last stage) and everything after it. None: not at a node."""
    where = failed_at(err).removeprefix("gate.")
    if not where:
        return None
    stage = dag.POLICY_STAGES[-1] if where == "final" else where  # the final gate judges the last policy
    return f"posttrain rerun {stage} --iteration {iteration} --downstream"


def close_iteration(it: Iteration, status: str, error: BaseException | None = None) -> None:
    """End the parent run; a failed one records where (`failed_at`) and why (`failure`, one line).
    Its MLflow description (`mlflow.note.content`) says how it ended and what to run next."""
    tracking.configure(it.layout().runs)
    note = f"**{status}** · profile `{it.profile}` · git `{it.git_sha[:12]}`"
    tags = {}
    if error is not None:
        why = failure(error)[:500]
        tags = {"failed_at": failed_at(error), "failure": why}
        note += f"\n\nStopped at **{failed_at(error) or 'an error'}**: {why}"
        command = rerun_command(error, it.parent_run_id)
        if command:
            note += f"\n\nGo on from there: `{command}`"
    tags["mlflow.note.content"] = note + (f"\n\nReport card: the artifacts under `report/` (written as the run "
                                          f"ends; again with `posttrain report {it.parent_run_id}`)")
    tracking.set_tags(it.parent_run_id, tags)
    tracking.end_run(it.parent_run_id, status)
