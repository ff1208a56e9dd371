"""What the parent side passes in and gets back: limits, jobs, results, and scoring a batch of them.

Statuses: passed (all tests observed passing), failed (all tests ran, n_passed < n_total),
timeout (wall clock or CPU limit), error (the program failed to load, e.g. SyntaxError or
MemoryError, or ended the harness before all tests ran), infra_error (the sandbox did not start:
not the candidate's fault, never a 0 reward; `score_batch` excludes and counts these).
Everything after the harness reports "ready" is attributed to the candidate, so a program cannot
turn its failure into an excluded infra_error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

Status = Literal["passed", "failed", "timeout", "error", "infra_error"]
OUTPUT_TAIL = 8192  # bytes of the program's stdout+stderr kept in the result (the rest is read and dropped)


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
    output: str = ""  # last OUTPUT_TAIL bytes of the program's stdout+stderr (and bwrap's messages)
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
