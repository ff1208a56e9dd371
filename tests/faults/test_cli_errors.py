"""What the command says when its input or environment is wrong: one line on stderr naming the
file or the thing and the fix, exit 2 for bad input and 1 otherwise; a traceback only in a log file
the line names, or on stderr with --debug. Every fault here is real (a broken file, a database that
is not one, a folder that is a file), none is simulated inside the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_workspace, posttrain, workspace_env

# (where: "seed" replaces the line `  seed: 0` under `pipeline:` (line {n}), "file" the whole file;
# the text; what stderr's one line must hold right after the file's path)
BROKEN_PARAMS = {
    "two keys on one line": ("seed", "  seed: 0 offline: true\n",
                             ":{n}:18: could not parse YAML (mapping values are not allowed here); "
                             "fix the indentation/quoting on that line"),
    "over-indented key": ("seed", "   seed: 0\n", ":{n}:4: could not parse YAML (while parsing a block mapping expected "
                                                   "<block end>, but found '<block mapping start>'; it started at line {prev})"),
    "tab indentation": ("seed", "\tseed: 0\n", ":{n}:1: could not parse YAML (while scanning for the next token found "
                                                 "character '\\t' that cannot start any token); fix the indentation"),
    "a list, not a mapping": ("file", "- sft\n- align\n", ": expected a mapping of sections at the top level"),
    "a section that is a scalar": ("file", "sft: 3\n", ": section 'sft' must be a mapping of KEY: VALUE lines"),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("cli_errors"))


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def _break(ws: Path, where: str, text: str) -> int:
    """Write the broken params.yaml; returns the (1-based) number of the line it changed."""
    params = ws / "params.yaml"
    if where == "file":
        params.write_text(text)
        return 1
    lines = (ROOT / "params.yaml").read_text().splitlines(keepends=True)
    i = lines.index("  seed: 0\n")
    assert lines[i - 1].startswith("  name: "), lines[i - 1]  # the key before it, in the same mapping
    params.write_text("".join(lines[:i]) + text + "".join(lines[i + 1:]))
    return i + 1


@pytest.mark.parametrize("command", [("run", "--profile", "tiny"), ("stage", "sft", "--profile", "tiny")],
                         ids=["run", "stage"])
@pytest.mark.parametrize("case", list(BROKEN_PARAMS))
def test_broken_params_yaml_is_one_line_naming_file_line_and_fix(ws, case, command):
    where, text, expected = BROKEN_PARAMS[case]
    n = _break(ws, where, text)
    try:
        proc = posttrain(ws, *command, timeout=120)
    finally:
        (ws / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = _one_line(proc)
    assert line.startswith(f"error: {ws / 'params.yaml'}{expected.format(n=n, prev=n - 1)}"), line
    assert not (ws / "runs" / "mlflow.db").exists()  # failed before anything was tracked


def test_set_value_that_is_not_yaml_is_one_line(ws):
    proc = posttrain(ws, "run", "--profile", "tiny", "--set", "sft.learning_rate=[1e-4", timeout=120)
    assert proc.returncode == 2
    assert "--set 'sft.learning_rate=[1e-4': the value is not valid YAML" in _one_line(proc)


def _corrupt_db(ws: Path, env: dict) -> Path:
    runs = ws / "runs-corrupt"
    runs.mkdir(exist_ok=True)
    (runs / "mlflow.db").write_bytes(b"this is not an sqlite database " * 64)
    env["POSTTRAIN_RUNS"] = str(runs)
    return runs / "logs"


def _runs_is_a_file(ws: Path, env: dict) -> Path:
    runs = ws / "runs-file"
    runs.write_text("not a folder\n")
    env["POSTTRAIN_RUNS"] = str(runs)
    env["TMPDIR"] = str(ws / "tmp")  # runs/ cannot hold the log: it goes to the temp folder
    (ws / "tmp").mkdir(exist_ok=True)
    return ws / "tmp" / "posttrain-logs"


@pytest.mark.parametrize("fault, error", [(_corrupt_db, "DatabaseError: file is not a database"),
                                          (_runs_is_a_file, "FileExistsError")],
                         ids=["mlflow.db is not a database", "runs dir is a file"])
def test_unexpected_error_is_one_line_and_a_log_file_or_a_traceback_with_debug(ws, fault, error):
    env = workspace_env(ws)
    logs = fault(ws, env)

    def call(*args):
        return subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=ws, env=env, capture_output=True,
                              text=True, timeout=120)

    proc = call("reconcile")
    assert proc.returncode == 1
    line = _one_line(proc)
    assert line.startswith(f"error: unexpected {error}") and "--debug" in line, line
    written = sorted(logs.glob("posttrain-*.log"))
    assert len(written) == 1 and str(written[0]) in line, (line, written)
    log = written[0].read_text()
    assert "Traceback (most recent call last)" in log and error.split(":")[0] in log and "posttrain reconcile" in log

    for args in (("--debug", "reconcile"), ("reconcile", "--debug")):
        debug = call(*args)
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr and error.split(":")[0] in debug.stderr.splitlines()[-1]
    assert len(list(logs.glob("posttrain-*.log"))) == 1  # --debug prints it instead of writing a log


def _settings(env: dict) -> str:
    """The ephemeral server's start-up timeout a posttrain command gives Prefect."""
    code = ("from posttrain import errors\nerrors.prefect_startup_timeout()\n"
            "from prefect.settings import get_current_settings\n"
            "print(get_current_settings().server.ephemeral.startup_timeout_seconds)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_ephemeral_server_start_up_timeout_defaults_higher_unless_the_user_set_it(tmp_path):
    env = workspace_env(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    assert _settings(env) == "90"
    assert _settings({**env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "33"}) == "33"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text(
        'active = "mine"\n[profiles.mine]\nPREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS = 44\n')
    assert _settings({**env, "PREFECT_HOME": str(tmp_path / "home")}) == "44"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["temporary server too slow", "PREFECT_API_URL unreachable"])
def test_prefect_api_that_does_not_answer_is_one_line_with_the_fix(ws, case):
    env = workspace_env(ws)
    if case == "temporary server too slow":  # 0 s: Prefect gives up before its first health check
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "0"
        expected = ("error: Prefect's temporary API server did not answer within 0 s (a busy machine starts it slowly); "
                    "set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher (e.g. 300), or start a server with "
                    "`prefect server start` and set PREFECT_API_URL=")
    else:
        env["PREFECT_API_URL"] = url = f"http://127.0.0.1:{_free_port()}/api"
        expected = f"error: the Prefect API at PREFECT_API_URL={url} is unreachable; start that server"
    proc = subprocess.run([sys.executable, "-m", "posttrain", "run", "--profile", "tiny"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    log = Path(errors[0].rsplit("traceback in ", 1)[1].rstrip(")"))
    assert log.parent == ws / "runs" / "logs" and "Traceback" in log.read_text()
    if case == "PREFECT_API_URL unreachable":  # the server named is used: no temporary one is started
        assert "Starting temporary server" not in proc.stderr


def test_error_inside_the_flow_keeps_tracebacks_off_the_console(ws):
    """A real fault inside the Prefect flow (the MLflow server in MLFLOW_TRACKING_URI does not
    answer): Prefect's console shows its failed task and flow run as message lines, the command ends
    with one line naming the server and the fix; every traceback is in the log file it names."""
    env = workspace_env(ws)
    env["MLFLOW_TRACKING_URI"] = url = f"http://127.0.0.1:{_free_port()}"

    def run(*flags):
        return subprocess.run([sys.executable, "-m", "posttrain", *flags, "run", "--profile", "tiny"], cwd=ws, env=env,
                              capture_output=True, text=True, timeout=180)

    proc = run()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Task run 'open_iteration" in proc.stderr  # Prefect still says which task failed, in one line
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"MLflow tracking server {url} is unreachable" in errors[0], proc.stderr[-3000:]
    assert "Start it or fix MLFLOW_TRACKING_URI" in errors[0]
    log = Path(errors[0].rsplit("traceback in ", 1)[1].rstrip(")"))
    text = log.read_text()
    assert "Task run failed with exception" in text and text.count("Traceback (most recent call last)") >= 2

    debug = run("--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
