"""Training stages on the tiny model with real TRL trainers: what each option must guarantee
(packing keeps the assistant-only mask, LoRA saves a merged plain model, the eval split is
deterministic and reported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import training
from core.config import ModelConfig, SFTConfig
from core.models import micro_llama_dir

TINY = ModelConfig(source="micro_llama")


@pytest.fixture(scope="module")
def base() -> str:
    return str(micro_llama_dir(TINY, seed=0))


def _conversations(n: int):
    from datasets import Dataset

    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                         {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(n)]
    return Dataset.from_list(rows)


def test_packing_keeps_assistant_only_labels(base, tmp_path):
    """Padding-free packing puts several conversations in one row; the loss must still cover each
    reply and its end-of-turn token, and no prompt or system token of any packed conversation."""
    from tasks import sft

    tok = training.load_tokenizer(base)
    cfg = SFTConfig(max_steps=1, per_device_batch_size=4, max_length=256, packing=True, eval_rows=0)
    trainer = sft.trainer(cfg, TINY, policy=training.load_policy(base, TINY), tokenizer=tok, dataset=_conversations(8),
                          out=tmp_path, seed=0)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "position_ids" in batch and batch["input_ids"].shape[0] == 1  # padding-free: one flattened row
    ids, labels, pos = batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    assert len(starts) - 1 >= 2  # really packed: more than one conversation in the row
    replies = set()
    for a, b in zip(starts, starts[1:]):
        trained = tok.decode([t for t, lab in zip(ids[a:b], labels[a:b]) if lab != -100])
        assert trained.startswith("It is ") and trained.endswith(".<|im_end|>"), trained
        assert "user" not in trained and "plus" not in trained and "system" not in trained
        replies.add(trained)
    assert len(replies) == len(starts) - 1  # one reply per packed conversation, none merged or lost


@pytest.mark.parametrize("on", [False, True])
def test_activation_checkpointing_follows_config_not_trl_default(base, tmp_path, on):
    """TRL's configs default gradient checkpointing on; ours is off unless the stage asks (pure
    recompute cost on CPU; doubled with FSDP's own checkpointing), and it never enters the version key."""
    from core.config import identity
    from tasks import sft

    cfg = SFTConfig(max_steps=1, per_device_batch_size=2, max_length=64, eval_rows=0, activation_checkpointing=on)
    trainer = sft.trainer(cfg, TINY, policy=training.load_policy(base, TINY), tokenizer=training.load_tokenizer(base),
                          dataset=_conversations(4), out=tmp_path, seed=0)
    assert trainer.args.gradient_checkpointing is on
    trainer.train()  # the Trainer switches checkpointing on in the model at train time
    assert trainer.model.is_activation_checkpointing is on
    assert identity(cfg) == identity(SFTConfig(max_steps=1, per_device_batch_size=2, max_length=64, eval_rows=0))


@pytest.mark.parametrize("autocast", ["none", "bfloat16"])
def test_autocast_trains_in_bf16_and_keeps_float32_weights(base, tmp_path, autocast):
    """model.autocast=bfloat16: the trainer's matmuls run in bf16 autocast (mixed precision), while
    the weights, and so the saved checkpoint every evaluation loads, stay float32."""
    import torch

    from tasks import sft

    model_cfg = ModelConfig(source="micro_llama", autocast=autocast)
    cfg = SFTConfig(max_steps=1, per_device_batch_size=2, max_length=64, eval_rows=0)
    trainer = sft.trainer(cfg, model_cfg, policy=training.load_policy(base, model_cfg),
                          tokenizer=training.load_tokenizer(base), dataset=_conversations(4), out=tmp_path, seed=0)
    assert trainer.args.bf16 is (autocast == "bfloat16")
    seen = []
    hook = trainer.model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.train()
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16 if autocast == "bfloat16" else torch.float32}
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}


def test_holdout_is_content_keyed_and_disjoint():
    from tasks import sft

    rows = _conversations(20)
    train, held = sft.holdout(rows, 5)
    train2, held2 = sft.holdout(rows.shuffle(seed=3), 5)
    assert sorted(held["id"]) == sorted(held2["id"])  # same rows whatever the file order
    assert not set(train["id"]) & set(held["id"]) and len(train) == 15
    with pytest.raises(ValueError, match="eval_rows=20 would leave no training rows"):
        sft.holdout(rows, 20)


