"""Run model-generated code against tests in a sandbox; count tests one by one; score batches.

How to run: `from evaluations.sandbox import run_tests, run_batch, score_batch, humaneval_tests`.
`.venv/bin/python -m evaluations.sandbox` checks that isolation works on this machine. This file is
also the in-sandbox harness (`-c <this source> --harness`), so it imports only the stdlib at the
top; psutil is imported where the parent kills a sandbox.

Isolation (bubblewrap, Debian package `bubblewrap`; scripts/install.sh installs it as root):
- `bwrap` with its own user, pid, network, ipc, uts and cgroup namespaces; nested user namespaces
  disabled; a new session (no TIOCSTI into our terminal); killed when its parent dies.
- Filesystem: /usr (+ the merged-/usr symlinks) and the interpreter's prefix read-only, a fresh
  /proc and a read-only /dev, and a fresh tmpfs at /tmp (the working dir, capped at
  `max_file_mb` in total). Nothing else of the host is mounted (no /etc, /home, /root, /work,
  no project runs/, no ~/.cache), and the root is remounted read-only.
- Environment: built from the allow-list `_ENV`; nothing of ours (HF_TOKEN, AWS_*, MLFLOW_*, ...)
  is passed, and the harness refuses to run if any other variable shows up.
- Limits (`Limits`), set by the harness on itself before the candidate runs, so every process the
  candidate starts inherits them: RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, no cores.
  RLIMIT_NPROC does not apply to kernel uid 0, so as root we start bwrap as uid 65534 (nobody):
  the sandbox then runs as a non-root kernel uid in a fresh user namespace, and the process count
  is per sandbox (the limit is set inside the namespace; the outer count stays unlimited), so
  parallel sandboxes do not starve each other.
- Wall clock: past `wall_seconds` the parent SIGKILLs bwrap's process group and every process in
  the sandbox's tree; killing the pid namespace's init kills whatever was forked later.
- Fail closed: if bwrap is missing, the self-check run does not pass, or the harness finds itself
  without isolation (uid, user and pid namespaces, network interfaces, environment, writable
  root), `SandboxUnavailable` is raised and nothing is run or scored. Code is never run unsandboxed.
- Interpreter: ours if the sandbox uid can reach it, else /usr(/local)/bin/pythonX.Y of the same
  X.Y (checked on every run), or $POSTTRAIN_SANDBOX_PYTHON; run with -I -S (stdlib only).

Counting: each test is one statement (`humaneval_tests` splits a HumanEval `check` function with
`ast`). The harness executes the program, then each test in order, and after a test statement
returns it writes `<nonce> {"kind": "test", "i": i, "ok": true, "pid": ...}` to the result
channel. The nonce (128 random bits per run) reaches the harness over stdin and is never on disk
or in argv; the channel is a pipe of our own, separate from the program's stdout/stderr. The
parent accepts records only with the nonce, only from the harness pid, only in test order. So
exit codes, printed "passed", `sys.exit(0)`, `os._exit(0)`, `unittest.SkipTest`, a written
`conftest.py` or fake records on any fd all yield 0 passed tests. Tests see the real builtins (a
program cannot shadow `abs`), and with an `entry_point` the tests call the function through a
wrapper that rejects any return value that is not made of plain built-in types, so an object with
its own `__eq__` cannot satisfy `assert candidate(x) == y` (the "always equal" hack).

Statuses: passed (all tests observed passing), failed (all tests ran, n_passed < n_total),
timeout (wall clock or CPU limit), error (the program failed to load, e.g. SyntaxError or
MemoryError, or ended the harness before all tests ran), infra_error (the sandbox did not start:
not the candidate's fault, never a 0 reward; `score_batch` excludes and counts these).
Everything after the harness reports "ready" is attributed to the candidate, so a program cannot
turn its failure into an excluded infra_error.

Residual risks (what this does not stop):
- The candidate runs in the harness's process. Code written to attack this harness can find the
  nonce and the channel (frames, `gc`, /proc/self/mem) and forge passes, read the expected values
  out of the calling test's frame, or monkeypatch modules the tests import (math, ...). The
  nonce stops blind forging and the common hacks, not a targeted exploit of this file (one is
  kept as a strict xfail in tests/faults/test_sandbox.py); monitor reward vs held-out accuracy
  for that. Closing it means running only the candidate's calls in a separate process and
  evaluating the asserts on returned plain values in the harness.
- Memory: RLIMIT_AS is per process, so a sandbox can hold up to max_processes × memory_mb
  (4 GiB with the defaults) plus its tmpfs; a memory cgroup would bound the total but needs
  privileges we do not assume. Size the worker pool accordingly.
- CPU: a fork bomb keeps up to max_processes busy until the wall clock runs out; the machine
  stays usable but slower for those seconds.
- The kernel is shared: no seccomp filter, so a kernel bug reachable from an unprivileged user
  namespace is reachable from the sandbox. /usr is readable (world-readable files only).
- Under load, legitimate code can hit the wall clock; that is reported as timeout (scored).
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

Status = Literal["passed", "failed", "timeout", "error", "infra_error"]

# nobody/nogroup. The kernel exempts uid 0 from RLIMIT_NPROC, so the sandbox must not map to it.
SANDBOX_UID = 65534
WORKDIR = "/tmp"  # the fresh tmpfs the program runs in, also HOME and TMPDIR
# The sandbox's whole environment (an allow-list of fixed values, nothing copied from ours).
# bwrap sets PWD itself (to --chdir).
_ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "PWD": WORKDIR, "LANG": "C.UTF-8"}
_OUTPUT_TAIL = 8192  # bytes of the program's stdout+stderr kept in the result (the rest is read and dropped)
_MAX_LINE = 65536  # bytes; a longer unterminated line on the result channel is not ours and is dropped
_BWRAP_ENV = "POSTTRAIN_BWRAP"  # path of bwrap; default: `bwrap` on PATH
_PYTHON_ENV = "POSTTRAIN_SANDBOX_PYTHON"  # interpreter inside the sandbox; default: see _find_python


class SandboxUnavailable(RuntimeError):
    """Isolation cannot be established. Nothing was run, and nothing may be scored."""


class TooManyInfraErrors(RuntimeError):
    """More samples than allowed hit sandbox infrastructure errors: the batch's score is not trustworthy."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5  # RLIMIT_CPU per process, CPU seconds; then SIGXCPU (-> timeout), SIGKILL 1 s later
    wall_seconds: float = 10.0  # whole sandbox from launch, seconds; then everything in it is SIGKILLed (-> timeout)
    memory_mb: int = 512  # RLIMIT_AS per process, MiB of address space; beyond it allocations raise MemoryError
    # RLIMIT_NPROC inside the sandbox's user namespace; threads count, and so do bwrap's init and the harness
    max_processes: int = 8
    max_file_mb: int = 16  # RLIMIT_FSIZE per file and the size of the /tmp tmpfs (all files together), MiB

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.wall_seconds <= 0:
            raise ValueError(f"cpu_seconds must be >= 1 and wall_seconds > 0, got {self}")
        if self.memory_mb < 64:  # the interpreter and harness alone map ~30 MiB
            raise ValueError(f"memory_mb must be >= 64, got {self.memory_mb}")
        if self.max_processes < 2 or self.max_file_mb < 1:  # 2 = bwrap's init + the harness
            raise ValueError(f"max_processes must be >= 2 and max_file_mb >= 1, got {self}")


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    n_passed: int  # tests the harness observed returning without an exception
    n_total: int
    detail: str = ""  # why: first failing test, load error, limit hit, or what broke in the sandbox
    output: str = ""  # last _OUTPUT_TAIL bytes of the program's stdout+stderr (and bwrap's messages)
    wall_seconds: float = 0.0

    @property
    def reward(self) -> float:
        """Fraction of tests passed. An infra_error has no reward: it is excluded, not a zero."""
        if self.status == "infra_error":
            raise ValueError(f"infra_error samples have no reward (exclude them, see score_batch): {self.detail}")
        return self.n_passed / self.n_total


