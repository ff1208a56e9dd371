"""sky/: the SkyPilot task loads with SkyPilot's own parser and carries each GPU profile's
resources and envs; the accelerate configs load with accelerate's own classes; the launch boundary
(pipeline/skypilot.py) turns managed-job statuses into results or RemoteStageFailed.

Nothing here reaches a cloud or an API server: the three SDK functions of pipeline.skypilot are
replaced by fakes, and one test feeds SkyPilot's real record types through them. Tests that need
the `skypilot` package skip without it: scripts/install.sh does not install it yet (it must go in
with --no-deps, see pipeline/skypilot.py), so a fresh CI machine runs only the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pipeline import skypilot as launch
from tests.conftest import ROOT

os.environ.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")  # no telemetry calls from tests

SKY = ROOT / "sky"
TASK_YAMLS = sorted(SKY.glob("*.yaml"))
ACCELERATE = {"fsdp2": SKY / "accelerate" / "fsdp2.yaml", "zero3": SKY / "accelerate" / "zero3.yaml"}
REQUIRED_ENVS = ("STAGE", "VERSION_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_PARENT_RUN_ID", "PROFILE")
# profile -> (nodes per stage, use_spot); from params.yaml profiles, restated so a silent edit shows
EXPECTED = {
    "llama8b-h100": ({s: 1 for s in launch.REMOTE_STAGES}, True),
    "llama70b-h100": ({**{s: 8 for s in launch.REMOTE_STAGES}, "reward_model": 4, "evaluate": 1}, False),
}
ENVS = {"VERSION_KEY": "ab" * 32, "MLFLOW_TRACKING_URI": "https://mlflow.example.test",
        "MLFLOW_PARENT_RUN_ID": "0123456789abcdef"}


@pytest.fixture(scope="module")
def sky():
    return pytest.importorskip("sky", reason="skypilot is not installed in this environment")


# --- task YAMLs -----------------------------------------------------------------------------------

def test_there_is_one_task_yaml_for_all_stages():
    assert [p.name for p in TASK_YAMLS] == ["stage.yaml"]


@pytest.mark.parametrize("path", TASK_YAMLS, ids=lambda p: p.name)
def test_task_yaml_loads_with_skypilot(sky, path, monkeypatch):
    monkeypatch.chdir(ROOT)
    task = sky.Task.from_yaml(str(path))
    assert set(REQUIRED_ENVS) <= set(task.envs)
    (res,) = task.resources
    assert res.accelerators == {"H100": 8}
    assert set(task.storage_mounts) == {"/checkpoints", "/data"}
    assert task.storage_mounts["/checkpoints"].mode.value == "MOUNT"  # marker-last needs upload on close
    assert "bash scripts/install.sh" in task.setup
    for var in ("SKYPILOT_NODE_RANK", "SKYPILOT_NODE_IPS", "SKYPILOT_NUM_NODES", "SKYPILOT_NUM_GPUS_PER_NODE"):
        assert var in task.run
    assert 'posttrain stage "$STAGE" --profile "$PROFILE"' in task.run and "accelerate launch" in task.run


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_each_stage_task_carries_the_profile_resources_and_envs(sky, profile):
    nodes, spot = EXPECTED[profile]
    spec = yaml.safe_load((ROOT / "params.yaml").read_text())["profiles"][profile]
    for stage in launch.REMOTE_STAGES:
        task = launch.build_task(stage, profile, ENVS, project=ROOT)
        assert task.num_nodes == nodes[stage], stage
        (res,) = task.resources
        assert res.accelerators == {"H100": 8}
        assert res.use_spot is spot
        assert res.job_recovery["max_restarts_on_errors"] == spec["cluster"]["max_restarts_on_errors"]
        assert {k: task.envs[k] for k in REQUIRED_ENVS} == {"STAGE": stage, "PROFILE": profile, **ENVS}
        assert task.envs["ACCELERATE_CONFIG"] == "sky/accelerate/fsdp2.yaml"
        assert task.storage_mounts["/checkpoints"].source == spec["cluster"]["checkpoint_bucket"]
        assert Path(task.workdir) == ROOT


def test_build_task_refuses_what_would_fail_remotely(sky):
    with pytest.raises(ValueError, match="MLFLOW_PARENT_RUN_ID"):
        launch.build_task("sft", "llama8b-h100", {**ENVS, "MLFLOW_PARENT_RUN_ID": ""}, project=ROOT)
    with pytest.raises(ValueError, match="local to this machine"):
        launch.build_task("sft", "llama8b-h100", {**ENVS, "MLFLOW_TRACKING_URI": "sqlite:///runs/mlflow.db"},
                          project=ROOT)
    with pytest.raises(ValueError, match="unknown env"):
        launch.build_task("sft", "llama8b-h100", {**ENVS, "VERSIONKEY": "x"}, project=ROOT)
    with pytest.raises(ValueError, match="curate"):
        launch.build_task("curate", "llama8b-h100", ENVS, project=ROOT)


def test_terminal_statuses_match_skypilot(sky):
    from sky.jobs import ManagedJobStatus

    assert {s.value for s in ManagedJobStatus.terminal_statuses()} == launch.TERMINAL
    assert ManagedJobStatus(launch.SUCCEEDED) not in ManagedJobStatus.failure_statuses()
    assert not ManagedJobStatus("RECOVERING").is_terminal()


# --- accelerate configs -----------------------------------------------------------------------------

def _launch_args(config: Path, *extra: str):
    """Parse and resolve an `accelerate launch` command line exactly as accelerate does."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(config), *extra, "--module", "posttrain",
                                               "stage", "sft", "--profile", "llama70b-h100"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what accelerate's launch_command adds before its DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mp_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    return args


