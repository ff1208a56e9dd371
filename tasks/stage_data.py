"""The rows a training stage trains on: the curated split (`data/curated/<split>.jsonl`, the default)
or, when the stage config names `dataset:` (the GPU profiles do), an HF dataset loaded with
`datasets.load_dataset` — a hub id on a cluster, or a local dataset directory / file.

Hub datasets come in their own layouts; the ones our GPU profiles name are converted to the
stage's TRL format here (nothing else is guessed):
  GSM8K               question, answer "... #### 72"          -> prompt, answer "72", verifier math
  hh-rlhf             chosen "\\n\\nHuman: ..\\n\\nAssistant: .."  -> messages (the chosen dialogue)
  UltraFeedback-bin.  prompt, chosen/rejected full dialogues  -> prompt turns, chosen/rejected replies
  Tulu-3 SFT mix      messages                                -> as is
Other rows get the conversions curated sources get (plain-string prompt / replies -> chat turns,
numeric answers -> strings). Every converted row is checked against the data contract like a
curated one (tasks/curate/schema.py): the first bad row fails the stage before training, naming
the dataset, the row, the field and the fix.

The dataset id is part of the stage's version key (it is in the stage config), its content is not:
pin a revision in the id's repo (or point at a local snapshot) for a reproducible run.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.config import TrainConfig
from tasks.curate.schema import FIX, FORMATS, conform, problem, user

_TURN = re.compile(r"\n\n(Human|Assistant): ")


class StageDataError(ValueError):
    pass


def load(cfg: TrainConfig, curated: Path, fmt: str):
    """A `datasets.Dataset` of at most cfg.max_examples rows in format `fmt` (tasks/curate/schema.FORMATS)."""
    from core import training

    if not cfg.dataset:
        return training.load_rows(curated, cfg.max_examples)
    return _hub(cfg, fmt)


def _hub(cfg: TrainConfig, fmt: str):
    import datasets

    local = Path(cfg.dataset)
    if local.is_file():
        builder = {"jsonl": "json", "json": "json", "parquet": "parquet"}.get(local.suffix.lstrip("."))
        if builder is None:
            raise StageDataError(f"dataset {cfg.dataset}: unknown file type; use .jsonl, .json or .parquet")
        ds = datasets.load_dataset(builder, data_files=str(local), split=cfg.dataset_split)
    else:
        ds = datasets.load_dataset(cfg.dataset, cfg.dataset_config or None, split=cfg.dataset_split)
    if len(ds) == 0:
        raise StageDataError(f"dataset {cfg.dataset} (split {cfg.dataset_split}): 0 rows; check dataset_split / dataset_config")
    ds = ds.select(range(min(len(ds), cfg.max_examples)))
    rows = []
    for i, raw in enumerate(ds):
        row = convert(dict(raw), fmt)
        bad = problem(fmt, row)
        if bad:
            field, reason, message = bad
            raise StageDataError(f"dataset {cfg.dataset} (split {cfg.dataset_split}) row {i}, field '{field}': {message} "
                                 f"({reason}). Fix: {FIX.get(field, 'correct or drop the row')}")
        rows.append({k: row[k] for k in FORMATS[fmt]})
    return datasets.Dataset.from_list(rows)


def convert(row: dict, fmt: str) -> dict:
    """One hub row in its own layout -> our TRL format (see the module docstring)."""
    if fmt == "verifiable" and "question" in row and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        final = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        return {"prompt": user(row["question"]), "answer": final, "verifier": "math"}
    if fmt == "messages" and "messages" not in row and isinstance(row.get("chosen"), str) and "\n\nHuman: " in row["chosen"]:
        return {"messages": hh_dialogue(row["chosen"])}
    if fmt == "preference" and isinstance(row.get("chosen"), list) and row["chosen"] and row["chosen"][0].get("role") == "user":
        # Full dialogues (UltraFeedback-binarized): shared turns become the prompt, the last reply differs.
        chosen, rejected = row["chosen"], row["rejected"]
        return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}
    return conform(fmt, row)


def hh_dialogue(text: str) -> list[dict]:
    """Anthropic hh-rlhf's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript -> chat turns."""
    parts = _TURN.split(text)
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns
