"""Two iterations on one MLflow store at the same moment (two people pressing Run in the Prefect UI).

The first three tests start two processes at one instant (a multiprocessing barrier) against the
local SQLite store and take seconds: opening a fresh store (MLflow would create and migrate it in
both), registering versions and moving aliases of a new registered model (check-then-insert races
on the UNIQUE constraints), and two final gates' alias moves (never interleaved). The e2e test runs
two whole tiny iterations together, on a fresh store and then on the used one.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import iteration_id, make_workspace, mlflow_client, workspace_env

STAGES = ("sft", "align", "reason", "safety")
ALIASES = (*STAGES, "champion")
SQLITE_RACES = ("IntegrityError", "UNIQUE constraint failed", "database is locked", "_alembic_tmp", "OperationalError")


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; an earlier test's store must not be the
    one the processes spawned here open."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _open_fresh(runs: str, barrier, results) -> None:
    from mlflow import MlflowClient

    from core import tracking

    barrier.wait()
    try:
        tracking.configure(Path(runs))
        MlflowClient().create_run(tracking.experiment_id(Path(runs)))
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test, which names it
        results.put(_error(err))


def _register_and_move(runs: str, model: str, rounds: int, barrier, results) -> None:
    from mlflow import MlflowClient

    from core import tracking

    tracking.configure(Path(runs))
    run_id = MlflowClient().create_run(tracking.experiment_id(Path(runs))).info.run_id
    errors = []
    barrier.wait()
    versions = []
    for _ in range(rounds):
        try:
            versions.append(tracking.register(run_id, model, "model", {"iteration": run_id}))
        except Exception as err:  # noqa: BLE001
            errors.append(_error(err))
    for version in versions:
        for alias in ALIASES:
            try:
                tracking.set_alias(model, alias, version)
            except Exception as err:  # noqa: BLE001
                errors.append(_error(err))
    results.put(errors)


def _gate_moves(runs: str, iteration: str, versions: dict, rounds: int, barrier, results) -> None:
    from core import tracking
    from pipeline import gating

    tracking.configure(Path(runs))
    barrier.wait()
    it = types.SimpleNamespace(parent_run_id=iteration)
    results.put([gating._move_aliases(it, "posttrain", versions, "1")[0] for _ in range(rounds)])


def _together(target, argsets: list[tuple], timeout: float = 240) -> list:
    """One process per argument set, released together by a barrier; their results."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(argsets)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in argsets]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=timeout) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return out


def test_two_processes_open_a_fresh_store_at_once(tmp_path):
    """Without the store lock both processes create MLflow's tables and one fails (`table ...
    already exists`, alembic revision mismatch): 10 of 10 trials before the fix."""
    for trial in range(2):
        runs = tmp_path / f"trial{trial}" / "runs"
        assert _together(_open_fresh, [(str(runs),), (str(runs),)]) == ["ok", "ok"]
        assert (runs / "mlflow.db.lock").exists()


def test_two_processes_register_and_move_aliases_of_a_new_model(tmp_path):
    """Both create the registered model, add versions and set the same new aliases: without the
    lock `Registered Model ... already exists` and `UNIQUE constraint failed:
    registered_model_aliases` (8 of 10 trials before the fix)."""
    from core import tracking

    runs = tmp_path / "runs"
    tracking.configure(runs)
    tracking.experiment_id(runs)
    errors = _together(_register_and_move, [(str(runs), "m", 3), (str(runs), "m", 3)])
    assert errors == [[], []]
    client = mlflow_client(tmp_path)
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'm'")) == list(range(1, 7))
    assert set(client.get_registered_model("m").aliases) == set(ALIASES)


def test_alias_moves_of_two_iterations_never_interleave(tmp_path):
    """Two final gates passing at once: every alias ends on the versions of one iteration, the
    one stamped last, and the stamp is on the registered model and its champion version."""
    from mlflow import MlflowClient

    from core import tracking

    runs = tmp_path / "runs"
    tracking.configure(runs)
    client = MlflowClient()
    its, versions = [], []
    for _ in range(2):
        run_id = client.create_run(tracking.experiment_id(runs)).info.run_id
        its.append(run_id)
        versions.append({s: tracking.register(run_id, "posttrain", "model", {"iteration": run_id, "stage": s})
                         for s in STAGES})
    tracking.register(its[0], "posttrain-reward-model", "model", {})
    moved = _together(_gate_moves, [(str(runs), its[k], versions[k], 4) for k in range(2)])
    assert moved == [[True] * 4, [True] * 4]  # one host, one clock: every move is the latest
    model = client.get_registered_model("posttrain")
    owners = {a: client.get_model_version("posttrain", model.aliases[a]).tags["iteration"] for a in ALIASES}
    assert len(set(owners.values())) == 1, owners
    winner = owners["champion"]
    assert model.tags["champion.iteration"] == winner and model.tags["champion.version"] == str(model.aliases["champion"])
    champion = client.get_model_version("posttrain", model.aliases["champion"])
    assert champion.tags["champion.set_at"] == model.tags["champion.set_at"]
    assert champion.tags["champion.iteration"] == winner


