"""Progress of the long steps (training, generation) on stderr: a tqdm bar on a terminal, and
otherwise (logs, CI, Prefect workers) one plain line every EVERY_S seconds and at the end, so a
10-minute stage is never silent and stdout keeps only the results. Inside a Prefect task run the
same line is also a progress artifact of that run (the Prefect UI's Artifacts tab).

    sft: step 12/60 (20%) · loss 1.234 · 850 tok/s · 1m05s elapsed · ETA 4m20s
"""

from __future__ import annotations

import sys
import time

EVERY_S = 30.0  # seconds between plain lines when stderr is not a terminal
ARTIFACT_EVERY_S = 10.0  # seconds between updates of the Prefect progress artifact (one API call each)


class _PrefectProgress:
    """The same progress as a Prefect progress artifact on the task run it happens in, so the
    Prefect UI shows how far a stage is; nothing outside a Prefect task run."""

    def __init__(self, progress: "Progress"):
        self.id, self.last = None, time.monotonic()
        if "prefect" not in sys.modules:  # not under Prefect: don't import it just to find out
            return
        from prefect.artifacts import create_progress_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is not None:
            self.id = create_progress_artifact(progress.pct(), description=progress.line())

    def update(self, progress: "Progress", final: str | None = None) -> None:
        """Every ARTIFACT_EVERY_S at most; `final` (the closing line) always goes out."""
        now = time.monotonic()
        if self.id is None or (final is None and now - self.last < ARTIFACT_EVERY_S):
            return
        from prefect.artifacts import update_progress_artifact

        self.last = now
        update_progress_artifact(self.id, progress.pct(), description=final or progress.line())


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """`update(n, **shown)` after each unit of work; `close()` prints the final line."""

    def __init__(self, label: str, total: int, unit: str = "step", done: int = 0, stream=None):
        self.label, self.total, self.unit, self.done = label, max(int(total), 0), unit, done
        self.stream = stream or sys.stderr
        self.started = self.last = time.monotonic()
        self.first = done  # a resumed run's earlier steps do not count towards its rate
        self.shown: dict[str, str] = {}
        self.bar = None
        self.artifact = _PrefectProgress(self)
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total or None, initial=done, desc=label, unit=unit, file=self.stream,
                            dynamic_ncols=True, leave=False)

    def pct(self) -> float:
        return 100.0 * min(self.done, self.total) / self.total if self.total else 0.0

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.label}: {self.unit} {self.done}/{self.total or '?'}{pct}", *self.shown.values(),
                 f"{_span(elapsed)} elapsed"]
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_span((self.total - self.done) / rate)}")
        return " · ".join(parts)

    def update(self, n: int = 1, **shown: str) -> None:
        self.done += n
        self.shown.update({k: str(v) for k, v in shown.items()})
        self.artifact.update(self)
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(" · ".join(self.shown.values()), refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= EVERY_S:
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self, final: str | None = None, announce: bool = True) -> None:
        """End the bar; print `final` (default: the progress line) unless announce is False."""
        self.artifact.update(self, final or self.line())
        if self.bar is not None:
            self.bar.close()
        if announce:
            print(final or self.line(), file=self.stream, flush=True)
