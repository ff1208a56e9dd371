"""safety: refusal SFT mixed with helpful answers to benign look-alikes and replayed SFT data, then a
constitutional DPO pass.

1. Refusal SFT (tasks/sft.train): calibrated refusals (short, no lecture, a safe alternative) for
   harmful prompts; the benign twins of the same topics answered helpfully, so the model does not
   learn "edgy topic => refuse" (over-refusal); plus `replay_fraction` of the mix drawn from the
   earlier SFT split, to limit the alignment tax (forgetting of math/format). The curated
   look-alikes are mostly plainly benign ("How do I bake cookies?"), while over-refusal shows on
   edgy-sounding benign prompts ("symptoms of a fentanyl overdose"); so the stage's *input*
   checkpoint first answers `self_answered_prompts` of the `safety_benign` split (such prompts,
   without answers; disjoint from the eval half), and its non-refusing answers, cut back to the
   last whole sentence, join the mix as helpful rows (out/self_answers.jsonl keeps them all).
   The replayed share starts with the input checkpoint's own \\boxed{} answers to
   `self_replay_prompts` math prompts of the rl split (out/self_replay.jsonl): curated answers
   alone are another writer's, and replaying only them let math answers drift into loops.
2. Constitutional critique -> revise (tasks/constitution.md): on `constitutional_prompts` harmful
   prompts, the stage's *input* checkpoint answers (what the model did before safety training;
   the refusal-trained one has just been taught these very prompts and would rarely comply), and
   the refusal-trained model critiques that answer against one principle and rewrites it. A pair
   (chosen = revision, rejected = original) is kept when the revision is a refusal and the
   original was not (evaluations/refusal.py's pattern check: the same one the evaluation uses).
   Over-refusal pairs: the refusal-trained model answers `overrefusal_prompts` benign training
   prompts (self-answered ones first, then look-alikes); each one it refuses becomes (chosen =
   the row's helpful answer, rejected = that refusal). Refusal SFT alone teaches "edgy topic =>
   refuse"; these pairs are the contrast, `overrefusal_pair_ratio` of them per constitutional
   pair (more undoes the refusals), filled up with contrast pairs (a self-answered prompt, its
   helpful answer > one of the model's own refusals) when the probe finds too few.
3. DPO on both kinds of pairs (tasks/align.train), plus `dpo_replay_pairs` pairs of align's
   `preferences` split (seeded, uniform) so the pass does not pull the policy away from what
   align taught. No safety pair kept skips the pass; constitutional_pairs=0 and
   overrefusal_pairs=0 in the metrics say so.
Run alone: `posttrain stage safety --profile tiny`.
"""

from __future__ import annotations

import math
import random
import re
import shutil
from collections import Counter
from pathlib import Path

from core import generation, training
from core.config import AlignConfig, ModelConfig, SafetyConfig, TrainConfig
from evaluations.math_score import has_answer_format, is_correct
from evaluations.refusal import is_refusal
from tasks import align, onpolicy, sft, stage_data

CONSTITUTION = Path(__file__).with_name("constitution.md")


def principles(path: Path = CONSTITUTION) -> list[str]:
    text = path.read_text(encoding="utf-8").split("## Principles", 1)
    found = re.findall(r"^- (.+)$", text[1] if len(text) == 2 else "", re.M)
    if not found:
        raise ValueError(f"{path}: no principles found; list them as '- ...' lines under a '## Principles' heading")
    return found


def replay_mix(safety_rows, sft_rows, fraction: float, seed: int, own: list[dict] | None = None):
    """The safety rows plus replayed rows making up `fraction` of the result (seeded): the model's
    own answers (`own`, rows with `messages`) first, then rows of the SFT split for the rest."""
    from datasets import Dataset, concatenate_datasets

    n = round(len(safety_rows) * fraction / (1.0 - fraction)) if fraction > 0 else 0
    own = (own or [])[:n]
    n = min(n, len(own) + len(sft_rows))
    picked = sorted(random.Random(seed).sample(range(len(sft_rows)), n - len(own)))
    replay = Dataset.from_list([{"messages": r["messages"]} for r in own] +
                               [{"messages": sft_rows[i]["messages"]} for i in picked])
    mixed = concatenate_datasets([safety_rows.select_columns(["messages"]), replay]) if n else \
        safety_rows.select_columns(["messages"])
    return mixed.shuffle(seed=seed), n


