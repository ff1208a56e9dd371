"""The operator's terminal: every id the tools show is accepted, bad ids are one line with exit 2,
a failure ends with the iteration id and the command that goes on from it, `posttrain runs`
lists what happened."""

from __future__ import annotations

import json
import re

import pytest
from conftest import iteration_id, mlflow_client, posttrain


def _one_line_exit_2(proc, *words):
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize("args, words", [
    (("rerun", "sft", "--iteration", "deadbeef"), ("deadbeef", "posttrain runs")),
    (("report", "deadbeef"), ("deadbeef", "posttrain runs")),
    (("verify", "--iteration", "deadbeef"), ("deadbeef", "posttrain runs")),
    (("lineage", "posttrain@nope"), ("alias 'nope'", "champion")),
    (("lineage", "nope@champion"), ("no registered model 'nope'", "posttrain")),
    (("lineage", "posttrain/999"), ("no version '999'",)),
])
def test_bad_ids_are_one_line_and_exit_2(tiny_ws, args, words):
    ws, _, _ = tiny_ws
    _one_line_exit_2(posttrain(ws, *args), *words)


def test_a_stage_run_id_is_not_an_iteration_and_the_error_names_its_iteration(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    sft_run = client.get_run(it).data.tags["stage.sft.run_id"]
    proc = posttrain(ws, "report", sft_run)
    _one_line_exit_2(proc, sft_run, "stage 'sft'", client.get_run(sft_run).data.tags["mlflow.parentRunId"])


def test_runs_lists_iterations_newest_first_with_the_ids_commands_accept(tiny_ws):
    ws, _, it = tiny_ws
    proc = posttrain(ws, "runs", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    mine = next(r for r in rows if r["iteration"] == it)
    assert mine["profile"] == "tiny" and mine["status"] == "FINISHED" and mine["flow run"]
    assert [r["started (UTC)"] for r in rows] == sorted((r["started (UTC)"] for r in rows), reverse=True)
    assert sum(r["champion"] == "yes" for r in rows) == 1
    table = posttrain(ws, "runs")
    assert table.returncode == 0 and it in table.stdout and mine["flow run"] in table.stdout


def test_failure_names_the_iteration_and_the_rerun_that_completes_it(tiny_ws, tmp_path):
    """A stage failing on a bad setting: the last lines give the iteration id and the rerun command;
    that command with the setting fixed completes, named by the Prefect flow-run name."""
    ws, _, _ = tiny_ws
    failed = posttrain(ws, "run", "--profile", "tiny", "--set", "reason.per_device_batch_size=6")
    assert failed.returncode == 1
    tail = "\n".join((failed.stdout + failed.stderr).strip().splitlines()[-10:])
    command = re.search(r"posttrain rerun reason --iteration ([0-9a-f]{32}) --downstream", tail)
    assert command and "FAILED at stage 'reason'" in tail and "divisible by num_generations" in tail, tail
    iteration = command.group(1)
    assert f"iteration {iteration}" in tail
    row = next(r for r in json.loads(posttrain(ws, "runs", "--json").stdout) if r["iteration"] == iteration)
    assert row["status"] == "FAILED" and row["failed at"] == "reason" and "num_generations" in row["failure"]
    written = (ws / "runs" / "reports" / iteration / "report.md").read_text()  # by the failing flow itself
    assert "- status: FAILED, stopped at reason" in written and "- reason: FAILED here" in written
    report = posttrain(ws, "report", iteration, "--out", str(tmp_path / "failed"))  # what exists, and why not the rest
    assert report.returncode == 0, report.stderr[-2000:]
    card = (tmp_path / "failed" / "report.md").read_text()
    assert "- reason: FAILED here: ValueError" in card and "divisible by num_generations" in card
    assert "- evaluate.final: not reached: the iteration stopped at reason" in card and "gates: sft passed" in card
    assert (tmp_path / "failed" / "training_loss.png").is_file() and "grpo_reward_length.png: no reason" in card

    fixed = posttrain(ws, "rerun", "reason", "--iteration", row["flow run"], "--downstream",
                      "--set", "reason.per_device_batch_size=4")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    rerun = iteration_id(fixed.stdout)
    assert mlflow_client(ws).get_run(rerun).data.tags["rerun_of"] == iteration


def test_rerun_of_a_single_stage_rerun_resolves_upstream_through_what_it_reran(tiny_ws):
    ws, _, it = tiny_ws
    client = mlflow_client(ws)
    single = posttrain(ws, "rerun", "reason", "--iteration", client.get_run(it).data.tags["prefect_flow_run_id"])
    assert single.returncode == 0, single.stderr[-3000:]
    rerun = iteration_id(single.stdout)
    assert "stage.evaluate.base.version_key" not in client.get_run(rerun).data.tags  # it did not need evaluate.base
    downstream = posttrain(ws, "rerun", "safety", "--iteration", rerun, "--downstream")
    assert downstream.returncode == 0, downstream.stderr[-3000:]
