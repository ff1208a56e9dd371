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


def test_inside_a_prefect_task_the_progress_is_an_artifact_of_that_task_run(tmp_path):
    """The Prefect UI's Artifacts tab shows how far a stage is: the progress artifact follows the
    line (throttled to ARTIFACT_EVERY_S) and ends at the final line and 100 %."""
    import os
    import subprocess
    import sys

    code = """
import io, sys
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType
from core import progress
progress.ARTIFACT_EVERY_S = 0.0

@task
def train():
    bar = progress.Progress("sft", 4, stream=io.StringIO())
    for i in range(4):
        bar.update(1, loss=f"loss {2 - i / 4}")
    bar.close("sft: ran 4 steps")

@flow
def stage():
    train()
    from prefect.runtime import flow_run
    return str(flow_run.get_id())

run_id = stage()
with get_client(sync_client=True) as client:
    found = client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])))
    print(len(found), float(found[0].data), found[0].description, str(found[0].flow_run_id) == run_id, found[0].task_run_id is not None)
"""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=progress.__file__.rsplit("/core/", 1)[0], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "1 100.0 sft: ran 4 steps True True"


def test_outside_prefect_there_is_no_artifact():
    assert progress.Progress("sft", 2, stream=io.StringIO()).artifact.id is None


def test_one_large_generation_batch_shows_its_tokens(monkeypatch, capsys):
    """Evaluations generate a whole suite in one batch: the line says which token the batch is
    at, so minutes of decoding are not silent, and the final line drops it."""
    from core import models, training
    from core.config import load_params
    from core.generation import generate
    from tests.conftest import ROOT

    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    p = load_params(ROOT / "params.yaml", "tiny")
    base = models.base_model(p.model, p.pipeline.seed)
    tok, policy = training.load_tokenizer(base), training.load_policy(base, p.model)
    chats = [[{"role": "user", "content": q}] for q in ("What is 2 + 3?", "Name a colour.", "Say hi")]
    replies = generate(policy, tok, chats, 5, 8, label="evaluate: math")
    assert replies == generate(policy, tok, chats, 5, 8, by_length=False)  # same replies, in prompt order
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("evaluate: math")]
    assert any("reply 0/3 (0%) · token 1/5 of this batch" in ln for ln in lines)
    assert any("token 5/5 of this batch" in ln for ln in lines)
    assert lines[-1].startswith("evaluate: math: reply 3/3 (100%) · ") and "of this batch" not in lines[-1]