@dataclass(frozen=True)
class Job:
    program: str
    tests: tuple[str, ...]  # statements run in order in one namespace; each one is a test
    entry_point: str | None = None  # function the tests call as `candidate` (through the return-type check)


def run_tests(program: str, tests: Sequence[str], *, entry_point: str | None = None,
              limits: Limits = Limits()) -> SandboxResult:
    """Run `program`, then each test statement, in a fresh sandbox. Raises SandboxUnavailable."""
    job = _job(program, tests, entry_point)
    return _run(job, limits, _sandbox())


def run_batch(jobs: Sequence[Job], limits: Limits = Limits(), *, workers: int | None = None) -> list[SandboxResult]:
    """run_tests over many jobs, `workers` sandboxes at a time (default: CPU count). Results in job order.

    Isolation is checked before the first job starts; a SandboxUnavailable anywhere aborts the
    whole batch (no partial results to score).
    """
    from concurrent.futures import ThreadPoolExecutor  # parent side only (keeps the harness's startup short)

    jobs = [_job(j.program, j.tests, j.entry_point) for j in jobs]
    tools = _sandbox()
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: _run(job, limits, tools), jobs))


def score_batch(results: Sequence[SandboxResult], max_infra_fraction: float, *,
                all_or_nothing: bool = False) -> tuple[float, int, int]:
    """Mean reward over the samples that were scored -> (score, n_scored, n_infra).

    infra_error samples are excluded and counted, never scored as 0 (a broken verifier is a
    corrupted signal, not a bad answer). More than `max_infra_fraction` of them, or none scored,
    raises TooManyInfraErrors. Reward per sample: fraction of tests passed, or with
    `all_or_nothing` 1.0 only if every test passed (pass@1).
    """
    if not results:
        raise ValueError("score_batch needs at least one result")
    if not 0.0 <= max_infra_fraction <= 1.0:
        raise ValueError(f"max_infra_fraction must be in [0, 1], got {max_infra_fraction}")
    infra = [r for r in results if r.status == "infra_error"]
    scored = [r for r in results if r.status != "infra_error"]
    if len(infra) > max_infra_fraction * len(results) or not scored:
        raise TooManyInfraErrors(
            f"{len(infra)}/{len(results)} samples hit sandbox infrastructure errors (allowed: "
            f"{max_infra_fraction:.0%}, scored: {len(scored)}); first: {infra[0].detail}")
    rewards = [float(r.status == "passed") if all_or_nothing else r.reward for r in scored]
    return sum(rewards) / len(rewards), len(scored), len(infra)


