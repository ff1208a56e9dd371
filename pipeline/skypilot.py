"""The SkyPilot launch boundary: run one stage as a managed job and return its recorded metadata.

    from pipeline.skypilot import launch_stage
    meta = launch_stage("sft", "llama70b-h100",
                        {"VERSION_KEY": key, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PARENT_RUN_ID": parent},
                        marker=local_mount / "stages/sft" / key[:20] / "COMPLETE.json",
                        secrets={"HF_TOKEN": os.environ["HF_TOKEN"]})

The task is sky/stage.yaml with the profile's resources (params.yaml `profiles:`: nodes, accelerators,
spot, max_restarts_on_errors) and the given envs. The job's outcome is its managed-job STATUS,
polled until terminal, never the exit code of a log tail (a log stream can end early or be cut
while the job goes on). Anything but SUCCEEDED raises RemoteStageFailed(job_id, status). On
success the stage's COMPLETE.json (written last, in the checkpoint bucket) is the result: a job
that succeeded without it raises too, since its directory must not be trusted.

The SDK is touched in three small functions only (_submit, _job_status, _active_job); tests replace
exactly those. `sky` is imported inside them, so importing this module needs no SkyPilot.

The project's .venv holds the SkyPilot *client* only: skypilot 0.14.1's API server needs
uvicorn < 0.36 (it calls Config.setup_event_loop, removed in 0.36) and this venv pins 0.54. Run the
API server from its own environment (cloud credentials and cloud extras live there too) and point
the client at it: `sky api login -e URL` or SKYPILOT_API_SERVER_ENDPOINT; on one machine, `sky api
start` from that environment serves 127.0.0.1:46580, which the client finds by default. Without a
reachable server the SDK tries to start one from this venv and fails with "API server process
exited unexpectedly" (its log: ~/.sky/api_server/server.log).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Mapping

import yaml

TASK_YAML = Path("sky") / "stage.yaml"  # relative to the project root
ACCELERATE_CONFIGS = {"fsdp2": "sky/accelerate/fsdp2.yaml", "zero3": "sky/accelerate/zero3.yaml"}
REMOTE_STAGES = ("sft", "reward_model", "align", "reason", "safety", "evaluate")  # curate stays local (DVC)
# Env vars of sky/stage.yaml the run section passes on to `posttrain stage` (POSTTRAIN_OVERRIDES:
# the iteration's --set values as a JSON list, so the remote config and version key match).
REQUIRED_ENVS = ("VERSION_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_PARENT_RUN_ID")

# sky.jobs.ManagedJobStatus values (tests/test_sky.py checks these sets against SkyPilot's own).
SUCCEEDED = "SUCCEEDED"
TERMINAL = frozenset({"SUCCEEDED", "CANCELLED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS",
                      "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"})
# Transient errors reaching the API server while a job runs: retried, the job is not affected.
STATUS_RETRIES = 5


class RemoteStageFailed(RuntimeError):
    def __init__(self, job_id: int | None, status: str, reason: str = ""):
        detail = f": {reason}" if reason else ""
        super().__init__(f"SkyPilot managed job {job_id}: {status}{detail} "
                         f"(logs: sky jobs logs {job_id}; controller: sky jobs logs --controller {job_id})")
        self.job_id = job_id
        self.status = status
        self.reason = reason


def job_name(stage: str, version_key: str) -> str:
    """One name per stage version: a second launch of the same version attaches instead of duplicating."""
    return f"posttrain-{stage.replace('.', '-')}-{version_key[:12]}"


def build_task(stage: str, profile: str, envs: Mapping[str, str], *, project: str | Path | None = None,
               profiles: str | Path | None = None, secrets: Mapping[str, str] | None = None, cluster=None):
    """sky.Task for `stage` on `profile`: sky/stage.yaml + the profile's resources + `envs`.
    cluster: the resolved `cluster` config (a ClusterConfig, with --set overrides applied); default:
    the profile's entry in params.yaml."""
    import dataclasses

    import sky
    from core.config import load_params
    from core.paths import layout

    if stage.split(".")[0] not in REMOTE_STAGES:  # evaluate.base, evaluate.final: the evaluate stage
        raise ValueError(f"stage '{stage}' cannot run on SkyPilot; remote stages: {', '.join(REMOTE_STAGES)}")
    root = layout(project).project
    if cluster is None:
        cluster = load_params(Path(profiles) if profiles else root / "params.yaml", profile).cluster
    cluster = dataclasses.asdict(cluster)
    config = yaml.safe_load((root / TASK_YAML).read_text())
    unknown = sorted(set(envs) - set(config["envs"]))
    if unknown:
        raise ValueError(f"unknown env(s) {unknown} for {TASK_YAML}; valid: {', '.join(config['envs'])}")
    merged = {**config["envs"],
              "STAGE": stage, "PROFILE": profile,
              "ACCELERATE_CONFIG": ACCELERATE_CONFIGS[cluster["distributed"]],
              "CHECKPOINT_BUCKET": cluster["checkpoint_bucket"], "DATA_BUCKET": cluster["data_bucket"],
              **envs}
    missing = [k for k in REQUIRED_ENVS if not merged.get(k)]
    if missing:
        raise ValueError(f"envs {missing} are required to launch '{stage}' (the run section refuses to start without them)")
    uri = merged["MLFLOW_TRACKING_URI"]
    if uri.startswith(("sqlite:", "file:", "/", ".")):
        raise ValueError(f"MLFLOW_TRACKING_URI={uri!r} is local to this machine; a remote stage needs a tracking "
                         f"server it can reach (http(s)://...)")
    config["name"] = f"posttrain-{stage.replace('.', '-')}"
    config["workdir"] = str(root)  # the checkout, whatever the caller's working directory
    config["num_nodes"] = int(cluster.get("stage_nodes", {}).get(stage, cluster["nodes"]))
    resources = config["resources"]
    resources["accelerators"] = f"{cluster['accelerator']}:{int(cluster['gpus_per_node'])}"
    resources["use_spot"] = bool(cluster["use_spot"])
    resources["job_recovery"] = {**resources.get("job_recovery", {}),
                                 "max_restarts_on_errors": int(cluster["max_restarts_on_errors"])}
    # env_overrides rather than update_envs afterwards: the bucket sources in file_mounts are
    # substituted from envs while the Task is built.
    task = sky.Task.from_yaml_config(config, env_overrides=list(merged.items()))
    if secrets:
        task.update_secrets(dict(secrets))
    return task


