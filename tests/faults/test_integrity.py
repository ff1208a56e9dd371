"""Integrity of what the pipeline trusts: a completed stage output damaged afterwards is never reused.

Run: .venv/bin/python -m pytest -q tests/faults/test_integrity.py
COMPLETE.json records the size and sha256 of every file of its directory (core.stage_dir.mark_complete);
verify() compares them before every reuse. The unit tests damage a marked directory in each way
(truncation, a bit flip of the same size, a missing file, a marker that is not JSON, `{}`, `[]`,
a marker from before digests); the end-to-end test damages three stages of a finished tiny
iteration and runs it again: each is named, moved aside and rebuilt, everything else is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from core.stage_dir import MARKER, MarkerError, digests, is_complete, mark_complete, read_marker, verify
from pipeline import runner
from pipeline.runner import Record

KEY = "ab" * 32  # a version key; the stage dir is named after its first 20 characters


def _stage_dir(root: Path, key: str = KEY) -> Path:
    """A completed stage dir as runner._run_body leaves it: model files, records, the marker last."""
    out = root / "stages" / "sft" / key[:20]
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (out / "model" / "config.json").write_text('{"hidden_size": 64}')
    (out / "log_history.json").write_text("[]")
    (out / "writer.lock").write_text("")  # a lock file: not vouched for
    record = Record(stage="sft", key=key, out=str(out), run_id="r1", metrics={"train_loss": 1.0})
    mark_complete(out, asdict(record))
    return out


def _flip(file: Path, offset: int) -> None:
    with open(file, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def test_marker_records_size_and_sha256_of_every_file(tmp_path):
    out = _stage_dir(tmp_path)
    meta = json.loads((out / MARKER).read_text())
    assert set(meta["files"]) == {"model/model.safetensors", "model/config.json", "log_history.json"}
    weights = (out / "model" / "model.safetensors").read_bytes()
    assert meta["files"]["model/model.safetensors"] == {"size": len(weights),
                                                        "sha256": hashlib.sha256(weights).hexdigest()}
    assert meta["stage"] == "sft" and meta["run_id"] == "r1"  # the record's fields as before: readable by old code
    assert Record.from_marker(out).cached and Record.from_marker(out).run_id == "r1"
    assert verify(out, Record.required()) == []
    assert runner.damage(out) == []
    assert digests(out) == meta["files"]


def test_truncated_file_is_found_by_its_size(tmp_path):
    out = _stage_dir(tmp_path)
    weights = out / "model" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    (problem,) = verify(out)
    assert problem == f"model/model.safetensors: size {size // 2} bytes, expected {size}"


def test_bit_flip_of_the_same_size_is_found_by_its_sha256(tmp_path):
    out = _stage_dir(tmp_path)
    expected = json.loads((out / MARKER).read_text())["files"]["model/model.safetensors"]["sha256"]
    _flip(out / "model" / "model.safetensors", 5000)
    (problem,) = verify(out)
    assert problem.startswith("model/model.safetensors: sha256 ")
    assert f"expected {expected[:12]}" in problem and "same size" in problem


def test_missing_file(tmp_path):
    out = _stage_dir(tmp_path)
    (out / "model" / "config.json").unlink()
    assert verify(out) == ["model/config.json: missing (expected 19 bytes)"]


@pytest.mark.parametrize("text, message", [
    ("not json", "COMPLETE.json: not JSON"),
    ("[1, 2]", "COMPLETE.json: not a JSON object (a list)"),
    ("{}", "COMPLETE.json: no 'stage', 'key', 'out', 'run_id', 'metrics'"),
], ids=["not-json", "a-list", "empty-object"])
def test_damaged_marker_is_a_problem_and_a_clear_error(tmp_path, text, message):
    out = _stage_dir(tmp_path)
    (out / MARKER).write_text(text)
    (problem,) = verify(out, Record.required())
    assert problem.startswith(message), problem
    assert runner.damage(out) == [problem]
    with pytest.raises(MarkerError, match=re.escape(str(out / MARKER))):
        Record.from_marker(out)  # a ValueError naming the file, not JSONDecodeError / TypeError
    assert isinstance(MarkerError("x"), ValueError)


def test_empty_marker_without_required_fields_has_no_digests(tmp_path):
    out = _stage_dir(tmp_path)
    (out / MARKER).write_text("{}")
    assert read_marker(out) == {}
    assert verify(out) == ["COMPLETE.json: records no file digests (written by older code), so its files cannot "
                           "be verified"]


def test_legacy_marker_without_files_is_not_trusted(tmp_path):
    out = _stage_dir(tmp_path)
    meta = json.loads((out / MARKER).read_text())
    del meta["files"]
    (out / MARKER).write_text(json.dumps(meta))
    assert Record.from_marker(out).run_id == "r1"  # still readable
    (problem,) = runner.damage(out)
    assert "no file digests" in problem and "older code" in problem


def test_marker_of_another_version_is_a_problem(tmp_path):
    out = _stage_dir(tmp_path, key="cd" * 32)
    shutil.move(out, out.with_name(KEY[:20]))  # copied under another version's name
    (problem,) = runner.damage(out.with_name(KEY[:20]))
    assert problem == f"COMPLETE.json: version key {'cd' * 10}, expected {KEY[:20]}"


def test_damaged_dir_is_moved_aside_with_one_warning(tmp_path, caplog):
    out = _stage_dir(tmp_path)
    size = (out / "model" / "model.safetensors").stat().st_size
    (out / "model" / "model.safetensors").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="pipeline.runner"):
        assert not runner._intact(out, "sft.x", KEY)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"stage 'sft.x' version {KEY[:20]}: damaged output, model/model.safetensors: size 0 "
                           f"bytes, expected {size}; moved aside to ")
    assert not out.exists()
    (aside,) = out.parent.glob(f"{KEY[:20]}.damaged-*")
    assert str(aside) in line and (aside / "log_history.json").is_file()  # nothing lost
    assert re.fullmatch(r"[0-9a-f]{20}\.damaged-\d{8}T\d{6}\.\d{6}Z", aside.name)


def test_intact_dir_is_reusable_and_untouched(tmp_path, caplog):
    out = _stage_dir(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert runner._intact(out, "sft", KEY)
    assert caplog.records == [] and is_complete(out)


def test_a_worker_process_rebuilds_a_damaged_dir_as_rank_0_does(tmp_path):
    """_execute_worker (non-main ranks) must take rank 0's decision: damaged -> run the body, not reuse."""
    out = _stage_dir(tmp_path)
    assert runner._execute_worker("sft", KEY, out, lambda o: {"ran": 1.0}, "").cached  # intact: reused
    _flip(out / "model" / "model.safetensors", 10)
    record = runner._execute_worker("sft", KEY, out, lambda o: {"ran": 1.0}, "")
    assert not record.cached and record.metrics == {"ran": 1.0}