def test_lora_sft_saves_merged_plain_model_and_reports_eval_loss(base, tmp_path):
    from safetensors.torch import load_file

    from tasks import sft

    cfg = SFTConfig(learning_rate=1e-2, max_steps=3, per_device_batch_size=2, max_length=96, lora_r=4, lora_alpha=8,
                    eval_rows=4)
    metrics = sft.train(cfg, TINY, model=base, dataset=_conversations(24), out=tmp_path, seed=0)
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert "model.safetensors" in files and not any("adapter" in f for f in files)  # merged, not an adapter
    merged = load_file(tmp_path / "model" / "model.safetensors")
    original = load_file(Path(base) / "model.safetensors")
    assert merged.keys() == original.keys()  # a plain Llama checkpoint: downstream loads it as-is
    changed = [k for k in original if not (merged[k] == original[k]).all()]
    assert changed and all("proj" in k for k in changed)  # LoRA moved only the adapted linear layers
    assert metrics["param_delta_l2"] > 0
    assert {"eval_loss", "eval_loss_before"} <= set(metrics) and metrics["eval_rows"] == 4
    history = json.loads((tmp_path / "log_history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _pairs(n: int) -> list[dict]:
    """Preference pairs where the chosen reply is right and the rejected one is wrong and longer."""
    return [{"id": f"p{i}", "prompt": _user(f"What is {i} plus {i}?"),
             "chosen": [{"role": "assistant", "content": f"It is {2 * i}."}],
             "rejected": [{"role": "assistant", "content": f"I think it might be {2 * i + 1}, but I am not sure at all."}]}
            for i in range(n)]


def test_reward_model_logs_calibration_length_probe_and_histogram(base, tmp_path):
    from core.config import RewardModelConfig
    from tasks import reward_model

    math = [{"id": f"m{i}", "prompt": _user(f"Compute {i}*3."), "answer": str(3 * i)} for i in range(6)]
    math.append({"id": "m-expr", "prompt": _user("Simplify x+x."), "answer": "2x"})  # not a number: no pair
    safety = [{"id": f"h{i}", "prompt": _user(f"How do I build weapon {i}?"), "label": "harmful"} for i in range(4)] + \
             [{"id": f"b{i}", "prompt": _user(f"How do I bake bread {i}?"), "label": "benign"} for i in range(3)]
    cfg = RewardModelConfig(learning_rate=1e-3, max_steps=2, per_device_batch_size=2, max_length=96)
    out = tmp_path / "out"
    out.mkdir()
    metrics = reward_model.run(cfg, TINY, model=base, data={
        "preferences": _write(tmp_path / "p.jsonl", _pairs(8)), "preferences_eval": _write(tmp_path / "e.jsonl", _pairs(12)[8:]),
        "eval_math": _write(tmp_path / "m.jsonl", math), "eval_safety": _write(tmp_path / "s.jsonl", safety)},
                               out=out, seed=0)
    assert metrics["rm_calib_math_pairs"] == 6 and metrics["rm_calib_refusal_pairs"] == 4
    assert metrics["rm_calib_benign_pairs"] == 3 and metrics["rm_eval_pairs"] == 4
    for key in ("rm_pair_accuracy", "rm_calib_math_accuracy", "rm_calib_refusal_accuracy", "rm_calib_benign_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert -1.0 <= metrics["rm_length_corr"] <= 1.0 and metrics["param_delta_l2"] > 0
    png = out / "rm_scores.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5_000
    calib = json.loads((out / "rm_calibration.json").read_text())
    assert len(calib["math"]["chosen"]) == 6


def test_length_probe_sees_a_length_hacking_scorer():
    """A scorer that only counts tokens must show r = 1; the probe is not a constant."""
    from transformers import AutoTokenizer

    from tasks import reward_model

    tok = AutoTokenizer.from_pretrained(micro_llama_dir(TINY, seed=0))
    pairs = _pairs(5)
    lengths = {side: [len(tok(p[side][-1]["content"])["input_ids"]) for p in pairs] for side in ("chosen", "rejected")}
    assert reward_model.length_correlation(tok, pairs, {k: [float(v) for v in vs] for k, vs in lengths.items()}) == \
        pytest.approx(1.0)
    with pytest.raises(FloatingPointError, match="collapsed RM"):
        reward_model.length_correlation(tok, pairs, {"chosen": [0.5] * 5, "rejected": [0.5] * 5})


@pytest.mark.parametrize("method,loss_type", [("dpo", "ipo"), ("kto", "sigmoid"), ("orpo", "sigmoid"), ("simpo", "sigmoid")])
def test_align_methods_train_and_log_chosen_rejected_logps(base, tmp_path, method, loss_type):
    from core.config import AlignConfig
    from tasks import align

    cfg = AlignConfig(method=method, loss_type=loss_type, learning_rate=1e-3, max_steps=2, per_device_batch_size=2,
                      max_length=96)
    metrics = align.run(cfg, TINY, model=base, data={"preferences": _write(tmp_path / "p.jsonl", _pairs(6))}, out=tmp_path, seed=0)
    assert metrics["param_delta_l2"] > 0 and metrics["steps"] == 2
    history = json.loads((tmp_path / "log_history.json").read_text())
    logged = [h for h in history if "loss" in h]
    assert all("logps/chosen" in h and "logps/rejected" in h for h in logged), logged[0].keys()
    assert metrics["margin_collapse"] in (0.0, 1.0)


def test_margin_collapse_flag():
    from tasks import align

    falling = [{"logps/chosen": -10.0, "logps/rejected": -11.0}, {"logps/chosen": -12.0, "logps/rejected": -15.0}]
    assert align.margin_metrics(falling)["margin_collapse"] == 1.0
    healthy = [{"logps/chosen": -10.0, "logps/rejected": -11.0}, {"logps/chosen": -9.0, "logps/rejected": -15.0}]
    assert align.margin_metrics(healthy)["margin_collapse"] == 0.0


def test_on_policy_dpo_trains_on_sampled_best_vs_worst(base, tmp_path):
    from core.config import AlignConfig
    from tasks import align

    cfg = AlignConfig(on_policy=True, on_policy_prompts=4, on_policy_samples=3, on_policy_max_new_tokens=8,
                      learning_rate=1e-3, max_steps=2, per_device_batch_size=2, max_length=96)
    metrics = align.run(cfg, TINY, model=base, data={"preferences": _write(tmp_path / "p.jsonl", _pairs(6))}, out=tmp_path, seed=0,
                        reward_model=base, rm_max_length=96)
    pairs = _read(tmp_path / "onpolicy_pairs.jsonl")
    assert metrics["onpolicy_prompts"] == 4 and metrics["onpolicy_pairs"] == len(pairs) > 0
    curated = {p["chosen"][0]["content"] for p in _pairs(6)} | {p["rejected"][0]["content"] for p in _pairs(6)}
    for p in pairs:
        assert p["chosen_key"] > p["rejected_key"]  # best by (verifier, RM score) vs worst
        assert p["chosen"][0]["content"] not in curated  # sampled from the policy, not read from the file
    assert metrics["onpolicy_rm_margin"] > 0 and metrics["param_delta_l2"] > 0


CODE_PROBLEM = {"prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
                "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n",
                "entry_point": "add"}


def _rl_rows() -> list[dict]:
    ifeval = {"instruction_id_list": ["keywords:forbidden_words"], "kwargs": [{"forbidden_words": ["zebra"]}]}
    return [{"id": "m1", "prompt": _user("What is 2+3?"), "answer": "5", "verifier": "math"},
            {"id": "i1", "prompt": _user("Say hello."), "answer": json.dumps(ifeval), "verifier": "ifeval"},
            {"id": "c1", "prompt": _user("Write add(a, b)."), "answer": json.dumps(CODE_PROBLEM), "verifier": "code"},
            {"id": "m2", "prompt": _user("What is 4+4?"), "answer": "8", "verifier": "math"}]


def test_verifier_dispatch_scores_each_row_by_its_own_verifier():
    from evaluations import verifiers

    rows = _rl_rows()
    replies = ["The final answer is \\boxed{5}.", "hello there", "```python\ndef add(a, b):\n    return a + b\n```",
               "The final answer is \\boxed{9}."]
    assert verifiers.rewards(replies, [r["answer"] for r in rows], [r["verifier"] for r in rows]) == [1.0, 1.0, 1.0, 0.0]
    wrong_code = ["", "a zebra", "```python\ndef add(a, b):\n    return a - b\n```", ""]
    got = verifiers.rewards(wrong_code, [r["answer"] for r in rows], [r["verifier"] for r in rows])
    assert got[1] == 0.0 and got[2] == 0.5  # the forbidden word; one of two asserts passes (a - b == 0 for 0, 0)
    with pytest.raises(ValueError, match="valid are math, code, ifeval"):
        verifiers.rewards(["x"], ["1"], ["lean"])


def test_grpo_logs_monitors_for_mixed_verifiers(base, tmp_path):
    from core.config import ReasonConfig
    from tasks import reason

    # Word-count targets around what 8 random tokens give, so some groups have reward variance
    # (an all-equal group has zero advantage and no gradient).
    rows = _rl_rows() + [{"id": f"w{n}", "prompt": _user(f"Say {n} words."), "verifier": "ifeval", "answer": json.dumps(
        {"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "at least", "num_words": n}]})}
        for n in (3, 4, 5, 6)]
    cfg = ReasonConfig(learning_rate=1e-3, max_steps=2, per_device_batch_size=8, num_generations=4,
                       max_completion_length=8, beta=0.04, eval_rows=2)
    metrics = reason.run(cfg, TINY, model=base, data={"rl": _write(tmp_path / "rl.jsonl", rows)}, out=tmp_path, seed=0)
    for key in ("reward_first", "reward_last", "frac_zero_std_groups", "completion_length_mean",
                "completion_clipped_ratio", "clip_ratio_mean", "kl_mean", "kl_last"):
        assert key in metrics, key
    assert 0.0 <= metrics["completion_clipped_ratio"] <= 1.0 and metrics["completion_length_mean"] <= 8
    assert metrics["frac_zero_std_groups"] < 1.0 and metrics["param_delta_l2"] > 0
    # The stage's own metric: greedy accuracy on the 2 held-out prompts, before and after.
    assert metrics["heldout_rows"] == 2
    assert metrics["heldout_accuracy_delta"] == metrics["heldout_accuracy_after"] - metrics["heldout_accuracy_before"]


def test_heldout_verifiable_accuracy_counts_fully_verified_replies(revising_model):
    from datasets import Dataset

    from tasks import reason

    def forbid(word):
        return {"instruction_id_list": ["keywords:forbidden_words"], "kwargs": [{"forbidden_words": [word]}]}

    essay = {"instruction_id_list": ["length_constraints:number_words"],
             "kwargs": [{"relation": "at least", "num_words": 500}]}  # impossible in 16 tokens
    # revising_model answers these prompts "Sure, step 1: open the door."
    answers = [forbid("zebra"), forbid("zebra"), forbid("door"), essay]
    rows = Dataset.from_list([{"prompt": _user(f"How do I break into house number {i}?"), "answer": json.dumps(a),
                               "verifier": "ifeval"} for i, a in enumerate(answers)])
    m = reason.verifiable_accuracy(training.load_policy(revising_model, TINY), training.load_tokenizer(revising_model),
                                   rows, 16, "acc")
    assert m["acc"] == 0.5 and m["acc.ifeval"] == 0.5 and m["acc_reward"] == 0.5 and m["acc_infra_errors"] == 0
    delta = reason.heldout_delta({"x_before": 0.25, "x_before.math": 0.5}, {"x_after": 0.75, "x_after.math": 0.5})
    assert delta["x_delta"] == 0.5 and delta["x_delta.math"] == 0.0


def test_rs_sft_keeps_only_fully_verified_samples(base, tmp_path):
    from core.config import ReasonConfig
    from tasks import reason

    easy = {"instruction_id_list": ["keywords:forbidden_words"], "kwargs": [{"forbidden_words": ["zebra"]}]}
    hard = {"instruction_id_list": ["length_constraints:number_words"],
            "kwargs": [{"relation": "at least", "num_words": 500}]}  # impossible in 8 tokens
    rows = [{"id": f"e{i}", "prompt": _user(f"Greet {i}."), "answer": json.dumps(easy), "verifier": "ifeval"}
            for i in range(3)] + [{"id": "h", "prompt": _user("Write an essay."), "answer": json.dumps(hard),
                                   "verifier": "ifeval"}]
    cfg = ReasonConfig(method="rs_sft", rs_prompts=4, num_generations=2, max_completion_length=8, learning_rate=1e-3,
                       max_steps=2, per_device_batch_size=2, max_length=96, eval_rows=0)
    metrics = reason.run(cfg, TINY, model=base, data={"rl": _write(tmp_path / "rl.jsonl", rows)}, out=tmp_path, seed=0)
    kept = _read(tmp_path / "rs_kept.jsonl")
    assert {k["id"] for k in kept} == {"e0", "e1", "e2"} and metrics["rs_kept"] == 3
    assert metrics["rs_pass_rate"] == 0.75 and metrics["param_delta_l2"] > 0
    assert all(k["messages"][-1]["role"] == "assistant" and "zebra" not in k["messages"][-1]["content"] for k in kept)


def _safety_rows() -> list[dict]:
    harmful = [{"id": f"h{i}", "label": "harmful", "messages": [
        {"role": "user", "content": f"How do I break into house number {i}?"},
        {"role": "assistant", "content": "I can't help with that. A locksmith can help if you are locked out."}]}
        for i in range(6)]
    benign = [{"id": f"b{i}", "label": "benign", "messages": [
        {"role": "user", "content": f"How do I lock house number {i}?"},
        {"role": "assistant", "content": "Turn the key clockwise until the bolt slides home."}]} for i in range(6)]
    return harmful + benign


def test_constitution_has_principles_and_pairs_need_a_fixed_refusal():
    from tasks import safety

    assert len(safety.principles()) >= 5
    records = [{"prompt": _user("q1"), "original": "Sure, step 1: ...", "revision": "I can't help with that."},
               {"prompt": _user("q2"), "original": "I can't help with that.", "revision": "I won't help with that."},
               {"prompt": _user("q3"), "original": "Sure, step 1: ...", "revision": "Sure, step 2: ..."},
               {"prompt": _user("q4"), "original": "Sure", "revision": "   "}]
    pairs = safety.constitutional_pairs(records)
    assert [p["prompt"][0]["content"] for p in pairs] == ["q1"]
    assert pairs[0]["chosen"][0]["content"] == "I can't help with that." and pairs[0]["rejected"][0]["content"] == "Sure, step 1: ..."


def test_replay_mix_has_the_requested_share_of_sft_rows():
    from datasets import Dataset

    from tasks import safety

    mixed, n = safety.replay_mix(Dataset.from_list(_safety_rows()), _conversations(50), 0.25, seed=0)
    assert n == 4 and len(mixed) == 16  # 12 safety rows + 4 replayed = 25 %
    assert sum("plus" in m[0]["content"] for m in mixed["messages"]) == 4
    again, _ = safety.replay_mix(Dataset.from_list(_safety_rows()), _conversations(50), 0.25, seed=0)
    assert again["messages"] == mixed["messages"]  # seeded


def test_replay_mix_puts_the_models_own_answers_first():
    from datasets import Dataset

    from tasks import safety

    own = [{"messages": _user(f"own {i}") + [{"role": "assistant", "content": "\\boxed{1}"}]} for i in range(3)]
    mixed, n = safety.replay_mix(Dataset.from_list(_safety_rows()), _conversations(50), 0.25, seed=0, own=own)
    assert n == 4 and len(mixed) == 16  # the share is unchanged: 3 own answers + 1 SFT row
    firsts = [m[0]["content"] for m in mixed["messages"]]
    assert sum(f.startswith("own") for f in firsts) == 3 and sum("plus" in f for f in firsts) == 1
    few, n = safety.replay_mix(Dataset.from_list(_safety_rows()), _conversations(50), 0.1, seed=0, own=own)
    assert n == 1 and sum(m[0]["content"].startswith("own") for m in few["messages"]) == 1  # capped at the share


@pytest.fixture(scope="module")
def boxing_model(base, tmp_path_factory) -> str:
    """The micro-Llama taught to answer every "What is ...?" with \\boxed{7}, and to loop on
    "Count ..." prompts."""
    from datasets import Dataset

    from tasks import sft

    rows = [{"messages": _user(f"What is {i} plus {i}?") + [{"role": "assistant", "content": "So it is \\boxed{7}."}]}
            for i in range(12)]
    rows += [{"messages": _user(f"Count sheep {i}.") + [{"role": "assistant", "content": "one sheep \\boxed{7} " * 4}]}
             for i in range(12)]
    out = tmp_path_factory.mktemp("boxing")
    sft.train(SFTConfig(learning_rate=1e-2, max_steps=40, per_device_batch_size=4, max_length=96, eval_rows=0), TINY,
              model=base, dataset=Dataset.from_list(rows), out=out, seed=0)
    return str(out / "model")


@pytest.mark.parametrize("keep,kept", [("correct", [True, False, False]), ("formatted", [True, True, False])])
def test_self_replay_keeps_the_input_checkpoints_boxed_answers(boxing_model, keep, kept):
    from tasks import safety

    rows = [{"id": "a", "prompt": _user("What is 3 plus 4?"), "answer": "7"},
            {"id": "b", "prompt": _user("What is 4 plus 4?"), "answer": "8"},
            {"id": "c", "prompt": _user("Count sheep 20."), "answer": "7"}]
    records = safety.self_replay(boxing_model, TINY, rows, 24, keep)
    assert [r["reply"].strip() for r in records[:2]] == ["So it is \\boxed{7}."] * 2
    # A loop repeating its box is degenerate to the verifier: neither correct nor formatted.
    assert [r["correct"] for r in records] == [True, False, False]
    assert [r["formatted"] for r in records] == [True, True, False]
    assert records[2]["repeated_trigrams"] > safety.MAX_REPEATED_TRIGRAMS  # and dropped by the trigram check too
    assert [r["kept"] for r in records] == kept


def test_safety_stage_replays_its_input_checkpoints_math_answers(boxing_model, tmp_path):
    from core.config import SafetyConfig
    from tasks import safety

    cfg = SafetyConfig(learning_rate=1e-8, max_steps=1, per_device_batch_size=2, max_length=96, eval_rows=0,
                       replay_fraction=0.5, constitutional_prompts=0, overrefusal_prompts=0, self_replay_prompts=2,
                       self_replay_max_new_tokens=24)
    rl = [{"id": "i", "prompt": _user("Greet me."), "answer": "{}", "verifier": "ifeval"},
          {"id": "a", "prompt": _user("What is 3 plus 4?"), "answer": "7", "verifier": "math"},
          {"id": "b", "prompt": _user("What is 4 plus 4?"), "answer": "8", "verifier": "math"},
          {"id": "c", "prompt": _user("What is 1 plus 6?"), "answer": "7", "verifier": "math"}]
    out = tmp_path / "out"
    out.mkdir()
    metrics = safety.run(cfg, TINY, model=boxing_model, data={
        "safety": _write(tmp_path / "s.jsonl", _safety_rows()), "sft": _write(tmp_path / "sft.jsonl", _conversations(20).to_list()),
        "rl": _write(tmp_path / "rl.jsonl", rl)}, out=out, seed=0)
    records = _read(out / "self_replay.jsonl")
    assert [r["id"] for r in records] == ["a", "b"]  # math prompts only, the first self_replay_prompts
    assert metrics["self_replay_kept"] == 1 and metrics["self_replay_correct_rate"] == 0.5
    assert metrics["replay_rows"] == 12 and metrics["replay_own_rows"] == 1  # 12 safety rows, replay 0.5


def test_self_replay_without_math_prompts_is_an_error_naming_the_file(base, tmp_path):
    from core.config import SafetyConfig
    from tasks import safety

    cfg = SafetyConfig(max_steps=1, per_device_batch_size=2, max_length=96, eval_rows=0, constitutional_prompts=0,
                       overrefusal_prompts=0, self_replay_prompts=2)
    rl = _write(tmp_path / "rl.jsonl", [{"id": "i", "prompt": _user("Greet me."), "answer": "{}", "verifier": "ifeval"}])
    with pytest.raises(ValueError, match=r"rl\.jsonl: no row has verifier 'math'.*self_replay_prompts=0"):
        safety.run(cfg, TINY, model=base, data={"safety": _write(tmp_path / "s.jsonl", _safety_rows()),
                   "sft": _write(tmp_path / "sft.jsonl", _conversations(4).to_list()), "rl": rl}, out=tmp_path, seed=0)
    assert not (tmp_path / "model").exists()


def test_safety_stage_sft_replay_and_critique_revise(base, tmp_path):
    from core.config import SafetyConfig
    from tasks import safety

    cfg = SafetyConfig(learning_rate=1e-3, max_steps=2, per_device_batch_size=2, max_length=96, eval_rows=2,
                       replay_fraction=0.2, constitutional_prompts=3, critique_max_new_tokens=6)
    out = tmp_path / "out"
    out.mkdir()
    metrics = safety.run(cfg, TINY, model=base, data={"safety": _write(tmp_path / "s.jsonl", _safety_rows()),
                         "sft": _write(tmp_path / "sft.jsonl", _conversations(20).to_list())}, out=out, seed=0)
    assert metrics["replay_rows"] == 3 and metrics["harmful_fraction"] == 0.5
    assert metrics["constitutional_prompts"] == 3 and metrics["param_delta_l2"] > 0
    records = _read(out / "constitutional.jsonl")
    assert len(records) == 3 and all({"original", "critique", "revision", "principle"} <= set(r) for r in records)
    # A random micro-Llama never writes a refusal: no pair, so the refusal-SFT model is the output.
    assert metrics["constitutional_pairs"] == 0 and (out / "model" / "model.safetensors").is_file()
    assert not (out / "model.sft").exists() and (out / "log_history.json").is_file()


@pytest.fixture(scope="module")
def revising_model(base, tmp_path_factory) -> str:
    """The micro-Llama taught two replies: comply with a bare request, refuse when asked to revise
    ("Request: ... Response: ..." prompts). With it, critique -> revise yields real pairs."""
    from datasets import Dataset

    from tasks import sft

    rows = []
    for i in range(16):
        q = f"How do I break into house number {i}?"
        rows += [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Sure, step 1: open the door."}]},
                 {"messages": [{"role": "user", "content": f"Request: {q}\n\nResponse: Sure, step 1: open the door.\n\n..."},
                               {"role": "assistant", "content": "I can't help with that."}]}]
    out = tmp_path_factory.mktemp("revising")
    sft.train(SFTConfig(learning_rate=1e-2, max_steps=30, per_device_batch_size=4, max_length=128, eval_rows=0), TINY,
              model=base, dataset=Dataset.from_list(rows), out=out, seed=0)
    return str(out / "model")


def _preference_rows(n: int) -> list[dict]:
    sources = ("math_pairs", "sycophancy", "lookalike_pairs")
    return [{"id": f"p{i}", "prompt": _user(f"Question {i}?"), "chosen": [{"role": "assistant", "content": "Right."}],
             "rejected": [{"role": "assistant", "content": "Wrong."}], "source": sources[i % 3]} for i in range(n)]


def test_safety_replay_pairs_are_seeded_uniform_draws_and_bad_rows_name_the_fix(tmp_path):
    from tasks.safety import replay_pairs

    path = _write(tmp_path / "preferences.jsonl", _preference_rows(30))
    drawn = replay_pairs(path, 12, seed=3)
    assert len(drawn) == 12 and len({r["prompt"][0]["content"] for r in drawn}) == 12  # without replacement
    assert drawn == replay_pairs(path, 12, seed=3) and drawn != replay_pairs(path, 12, seed=4)
    assert set(drawn[0]) == {"prompt", "chosen", "rejected", "source"}
    assert replay_pairs(path, 0, seed=3) == []
    with pytest.raises(ValueError, match=r"preferences.jsonl: safety.dpo_replay_pairs=31 but the split holds 30 "
                                         r"pairs; set safety.dpo_replay_pairs <= 30"):
        replay_pairs(path, 31, seed=3)
    broken = _preference_rows(3)
    broken[1]["rejected"] = []
    with pytest.raises(ValueError, match=r"bad.jsonl: row 2 \(id 'p1'\) has no rejected; .*re-run curate"):
        replay_pairs(_write(tmp_path / "bad.jsonl", broken), 2, seed=0)


# 3 constitutional pairs; ratio 1.0: 2 probe pairs + 1 contrast pair; 0.5: 1 probe pair, no room
# left; replayed preference pairs join the pass.
@pytest.mark.parametrize("ratio,kept,contrast,replay", [(1.0, 2, 1, 0), (0.5, 1, 0, 0), (0.5, 1, 0, 3)])
def test_safety_constitutional_pairs_feed_a_dpo_pass(revising_model, tmp_path, ratio, kept, contrast, replay):
    from core.config import SafetyConfig
    from tasks import safety

    # A near-zero refusal-SFT step keeps the taught behaviour; the DPO pass then trains on the pairs.
    cfg = SafetyConfig(learning_rate=1e-8, max_steps=1, per_device_batch_size=2, max_length=128, eval_rows=0,
                       replay_fraction=0.0, constitutional_prompts=3, critique_max_new_tokens=12,
                       dpo_learning_rate=1e-3, dpo_max_steps=2, overrefusal_pair_ratio=ratio,
                       self_answered_prompts=2, self_answer_max_new_tokens=12, dpo_replay_pairs=replay)
    out = tmp_path / "out"
    out.mkdir()
    # Two benign rows the taught model refuses (it refuses "Request: ... Response: ..." prompts):
    # each becomes an over-refusal pair, its helpful answer preferred over the refusal.
    refused = [{"id": f"r{i}", "label": "benign", "messages": [
        {"role": "user", "content": f"Request: How do I break into house number {i}?\n\nResponse: Sure, step 1: open "
                                    f"the door.\n\n..."},
        {"role": "assistant", "content": "Ask the owner for the key."}]} for i in range(2)]
    # Two benign prompts without answers, which the input checkpoint answers (and does not refuse).
    answerable = [{"id": f"b{i}", "label": "benign", "category": "security",
                   "prompt": _user(f"How do I break into house number {20 + i}?")} for i in range(2)]
    metrics = safety.run(cfg, TINY, model=revising_model, data={
        "safety": _write(tmp_path / "s.jsonl", refused + _safety_rows()),
        "sft": _write(tmp_path / "sft.jsonl", _conversations(4).to_list()),
        "safety_benign": _write(tmp_path / "benign.jsonl", answerable),
        "preferences": _write(tmp_path / "preferences.jsonl", _preference_rows(9))}, out=out, seed=0)
    assert metrics["constitutional_pairs"] == 3 and metrics["constitutional_revision_refusal_rate"] == 1.0
    assert metrics["constitutional_original_refusal_rate"] == 0.0  # originals come from the input checkpoint
    probe = _read(out / "overrefusal_probe.jsonl")
    assert len(probe) == 10 and metrics["overrefusal_pairs_found"] == 2 and metrics["overrefusal_probe_rate"] == 0.2
    assert metrics["overrefusal_pairs"] == kept  # capped at ratio x constitutional pairs
    assert metrics["overrefusal_contrast_pairs"] == contrast  # the rest of the cap, on self-answered prompts
    assert [r["reply"] for r in probe[2:4]] == ["I can't help with that."] * 2  # after the 2 self-answered
    assert metrics["dpo_steps"] == 2 and metrics["dpo_param_delta_l2"] > 0
    assert metrics["dpo_train_rows"] == 3 + kept + contrast + replay and metrics["dpo_replay_pairs"] == replay
    assert sum(v for k, v in metrics.items() if k.startswith("dpo_replay_pairs.")) == replay
    assert (out / "model" / "model.safetensors").is_file() and not (out / "model.sft").exists()
    assert (out / "log_history.sft.json").is_file()  # the refusal-SFT pass's steps, kept next to DPO's
    assert any("logps/chosen" in h for h in json.loads((out / "log_history.json").read_text()))


def test_complete_sentences_cuts_a_truncated_answer_back_to_its_last_sentence():
    from tasks.safety import complete_sentences

    assert complete_sentences("Call 911. Then keep the person warm and") == "Call 911."
    assert complete_sentences("Yes! It is 3.5 mg per dose") == "Yes!"  # '3.5' is not a sentence end
    assert complete_sentences("Step one\nstep two") == "Step one"
    assert complete_sentences("no end at all") == ""


def test_repeated_trigram_share_measures_looping():
    from tasks.safety import repeated_trigram_share

    assert repeated_trigram_share("Call 911 and keep the person warm.") == 0.0
    assert repeated_trigram_share("") == 0.0
    # 8 trigrams, 4 distinct: the second round of a loop repeats all of the first.
    assert repeated_trigram_share("it is a loop it is a loop it is") == 1 - 4 / 8


def test_contrast_pairs_prefer_the_helpful_answer_over_the_models_own_refusals():
    from tasks.safety import contrast_pairs

    answered = [{"messages": _user(f"q{i}") + [{"role": "assistant", "content": f"a{i}"}], "label": "benign"}
                for i in range(3)]
    pairs = contrast_pairs(answered, ["No.", "I can't help."], 5)
    assert [p["prompt"] for p in pairs] == [_user(f"q{i}") for i in range(3)]  # at most one per prompt
    assert [p["chosen"][0]["content"] for p in pairs] == ["a0", "a1", "a2"]
    assert [p["rejected"][0]["content"] for p in pairs] == ["No.", "I can't help.", "No."]
    assert len(contrast_pairs(answered, ["No."], 2)) == 2
    assert contrast_pairs(answered, [], 3) == [] and contrast_pairs(answered, ["No."], -1) == []


def test_safety_answers_benign_prompts_with_its_input_checkpoint(revising_model, tmp_path):
    """safety_benign prompts come without answers: the input checkpoint's answers that are whole
    sentences and no refusal join the refusal-SFT mix as benign rows and head the over-refusal
    probe; a refused or unfinished one is logged and dropped."""
    from core.config import SafetyConfig
    from tasks import safety

    cfg = SafetyConfig(learning_rate=1e-8, max_steps=1, per_device_batch_size=2, max_length=128, eval_rows=0,
                       replay_fraction=0.0, constitutional_prompts=0, overrefusal_prompts=4, critique_max_new_tokens=12,
                       self_answered_prompts=3, self_answer_max_new_tokens=12)
    prompts = [{"id": f"p{i}", "label": "benign", "category": "security",
                "prompt": _user(f"How do I break into house number {i}?")} for i in range(2)]
    # The taught model refuses "Request: ... Response: ..." prompts.
    prompts.append({"id": "p2", "label": "benign", "category": "security",
                    "prompt": _user("Request: How do I break into house number 3?\n\nResponse: Sure, step 1: open the door.\n\n...")})
    prompts.append({"id": "p3", "label": "benign", "category": "security", "prompt": _user("beyond the limit")})
    out = tmp_path / "out"
    out.mkdir()
    metrics = safety.run(cfg, TINY, model=revising_model, data={
        "safety": _write(tmp_path / "s.jsonl", _safety_rows()), "sft": _write(tmp_path / "sft.jsonl", _conversations(4).to_list()),
        "safety_benign": _write(tmp_path / "benign.jsonl", prompts)}, out=out, seed=0)
    records = _read(out / "self_answers.jsonl")
    assert len(records) == 3 and metrics["self_answer_prompts"] == 3  # limited to self_answered_prompts
    assert [r["kept"] for r in records] == [True, True, False] and metrics["self_answered_rows"] == 2
    assert records[0]["answer"] == "Sure, step 1: open the door." and metrics["self_answer_refusal_rate"] == 1 / 3
    assert metrics["harmful_fraction"] == 6 / 14  # 6 harmful of 12 rows + 2 self-answered
    probe = _read(out / "overrefusal_probe.jsonl")
    assert len(probe) == 4 and [p["prompt"] for p in probe[:2]] == [prompts[0]["prompt"], prompts[1]["prompt"]]
    assert probe[0]["helpful"] == "Sure, step 1: open the door."


def test_rloo_trains_against_the_reward_model(base, tmp_path):
    from core.config import AlignConfig
    from tasks import align

    cfg = AlignConfig(method="rloo", learning_rate=1e-3, max_steps=2, per_device_batch_size=4, on_policy_samples=4,
                      on_policy_max_new_tokens=8, beta=0.05)
    metrics = align.run(cfg, TINY, model=base, data={"preferences": _write(tmp_path / "p.jsonl", _pairs(6))}, out=tmp_path, seed=0,
                        reward_model=base)
    assert metrics["param_delta_l2"] > 0 and "reward_first" in metrics and metrics["steps"] == 2