def launch_stage(stage: str, profile: str, envs: Mapping[str, str], *,
                 marker: Callable[[], Mapping] | str | os.PathLike,
                 project: str | Path | None = None, profiles: str | Path | None = None,
                 secrets: Mapping[str, str] | None = None, poll_s: float = 30.0, timeout_s: float | None = None,
                 cluster=None,
                 on_status: Callable[[int, str], None] | None = None) -> dict:
    """Launch (or attach to) the managed job of one stage version, wait for a terminal status, and
    return the stage's recorded metadata.

    marker: the stage's COMPLETE.json in the checkpoint bucket, as a path on a local mount of it,
    or a callable that reads it (e.g. through fsspec) and raises FileNotFoundError when absent.
    timeout_s: stop waiting (TimeoutError) but leave the job running; a later call attaches to it.
    """
    task = build_task(stage, profile, envs, project=project, profiles=profiles, secrets=secrets, cluster=cluster)
    name = job_name(stage, envs["VERSION_KEY"])
    job_id = _active_job(name)  # a previous waiter died: attach, never run the same version twice
    if job_id is None:
        job_id = _submit(task, name)
    status, reason = _wait_status(job_id, poll_s=poll_s, timeout_s=timeout_s, on_status=on_status)
    if status != SUCCEEDED:
        raise RemoteStageFailed(job_id, status, reason)
    try:
        return dict(marker()) if callable(marker) else json.loads(Path(marker).read_text())
    except FileNotFoundError as err:
        raise RemoteStageFailed(job_id, status, f"the job succeeded but wrote no COMPLETE.json ({err}); "
                                               f"its output directory is not trusted") from err


def _wait_status(job_id: int, *, poll_s: float, timeout_s: float | None,
                 on_status: Callable[[int, str], None] | None) -> tuple[str, str]:
    """Poll until the job's status is terminal: (status, failure reason). RECOVERING (a preemption
    or a restart after an error) is not terminal: the controller re-provisions and the job goes on."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last, failures = None, 0
    while True:
        try:
            status, reason = _job_status(job_id)
            failures = 0
        except ConnectionError:
            failures += 1  # the API server, not the job: retry a few polls, then surface it
            if failures > STATUS_RETRIES:
                raise
            time.sleep(poll_s)
            continue
        if status != last:
            if on_status:
                on_status(job_id, status)
            last = status
        if status in TERMINAL:
            return status, reason
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"managed job {job_id} still {status} after {timeout_s:.0f} s; it keeps running "
                               f"(cancel: sky jobs cancel {job_id}; a new launch_stage call attaches to it)")
        time.sleep(poll_s)


# --- the SkyPilot SDK boundary (tests replace these three) ----------------------------------------

def _submit(task, name: str) -> int:
    """Submit a managed job; its id. Returns once the controller has accepted it, not when it ends."""
    import sky

    job_ids, _handle = sky.stream_and_get(sky.jobs.launch(task, name=name))
    if not job_ids:
        raise RemoteStageFailed(None, "NOT_SUBMITTED", f"sky.jobs.launch returned no job id for {name}")
    return int(job_ids[0])


def _job_status(job_id: int) -> tuple[str, str]:
    """One poll: (status name, failure reason or '')."""
    import sky

    try:
        records, *_ = sky.get(sky.jobs.queue_v2(refresh=False, job_ids=[job_id],
                                                fields=["job_id", "status", "failure_reason"]))
    except sky.exceptions.ApiServerConnectionError as err:
        raise ConnectionError(str(err)) from err
    except sky.exceptions.ClusterNotUpError as err:  # the controller is down while our job should be on it
        raise RemoteStageFailed(job_id, "UNKNOWN", f"the jobs controller is not up ({err}); "
                                                   f"see `sky jobs queue --refresh`") from err
    if not records:
        raise RemoteStageFailed(job_id, "UNKNOWN", "the job is not in `sky jobs queue`")
    record = records[0]
    return record.status.value, record.failure_reason or ""


def _active_job(name: str) -> int | None:
    """The id of a non-terminal managed job with exactly this name, if one exists."""
    import sky

    try:
        records, *_ = sky.get(sky.jobs.queue_v2(refresh=False, skip_finished=True, name_match=name,
                                                fields=["job_id", "job_name", "status"]))
    except sky.exceptions.ClusterNotUpError:
        return None  # no jobs controller (SkyPilot: "No in-progress managed jobs.") = nothing to attach to
    ids = [r.job_id for r in records if r.job_name == name]  # name_match is a substring match
    return max(ids) if ids else None