@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_accelerate_configs_load_with_accelerates_classes(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    cfg = ClusterConfig.from_yaml_file(str(ACCELERATE[name]))  # unknown top-level keys raise here
    assert cfg.mixed_precision == "bf16"
    assert cfg.distributed_type == (DistributedType.FSDP if name == "fsdp2" else DistributedType.DEEPSPEED)


def test_fsdp2_config_builds_a_full_shard_plugin_with_activation_checkpointing(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    # The flags sky/stage.yaml passes on node 3 of 8 win over the file's single-node placeholders.
    args = _launch_args(ACCELERATE["fsdp2"], "--num_machines", "8", "--num_processes", "64",
                        "--machine_rank", "3", "--main_process_ip", "10.0.0.1", "--main_process_port", "29500")
    assert (args.num_machines, args.num_processes, args.machine_rank) == (8, 64, 3)
    # `--module posttrain stage sft --profile P`: every process runs `python -m posttrain stage ...`
    assert args.module and args.training_script == "posttrain"
    assert args.training_script_args == ["stage", "sft", "--profile", "llama70b-h100"]
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* environment, as in each training process
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # FSDP2's full shard
    assert plugin.activation_checkpointing is True
    assert plugin.cpu_ram_efficient_loading is True
    assert str(plugin.auto_wrap_policy) and plugin.transformer_cls_names_to_wrap is None  # model's _no_split_modules


def test_zero3_config_resolves_to_stage_3_bf16():
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = _launch_args(ACCELERATE["zero3"], "--num_machines", "8", "--num_processes", "64",
                        "--machine_rank", "0", "--main_process_ip", "10.0.0.1")
    cmd, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    # `standard` launcher: no `deepspeed --hostfile` command (pdsh/ssh fan-out from the head); accelerate
    # runs torch.distributed on every node, which is what SkyPilot's per-node `run` provides.
    assert cmd is None
    # Left to the HF Trainer ("auto"): a number here that differs from its arguments raises a mismatch.
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env and "ACCELERATE_GRADIENT_CLIPPING" not in env


# --- the launch boundary ----------------------------------------------------------------------------

class FakeSDK:
    """Stands in for exactly the three SDK functions of pipeline.skypilot."""

    def __init__(self, statuses, *, active=None, job_id=42, failures=0):
        self.statuses = list(statuses)
        self.active = active
        self.job_id = job_id
        self.failures = failures
        self.submitted = []

    def submit(self, task, name):
        self.submitted.append((task, name))
        return self.job_id

    def job_status(self, job_id):
        assert job_id == (self.active or self.job_id)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("API server unreachable")
        status = self.statuses.pop(0)
        return status, ("user code exited 1" if status.startswith("FAILED") else "")

    def active_job(self, name):
        return self.active


@pytest.fixture
def fake(monkeypatch, sky):
    def install(statuses, **kw):
        sdk = FakeSDK(statuses, **kw)
        monkeypatch.setattr(launch, "_submit", sdk.submit)
        monkeypatch.setattr(launch, "_job_status", sdk.job_status)
        monkeypatch.setattr(launch, "_active_job", sdk.active_job)
        monkeypatch.setattr(launch.time, "sleep", lambda s: None)
        return sdk

    return install


@pytest.fixture
def marker(tmp_path):
    meta = {"stage": "sft", "key": ENVS["VERSION_KEY"], "run_id": "r1", "metrics": {"train_loss": 1.25}}
    path = tmp_path / "stages" / "sft" / ENVS["VERSION_KEY"][:20] / "COMPLETE.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(meta))
    return path, meta


def _launch(marker_path, **kw):
    seen = []
    meta = launch.launch_stage("sft", "llama70b-h100", ENVS, marker=marker_path, project=ROOT, poll_s=0,
                               on_status=lambda job, status: seen.append(status), **kw)
    return meta, seen


def test_succeeded_job_returns_the_stage_metadata(fake, marker):
    sdk = fake(["PENDING", "STARTING", "RUNNING", "SUCCEEDED"])
    meta, seen = _launch(marker[0])
    assert meta == marker[1]
    assert seen == ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
    (task, name), = sdk.submitted
    assert name == launch.job_name("sft", ENVS["VERSION_KEY"]) and task.num_nodes == 8


@pytest.mark.parametrize("final", ["FAILED", "CANCELLED", "FAILED_SETUP", "FAILED_NO_RESOURCE"])
def test_failed_or_cancelled_job_raises_naming_job_and_status(fake, marker, final):
    fake(["PENDING", "RUNNING", final])
    with pytest.raises(launch.RemoteStageFailed) as err:
        _launch(marker[0])  # the marker exists: the status alone decides
    assert (err.value.job_id, err.value.status) == (42, final)
    assert "job 42" in str(err.value) and final in str(err.value)


def test_preempted_then_recovered_job_succeeds(fake, marker):
    fake(["RUNNING", "RECOVERING", "RECOVERING", "RUNNING", "SUCCEEDED"])
    meta, seen = _launch(marker[0])
    assert meta == marker[1]
    assert seen == ["RUNNING", "RECOVERING", "RUNNING", "SUCCEEDED"]


def test_success_without_marker_is_a_failure(fake, tmp_path):
    fake(["SUCCEEDED"])
    with pytest.raises(launch.RemoteStageFailed, match="no COMPLETE.json"):
        _launch(tmp_path / "missing" / "COMPLETE.json")


def test_marker_can_be_read_by_a_callable(fake, marker):
    fake(["SUCCEEDED"])
    meta, _ = _launch(lambda: {"from": "bucket"})
    assert meta == {"from": "bucket"}


def test_a_running_job_of_the_same_version_is_attached_not_duplicated(fake, marker):
    sdk = fake(["RUNNING", "SUCCEEDED"], active=7)
    meta, _ = _launch(marker[0])
    assert meta == marker[1] and sdk.submitted == []


def test_api_server_blips_are_retried_then_surface(fake, marker):
    fake(["SUCCEEDED"], failures=2)
    assert _launch(marker[0])[0] == marker[1]
    fake(["SUCCEEDED"], failures=launch.STATUS_RETRIES + 1)
    with pytest.raises(ConnectionError):
        _launch(marker[0])


def test_waiting_past_the_timeout_leaves_the_job_running(fake, marker):
    fake(["RUNNING"] * 5)
    with pytest.raises(TimeoutError, match="sky jobs cancel 42"):
        _launch(marker[0], timeout_s=0)


def test_sdk_status_poll_reads_skypilots_record_types(sky, monkeypatch):
    """The real _job_status against SkyPilot's own response model and status enum."""
    from sky.jobs import ManagedJobStatus
    from sky.schemas.api.responses import ManagedJobRecord

    record = ManagedJobRecord(job_id=9, status=ManagedJobStatus.FAILED_SETUP, failure_reason="pip failed")
    calls = []
    monkeypatch.setattr(sky.jobs, "queue_v2", lambda **kw: calls.append(kw) or "request-1")
    monkeypatch.setattr(sky, "get", lambda request_id: ([record], 1, {}, 1))
    assert launch._job_status(9) == ("FAILED_SETUP", "pip failed")
    assert calls[0]["job_ids"] == [9] and calls[0]["refresh"] is False


# --- the runner's `backend: skypilot` path (the Prefect task calls runner.execute) -----------------

def test_task_scripts_are_valid_bash():
    spec = yaml.safe_load((SKY / "stage.yaml").read_text())
    for part in ("setup", "run"):
        check = __import__("subprocess").run(["bash", "-n"], input=spec[part], text=True, capture_output=True)
        assert check.returncode == 0, f"{part}: {check.stderr}"


class RemoteJob(FakeSDK):
    """The fake SDK whose job, when it succeeds, does what the remote `posttrain stage` does to the
    bucket: write the stage's COMPLETE.json (from the task's envs) under the checkpoint bucket."""

    def __init__(self, statuses, bucket, **kw):
        super().__init__(statuses, **kw)
        self.bucket = bucket

    def job_status(self, job_id):
        status, reason = super().job_status(job_id)
        if status == "SUCCEEDED":
            task, _ = self.submitted[-1]
            stage, key = task.envs["STAGE"], task.envs["VERSION_KEY"]
            out = self.bucket / "stages" / stage / key[:20]
            out.mkdir(parents=True, exist_ok=True)
            (out / "COMPLETE.json").write_text(json.dumps({
                "stage": stage, "key": key, "out": f"/checkpoints/stages/{stage}/{key[:20]}", "run_id": "remote-run",
                "metrics": {"train_loss": 0.5, "world_size": 64.0}, "model": f"/checkpoints/stages/{stage}/{key[:20]}/model",
                "model_version": "7"}))
        return status, reason


@pytest.fixture
def remote(monkeypatch, sky, tmp_path):
    """An iteration on the 70B profile whose parent run lives in a real local MLflow store; the
    cluster reaches the tracking server under another URL (cluster.tracking_uri)."""
    from core import tracking
    from core.config import load_params
    from pipeline.runner import Iteration

    runs = tmp_path / "runs"
    bucket = tmp_path / "bucket"
    monkeypatch.setenv("POSTTRAIN_RUNS", str(runs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure(runs)
    parent = tracking.start_parent(runs, "iteration-llama70b-h100", {"kind": "iteration"}, {})
    overrides = (f"cluster.checkpoint_bucket={bucket}", "cluster.tracking_uri=https://mlflow.example.test")
    it = Iteration(str(ROOT), "llama70b-h100", overrides, parent, "", "sha",
                   load_params(ROOT / "params.yaml", "llama70b-h100", overrides))

    def install(statuses, **kw):
        sdk = RemoteJob(statuses, bucket, **kw)
        monkeypatch.setattr(launch, "_submit", sdk.submit)
        monkeypatch.setattr(launch, "_job_status", sdk.job_status)
        monkeypatch.setattr(launch, "_active_job", sdk.active_job)
        monkeypatch.setattr(launch.time, "sleep", lambda s: None)
        return sdk

    return it, install


def _execute_remote_sft(it):
    from pipeline.runner import execute

    def body(out):
        raise AssertionError("a skypilot stage must not run its body on this machine")

    return execute(it, "sft", config={"lr": 1e-6}, inputs={"model": "base"}, code="c", body=body,
                   model_name="posttrain", backend="skypilot")


@pytest.mark.parametrize("statuses", [["PENDING", "RUNNING", "SUCCEEDED"],
                                      ["RUNNING", "RECOVERING", "RUNNING", "SUCCEEDED"]], ids=["plain", "preempted"])
def test_runner_remote_success_records_the_jobs_output(remote, statuses):
    from mlflow import MlflowClient

    it, install = remote
    sdk = install(statuses)
    record = _execute_remote_sft(it)
    (task, name), = sdk.submitted
    assert task.envs["MLFLOW_PARENT_RUN_ID"] == it.parent_run_id
    assert task.envs["MLFLOW_TRACKING_URI"] == "https://mlflow.example.test"
    assert json.loads(task.envs["POSTTRAIN_OVERRIDES"]) == list(it.overrides)
    assert task.num_nodes == 8 and name == launch.job_name("sft", record.key)
    assert record.run_id == "remote-run" and record.model_version == "7" and record.metrics["world_size"] == 64.0
    tags = MlflowClient().get_run(it.parent_run_id).data.tags
    assert tags["stage.sft.run_id"] == "remote-run" and tags["stage.sft.version_key"] == record.key
    # The remote stage logged and registered itself; nothing was created locally.
    assert MlflowClient().search_model_versions("name = 'posttrain'") == []


@pytest.mark.parametrize("final", ["FAILED", "CANCELLED", "FAILED_SETUP"])
def test_runner_remote_failure_fails_the_stage_naming_job_and_status(remote, final):
    from mlflow import MlflowClient

    from pipeline.runner import StageFailed

    it, install = remote
    install(["RUNNING", final], job_id=314)
    with pytest.raises(StageFailed) as err:
        _execute_remote_sft(it)
    assert err.value.stage == "sft"
    assert "managed job 314" in str(err.value) and final in str(err.value)
    assert "stage.sft.run_id" not in MlflowClient().get_run(it.parent_run_id).data.tags
