"""lm-evaluation-harness tasks on the evaluated checkpoint (the field's standard benchmarks).

GPU profiles name hub tasks (gsm8k, ifeval, mmlu, humaneval); here and in tests the local-file
tasks of evaluations/lm_eval_tasks/ run on the tiny model, offline. The policy already loaded by
the evaluate stage is wrapped (lm_eval's HFLM accepts a model object), so no second load and no
lookup of a model id on the hub. Scores become metrics `lm_eval.<task>.<metric>` (`_<filter>`
appended unless the filter is lm-eval's default "none"); the results JSON is kept as an artifact.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

VERSION = "lm-eval-0.4-v1"
RESULT_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
               "n-samples", "lm_eval_version", "transformers_version", "date")


def _resolve_local_files(cfg: dict, yaml_path: Path) -> dict:
    """`data_files` relative to the task's YAML, not to the process's cwd: the stage then finds the
    file whether it runs from the project, a Prefect worker or a SkyPilot job directory."""
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    files = kwargs.get("data_files")
    if files is None:
        return cfg

    def where(f: str) -> str:
        path = Path(f) if Path(f).is_absolute() else yaml_path.parent / f
        if not path.is_file():
            raise FileNotFoundError(f"{yaml_path}: dataset_kwargs.data_files names {f}, which is not a file "
                                    f"(looked at {path}); data_files paths are relative to the YAML")
        return str(path)

    if isinstance(files, str):
        kwargs["data_files"] = where(files)
    elif isinstance(files, list):
        kwargs["data_files"] = [where(f) for f in files]
    else:
        kwargs["data_files"] = {split: where(f) if isinstance(f, str) else [where(x) for x in f] for split, f in files.items()}
    return {**cfg, "dataset_kwargs": kwargs}


def task_specs(names: list[str], include_path: Path | None):
    """(task manager, specs): a local task (a YAML under include_path) as its config dict with
    resolved data files; any other name as the name, for lm-eval's own registry (hub tasks)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    if include_path is not None and not Path(include_path).is_dir():
        raise FileNotFoundError(f"evaluate.lm_eval_include_path: {include_path} is not a directory of task YAMLs")
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    specs = []
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None:
            raise ValueError(f"evaluate.lm_eval_tasks: unknown lm-eval task or group '{name}' (not in lm-eval "
                             f"{_version()} nor in {include_path}); `lm-eval ls tasks` lists them")
        local = include_path is not None and entry.yaml_path is not None and \
            Path(include_path).resolve() in Path(entry.yaml_path).resolve().parents
        if local and entry.kind.name == "TASK":
            specs.append(_resolve_local_files(load_yaml(entry.yaml_path), Path(entry.yaml_path)))
        else:
            specs.append(name)
    return manager, specs


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def metric_name(task: str, key: str) -> str:
    """lm-eval's "exact_match,last_number" -> "lm_eval.<task>.exact_match_last_number" (MLflow
    metric names allow no commas)."""
    metric, _, filt = key.partition(",")
    name = metric if filt in ("", "none") else f"{metric}_{filt}"
    return re.sub(r"[^\w\-./ ]", "_", f"lm_eval.{task}.{name}")


def flatten(results: dict) -> dict[str, float]:
    """Every numeric score of every task and group; stderr entries and "N/A" are left out."""
    metrics = {}
    for task, scores in results.items():
        for key, value in scores.items():
            if key in ("alias", "name", "sample_len", "samples") or "_stderr" in key or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                if not math.isfinite(value):
                    raise FloatingPointError(f"lm-eval task {task}: {key} = {value}")
                metrics[metric_name(task, key)] = float(value)
    return metrics


def run(model, tokenizer, tasks: list[str], include_path: Path | None, limit: int, batch_size: int,
        allow_code_execution: bool, out: Path) -> dict[str, float]:
    """Run `tasks` with lm_eval.simple_evaluate on an already-loaded HF model; write
    out/lm_eval_results.json and return the flattened scores."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    manager, specs = task_specs(tasks, include_path)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=specs, task_manager=manager, limit=limit or None, log_samples=False,
        bootstrap_iters=0,  # no stderr resampling: minutes on CPU for a number we do not gate on
        confirm_run_unsafe_code=allow_code_execution,
        random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )
    if results is None:  # simple_evaluate returns None on non-zero ranks only; we run one process
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    kept = {k: results[k] for k in RESULT_KEYS if k in results}
    (out / "lm_eval_results.json").write_text(json.dumps(kept, indent=2, sort_keys=True, default=str))
    metrics = flatten(results["results"])
    if not metrics:
        raise ValueError(f"lm-eval returned no numeric score for {tasks}: {json.dumps(results['results'], default=str)[:500]}")
    return metrics