def _greedy(model_dir: str, model_cfg: ModelConfig, max_new_tokens: int):
    """The checkpoint at model_dir as a function prompts -> greedy (deterministic) replies."""
    tok = training.load_tokenizer(model_dir)
    model = training.load_policy(model_dir, model_cfg)
    return lambda prompts: generation.generate(model, tok, prompts, max_new_tokens, generation.STAGE_BATCH)


def critique_revise(model_dir: str, model_cfg: ModelConfig, prompts: list[list[dict]], max_new_tokens: int,
                    rules: list[str], original_model: str | None = None) -> list[dict]:
    """Original answer (by original_model, default model_dir), then critique and revision by
    model_dir; greedy (deterministic)."""
    originals = _greedy(original_model or model_dir, model_cfg, max_new_tokens)(prompts)
    reviser = _greedy(model_dir, model_cfg, max_new_tokens)
    rule = [rules[i % len(rules)] for i in range(len(prompts))]
    request = [p[-1]["content"] for p in prompts]
    critiques = reviser([[{"role": "user", "content": (
        f"Request: {q}\n\nResponse: {a}\n\nPrinciple: {r}\n\nDoes the response follow the principle? Critique it in "
        f"one or two sentences.")}] for q, a, r in zip(request, originals, rule)])
    revisions = reviser([[{"role": "user", "content": (
        f"Request: {q}\n\nResponse: {a}\n\nCritique: {c}\n\nRewrite the response so that it follows this principle: "
        f"{r}\nReply with the rewritten response only.")}] for q, a, c, r in zip(request, originals, critiques, rule)])
    return [{"prompt": p, "principle": r, "original": a, "critique": c, "revision": v}
            for p, r, a, c, v in zip(prompts, rule, originals, critiques, revisions)]


def constitutional_pairs(records: list[dict]) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["revision"]}],
             "rejected": [{"role": "assistant", "content": r["original"]}]}
            for r in records if r["revision"].strip() and is_refusal(r["revision"]) and not is_refusal(r["original"])]


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def complete_sentences(text: str) -> str:
    """`text` up to its last sentence end: an answer cut at max_new_tokens, made a whole one (an
    SFT target that stops mid-sentence teaches stopping mid-sentence)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


# A greedy answer from a small model often loops ("It is a legal defense that ... It is a legal
# defense that ..."); SFT on loops teaches looping, which shows as math answers that never reach
# their final line. 0.2 keeps most whole answers of the default model and drops the loops
# (docs/TUNING.md has the measurement).
MAX_REPEATED_TRIGRAMS = 0.2


def repeated_trigram_share(text: str) -> float:
    """Share of the word trigrams of `text` that repeat an earlier one (0 = no repetition)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def self_answer(model_dir: str, model_cfg: ModelConfig, rows: list[dict], max_new_tokens: int) -> list[dict]:
    """The input checkpoint's greedy answers to benign prompts that come without one (the
    `safety_benign` split: edgy-sounding but harmless requests). The model before safety training
    rarely refuses, so its answers are the helpful side: SFT rows next to the refusals, and the
    chosen side of over-refusal pairs. `kept` is False for a refusal, an empty answer or one that
    loops (more than MAX_REPEATED_TRIGRAMS of its trigrams repeated)."""
    prompts = [r["prompt"] for r in rows]
    replies = _greedy(model_dir, model_cfg, max_new_tokens)(prompts)
    out = []
    for p, r, text in zip(prompts, rows, replies):
        answer = complete_sentences(text)
        repeated = repeated_trigram_share(answer)
        refused = is_refusal(text)
        out.append({"prompt": p, "category": r.get("category", ""), "reply": text, "answer": answer,
                    "repeated_trigrams": repeated, "refused": refused,
                    "kept": bool(answer) and not refused and repeated <= MAX_REPEATED_TRIGRAMS})
    return out


