"""One function per stage: resolve config and inputs, then `runner.execute` the task body.

This is the single entry point for a stage: the Prefect tasks in flows/ wrap these functions,
`posttrain stage NAME` calls them, and `dvc repro` calls curate's body through the CLI.
Arguments and results are paths, ids and small records, never models or DataFrames.

A stage's version key covers its config, its input checkpoint, what its module in tasks/ declares
it reads (SPLITS, FILES) and the code of that module and everything it imports
(core.stage_dir.code_digest): no list here to keep in step with the code.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path

from core import dvc, models, tracking
from core.config import as_dict, identity
from core.stage_dir import code_digest
from pipeline.runner import Iteration, Record, execute

DATA_STAGE = "curate"


def curate(it: Iteration) -> Record:
    """`dvc repro` of the data pipeline (a no-op when data/ is up to date), then record the data
    versions (dvc.lock md5s as MLflow dataset digests) and log each split's dataset card."""
    from tasks.curate import pipeline as curate_task

    lay = it.layout()
    dvc.repro(lay.project, dvc.CURATE_TARGET, lay.runs)
    outs = dvc.locked_outs(lay.project, dvc.CURATE_TARGET)
    md5s = {p: m for p, m in outs.items() if p.endswith(".jsonl")}  # not the cards or the stats
    paths = {Path(p).stem: str(lay.project / p) for p in md5s}
    splits = {Path(p).stem: md5 for p, md5 in md5s.items()}
    missing = sorted(set(curate_task.SPLITS) - set(splits))
    if missing:
        raise dvc.DVCError(f"dvc.lock stage {dvc.CURATE_TARGET} has no curated split(s) {missing}: run `dvc repro`")
    stats = json.loads((lay.project / "data" / "curate_stats.json").read_text())

    def body(out: Path) -> dict[str, float]:
        (out / "cards").mkdir()
        for split in splits:
            shutil.copy2(lay.curated / f"{split}.md", out / "cards" / f"{split}.md")
        return stats

    record = execute(
        it, DATA_STAGE,
        config=as_dict(it.params.curate),
        inputs={f"md5.{k}": v for k, v in splits.items()},
        code=code_digest(curate_task),
        datasets={name: (paths[name], splits[name]) for name in splits},
        body=body,
        extra={"paths": paths, "md5": splits},
    )
    if not record.cached:  # a reused record's cards were logged by the run that made them
        tracking.log_artifacts(record.run_id, Path(record.out) / "cards", "dataset_cards")
    return record


def base_model(it: Iteration) -> Record:
    """The checkpoint the iteration starts from (converted/cached; not a tracked stage)."""
    p = it.params
    path = models.base_model(p.model, p.pipeline.seed)
    key = Path(path).name if Path(path).exists() else path  # cache dir names carry the content hash
    return Record(stage="base", key=key, out=path, run_id="", metrics={}, model=path)


