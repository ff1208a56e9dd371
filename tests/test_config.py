"""Configuration: typed sections, profiles that only override, errors that name key and range."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def test_default_and_tiny_profiles_load():
    default = load_params(PARAMS)
    tiny = load_params(PARAMS, "tiny")
    assert default.model.source == "gguf_package"
    assert tiny.model.source == "micro_llama"
    assert tiny.curate == default.curate  # data is profile-independent (DVC owns it)
    assert tiny.sft.max_steps < default.sft.max_steps


def test_override_is_typed_and_applied():
    p = load_params(PARAMS, "tiny", ["sft.learning_rate=3e-4", "align.loss_type=ipo"])
    assert p.sft.learning_rate == pytest.approx(3e-4)
    assert p.align.loss_type == "ipo"


def test_out_of_range_names_key_and_range():
    with pytest.raises(ConfigError, match=r"sft\.learning_rate=-1.*valid range is \[1e-08, 1.0\]"):
        load_params(PARAMS, "tiny", ["sft.learning_rate=-1"])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) sft\.learning_rat;.*learning_rate"):
        load_params(PARAMS, "tiny", ["sft.learning_rat=1e-4"])


def test_wrong_type_and_bad_choice():
    with pytest.raises(ConfigError, match=r"sft\.max_steps='many': expected int"):
        load_params(PARAMS, "tiny", ["sft.max_steps=many"])
    with pytest.raises(ConfigError, match=r"valid choices are sigmoid, ipo"):
        load_params(PARAMS, "tiny", ["align.loss_type=nope"])


def test_unknown_profile_and_curate_override_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_params(PARAMS, "huge")
    with pytest.raises(ConfigError, match="read by DVC"):
        load_params(PARAMS, "tiny", ["curate.sft_math=3"])
    bad = tmp_path / "params.yaml"
    bad.write_text(PARAMS.read_text() + "\n  broken:\n    curate: {sft_math: 3}\n")
    with pytest.raises(ConfigError, match="profile 'broken' overrides 'curate'"):
        load_params(bad, "broken")
