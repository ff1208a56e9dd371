"""The in-sandbox harness: runs inside bwrap as `python -I -S -c <this file's source> --harness`.

Stdlib only and self-contained (no import of the rest of the package: inside the sandbox there is
no project on sys.path). The parent imports the constants below from here, so both sides agree.

Counting: each test is one statement (`humaneval_tests` splits a HumanEval `check` function with
`ast`). The harness executes the program, then each test in order, and after a test statement
returns it writes `<nonce> {"kind": "test", "i": i, "ok": true, "pid": ...}` to the result
channel. The nonce (128 random bits per run) reaches the harness over stdin and is never on disk
or in argv; the channel is a pipe of our own, separate from the program's stdout/stderr. The
parent accepts records only with the nonce, only from the harness pid, only in test order
(`run._Channel`). So exit codes, printed "passed", `sys.exit(0)`, `os._exit(0)`,
`unittest.SkipTest`, a written `conftest.py` or fake records on any fd all yield 0 passed tests.
Tests see the real builtins (a program cannot shadow `abs`), and with an `entry_point` the tests
call the function through a wrapper that rejects any return value that is not made of plain
built-in types, so an object with its own `__eq__` cannot satisfy `assert candidate(x) == y` (the
"always equal" hack).

Everything up to the "ready" record is trusted harness code; after it, the candidate's.
"""

from __future__ import annotations

import json
import os
import sys

# nobody/nogroup. The kernel exempts uid 0 from RLIMIT_NPROC, so the sandbox must not map to it.
SANDBOX_UID = 65534
WORKDIR = "/tmp"  # the fresh tmpfs the program runs in, also HOME and TMPDIR
# The sandbox's whole environment (an allow-list of fixed values, nothing copied from ours).
# bwrap sets PWD itself (to --chdir).
ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "PWD": WORKDIR, "LANG": "C.UTF-8"}


def _isolation_problem() -> str:
    """What is missing from the sandbox, checked from inside before any candidate code ("" = none)."""
    problems = []
    if os.getuid() != SANDBOX_UID:
        problems.append(f"uid {os.getuid()}, expected {SANDBOX_UID}")
    # The host side of the uid is not visible from here (--disable-userns nests a second user
    # namespace); it is non-root by construction: bwrap is started by a non-root uid
    # (bwrap.drop_privileges).
    with open("/proc/self/uid_map") as f:
        if f.read().split() == ["0", "0", "4294967295"]:
            problems.append("not in a user namespace")
    if os.getpid() > 2:
        problems.append(f"pid {os.getpid()}: not in a fresh pid namespace")
    with open("/proc/self/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    if interfaces != ["lo"]:
        problems.append(f"network interfaces {interfaces}: not in an empty network namespace")
    if set(os.environ) - set(ENV):
        problems.append(f"environment not scrubbed: {sorted(set(os.environ) - set(ENV))}")
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
    """Apply `Limits` (as a dict) to this process; everything the candidate starts inherits them."""
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


def harness() -> None:
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


if __name__ == "__main__" and sys.argv[1:] == ["--harness"]:
    harness()
