"""Run model-generated code against tests in a sandbox; count tests one by one; score batches.

How to run: `from evaluations.sandbox import run_tests, run_batch, score_batch, humaneval_tests`.
`.venv/bin/python -m evaluations.sandbox` checks that isolation works on this machine.

The parts: `results` (Limits, Job, SandboxResult, statuses, score_batch), `run` (run_tests,
run_batch: launch, result channel, wall clock, fail closed), `bwrap` (the bubblewrap command
line, the isolation it sets up, the interpreter, killing a sandbox), `harness` (what runs inside
the sandbox, stdlib only: isolation self-check, limits, counting tests), `humaneval_split`
(HumanEval `check` functions -> one test per assert).

Residual risks (what this does not stop):
- The candidate runs in the harness's process. Code written to attack this harness can find the
  nonce and the channel (frames, `gc`, /proc/self/mem) and forge passes, read the expected values
  out of the calling test's frame, or monkeypatch modules the tests import (math, ...). The
  nonce stops blind forging and the common hacks, not a targeted exploit of harness.py (one is
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

from evaluations.sandbox.harness import SANDBOX_UID, WORKDIR
from evaluations.sandbox.humaneval_split import humaneval_tests
from evaluations.sandbox.results import (
    Job,
    Limits,
    SandboxResult,
    SandboxUnavailable,
    Status,
    TooManyInfraErrors,
    score_batch,
)
from evaluations.sandbox.run import run_batch, run_tests

__all__ = ["SANDBOX_UID", "WORKDIR", "Job", "Limits", "SandboxResult", "SandboxUnavailable", "Status",
           "TooManyInfraErrors", "humaneval_tests", "run_batch", "run_tests", "score_batch"]
