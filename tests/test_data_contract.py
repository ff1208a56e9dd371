"""Data contracts: curated splits match what each stage reads; GX suites reject bad rows loudly;
params.yaml <-> dvc.yaml <-> code agree; README <-> .ci/run agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from core import jsonl
from core.config import SECTIONS
from tasks.curate import pipeline as curate
from tasks.curate.validate import DataValidationError, validate_split

ROOT = Path(__file__).resolve().parents[1]


def rows(curated: Path, split: str) -> list[dict]:
    return jsonl.read(curated / f"{split}.jsonl")


def test_every_split_is_non_empty_and_carries_provenance(curated):
    for split in curate.SPLITS:
        data = rows(curated, split)
        assert data, split
        assert all(r["source"] and r["license"] and r["id"] and r["source_version"] and r["transform_version"]
                   and isinstance(r["seed"], int) for r in data), split
        card = (curated / f"{split}.md").read_text()
        assert f"rows: **{len(data)}**" in card and "## Dropped rows by reason" in card, split


# What each stage selects from its split (see tasks/<stage>.py).
STAGE_COLUMNS = {
    "sft": ("sft", {"messages"}),
    "reward_model": ("preferences", {"prompt", "chosen", "rejected"}),
    "align": ("preferences", {"prompt", "chosen", "rejected"}),
    "reason": ("rl", {"prompt", "answer"}),
    "safety": ("safety", {"messages", "label"}),
    "safety/self_answer": ("safety_benign", {"prompt", "category"}),
    "evaluate/math": ("eval_math", {"prompt", "answer"}),
    "evaluate/safety": ("eval_safety", {"prompt", "label"}),
    "evaluate/rm": ("preferences_eval", {"prompt", "chosen", "rejected"}),
}


@pytest.mark.parametrize("stage", STAGE_COLUMNS)
def test_stage_reads_columns_its_split_has(curated, stage):
    split, columns = STAGE_COLUMNS[stage]
    for r in rows(curated, split):
        assert columns <= set(r), (stage, r["id"])


def test_eval_sets_are_disjoint_from_training(curated):
    def prompts(split, key):
        return {r[key][0]["content"] if key == "messages" else r[key][-1]["content"] for r in rows(curated, split)}

    train = (prompts("sft", "messages") | prompts("rl", "prompt") | prompts("preferences", "prompt") |
             prompts("safety", "messages") | prompts("safety_benign", "prompt"))
    assert not (prompts("eval_math", "prompt") & train)
    assert not (prompts("eval_safety", "prompt") & train)
    assert not (prompts("preferences_eval", "prompt") & prompts("preferences", "prompt"))


def test_both_safety_labels_present(curated):
    for split in ("safety", "eval_safety"):
        assert {r["label"] for r in rows(curated, split)} == {"harmful", "benign"}


def _msg(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


PROV = {"source": "s", "source_version": "v1", "license": "MIT", "seed": 1, "transform_version": "2"}
GOOD = {
    "messages": {"id": "a", "source": "s", "license": "MIT", "messages": _msg(("user", "hi"), ("assistant", "hello"))},
    "preference": {"id": "a", "source": "s", "license": "MIT", "prompt": _msg(("user", "q")),
                   "chosen": _msg(("assistant", "good")), "rejected": _msg(("assistant", "bad"))},
    "verifiable": {"id": "a", "source": "s", "license": "MIT", "prompt": _msg(("user", "1+1?")), "answer": "2", "verifier": "math"},
}
BAD = [
    ("messages", {"messages": "user: hi"}, "roles", "list of {role, content}"),
    ("messages", {"messages": _msg(("assistant", "x"), ("user", "y"))}, "roles", "alternating"),
    ("messages", {"messages": _msg(("user", "  "), ("assistant", "x"))}, "shortest_turn", "empty"),
    ("preference", {"rejected": _msg(("assistant", "good"))}, "chosen_differs", "identical"),
    ("verifiable", {"answer": "forty-two?"}, "answer_parses", "math-verify can parse"),
    ("verifiable", {"verifier": "vibes"}, "verifier", "math, code, ifeval"),
    ("messages", {"license": None}, "license", ""),
]


@pytest.mark.parametrize("fmt,change,column,fix", BAD)
def test_bad_row_fails_naming_row_field_and_fix(fmt, change, column, fix):
    good = dict(GOOD[fmt], **PROV, id="good-1")
    bad = dict(GOOD[fmt], **{**PROV, "id": "bad-7", **change})
    with pytest.raises(DataValidationError) as err:
        validate_split("unit", fmt, [good, bad], source="unit.jsonl")
    msg = str(err.value)
    assert "unit.jsonl" in msg and f"'{column}'" in msg and "bad-7" in msg and "good-1" not in msg
    assert fix in msg


def test_empty_split_fails():
    with pytest.raises(DataValidationError, match="no rows"):
        validate_split("unit", "messages", [], source="unit.jsonl")


def test_assistant_mask_covers_reply_and_end_of_turn_only():
    """The chat template's generation markers: TRL's assistant_only_loss trains on exactly these."""
    from transformers import AutoTokenizer

    from core.config import ModelConfig
    from core.models import gguf_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(gguf_tokenizer_dir(ModelConfig()))
    out = tok.apply_chat_template(_msg(("user", "What is 2+2?"), ("assistant", "It is 4.")), tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "It is 4.<|im_end|>"
    assert tok.pad_token != tok.eos_token  # padding never masks the end-of-turn token


def test_dvc_yaml_matches_code_and_params():
    """Every split is built by one DVC stage that reads its params and published by the last
    stage; every key a stage reads exists; local source files are deps of their stage."""
    from core.dvc import CURATE_TARGET

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    publish = stages[CURATE_TARGET]
    assert {o for o in publish["outs"] if isinstance(o, str)} == {f"data/curated/{s}.jsonl" for s in curate.SPLITS}
    for split, spec in params["curate"]["splits"].items():
        builders = [n for n, st in stages.items() if f"curate.splits.{split}" in st.get("params", [])]
        assert len(builders) == 1, split
        st = stages[builders[0]]
        assert f"data/staging/{split}.jsonl" in st["outs"] and f"data/staging/{split}.jsonl" in publish["deps"]
        assert split in st["cmd"].split() and "tasks/curate" in st["deps"]
        for sid, src in spec["sources"].items():
            if src["kind"] != "packaged" and (ROOT / src["path"]).exists():
                assert src["path"] in st["deps"], f"{split}.{sid}: add {src['path']} to the deps of {builders[0]}"
    for name, st in stages.items():
        for key in st.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"{name} reads {key}, which params.yaml does not have"
                node = node[part]
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(stages)
    assert {o["path"] for o in lock[CURATE_TARGET]["outs"]} >= {f"data/curated/{s}.jsonl" for s in curate.SPLITS}
    # Every top-level section is a config section; cluster and plan exist only in GPU profiles.
    assert set(SECTIONS) - {"cluster", "plan"} <= set(params) - {"profiles"} <= set(SECTIONS)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme.split("## Quickstart", 1)[1], re.S)
    test_cmd = commands[1].strip()
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in test_cmd and "posttrain run" in commands[0]