def humaneval_tests(check_src: str, entry_point: str) -> list[str]:
    """Split a HumanEval `test` field (`def check(candidate): assert ...`) into one test per assert.

    Each top-level statement of `check` that contains an assert is a test (a `for` loop of
    asserts is one test). Other statements (imports, assignments) and the module-level prelude
    are setup, prepended to the next test. `assert True, "..."` lines test nothing and are dropped
    (counting them would give `return None` free passes).
    """
    module = ast.parse(check_src)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        raise ValueError("expected exactly one `def check(candidate):` in the test source")
    check = checks[0]
    setup: list[str] = [ast.unparse(n) for n in module.body if n is not check]
    param = check.args.args[0].arg
    if param != "candidate":
        setup.append(f"{param} = candidate")
    tests: list[str] = []
    for stmt in check.body:
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) and stmt.test.value:
            continue
        setup.append(ast.unparse(stmt))
        if any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            tests.append("\n".join(setup))
            setup = []
    if not tests:
        raise ValueError("the check function has no asserts")
    if setup:  # trailing setup after the last assert still runs, as part of the last test
        tests[-1] += "\n" + "\n".join(setup)
    names = {n.id for t in tests for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Name)}
    if not names & {"candidate", param, entry_point}:
        raise ValueError(f"no test calls the solution (`candidate` or `{entry_point}`)")
    return tests


# ---------------------------------------------------------------------------------------------
# Parent side: find the tools, launch bwrap, read the result channel, kill on timeout.


@dataclass(frozen=True)
class _Tools:
    bwrap: str
    python: str  # interpreter inside the sandbox (same major.minor as ours; checked every run)

    def argv(self, limits: Limits) -> list[str]:
        prefix = os.path.dirname(os.path.dirname(self.python))
        argv = [self.bwrap,
                "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
                "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/lib", "/lib64", "/sbin"):  # merged-/usr symlinks, or real dirs on older systems
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        if prefix != "/usr" and not prefix.startswith("/usr/"):
            argv += ["--ro-bind", prefix, prefix]
        argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                 "--size", str(limits.max_file_mb << 20), "--tmpfs", WORKDIR, "--chdir", WORKDIR,
                 "--remount-ro", "/"]
        for key, value in _ENV.items():
            argv += ["--setenv", key, value]
        # -I: ignore PYTHON* variables, user site and the cwd on sys.path; -S: no site-packages.
        return argv + [self.python, "-I", "-S", "-c", _harness_source(), "--harness"]


_VERIFIED: set[_Tools] = set()  # tool pairs whose self-check passed in this process
_VERIFY_LOCK = threading.Lock()
_PROBE = Job(program="x = 6 * 7", tests=("assert x == 42",))


def _sandbox() -> _Tools:
    """The tools to use, self-checked once per process (one trivial job must pass)."""
    tools = _Tools(bwrap=_find_bwrap(), python=_find_python())
    with _VERIFY_LOCK:
        if tools not in _VERIFIED:
            result = _run(_PROBE, Limits(), tools)
            if result.status != "passed":
                raise SandboxUnavailable(
                    f"sandbox self-check ({tools.bwrap}, {tools.python}) gave {result.status}: {result.detail}\n"
                    f"{result.output[-2000:]}")
            _VERIFIED.add(tools)
    return tools


def _find_bwrap() -> str:
    path = os.environ.get(_BWRAP_ENV) or shutil.which("bwrap")
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        where = f"{_BWRAP_ENV}={path}" if os.environ.get(_BWRAP_ENV) else "no `bwrap` on PATH"
        raise SandboxUnavailable(
            f"bubblewrap not found ({where}); model-generated code is never run unsandboxed. "
            "Install it with `apt-get install -y bubblewrap` (scripts/install.sh does this as root).")
    return path


def _find_python() -> str:
    """The sandbox's interpreter: $POSTTRAIN_SANDBOX_PYTHON, else ours, else /usr(/local)/bin/pythonX.Y.

    Ours is skipped when the sandbox uid cannot reach it (e.g. pyenv under /root, mode 0700):
    bwrap resolves bind sources as that uid.
    """
    override = os.environ.get(_PYTHON_ENV)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [override] if override else [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    for path in candidates:
        real = os.path.realpath(path)
        if os.path.isfile(real) and _reachable_by_sandbox(real):
            return real
    raise SandboxUnavailable(
        f"no {version} interpreter the sandbox uid can execute among {candidates}; set {_PYTHON_ENV} "
        f"to one whose directories are world-searchable (e.g. apt-get install -y {version})")


def _reachable_by_sandbox(path: str) -> bool:
    if os.geteuid() != 0:  # the sandbox maps to our own uid
        return os.access(path, os.X_OK)
    parts = path.split("/")
    dirs = ["/".join(parts[:i]) or "/" for i in range(1, len(parts))]
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs) and bool(os.stat(path).st_mode & stat.S_IXOTH)


