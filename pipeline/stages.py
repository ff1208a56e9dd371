"""One function per stage: resolve config and inputs, then `runner.execute` the task body.

This is the single entry point for a stage: the Prefect tasks in flows/ wrap these functions,
`posttrain stage NAME` calls them, and `dvc repro` calls curate's body through the CLI.
Arguments and results are paths, ids and small records, never models or DataFrames.
"""

from __future__ import annotations

import hashlib
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
    from tasks.curate import cards, clean, decontaminate, mix, sources, validate
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
        code=code_digest(curate_task, sources, clean, mix, decontaminate, cards, validate),
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


def _path(data: Record, split: str) -> Path:
    return Path(data.extra["paths"][split])


def _dataset(data: Record, split: str) -> tuple[str, str]:
    """(path, md5) of a curated split, for MLflow's dataset inputs."""
    return data.extra["paths"][split], data.extra["md5"][split]


def _train_stage(it: Iteration, stage: str, module, parent: Record, data: Record, splits: tuple[str, ...],
                 model_name: str, call, helpers: tuple = (), extra_inputs: dict[str, str] | None = None) -> Record:
    """helpers: further modules whose code the stage runs (hashed into its version key);
    extra_inputs: {name: version key} of other stage outputs it reads (e.g. the reward model)."""
    p = it.params
    cfg = p.section(stage)
    from core import generation, training
    from tasks import stage_data

    return execute(
        it, stage,
        config={"stage": identity(cfg), "model": as_dict(p.model), "seed": p.pipeline.seed},
        inputs={"model": parent.key, **{f"md5.{s}": data.extra["md5"][s] for s in splits}, **(extra_inputs or {})},
        code=code_digest(module, training, generation, stage_data, *helpers),
        datasets={s: _dataset(data, s) for s in splits},
        body=lambda out: call(cfg, p, out),
        model_name=model_name,
        backend=cfg.backend,
        parent_version=parent.model_version,
    )


def sft(it: Iteration, base: Record, data: Record) -> Record:
    from tasks import sft as task

    return _train_stage(it, "sft", task, base, data, ("sft",), it.params.pipeline.name,
                        lambda cfg, p, out: task.run(cfg, p.model, model=base.model, data=_path(data, "sft"),
                                                     out=out, seed=p.pipeline.seed))


def reward_model(it: Iteration, sft_rec: Record, data: Record) -> Record:
    from tasks import reward_model as task

    # eval_math / eval_safety: the calibration probes (correct vs wrong answer, refusal vs compliance).
    return _train_stage(it, "reward_model", task, sft_rec, data, ("preferences", "preferences_eval", "eval_math", "eval_safety"),
                        it.params.pipeline.name + "-reward-model",
                        lambda cfg, p, out: task.run(cfg, p.model, model=sft_rec.model, data=_path(data, "preferences"),
                                                     eval_data=_path(data, "preferences_eval"),
                                                     math_data=_path(data, "eval_math"),
                                                     safety_data=_path(data, "eval_safety"), out=out,
                                                     seed=p.pipeline.seed))


def align(it: Iteration, sft_rec: Record, rm: Record, data: Record) -> Record:
    """rm: the reward model that ranks on-policy samples (align.on_policy) or is the RL reward
    (align.method=rloo); an input of the version key only then, so a new reward model does not
    re-run offline DPO."""
    from evaluations import verifiers
    from tasks import align as task
    from tasks import onpolicy

    cfg = it.params.align
    uses_rm = cfg.on_policy or cfg.method == "rloo"
    return _train_stage(it, "align", task, sft_rec, data, ("preferences",), it.params.pipeline.name,
                        lambda cfg, p, out: task.run(cfg, p.model, model=sft_rec.model, data=_path(data, "preferences"),
                                                     out=out, seed=p.pipeline.seed,
                                                     reward_model=rm.model if uses_rm else None,
                                                     rm_max_length=p.reward_model.max_length),
                        helpers=(onpolicy, verifiers), extra_inputs={"reward_model": rm.key} if uses_rm else None)


