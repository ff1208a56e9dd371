"""tasks/stage_data.py: what a training stage reads when its config names `dataset:` (the GPU
profiles' hub datasets), exercised offline with local files in those datasets' own layouts."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.config import SFTConfig
from tasks import stage_data


def _write(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_default_is_the_curated_split(tmp_path):
    curated = _write(tmp_path, "sft.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                           {"role": "assistant", "content": "hello"}]}] * 3)
    ds = stage_data.load(dataclasses.replace(SFTConfig(), max_examples=2), curated, "messages")
    assert len(ds) == 2


def test_gsm8k_layout_becomes_verifiable_prompts(tmp_path):
    path = _write(tmp_path, "gsm8k.jsonl", [
        {"question": "Tom has 3 apples and buys 1,200 more. How many?", "answer": "3 + 1200 = 1203\n#### 1,203"},
        {"question": "2+2?", "answer": "#### 4"}])
    ds = stage_data.load(dataclasses.replace(SFTConfig(), dataset=str(path)), tmp_path / "unused", "verifiable")
    assert ds[0] == {"prompt": [{"role": "user", "content": "Tom has 3 apples and buys 1,200 more. How many?"}],
                     "answer": "1203", "verifier": "math"}
    assert len(ds) == 2


def test_hh_rlhf_transcripts_become_chat_turns(tmp_path):
    text = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.\n\nHuman: Why?\n\nAssistant: It could be used to break in."
    path = _write(tmp_path, "hh.jsonl", [{"chosen": text, "rejected": text + " Sure."}])
    (row,) = stage_data.load(dataclasses.replace(SFTConfig(), dataset=str(path)), tmp_path / "unused", "messages")
    assert [t["role"] for t in row["messages"]] == ["user", "assistant", "user", "assistant"]
    assert row["messages"][1]["content"] == "I can't help with that."


def test_ultrafeedback_dialogues_split_into_prompt_and_replies(tmp_path):
    user = {"role": "user", "content": "Name a prime."}
    path = _write(tmp_path, "uf.jsonl", [{"prompt": "Name a prime.",
                                         "chosen": [user, {"role": "assistant", "content": "7"}],
                                         "rejected": [user, {"role": "assistant", "content": "9"}]}])
    (row,) = stage_data.load(dataclasses.replace(SFTConfig(), dataset=str(path)), tmp_path / "unused", "preference")
    assert row == {"prompt": [user], "chosen": [{"role": "assistant", "content": "7"}],
                   "rejected": [{"role": "assistant", "content": "9"}]}


def test_a_bad_hub_row_fails_naming_dataset_row_and_field(tmp_path):
    path = _write(tmp_path, "gsm8k.jsonl", [{"question": "ok?", "answer": "#### 4"},
                                           {"question": "bad?", "answer": "#### four-ish"}])
    with pytest.raises(stage_data.StageDataError, match=r"gsm8k.jsonl .*row 1, field 'answer'.*Fix:"):
        stage_data.load(dataclasses.replace(SFTConfig(), dataset=str(path)), tmp_path / "unused", "verifiable")


def test_an_unreachable_hub_id_fails_at_once_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="(?i)offline|couldn't find|not found|connect"):
        stage_data.load(dataclasses.replace(SFTConfig(), dataset="openai/gsm8k-does-not-exist"), tmp_path, "verifiable")