def _job(program: str, tests: Sequence[str], entry_point: str | None) -> Job:
    """Validate what the caller (not the model) supplied: bad tests are a bug here, not a 0."""
    if isinstance(tests, str) or not tests:
        raise ValueError("tests must be a non-empty sequence of statements")
    for i, test in enumerate(tests):
        compile(test, f"<test {i}>", "exec", dont_inherit=True)  # SyntaxError names the test
    if entry_point is not None and not entry_point.isidentifier():
        raise ValueError(f"entry_point must be an identifier, got {entry_point!r}")
    return Job(program, tuple(tests), entry_point)


def _drop_privileges() -> dict:
    # As root, bwrap itself runs as nobody (no groups, no capabilities): see SANDBOX_UID.
    return {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []} if os.geteuid() == 0 else {}


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


def _run(job: Job, limits: Limits, tools: _Tools) -> SandboxResult:
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "program": job.program, "tests": list(job.tests),
                          "entry_point": job.entry_point, "limits": asdict(limits)}).encode()
    channel = _Channel(nonce, len(job.tests))
    n = len(job.tests)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(tools.argv(limits), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(_ENV), cwd="/", process_group=0,
                                **_drop_privileges())
    except OSError as e:  # EAGAIN/ENOMEM on fork, bwrap vanished: the machine's problem, not the sample's
        return SandboxResult("infra_error", 0, n, detail=f"could not start bwrap: {e!r}")
    try:
        output, timed_out = _pump(proc, payload, channel, start + limits.wall_seconds)
    finally:
        if proc.poll() is None:
            _kill(proc)
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
                                 f"not {sys.version_info[:2]}; set {_PYTHON_ENV}")
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
                    output = (output + data)[-_OUTPUT_TAIL:]
        try:  # pipes closed; the sandbox is exiting (or the program closed its fds and lingers)
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return output, True
        return output, False
    finally:
        sel.close()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL bwrap's process group and its whole tree; wait until they are gone (no orphans)."""
    import psutil  # parent side only: the in-sandbox harness has the stdlib alone

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    for p in tree:  # the pid namespace's init among them: its death kills what was forked since
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    proc.wait()

    def running(p: psutil.Process) -> bool:  # zombies are dead; host init reaps the orphaned ones later
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10.0  # SIGKILL is not instant for a process stuck in the kernel
    while any(running(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Inside the sandbox: the harness. Everything up to "ready" is trusted; after it, the candidate's.


def _harness_source() -> str:
    with open(__file__, encoding="utf-8") as f:
        return f.read()


def _isolation_problem() -> str:
    """What is missing from the sandbox, checked from inside before any candidate code ("" = none)."""
    problems = []
    if os.getuid() != SANDBOX_UID:
        problems.append(f"uid {os.getuid()}, expected {SANDBOX_UID}")
    # The host side of the uid is not visible from here (--disable-userns nests a second user
    # namespace); it is non-root by construction: bwrap is started by a non-root uid (_drop_privileges).
    with open("/proc/self/uid_map") as f:
        if f.read().split() == ["0", "0", "4294967295"]:
            problems.append("not in a user namespace")
    if os.getpid() > 2:
        problems.append(f"pid {os.getpid()}: not in a fresh pid namespace")
    with open("/proc/self/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    if interfaces != ["lo"]:
        problems.append(f"network interfaces {interfaces}: not in an empty network namespace")
    if set(os.environ) - set(_ENV):
        problems.append(f"environment not scrubbed: {sorted(set(os.environ) - set(_ENV))}")
    try:
        fd = os.open("/.posttrain-write-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        root_read_only = True
    else:
        os.close(fd)
        os.unlink("/.posttrain-write-probe")
        root_read_only = False
    if not root_read_only:
        problems.append("the root filesystem is writable")
    return "; ".join(problems)


def _set_limits(limits: dict) -> None:
    import resource

    mib = 1 << 20
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # soft: SIGXCPU; hard: SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)
    # CPython ignores SIGXFSZ, so a write past the limit raises OSError instead of killing the process.
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _plain_returns(fn):
    """`fn` for the tests: a return value must be plain built-in data, so `==` means what it says."""

    def candidate(*args, **kwargs):
        result = fn(*args, **kwargs)
        stack, seen = [result], set()
        while stack:
            value = stack.pop()
            kind = type(value)  # the real type (not __class__); compared by identity (a metaclass can fake ==)
            if not any(kind is t for t in _PLAIN_TYPES):
                raise TypeError(f"the solution returned a {kind.__name__} object; only built-in values are accepted")
            if kind in (list, tuple, set, frozenset, dict) and id(value) not in seen:
                seen.add(id(value))
                stack.extend(value.items() if kind is dict else value)
        return result

    return candidate


def _describe(error: BaseException) -> str:
    try:
        message = str(error)
    except BaseException:  # the program's exception may refuse to print; its type is enough
        message = "<unprintable>"
    return f"{type(error).__name__}: {message}"[:300]


def _harness() -> None:
    """Read the job from stdin, check isolation, set limits, run program and tests, report. Never returns."""
    import builtins

    # Bound here, before the program runs and can rebind the module attributes.
    write, getpid, dumps, exit_now = os.write, os.getpid, json.dumps, os._exit
    real_builtins = dict(vars(builtins))
    job = json.loads(sys.stdin.buffer.read())
    nonce = job["nonce"].encode()
    channel = os.dup(1)  # dup() is non-inheritable: programs the candidate execs do not get the channel
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # the program's print() goes to the output pipe, never to the channel

    def report(kind: str, **fields) -> None:
        write(channel, nonce + b" " + dumps({"kind": kind, "pid": getpid(), **fields}).encode() + b"\n")

    streams = (sys.stdout, sys.stderr)

    def flush_output() -> None:  # before os._exit, which skips it: the output tail is for diagnosis
        for stream in streams:
            try:
                stream.flush()
            except (OSError, ValueError):  # the program closed or broke its own stdout: its loss
                continue

    problem = _isolation_problem()
    if problem:
        report("isolation", detail=problem)
        exit_now(3)
    tests = [compile(t, f"<test {i}>", "exec", dont_inherit=True) for i, t in enumerate(job["tests"])]
    _set_limits(job["limits"])
    report("ready", python=list(sys.version_info[:2]))

    namespace: dict = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(job["program"], "<candidate>", "exec", dont_inherit=True), namespace)
    except BaseException as error:  # SystemExit and SkipTest included: a program that does not load passes nothing
        namespace.clear()  # free what it allocated (a MemoryError leaves the heap full)
        report("load_error", error=_describe(error))
        flush_output()
        exit_now(0)
    # The tests see the program's names, except that built-in names are the real built-ins.
    test_namespace = {k: v for k, v in namespace.items() if k not in real_builtins}
    test_namespace["__builtins__"] = real_builtins
    entry_point = job["entry_point"]
    if entry_point is not None:
        if not callable(namespace.get(entry_point)):
            report("load_error", error=f"entry point {entry_point!r} is not defined by the program")
            flush_output()
            exit_now(0)
        test_namespace["candidate"] = test_namespace[entry_point] = _plain_returns(namespace[entry_point])
    for i, test in enumerate(tests):
        try:
            exec(test, test_namespace)
        except BaseException as error:  # any exception, exit or skip fails this test, and the next one runs
            report("test", i=i, ok=False, error=_describe(error))
        else:
            report("test", i=i, ok=True)
    report("done")
    flush_output()
    exit_now(0)  # skip atexit handlers and non-daemon threads the program left behind


def _self_check() -> None:
    tools = _sandbox()
    print(f"sandbox ok: bwrap={tools.bwrap} python={tools.python} uid={SANDBOX_UID}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--harness"]:
        _harness()
    else:
        _self_check()