def reason(it: Iteration, align_rec: Record, data: Record) -> Record:
    from evaluations import verifiers
    from tasks import onpolicy, sft
    from tasks import reason as task

    return _train_stage(it, "reason", task, align_rec, data, ("rl",), it.params.pipeline.name,
                        lambda cfg, p, out: task.run(cfg, p.model, model=align_rec.model, data=_path(data, "rl"),
                                                     out=out, seed=p.pipeline.seed),
                        helpers=(verifiers, onpolicy, sft))


def safety(it: Iteration, reason_rec: Record, data: Record) -> Record:
    """sft: the split replayed into the refusal mix; preferences: pairs replayed into the DPO pass;
    safety_benign and rl: prompts the input checkpoint answers (helpful rows, replayed math
    answers); the constitution's text is an input too."""

    from evaluations import math_score, refusal
    from tasks import align, onpolicy, sft
    from tasks import safety as task

    return _train_stage(it, "safety", task, reason_rec, data, ("safety", "sft", "preferences", "safety_benign", "rl"),
                        it.params.pipeline.name,
                        lambda cfg, p, out: task.run(cfg, p.model, model=reason_rec.model, data=_path(data, "safety"),
                                                     sft_data=_path(data, "sft"), out=out, seed=p.pipeline.seed,
                                                     benign_data=_path(data, "safety_benign"), rl_data=_path(data, "rl"),
                                                     preference_data=_path(data, "preferences")),
                        helpers=(sft, align, onpolicy, refusal, math_score),
                        extra_inputs={"sha256.constitution": hashlib.sha256(task.CONSTITUTION.read_bytes()).hexdigest()})


def evaluate_base(it: Iteration, base: Record, rm: Record, data: Record) -> Record:
    return evaluate(it, base, rm, data, "base")


def evaluate_final(it: Iteration, policy: Record, rm: Record, data: Record, base_eval: Record) -> Record:
    """The final policy, plus its RM-judged win rate against the input checkpoint, whose
    responses evaluate.base kept in its out/samples.jsonl."""
    return evaluate(it, policy, rm, data, "final", baseline=base_eval)


def evaluate_boundary(it: Iteration, policy: Record, rm: Record, data: Record, previous: Record) -> Record:
    """The checkpoint `policy` just trained, on the boundary subsets (evaluate.<its stage>), with
    its win rate against the previous boundary's responses; `gate_stage` then gates it."""
    return evaluate(it, policy, rm, data, policy.stage, baseline=previous, boundary=True)


def evaluate(it: Iteration, policy: Record, rm: Record, data: Record, label: str, baseline: Record | None = None,
             boundary: bool = False) -> Record:
    """Evaluate `policy` (label: 'base' for the input checkpoint, 'final' for the last stage, the
    stage's name for a boundary evaluation on the small subsets)."""

    from evaluations import (
        diversity,
        humaneval,
        ifeval,
        llama_guard,
        lm_eval_harness,
        math_score,
        paired,
        refusal,
        reward,
        sandbox,
        sycophancy,
        win_rate,
    )
    from tasks import evaluate as task

    p = it.params
    lay = it.layout()
    splits = ("eval_math", "eval_safety", "preferences_eval")
    inputs = {"model": policy.key, "reward_model": rm.key, **{f"md5.{s}": data.extra["md5"][s] for s in splits},
              "sha256.ifeval_prompts": hashlib.sha256(ifeval.PROMPTS.read_bytes()).hexdigest()}
    include = lay.project / p.evaluate.lm_eval_include_path if p.evaluate.lm_eval_tasks else None
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
        code=code_digest(task, math_score, refusal, reward, humaneval, ifeval, sycophancy, diversity, win_rate, paired,
                         sandbox, llama_guard, lm_eval_harness),
        datasets={s: _dataset(data, s) for s in splits},
        body=lambda out: task.run(p.evaluate, p.model, model=policy.model, reward_model=rm.model,
                                  math_data=_path(data, "eval_math"), safety_data=_path(data, "eval_safety"),
                                  pairs_data=_path(data, "preferences_eval"), out=out,
                                  rm_max_length=p.reward_model.max_length,
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
