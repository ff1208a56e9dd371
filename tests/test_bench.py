"""The benchmark harness (bench/): its fastest figures in quick mode, end to end, and the results
schema docs/BENCHMARKS.md is rendered from. The full run is not a test: see docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import figures, render
from bench.__main__ import _parse_only
from tests.conftest import ROOT


def test_verdict_attainment_for_floors_and_ceilings():
    floor = figures.verdict("packing", 1.5)  # packed / unpacked >= 2x
    assert floor == {"met": False, "attainment": 0.75}
    ceiling = figures.verdict("overhead", 10.0)  # overhead <= 5 %
    assert ceiling["met"] is False and ceiling["attainment"] == pytest.approx(0.5)
    assert figures.verdict("overhead", 4.0)["met"] is True
    assert figures.verdict("iteration_time", 123.0) is None  # iteration_time has no target


def test_figures_are_named_and_only_takes_names():
    assert list(figures.FIGURES) == list(figures.TITLES) == list(render.DETAILS)
    assert set(figures.TARGETS) <= set(figures.FIGURES)
    assert _parse_only("flops, sft_vs_trl,sft_vs_trl") == ["sft_vs_trl", "flops"]  # run order, once each
    with pytest.raises(Exception, match="unknown figure.*4.*figures are iteration_time,"):
        _parse_only("sft_vs_trl,4")


def test_results_keyed_by_number_render_with_the_names():
    """Results files of schema 1 key figures by number; the renderer maps them to the names."""
    old = {"figures": {"4": {"x": 1}, "7": {"y": 2}}, "errors": {"5": "boom"}, "selected": ["4", "5", "7"]}
    new = render.by_name(old)
    assert new["figures"] == {"sft_vs_trl": {"x": 1}, "flops": {"y": 2}} and new["errors"] == {"packing": "boom"}
    assert new["selected"] == ["sft_vs_trl", "packing", "flops"]
    assert set(render.LEGACY_NAMES.values()) <= set(figures.FIGURES)  # later figures have no number
    assert render.by_name(new) == new  # names stay names


def test_quick_generation_and_flops_figures(tmp_path, curated_ws):
    out, doc = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "generation_engine,generation_batching,flops", "--out", str(out), "--doc", str(doc),
                           "--workdir", str(tmp_path), "--data-from", str(curated_ws[0])],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["schema_version"] == 2 and res["mode"] == "quick" and res["selected"] == ["generation_engine", "generation_batching", "flops"]
    assert set(res["figures"]) == {"generation_engine", "generation_batching", "flops"} and res["errors"] == {}
    assert res["machine"]["usable_cpus"] >= 1 and res["versions"]["trl"] != "not installed"
    assert not any(p.name.startswith("posttrain-bench-") for p in tmp_path.iterdir())  # workspace removed
    # Seeded with a curated checkout's data and DVC cache: data prep is an up-to-date check.
    assert res["data_prep"]["seeded_from_checkout"] and res["data_prep"]["ran"] == []

    gen, engine = res["figures"]["generation_batching"], res["figures"]["generation_engine"]
    s = gen["summary"]
    assert engine["summary"] == s and engine["runs"] == gen["runs"]  # one worker run serves both figures
    assert len(gen["runs"]) == res["plan"]["reps"]
    for run in gen["runs"]:
        # Same prompts, greedy: every mode produced tokens, at most max_new_tokens per prompt.
        for mode in ("engine", "one_by_one", "plain"):
            assert 0 < run[mode]["tokens"] <= s["prompts"] * s["max_new_tokens"]
        assert run["batched_vs_one"] == pytest.approx(run["engine"]["tokens_per_s"] / run["one_by_one"]["tokens_per_s"])
        assert run["engine_vs_plain"] == pytest.approx(run["engine"]["tokens_per_s"] / run["plain"]["tokens_per_s"])
    assert gen["headline"] == {"value": s["batched_vs_one"], "unit": "x"}
    assert engine["headline"] == {"value": s["engine_vs_plain"], "unit": "x"}
    assert gen["target"]["op"] == ">=" and gen["verdict"]["met"] == (s["batched_vs_one"] >= gen["target"]["value"])
    # Greedy on the same weights: the engine gives model.generate's replies (a float near-tie may
    # flip one; the tiny model's 8 replies of 16 tokens have none).
    assert s["agreement"]["replies"] == 1.0 and s["agreement"]["answers"] == 1.0

    flops = res["figures"]["flops"]["summary"]
    assert flops["params"] > 1_000_000  # the tiny profile's micro-Llama (~3.3 M, mostly the embedding)
    assert flops["achieved_flops_per_s"] == pytest.approx(6 * flops["params"] * flops["train_tokens_per_s"])
    assert flops["pct_of_bf16_peak"] == pytest.approx(100 * flops["achieved_flops_per_s"] / flops["peak_bf16_flops_per_s"])
    assert 0 < flops["pct_of_fp32_peak"] < 100  # training cannot beat the measured matmul peak

    text = doc.read_text()
    assert f"| `generation_batching` | {figures.TITLES['generation_batching']} (tiny profile) | {s['batched_vs_one']:.2f}x |" in text
    assert f"| `generation_engine` | {figures.TITLES['generation_engine']} (tiny profile) | {s['engine_vs_plain']:.2f}x |" in text
    assert f"## flops — {figures.TITLES['flops']}" in text
    assert "**Quick mode**" in text
    for name in ("iteration_time", "overhead", "rerun", "sft_vs_trl", "packing"):
        assert f"| `{name}` | {figures.TITLES[name]} | not run (`--only`) |" in text
