"""How the command reports what went wrong: one line on stderr; tracebacks (of an unexpected error,
and those Prefect logs for a failed task or flow run) in this process's log file,
<runs>/logs/posttrain-<UTC time>-<pid>.log; `posttrain --debug` shows them on stderr instead. A
server that does not answer (Prefect's API, MLflow's) is a line that names it and the fix."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# Prefect's own default (20 s) is too short for the temporary API server on a busy machine.
EPHEMERAL_STARTUP_TIMEOUT_S = 90
PREFECT_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EPHEMERAL_TIMEOUT_TEXT = "Timed out while attempting to connect to ephemeral Prefect API server"


def prefect_startup_timeout() -> None:
    """Give Prefect's temporary (ephemeral) API server EPHEMERAL_STARTUP_TIMEOUT_S to start, unless
    the user set the timeout (environment, Prefect profile or prefect.toml). With PREFECT_API_URL
    set, Prefect uses that server and starts none."""
    if PREFECT_TIMEOUT_VAR in os.environ:
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if "startup_timeout_seconds" in get_current_settings().server.ephemeral.model_fields_set:
        return
    os.environ[PREFECT_TIMEOUT_VAR] = str(EPHEMERAL_STARTUP_TIMEOUT_S)
    refresh_global_settings_context()  # settings are read once at import; pick the new value up


def runs_dir(project: str | None) -> Path | None:
    try:
        from core.paths import layout

        return layout(project).runs
    except Exception:  # the command itself reports a missing params.yaml
        return None


_LOG: list[Path] = []  # this process's log file, once chosen


def log_file(project: str | None) -> Path | None:
    """This process's log, <runs>/logs/posttrain-<UTC time>-<pid>.log (the system temp folder's
    posttrain-logs/ when runs/ cannot hold it); its folder is created, the file only when written."""
    import tempfile
    import time

    if not _LOG:
        name = f"posttrain-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.log"
        runs = runs_dir(project)
        for folder in [runs / "logs"] * bool(runs) + [Path(tempfile.gettempdir()) / "posttrain-logs"]:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                continue
            if os.access(folder, os.W_OK):
                _LOG.append(folder / name)
                break
    return _LOG[0] if _LOG else None


def _append(project: str | None, text: str) -> Path | None:
    path = log_file(project)
    if path is None:
        return None
    try:
        with path.open("a") as f:
            f.write(text)
        return path
    except OSError:
        return None


def log_traceback(project: str | None) -> Path | None:
    """Append the exception being handled, with its traceback, to this process's log; returns the file."""
    import time
    import traceback

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return _append(project, f"{stamp} posttrain {' '.join(sys.argv[1:])} (pid {os.getpid()})\n{traceback.format_exc()}\n")


def where() -> str:
    """' (tracebacks in LOG)' once this process's log holds one, else ''."""
    return f" (tracebacks in {_LOG[0]})" if _LOG and _LOG[0].exists() else ""


class _NoTraceback(logging.Formatter):
    """Formats a record as `inner` does, without its exception's traceback or stack."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _TracebackFile(logging.Handler):
    """Appends every record that carries a traceback to this process's log file."""

    def __init__(self, project: str | None):
        super().__init__()
        self.project = project
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(record.exc_info)

    def emit(self, record: logging.LogRecord) -> None:
        _append(self.project, self.format(record) + "\n\n")


def quiet_prefect_tracebacks(project: str | None) -> None:
    """Prefect's console shows a failed task or flow run as its message line only; the traceback goes
    to this process's log file (the Prefect API/UI keeps receiving it whole). Call after Prefect has
    configured logging (after importing a flow)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for handler in {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}:
        if not isinstance(handler.formatter, _NoTraceback):
            handler.setFormatter(_NoTraceback(handler.formatter))
    if not any(isinstance(h, _TracebackFile) for h in logging.getLogger().handlers):
        logging.getLogger().addHandler(_TracebackFile(project))


def _caused_by(err: BaseException | None, text: str) -> bool:
    while err is not None:
        if text in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _prefect_unreachable(err: Exception) -> str | None:
    """The one line for Prefect's API not answering, with the fix; None for any other error."""
    if _caused_by(err, EPHEMERAL_TIMEOUT_TEXT):
        limit = f"{os.environ[PREFECT_TIMEOUT_VAR]} s" if PREFECT_TIMEOUT_VAR in os.environ else "its start-up timeout"
        return (f"Prefect's temporary API server did not answer within {limit} (a busy machine starts it slowly); "
                f"set {PREFECT_TIMEOUT_VAR} higher (e.g. 300), or start a server with `prefect server start` and set "
                f"PREFECT_API_URL=http://127.0.0.1:4200/api")
    if _caused_by(err, "Failed to reach API at") and os.environ.get("PREFECT_API_URL"):
        return (f"the Prefect API at PREFECT_API_URL={os.environ['PREFECT_API_URL']} is unreachable; start that "
                f"server (`prefect server start`), fix PREFECT_API_URL, or unset it to use a temporary local one")
    return None


def unexpected(project: str | None, err: Exception) -> int:
    """One line on stderr for an exception no command handles; its traceback goes to a log file."""
    log = log_traceback(project)
    where = f"traceback in {log}" if log else "no log file could be written"
    known = _prefect_unreachable(err) or (str(err).strip() if isinstance(err, ConnectionError) else None)
    if known:  # a server the command needs does not answer: the message names it and the fix
        print(f"error: {known} ({where})", file=sys.stderr)
        return 1
    lines = str(err).strip().splitlines()
    message = (lines[0][:300] + (" ..." if len(lines) > 1 or len(lines[0]) > 300 else "")) if lines else ""
    print(f"error: unexpected {type(err).__name__}{': ' + message if message else ''} ({where}; "
          f"`posttrain --debug ...` prints it)", file=sys.stderr)
    return 1