def _inputs(task, data: Record) -> dict[str, str]:
    """What a stage body reads besides its input checkpoint: the md5 of each curated split it
    declares (task.SPLITS) and the sha256 of each file (task.FILES)."""
    return {**{f"md5.{s}": data.extra["md5"][s] for s in task.SPLITS},
            **{f"sha256.{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in task.FILES}}


def _splits(task, data: Record) -> dict[str, Path]:
    return {s: Path(data.extra["paths"][s]) for s in task.SPLITS}


def _datasets(task, data: Record) -> dict[str, tuple[str, str]]:
    """{split: (path, md5)} for MLflow's dataset inputs."""
    return {s: (data.extra["paths"][s], data.extra["md5"][s]) for s in task.SPLITS}


def _train(it: Iteration, task, parent: Record, data: Record, *, model_name: str, reward_model: Record | None = None,
           code_inputs: dict[str, str] | None = None, **body_kwargs) -> Record:
    """A training stage: `task` (its module in tasks/, named for the stage) trains `parent`'s
    checkpoint on its splits. reward_model: another stage's output it reads (an input of its key);
    code_inputs: digests of code the config names (inputs of its key too)."""
    stage = task.__name__.rsplit(".", 1)[-1]
    p = it.params
    cfg = p.section(stage)
    inputs = {"model": parent.key, **_inputs(task, data)}
    if reward_model is not None:
        inputs["reward_model"] = reward_model.key
    inputs.update(code_inputs or {})
    return execute(
        it, stage,
        config={"stage": identity(cfg), "model": as_dict(p.model), "seed": p.pipeline.seed},
        inputs=inputs,
        code=code_digest(task),
        datasets=_datasets(task, data),
        body=lambda out: task.run(cfg, p.model, model=parent.model, data=_splits(task, data), out=out,
                                  seed=p.pipeline.seed, **body_kwargs),
        model_name=model_name,
        backend=cfg.backend,
        parent_version=parent.model_version,
    )


def sft(it: Iteration, base: Record, data: Record) -> Record:
    from tasks import sft as task

    return _train(it, task, base, data, model_name=it.params.pipeline.name)


def reward_model(it: Iteration, sft_rec: Record, data: Record) -> Record:
    from tasks import reward_model as task

    return _train(it, task, sft_rec, data, model_name=it.params.pipeline.name + "-reward-model")


def align(it: Iteration, sft_rec: Record, rm: Record, data: Record) -> Record:
    """rm: the reward model that ranks on-policy samples or is RLOO's reward (align.uses_reward_model)."""
    from tasks import align as task

    if not task.uses_reward_model(it.params.align):
        return _train(it, task, sft_rec, data, model_name=it.params.pipeline.name)
    return _train(it, task, sft_rec, data, model_name=it.params.pipeline.name, reward_model=rm,
                  rm_max_length=it.params.reward_model.max_length)


def reason(it: Iteration, align_rec: Record, data: Record) -> Record:
    from tasks import reason as task

    # An extra reward is code the config names by import path: its source keys the stage like ours.
    modules = {module for module, _ in it.params.reason.extra_reward_refs()}
    code = {}
    for m in sorted(modules):
        try:
            code[f"code.{m}"] = code_digest(importlib.import_module(m))
        except ImportError as e:
            raise ValueError(f"reason.extra_rewards names module {m!r}, which does not import ({e}); fix the path "
                             f"or put the module on PYTHONPATH") from e
    return _train(it, task, align_rec, data, model_name=it.params.pipeline.name, code_inputs=code)


def safety(it: Iteration, reason_rec: Record, data: Record) -> Record:
    from tasks import safety as task

    return _train(it, task, reason_rec, data, model_name=it.params.pipeline.name)


def evaluate_base(it: Iteration, base: Record, rm: Record, data: Record) -> Record:
    return evaluate(it, base, rm, data, "base")


def evaluate_final(it: Iteration, policy: Record, rm: Record, data: Record, base_eval: Record) -> Record:
    """The final policy, plus its RM-judged win rate against the input checkpoint, whose
    responses evaluate.base kept in its out/samples.jsonl."""
    return evaluate(it, policy, rm, data, "final", baseline=base_eval)


def evaluate_boundary(it: Iteration, policy: Record, rm: Record, data: Record, previous: Record) -> Record:
    """The checkpoint `policy` just trained, on the boundary subsets (evaluate.<its stage>), with
    its win rate against the previous boundary's responses; pipeline.gating then gates it."""
    return evaluate(it, policy, rm, data, policy.stage, baseline=previous, boundary=True)


def evaluate(it: Iteration, policy: Record, rm: Record, data: Record, label: str, baseline: Record | None = None,
             boundary: bool = False) -> Record:
    """Evaluate `policy` (label: 'base' for the input checkpoint, 'final' for the last stage, the
    stage's name for a boundary evaluation on the small subsets)."""
    from tasks import evaluate as task

    p = it.params
    inputs = {"model": policy.key, "reward_model": rm.key, **_inputs(task, data)}
    include = it.layout().project / p.evaluate.lm_eval_include_path if p.evaluate.lm_eval_tasks else None
    if include is not None and include.is_dir():  # local task YAMLs and their data are inputs too
        inputs["sha256.lm_eval_tasks"] = _tree_digest(include)
    if baseline is not None:
        inputs["baseline_evaluation"] = baseline.key
    # gates_file is left out: gates are checked after the evaluation, so a new threshold re-gates
    # the recorded scores instead of recomputing them.
    config = {k: v for k, v in identity(p.evaluate).items() if k != "gates_file"}
    return execute(
        it, "evaluate",
        config={"stage": config, "model": as_dict(p.model), "rm_max_length": p.reward_model.max_length,
                "suite_versions": task.suite_versions(p.evaluate), "boundary": boundary},
        inputs=inputs,
        code=code_digest(task),
        datasets=_datasets(task, data),
        body=lambda out: task.run(p.evaluate, p.model, model=policy.model, reward_model=rm.model,
                                  data=_splits(task, data), out=out, rm_max_length=p.reward_model.max_length,
                                  baseline_samples=baseline.out if baseline is not None else None,
                                  boundary=boundary, lm_eval_include=include),
        label=label,
        backend=p.evaluate.backend,
    )


def _tree_digest(folder: Path) -> str:

    h = hashlib.sha256()
    for f in sorted(q for q in folder.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