def self_replay(model_dir: str, model_cfg: ModelConfig, rows: list[dict], max_new_tokens: int, keep: str) -> list[dict]:
    """The input checkpoint's greedy answers to math prompts of the rl split, to replay next to the
    refusals: the model's own answers hold its answer format closer than the curated SFT answers
    do (those are another writer's; replaying only them let math answers drift into loops that
    never reach \\boxed{}). `kept`: a \\boxed{} answer that does not loop, and (keep="correct")
    that math-verify accepts."""
    prompts = [r["prompt"] for r in rows]
    replies = _greedy(model_dir, model_cfg, max_new_tokens)(prompts)
    out = []
    for p, r, text in zip(prompts, rows, replies):
        formatted, correct = has_answer_format(text, r["answer"]), is_correct(text, r["answer"])
        repeated = repeated_trigram_share(text)
        out.append({"id": r["id"], "prompt": p, "reply": text, "gold": r["answer"], "formatted": formatted,
                    "correct": correct, "repeated_trigrams": repeated,
                    "kept": formatted and repeated <= MAX_REPEATED_TRIGRAMS and (correct or keep == "formatted")})
    return out


def overrefusal_probe(model_dir: str, model_cfg: ModelConfig, rows: list[dict], max_new_tokens: int) -> list[dict]:
    """The model's greedy replies to benign rows (their `messages` end with the helpful answer)."""
    prompts = [r["messages"][:-1] for r in rows]
    replies = _greedy(model_dir, model_cfg, max_new_tokens)(prompts)
    return [{"prompt": p, "helpful": r["messages"][-1]["content"], "reply": t} for p, r, t in zip(prompts, rows, replies)]


def overrefusal_pairs(records: list[dict]) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["helpful"]}],
             "rejected": [{"role": "assistant", "content": r["reply"]}]} for r in records if is_refusal(r["reply"])]


def contrast_pairs(answered: list[dict], refusals: list[str], n: int) -> list[dict]:
    """Up to `n` (helpful answer > refusal) pairs on self-answered benign prompts: the refusals are
    the refusal-trained model's own (its revisions of red-team answers), in turn. The probe finds
    few refused prompts among those the refusal SFT has just trained on, and a DPO pass of refusal
    pairs alone teaches refusing whatever sounds edgy (held-out over-refusal rose sharply without
    them; docs/TUNING.md)."""
    if not refusals:
        return []
    return [{"prompt": a["messages"][:-1], "chosen": [a["messages"][-1]],
             "rejected": [{"role": "assistant", "content": refusals[i % len(refusals)]}]}
            for i, a in enumerate(answered[:max(n, 0)])]


def replay_pairs(path: Path, n: int, seed: int) -> list[dict]:
    """`n` {prompt, chosen, rejected} rows of the preference split at `path`, drawn seeded and
    uniformly (so each source keeps its share of the split), each with its `source`."""
    if not n:
        return []
    rows = [dict(r) for r in training.load_rows(path)]
    if n > len(rows):
        raise ValueError(f"{path}: safety.dpo_replay_pairs={n} but the split holds {len(rows)} pairs; "
                         f"set safety.dpo_replay_pairs <= {len(rows)} (or grow curate.splits.preferences.size)")
    keys = ("prompt", "chosen", "rejected")
    for i, r in enumerate(rows):
        missing = [k for k in keys if not r.get(k)]
        if missing:
            raise ValueError(f"{path}: row {i + 1} (id {r.get('id')!r}) has no {', '.join(missing)}; every "
                             f"preference row needs prompt, chosen and rejected messages (re-run curate)")
    return [{**{k: r[k] for k in keys}, "source": r.get("source", "")} for r in random.Random(seed).sample(rows, n)]


# The curated splits this stage reads (their DVC md5s are inputs of its version key): the safety
# split; sft, replayed into the refusal mix; safety_benign and rl, prompts the input checkpoint
# answers; preferences, pairs replayed into the DPO pass. The constitution is read too.
SPLITS = ("safety", "sft", "preferences", "safety_benign", "rl")
FILES = (CONSTITUTION,)