def test_a_reruns_damaged_recorded_input_fails_naming_stage_file_and_fix(tmp_path, monkeypatch):
    from core import tracking
    from pipeline import iterations, stages

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("{}\n")
    monkeypatch.setenv("POSTTRAIN_RUNS", str(tmp_path / "runs"))
    sft = _stage_dir(tmp_path / "runs")
    curate = sft.parents[1] / "curate" / ("ef" * 10)
    curate.mkdir(parents=True)
    mark_complete(curate, {"stage": "curate", "key": "ef" * 32, "out": str(curate), "run_id": "r0", "metrics": {}})
    tags = {"stage.curate.version_key": "ef" * 32, "stage.sft.version_key": KEY, "kind": "iteration"}
    old = "0" * 32  # the recorded iteration's parent run id

    class Client:
        def get_run(self, run_id):
            return type("Run", (), {"data": type("Data", (), {"tags": tags})})

    monkeypatch.setattr("mlflow.MlflowClient", Client)
    monkeypatch.setattr(tracking, "configure", lambda runs: None)
    monkeypatch.setattr(stages, "base_model", lambda it: Record("base", "b", "b", "", {}))
    it = runner.Iteration(str(project), "tiny", (), "parent", "", "sha", None)
    assert set(iterations.recorded(it, old, "reward_model", False, link=False)) == {"curate", "base", "sft"}

    _flip(sft / "model" / "model.safetensors", 10)
    with pytest.raises(runner.StageFailed) as err:
        iterations.recorded(it, old, "reward_model", False, link=False)
    assert err.value.stage == "sft"
    assert "model/model.safetensors: sha256" in err.value.reason
    assert err.value.reason.endswith(f"rebuild it: posttrain rerun sft --iteration {old}")
    assert "\n" not in str(err.value)
    assert is_complete(sft)  # read only: the rerun of sft moves it aside


