"""A stage checkpoint (a plain Hugging Face folder) as an MLflow transformers model.

What the registry holds must load with `mlflow.transformers.load_model`, `mlflow.pyfunc.load_model`
and `mlflow models serve`, offline and without this machine's stage dirs: an MLmodel file with the
transformers and python_function flavours, a task and a signature; the checkpoint under model/; the
tokenizer under components/tokenizer.

MLflow's save_model copies a local checkpoint whole, and the upload then copies it again. Here
MLflow builds the model from the checkpoint without its weight files, and the weights are then hard
links to the stage's own files (a copy only across file systems): the logged weights are the
stage's bytes, and the only new data written before the upload are a tokenizer copy and metadata.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import threading
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

GENERATION = "text-generation"
# A reward model is a sequence classifier with a one-logit score head: a text-classification
# pipeline scores a text with it.
SCORING = "text-classification"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Sampling settings a served request may override; the defaults bound a request's generation.
GENERATION_PARAMS = {"max_new_tokens": 128, "do_sample": False, "temperature": 1.0, "top_p": 1.0}
# What pyfunc (and so `mlflow models serve`) passes the pipeline on every call: the completion
# alone, and the reward model's raw score (the pipeline's default for one logit is its sigmoid).
PYFUNC_CONFIG = {GENERATION: {"return_full_text": False}, SCORING: {"function_to_apply": "none"}}
REQUIREMENTS = ("transformers", "torch", "safetensors")
_SAVING = threading.Lock()  # one save at a time: _task_classes_resolved swaps a module attribute


def task_of(checkpoint: Path) -> str:
    """The pipeline task of a checkpoint, from the architectures its config.json names."""
    architectures = json.loads((checkpoint / "config.json").read_text()).get("architectures") or []
    return SCORING if any(a.endswith("ForSequenceClassification") for a in architectures) else GENERATION


def signature(task: str):
    """String in, string out (generation) or a label and its score (scoring); generation also
    declares the sampling params a request may pass."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    if task == SCORING:
        return ModelSignature(inputs=Schema([ColSpec("string")]),
                              outputs=Schema([ColSpec("string", name="label"), ColSpec("double", name="score")]))
    params = ParamSchema([ParamSpec(k, _param_type(v), v) for k, v in GENERATION_PARAMS.items()])
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]), params=params)


def _param_type(value) -> str:
    return "boolean" if isinstance(value, bool) else "long" if isinstance(value, int) else "double"


def build(checkpoint: Path, dest: Path, description: str = "") -> Path:
    """Write the MLflow model of `checkpoint` to `dest` (a path that does not exist yet, on the same
    file system as the checkpoint for the weights to be links). `checkpoint` is left as it is."""
    import mlflow.transformers
    from huggingface_hub import ModelCard

    checkpoint, dest = Path(checkpoint).resolve(), Path(dest)
    task = task_of(checkpoint)
    skeleton = dest.with_name(f"{dest.name}.skeleton")
    _mirror(checkpoint, skeleton, lambda f: not f.name.endswith(WEIGHT_SUFFIXES))
    try:
        with _SAVING, _task_classes_resolved():
            # A given card: MLflow would otherwise look the checkpoint's path up on the Hub for one.
            card = ModelCard(f"---\nlibrary_name: transformers\npipeline_tag: {task}\n---\n"
                             f"{description or f'Checkpoint {checkpoint}'}\n")
            mlflow.transformers.save_model(
                str(skeleton), str(dest), task=task, signature=signature(task), model_config=PYFUNC_CONFIG[task],
                model_card=card, pip_requirements=_requirements())
    finally:
        shutil.rmtree(skeleton, ignore_errors=True)
    # MLflow's stand-in when the Hub knows no license: it points at huggingface.co/<the temporary
    # path>, which is wrong; the checkpoint's license is its base model's.
    (dest / "LICENSE.txt").unlink(missing_ok=True)
    _link_checkpoint(checkpoint, dest)
    return dest


@contextmanager
def _task_classes_resolved():
    """MLflow's save of a local checkpoint names the task's pipeline class as
    `transformers.pipelines.check_task(task)[1]["impl"].__name__`, but transformers 5 keeps that
    class as a dotted-path string, imported only when a pipeline is built (which takes the class
    itself too). Inside, check_task answers with the class: a copy, the registry is not changed."""
    from transformers import pipelines

    original = pipelines.check_task

    def check_task(task: str):
        name, info, options = original(task)
        impl = info.get("impl")
        if isinstance(impl, str):
            module, cls = impl.rsplit(".", 1)
            info = {**info, "impl": getattr(importlib.import_module(module), cls)}
        return name, info, options

    pipelines.check_task = check_task
    try:
        yield
    finally:
        pipelines.check_task = original


def _link_checkpoint(checkpoint: Path, dest: Path) -> None:
    """Make the folder the flavour loads the checkpoint from the checkpoint's own files (MLflow
    copied the weightless ones in), and MLmodel describe the real checkpoint (its size and path)."""
    from mlflow.models import Model

    mlmodel = Model.load(str(dest / "MLmodel"))
    flavor = mlmodel.flavors["transformers"]
    shutil.rmtree(dest / flavor["model_binary"])
    _mirror(checkpoint, dest / flavor["model_binary"], lambda f: True)
    flavor["source_model_name"] = str(checkpoint)
    mlmodel.model_size_bytes = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    mlmodel.save(str(dest / "MLmodel"))


def _mirror(src: Path, dest: Path, keep) -> None:
    """Hard links in `dest` to the files of `src` that `keep` accepts (copies where links fail)."""
    for f in (p for p in src.rglob("*") if p.is_file() and keep(p)):
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(f, target)


def new_bytes(built: Path) -> int:
    """Bytes a build wrote: its files that are no hard links to a checkpoint's."""
    return sum(f.stat().st_size for f in built.rglob("*") if f.is_file() and f.stat().st_nlink == 1)


def _requirements() -> list[str]:
    """Pins of what loading needs, as PyPI knows them (no local label such as torch's +cpu).
    MLflow cannot infer them from a checkpoint it does not load; it adds its own pin."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]