def run(cfg: SafetyConfig, model_cfg: ModelConfig, *, model: str, data: dict[str, Path], out: Path,
        seed: int) -> dict[str, float]:
    """data: {split: path}; "safety" and "sft" are required, the others only where a setting reads them."""
    # A hub dataset (GPU profiles: hh-rlhf harmless-base) has dialogues but no harm labels.
    curated_rows = stage_data.load(cfg, data["safety"], "messages" if cfg.dataset else "safety_messages")
    labels = curated_rows["label"] if "label" in curated_rows.column_names else []
    metrics: dict[str, float] = {}
    answered = _self_answered(cfg, model_cfg, model, data.get("safety_benign"), out, metrics) if labels else []
    metrics.update(_refusal_sft(cfg, model_cfg, model, curated_rows, answered, data, out, seed))
    # Without harm labels (a hub dialogue dataset) there is nothing to critique or probe.
    pairs = _safety_pairs(cfg, model_cfg, model, curated_rows, answered, out, metrics) if labels else []
    if not labels:
        metrics.update(dict.fromkeys(("constitutional_pairs", "overrefusal_pairs_found", "overrefusal_pairs",
                                      "overrefusal_contrast_pairs"), 0.0))
    if not pairs:
        # The refusal-SFT model is the stage's output.
        (out / "model.sft").rename(out / "model")
        (out / "log_history.sft.json").rename(out / "log_history.json")
        return metrics
    metrics.update(_dpo_pass(cfg, model_cfg, pairs, data.get("preferences"), out, seed))
    return metrics


def _self_answered(cfg: SafetyConfig, model_cfg: ModelConfig, model: str, benign_data: Path | None, out: Path,
                   metrics: dict[str, float]) -> list[dict]:
    """The input checkpoint's non-refusing answers to edgy-sounding benign prompts, as helpful rows."""
    if benign_data is None or not cfg.self_answered_prompts:
        return []
    rows = list(training.load_rows(benign_data, cfg.self_answered_prompts))
    records = self_answer(model, model_cfg, rows, cfg.self_answer_max_new_tokens)
    onpolicy.write(records, out / "self_answers.jsonl")
    answered = [{"messages": r["prompt"] + [{"role": "assistant", "content": r["answer"]}], "label": "benign",
                 "category": f"self_answered:{r['category']}"} for r in records if r["kept"]]
    metrics.update({"self_answer_prompts": float(len(records)), "self_answered_rows": float(len(answered)),
                    "self_answer_refusal_rate": sum(r["refused"] for r in records) / len(records)})
    return answered


def _refusal_sft(cfg: SafetyConfig, model_cfg: ModelConfig, model: str, curated_rows, answered: list[dict],
                 data: dict[str, Path], out: Path, seed: int) -> dict[str, float]:
    """Pass 1: SFT on refusals, helpful look-alikes and replayed rows into out/model.sft (final
    only if no DPO pass follows; until then it is the intermediate phase "sft")."""
    from datasets import Dataset, concatenate_datasets

    metrics: dict[str, float] = {}
    safety_rows = curated_rows
    if answered:
        cols = [c for c in ("messages", "label", "category") if c in safety_rows.column_names]
        safety_rows = concatenate_datasets([safety_rows.select_columns(cols),
                                            Dataset.from_list([{c: a[c] for c in cols} for a in answered])])
    own: list[dict] = []
    if data.get("rl") is not None and cfg.self_replay_prompts:
        math_rows = [r for r in training.load_rows(data["rl"]) if r["verifier"] == "math"][: cfg.self_replay_prompts]
        if not math_rows:
            raise ValueError(f"{data['rl']}: no row has verifier 'math', so safety.self_replay_prompts="
                             f"{cfg.self_replay_prompts} has nothing to answer; add math prompts to the rl split or "
                             f"set safety.self_replay_prompts=0")
        records = self_replay(model, model_cfg, math_rows, cfg.self_replay_max_new_tokens, cfg.self_replay_keep)
        onpolicy.write(records, out / "self_replay.jsonl")
        own = [{"messages": r["prompt"] + [{"role": "assistant", "content": r["reply"]}]} for r in records if r["kept"]]
        metrics.update({"self_replay_prompts": float(len(records)), "self_replay_kept": float(len(own)),
                        "self_replay_correct_rate": sum(r["correct"] for r in records) / len(records),
                        "self_replay_format_rate": sum(r["formatted"] for r in records) / len(records)})
    mixed, replayed = replay_mix(safety_rows, training.load_rows(data["sft"]), cfg.replay_fraction, seed, own=own)
    metrics.update(sft.train(cfg, model_cfg, model=model, dataset=mixed, out=out, seed=seed, phase="sft"))
    labels = safety_rows["label"] if "label" in safety_rows.column_names else []
    if labels:
        metrics["harmful_fraction"] = labels.count("harmful") / len(labels)
    metrics.update({"replay_rows": float(replayed), "replay_own_rows": float(min(len(own), replayed)),
                    "replay_fraction_actual": replayed / len(mixed)})
    return metrics


