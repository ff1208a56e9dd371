"""Running jobs (parent side): launch bwrap, feed the job, read the result channel, kill on timeout.

Fail closed: if bwrap is missing, the self-check run does not pass, or the harness finds itself
without isolation (uid, user and pid namespaces, network interfaces, environment, writable
root), `SandboxUnavailable` is raised and nothing is run or scored. Code is never run unsandboxed.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Sequence

from evaluations.sandbox.bwrap import PYTHON_ENV, Tools, drop_privileges, find_bwrap, find_python, kill
from evaluations.sandbox.harness import ENV
from evaluations.sandbox.results import OUTPUT_TAIL, Job, Limits, SandboxResult, SandboxUnavailable

_MAX_LINE = 65536  # bytes; a longer unterminated line on the result channel is not ours and is dropped


def run_tests(program: str, tests: Sequence[str], *, entry_point: str | None = None,
              limits: Limits = Limits()) -> SandboxResult:
    """Run `program`, then each test statement, in a fresh sandbox. Raises SandboxUnavailable."""
    job = _job(program, tests, entry_point)
    return _run(job, limits, sandbox())


def run_batch(jobs: Sequence[Job], limits: Limits = Limits(), *, workers: int | None = None) -> list[SandboxResult]:
    """run_tests over many jobs, `workers` sandboxes at a time (default: CPU count). Results in job order.

    Isolation is checked before the first job starts; a SandboxUnavailable anywhere aborts the
    whole batch (no partial results to score).
    """
    jobs = [_job(j.program, j.tests, j.entry_point) for j in jobs]
    tools = sandbox()
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: _run(job, limits, tools), jobs))


_VERIFIED: set[Tools] = set()  # tool pairs whose self-check passed in this process
_VERIFY_LOCK = threading.Lock()
_PROBE = Job(program="x = 6 * 7", tests=("assert x == 42",))


def sandbox() -> Tools:
    """The tools to use, self-checked once per process (one trivial job must pass)."""
    tools = Tools(bwrap=find_bwrap(), python=find_python())
    with _VERIFY_LOCK:
        if tools not in _VERIFIED:
            result = _run(_PROBE, Limits(), tools)
            if result.status != "passed":
                raise SandboxUnavailable(
                    f"sandbox self-check ({tools.bwrap}, {tools.python}) gave {result.status}: {result.detail}\n"
                    f"{result.output[-2000:]}")
            _VERIFIED.add(tools)
    return tools


def _job(program: str, tests: Sequence[str], entry_point: str | None) -> Job:
    """Validate what the caller (not the model) supplied: bad tests are a bug here, not a 0."""
    if isinstance(tests, str) or not tests:
        raise ValueError("tests must be a non-empty sequence of statements")
    for i, test in enumerate(tests):
        compile(test, f"<test {i}>", "exec", dont_inherit=True)  # SyntaxError names the test
    if entry_point is not None and not entry_point.isidentifier():
        raise ValueError(f"entry_point must be an identifier, got {entry_point!r}")
    return Job(program, tuple(tests), entry_point)


class _Channel:
    """The harness's reports, as the parent accepts them: this run's nonce, the harness pid, test order."""

    def __init__(self, nonce: str, n_tests: int):
        self.prefix, self.n_tests = nonce.encode() + b" ", n_tests
        self.buffer = b""
        self.harness_pid: int | None = None
        self.python: list | None = None
        self.isolation: str | None = None
        self.load_error: str | None = None
        self.outcomes: list[tuple[bool, str]] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        if len(self.buffer) > _MAX_LINE:
            self.buffer = b""
        for line in lines:
            if not line.startswith(self.prefix):
                continue  # not the harness (the program writing to an fd it found): ignored
            try:
                record = json.loads(line[len(self.prefix):])
            except ValueError:  # only a process holding the nonce writes these; never the harness
                continue
            if isinstance(record, dict):
                self._accept(record)

    def _accept(self, record: dict) -> None:
        kind, pid = record.get("kind"), record.get("pid")
        if self.harness_pid is None:  # before "ready" only the harness runs: no candidate code yet
            if kind == "isolation":
                self.isolation = str(record.get("detail"))
            elif kind == "ready":
                self.harness_pid, self.python = pid, record.get("python")
            return
        if pid != self.harness_pid or self.done or self.load_error is not None:
            return  # a forked copy of the harness, or anything after the end
        if kind == "load_error":
            self.load_error = str(record.get("error"))
        elif kind == "test" and record.get("i") == len(self.outcomes) < self.n_tests:
            self.outcomes.append((record.get("ok") is True, str(record.get("error", ""))))
        elif kind == "done" and len(self.outcomes) == self.n_tests:
            self.done = True


def _run(job: Job, limits: Limits, tools: Tools) -> SandboxResult:
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "program": job.program, "tests": list(job.tests),
                          "entry_point": job.entry_point, "limits": asdict(limits)}).encode()
    channel = _Channel(nonce, len(job.tests))
    n = len(job.tests)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(tools.argv(limits), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(ENV), cwd="/", process_group=0,
                                **drop_privileges())
    except OSError as e:  # EAGAIN/ENOMEM on fork, bwrap vanished: the machine's problem, not the sample's
        return SandboxResult("infra_error", 0, n, detail=f"could not start bwrap: {e!r}")
    try:
        output, timed_out = _pump(proc, payload, channel, start + limits.wall_seconds)
    finally:
        if proc.poll() is None:
            kill(proc)
    rc = proc.wait()
    wall = time.monotonic() - start
    tail = output.decode("utf-8", "replace")

    if channel.isolation is not None:
        raise SandboxUnavailable(f"isolation check failed inside the sandbox: {channel.isolation}")
    if channel.harness_pid is None:  # the candidate never ran: nothing to attribute to it
        why = "did not start within wall_seconds" if timed_out else f"exited {rc} before the harness started"
        return SandboxResult("infra_error", 0, n, f"sandbox {why}: {tail[-500:]}", tail, wall)
    if channel.python != list(sys.version_info[:2]):
        raise SandboxUnavailable(f"sandbox interpreter {tools.python} is Python {channel.python}, "
                                 f"not {sys.version_info[:2]}; set {PYTHON_ENV}")
    passed = sum(ok for ok, _ in channel.outcomes)
    first_failure = next((f"test {i}: {err}" for i, (ok, err) in enumerate(channel.outcomes) if not ok), "")
    if channel.done:  # every test reported: whatever the sandbox did afterwards changes nothing
        status, detail = ("passed" if passed == n else "failed"), first_failure
    elif timed_out:
        status, detail = "timeout", f"wall-clock limit of {limits.wall_seconds} s reached"
    elif channel.load_error is not None:
        status, detail = "error", channel.load_error
    elif rc == 128 + signal.SIGXCPU:  # bwrap exits 128+N when its child dies of signal N
        status, detail = "timeout", f"CPU limit of {limits.cpu_seconds} s reached"
    else:
        status, detail = "error", f"the program ended the harness (exit {rc}) after {len(channel.outcomes)}/{n} tests"
    return SandboxResult(status, passed, n, detail, tail, wall)


def _pump(proc: subprocess.Popen, payload: bytes, channel: _Channel, deadline: float) -> tuple[bytes, bool]:
    """Feed the job, read both pipes until they close or the deadline -> (output tail, timed out)."""
    sel = selectors.DefaultSelector()
    os.set_blocking(proc.stdin.fileno(), False)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    sent, output = 0, b""
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return output, True
            for key, _ in sel.select(remaining):
                if key.fileobj is proc.stdin:
                    try:
                        sent += os.write(proc.stdin.fileno(), payload[sent:sent + 65536])
                    except BrokenPipeError:  # the sandbox died before reading the job: decided by what it reported
                        sent = len(payload)
                    if sent == len(payload):
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    channel.feed(data)
                else:
                    output = (output + data)[-OUTPUT_TAIL:]
        try:  # pipes closed; the sandbox is exiting (or the program closed its fds and lingers)
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return output, True
        return output, False
    finally:
        sel.close()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