def _start_two(ws: Path, logs: Path, tag: str) -> tuple[list[subprocess.Popen], float, list]:
    """Two `posttrain run --profile tiny` in `ws` (one MLflow store, a Prefect home each), started
    back to back; returns the processes, the gap between their starts and their log files."""
    procs, starts, files = [], [], []
    env = workspace_env(ws)
    for k in range(2):
        # One Prefect home each: two ephemeral Prefect servers on one prefect.db log Prefect's own
        # `database is locked` retries, which would hide the MLflow races this test looks for.
        env = {**env, "PREFECT_HOME": str(ws / f".prefect-{tag}-{k}")}
        out, err = open(logs / f"{tag}-{k}.out", "w"), open(logs / f"{tag}-{k}.err", "w")  # noqa: SIM115
        files.append((out, err))
        starts.append(time.monotonic())
        # Files, not pipes: a full pipe would stall one run while the other waits on its stage lock.
        procs.append(subprocess.Popen([sys.executable, "-m", "posttrain", "run", "--profile", "tiny"], cwd=ws, env=env,
                                      stdout=out, stderr=err, text=True))
    return procs, starts[1] - starts[0], files


def _wait_both(procs: list[subprocess.Popen], files: list, timeout: float) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    results = []
    for p, (out, err) in zip(procs, files, strict=True):
        out.close()
        err.close()
        results.append((p.returncode, Path(out.name).read_text(), Path(err.name).read_text()))
    return results


def _check_registry(client, finished: set[str]) -> dict:
    versions = client.search_model_versions("name = 'posttrain'")
    numbers = sorted(int(v.version) for v in versions)
    assert numbers == list(range(1, len(numbers) + 1)), numbers  # distinct, no gaps
    keys = [(v.tags["stage"], v.tags["version_key"]) for v in versions]
    assert len(keys) == len(set(keys)), keys  # a stage version is registered once, then reused
    assert all(v.tags["iteration"] in finished for v in versions)
    holders = [v.version for v in versions if "champion" in client.get_model_version("posttrain", v.version).aliases]
    assert len(holders) == 1, holders  # (search results carry no aliases: read each version)
    model = client.get_registered_model("posttrain")
    assert model.tags["champion.iteration"] in finished and model.tags["champion.version"] == str(model.aliases["champion"])
    # Every alias is the version one gate chose: the stage outputs the champion's iteration used
    # (either run may have built a stage the other reused, so versions' `iteration` tags can differ).
    winner = client.get_run(model.tags["champion.iteration"]).data.tags
    chosen = {s: client.get_run(winner[f"stage.{s}.run_id"]).data.tags["model_version"].split("/")[1] for s in STAGES}
    assert {a: str(model.aliases[a]) for a in ALIASES} == {**chosen, "champion": chosen["safety"]}
    champion = client.get_model_version("posttrain", model.aliases["champion"])
    assert champion.tags["champion.set_at"] == model.tags["champion.set_at"]
    assert client.get_model_version_by_alias("posttrain-reward-model", "reward_model")
    return {"versions": numbers, "champion": model.aliases["champion"], "set_by": model.tags["champion.iteration"]}


@pytest.mark.e2e
def test_two_iterations_started_together_on_a_fresh_then_a_used_store(tmp_path, curated_ws):
    """Both runs compute the same stage version keys, so one waits on the other's stage lock and
    reuses its output: the store, registry and alias writes are what race here. Round 1 starts on a
    fresh MLflow store: without the store
    lock one of the two fails creating MLflow's tables (`table scorers already exists`)."""
    ws = make_workspace(tmp_path / "ws", data_from=curated_ws[0])
    logs = tmp_path / "logs"
    logs.mkdir()
    assert not (ws / "runs" / "mlflow.db").exists()  # round 1 creates and migrates the store
    finished: set[str] = set()
    for tag in ("fresh", "used"):
        procs, gap, files = _start_two(ws, logs, tag)
        assert gap < 0.1, f"the two runs started {gap:.3f} s apart"
        results = _wait_both(procs, files, timeout=1500)
        for code, out, err in results:
            assert code == 0, f"{tag}: exit {code}\n{out[-3000:]}\n{err[-4000:]}"
            assert not [r for r in SQLITE_RACES if r in err], err[-4000:]
        ids = {iteration_id(out) for _, out, _ in results}
        assert len(ids) == 2
        finished |= ids
        client = mlflow_client(ws)
        assert {client.get_run(i).info.status for i in ids} == {"FINISHED"}
        state = _check_registry(client, finished)
        assert state["set_by"] in ids  # the champion stamp is from a run of this round
        print(f"{tag} store: started {gap * 1000:.1f} ms apart; registry {state}")