def _safety_pairs(cfg: SafetyConfig, model_cfg: ModelConfig, model: str, curated_rows, answered: list[dict],
                  out: Path, metrics: dict[str, float]) -> list[dict]:
    """Pass 2: constitutional (revision > original) pairs, then over-refusal (helpful > refusal)
    pairs, capped at overrefusal_pair_ratio per constitutional pair and filled with contrast pairs."""
    harmful = [r["messages"][:-1] for r in curated_rows if r["label"] == "harmful"][: cfg.constitutional_prompts]
    pairs = []
    if harmful:
        records = critique_revise(str(out / "model.sft"), model_cfg, harmful, cfg.critique_max_new_tokens, principles(),
                                  original_model=model)
        pairs = constitutional_pairs(records)
        onpolicy.write(records, out / "constitutional.jsonl")
        metrics["constitutional_prompts"] = float(len(records))
        metrics["constitutional_original_refusal_rate"] = sum(is_refusal(r["original"]) for r in records) / len(records)
        metrics["constitutional_revision_refusal_rate"] = sum(is_refusal(r["revision"]) for r in records) / len(records)
    metrics["constitutional_pairs"] = float(len(pairs))
    # Self-answered (edgy-sounding) prompts first: the look-alikes of the safety split are mostly
    # plainly benign ("How do I bake cookies?"), while over-refusal shows on edgy ones.
    benign = (answered + [r for r in curated_rows if r["label"] == "benign"])[: cfg.overrefusal_prompts]
    over: list[dict] = []
    if benign:
        probe = overrefusal_probe(str(out / "model.sft"), model_cfg, benign, cfg.critique_max_new_tokens)
        over = overrefusal_pairs(probe)
        onpolicy.write(probe, out / "overrefusal_probe.jsonl")
        metrics["overrefusal_probe_rate"] = len(over) / len(probe)
    metrics["overrefusal_pairs_found"] = float(len(over))
    # Balanced against the refusal side (config.SafetyConfig.overrefusal_pair_ratio says why); the
    # probe keeps every refused prompt, so the dropped pairs stay inspectable.
    cap = math.floor(cfg.overrefusal_pair_ratio * len(pairs))
    over = over[:cap]
    # Short of the cap: contrast pairs on self-answered prompts the probe did not catch refused.
    caught = {str(p["prompt"]) for p in over}
    contrast = contrast_pairs([a for a in answered if str(a["messages"][:-1]) not in caught],
                              [p["chosen"][0]["content"] for p in pairs], cap - len(over))
    metrics["overrefusal_pairs"] = float(len(over))
    metrics["overrefusal_contrast_pairs"] = float(len(contrast))
    return pairs + over + contrast


def _dpo_pass(cfg: SafetyConfig, model_cfg: ModelConfig, pairs: list[dict], preference_data: Path | None, out: Path,
              seed: int) -> dict[str, float]:
    """Pass 3: DPO from out/model.sft on the safety pairs plus replayed preference pairs -> out/model."""
    from datasets import Dataset

    if cfg.dpo_replay_pairs and preference_data is None:
        raise ValueError(f"safety.dpo_replay_pairs={cfg.dpo_replay_pairs} needs the preferences split; "
                         f"pass data['preferences'] or set safety.dpo_replay_pairs=0")
    replayed_pairs = replay_pairs(preference_data, cfg.dpo_replay_pairs, seed)  # [] at 0, path unread
    metrics = {"dpo_replay_pairs": float(len(replayed_pairs))}
    metrics.update({f"dpo_replay_pairs.{source}": float(n)
                    for source, n in Counter(r.pop("source") for r in replayed_pairs).items()})
    shared = {f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__}
    dpo_cfg = AlignConfig(**{**shared, "learning_rate": cfg.dpo_learning_rate, "max_steps": cfg.dpo_max_steps,
                             "beta": cfg.dpo_beta})
    dpo = align.train(dpo_cfg, model_cfg, model=str(out / "model.sft"), dataset=Dataset.from_list(pairs + replayed_pairs),
                      out=out, seed=seed)
    shutil.rmtree(out / "model.sft")  # out/model (after DPO) is the stage's output
    metrics.update({f"dpo_{k}": v for k, v in dpo.items()})
    return metrics
