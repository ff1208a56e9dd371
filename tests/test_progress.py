"""The progress line of long steps when stderr is not a terminal: periodic plain lines with the
count, the total, what the caller shows and an ETA, then a final line."""

from __future__ import annotations

import io

from core import progress


def test_plain_lines_count_show_and_estimate(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    out = io.StringIO()
    bar = progress.Progress("sft", 4, stream=out)
    assert bar.bar is None  # not a terminal: no tqdm bar
    bar.update(1, loss="loss 1.5")
    bar.update(1, loss="loss 1.2")
    bar.close("sft: ran 2 steps")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sft: step 1/4 (25%) · loss 1.5 · ") and "ETA" in lines[0]
    assert lines[1].startswith("sft: step 2/4 (50%) · loss 1.2 · ")
    assert lines[-1] == "sft: ran 2 steps"


def test_quiet_between_intervals(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 3600.0)
    out = io.StringIO()
    bar = progress.Progress("evaluate: math", 40, unit="reply", stream=out)
    for _ in range(5):
        bar.update(8)
    assert out.getvalue() == ""
    bar.close()
    assert out.getvalue().startswith("evaluate: math: reply 40/40 (100%)")
