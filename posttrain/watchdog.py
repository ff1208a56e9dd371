"""Nothing of a `posttrain run` / `rerun` / `stage` process outlives it, however it ends.

A SIGKILLed (or OOM-killed) process cannot stop its children: the ephemeral Prefect API server,
`dvc repro` and the stages it calls, sandboxed programs, dataloader workers would stay alive,
reparented to init. So the command starts this watchdog first: a separate process in its own
session (a kill of the command's process group does not reach it) that knows the command's pid.
Every POLL_S it records the command's descendants; every process it has seen stays recorded until
it exits. The command is a child subreaper (`adopt_orphans`), so a process that detaches itself
(double fork) is reparented to it and stays one of its descendants. When the
command is gone (killed, crashed or exited normally), it terminates every recorded process still
alive, and everything below those, kills what is left after GRACE_S, and exits. A pid is only
signalled while its start time matches the recorded one: a recycled pid is never touched.

The watchdog imports nothing but the standard library and psutil; it writes one line per cleanup
to the log file it was given (only when it had something to stop).

    python posttrain/watchdog.py PID [LOG]    (what `spawn` starts)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> bool:
    """Make this process a child subreaper (Linux): a descendant whose parent exits (a daemon's double
    fork) is reparented to us, not to init, so it stays one of our descendants that the watchdog
    records. Returns whether it worked. Adopted orphans that exit stay zombies until we exit."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def spawn(pid: int | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start the watchdog of process `pid` (default: this one, which also becomes a subreaper). It
    holds none of our file descriptors (a caller that reads our stdout/stderr to EOF does not wait for it)."""
    if pid in (None, os.getpid()):
        adopt_orphans()
    args = [sys.executable, str(Path(__file__).resolve()), str(pid or os.getpid())] + ([str(log)] if log else [])
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _same(proc, started: float) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _record(seen: dict, procs) -> None:
    import psutil

    me = os.getpid()
    for p in procs:
        if p.pid == me:
            continue
        try:
            seen.setdefault(p.pid, (p, p.create_time()))
        except psutil.Error:
            pass


def _watch(pid: int) -> dict:
    """Block until `pid` is gone; returns every descendant recorded, {pid: (Process, create_time)}."""
    import psutil

    try:
        parent = psutil.Process(pid)
        started = parent.create_time()
    except psutil.Error:
        return {}
    seen: dict = {}
    while _same(parent, started):
        try:
            _record(seen, parent.children(recursive=True))
        except psutil.Error:
            pass
        for p_pid, (p, t) in list(seen.items()):  # forget what exited by itself
            if not _same(p, t):
                del seen[p_pid]
        time.sleep(POLL_S)
    return seen


def _leftovers(seen: dict) -> list:
    """The recorded processes still alive, plus everything now below them."""
    import psutil

    alive = {p_pid: (p, t) for p_pid, (p, t) in seen.items() if _same(p, t)}
    for p, _ in list(alive.values()):
        try:
            _record(alive, p.children(recursive=True))
        except psutil.Error:
            pass
    return [p for p, t in alive.values() if _same(p, t)]


def _describe(p) -> str:
    import psutil

    try:
        return f"{p.pid} ({' '.join(p.cmdline())[:80] or p.name()})"
    except psutil.Error:  # gone or not ours to read: its pid still names it
        return str(p.pid)


def stop(procs: list) -> list[str]:
    """SIGTERM each, SIGKILL what is alive after GRACE_S; returns what was stopped, described."""
    import psutil

    described = [_describe(p) for p in procs]
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=GRACE_S)
    return described


def main(argv: list[str]) -> int:
    pid = int(argv[0])
    log = Path(argv[1]) if len(argv) > 1 else None
    left = _leftovers(_watch(pid))
    if not left:
        return 0
    stopped = stop(left)
    if log is not None:
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with log.open("a") as f:
                f.write(f"{stamp} posttrain pid {pid} is gone; stopped {len(stopped)} process(es) it left: "
                        f"{', '.join(stopped)}\n")
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