def test_verify_command_reports_each_damaged_dir_and_exits_1(tmp_path, monkeypatch, capsys):
    from posttrain import verify as verify_cmd

    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.setenv("POSTTRAIN_RUNS", str(tmp_path / "runs"))
    out = _stage_dir(tmp_path / "runs")
    (out.parent / "0123456789abcdef0123").mkdir()  # unfinished: not checked
    assert verify_cmd.main(str(tmp_path)) == 0
    assert capsys.readouterr().out.endswith(": 0 damaged; 1 unfinished dir(s) not checked\n")

    _flip(out / "model" / "config.json", 0)
    (out / "log_history.json").unlink()
    assert verify_cmd.main(str(tmp_path)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"DAMAGED sft stages/sft/{KEY[:20]}: log_history.json: missing (expected 2 bytes) (and 1 more)"
    assert ": 1 damaged" in lines[1]

    out.rename(out.with_name(out.name + ".damaged-20250101T000000.000000Z"))  # moved aside: not checked again
    assert verify_cmd.main(str(tmp_path)) == 0


# ---------------------------------------------------------------- end to end (tiny profile)


def _table_status(stdout: str) -> dict[str, str]:
    """{stage: status} from the run table rich prints (first line of each row)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3 and cells[2] in ("ran", "reused"):
            rows[cells[1]] = cells[2]
    return rows


@pytest.mark.e2e
def test_damaged_stages_are_named_moved_aside_and_rebuilt(tmp_path, curated_ws, monkeypatch):
    from conftest import children, iteration_id, make_workspace, mlflow_client, posttrain

    from posttrain import verify as verify_cmd

    ws = make_workspace(tmp_path / "ws", data_from=curated_ws[0])
    first = posttrain(ws, "run", "--profile", "tiny")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    client = mlflow_client(ws)
    tags = client.get_run(iteration_id(first.stdout)).data.tags
    keys = {s: tags[f"stage.{s}.version_key"] for s in ("sft", "safety", "reward_model")}
    dirs = {s: ws / "runs" / "stages" / s / k[:20] for s, k in keys.items()}

    weights = dirs["sft"] / "model" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size - 1000)
    _flip(dirs["safety"] / "model" / "model.safetensors", (dirs["safety"] / "model" / "model.safetensors").stat().st_size // 2)
    (dirs["reward_model"] / MARKER).write_text("not json")

    monkeypatch.setenv("POSTTRAIN_RUNS", str(ws / "runs"))
    assert verify_cmd.main(str(ws)) == 1  # the command reports what the next run will rebuild

    second = posttrain(ws, "run", "--profile", "tiny")
    output = second.stdout + second.stderr
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    expected = {"sft": f"model/model.safetensors: size {size - 1000} bytes, expected {size}",
                "safety": "model/model.safetensors: sha256 ",
                "reward_model": "COMPLETE.json: not JSON"}
    for stage, problem in expected.items():
        lines = [ln for ln in output.splitlines() if f"stage '{stage}' version {keys[stage][:20]}: damaged" in ln]
        assert len(lines) == 1 and problem in lines[0], (stage, lines, output[-4000:])
        (aside,) = dirs[stage].parent.glob(f"{dirs[stage].name}.damaged-*")
        assert (aside / "model").is_dir()  # moved aside whole, nothing deleted
        assert verify(dirs[stage], Record.required()) == []  # rebuilt under the same version key

    it = iteration_id(second.stdout)
    ran = {"sft", "reward_model", "safety"}
    assert {c.data.tags["stage"] for c in children(client, it)} == ran  # a new child run for each, no other
    status = _table_status(second.stdout)
    assert {s for s, v in status.items() if v == "ran"} == ran, status
    assert len(status) == 12 and set(status.values()) == {"ran", "reused"}  # downstream of them: reused
    assert verify_cmd.main(str(ws)) == 0
    assert verify_cmd.main(str(ws), it) == 0
    assert verify_cmd.main(str(ws), "0" * 32) == 2  # no such iteration
