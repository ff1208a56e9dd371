"""The data contract: what a row of each split format looks like, and the fix to name when it does not.

The one definition that the source adapters (tasks/curate/sources/), the great-expectations suites
(tasks/curate/validate.py) and a stage's hub dataset (tasks/stage_data.py) all check against:
the fields of each format, the role pattern of each chat field, the allowed verifiers and labels,
the check that a gold answer can be scored by its verifier, and the fix text for each field.

A chat field is a list of {"role", "content"} turns; its roles, joined by commas, must match the
field's pattern in ROLES. `problem` finds the first fault of a row (for a message naming file,
line and fix); the GX suites check the same patterns and values on whole splits.
"""

from __future__ import annotations

import json
import re

# Fields each format needs (beyond id and provenance).
FORMATS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "safety_messages": ("messages", "label", "category"),
    "preference": ("prompt", "chosen", "rejected"),
    "verifiable": ("prompt", "answer", "verifier"),
    "safety_prompts": ("prompt", "label", "category"),
}
# Role sequence of each chat field: user/assistant alternate (an optional system turn first); a
# conversation ends with the assistant, a prompt with the user; a preference reply is one turn.
ROLES = {
    "messages": r"^(?:system,)?(?:user,assistant,)*user,assistant$",
    "prompt": r"^(?:system,)?(?:user,assistant,)*user$",
    "chosen": r"^assistant$",
    "rejected": r"^assistant$",
}
VERIFIERS = ("math", "code", "ifeval")  # the reward functions of evaluations/verifiers.py
LABELS = ("harmful", "benign")
# Provenance every curated row carries (tasks/curate/sources stamps it).
PROVENANCE = ("source", "source_version", "license", "seed", "transform_version")

# The fix for a bad field of a source row.
FIX = {
    "messages": "`messages` must be a JSON list of {\"role\": ..., \"content\": ...} turns alternating user/assistant "
                "(optional system first), ending with assistant",
    "prompt": "`prompt` must be a string or a list of {role, content} turns ending with a user turn",
    "chosen": "`chosen` must be a string or [{\"role\": \"assistant\", \"content\": ...}]",
    "rejected": "`rejected` must be a string or [{\"role\": \"assistant\", \"content\": ...}]",
    "answer": "`answer` must be a final answer math-verify can parse, e.g. \"42\", \"3/4\", \"\\\\frac{1}{2}\" (verifier math), "
              "JSON {\"prompt\", \"test\", \"entry_point\"} (code) or JSON {\"instruction_id_list\", \"kwargs\"} (ifeval)",
    "verifier": f"`verifier` must be one of {', '.join(VERIFIERS)} (or set `fixed: {{verifier: math}}` on the source)",
    "label": f"`label` must be {' or '.join(LABELS)} (or set `fixed: {{label: ...}}` on the source)",
    "category": "`category` must be a non-empty string (or set `fixed: {category: ...}` on the source)",
}
# The fix by reason, where the reason says more than the field does.
REASON_FIX = {
    "chosen_equals_rejected": "drop the pair, or give `rejected` a genuinely worse answer (identical answers teach nothing)",
    "roles_out_of_order": "order turns user, assistant, user, ... (optional system first); merge consecutive turns of one role",
    "empty_turn": "remove the row or fill the empty turn; whitespace-only turns train the model to say nothing",
    "unparseable_answer": FIX["answer"],
}
# The fix by column of a split's GX suite (tasks/curate/validate.derive makes those columns).
COLUMN_FIX = {
    "roles": "each row's messages must be a list of {role, content} alternating user/assistant (optional system first), ending with assistant",
    "prompt_roles": "prompt must be a list of {role, content} turns ending with a user turn",
    "chosen_roles": "chosen must be a one-turn list [{role: assistant, content}]",
    "rejected_roles": "rejected must be a one-turn list [{role: assistant, content}]",
    "shortest_turn": "remove or fill empty / whitespace-only turns",
    "chosen_shortest": "chosen has an empty turn",
    "rejected_shortest": "rejected has an empty turn",
    "chosen_differs": "chosen and rejected are identical: drop the pair, it carries no preference",
    "answer_parses": "the gold answer must be a non-empty string math-verify can parse (e.g. '42', '3/4') for math rows, "
                     "JSON {prompt, test, entry_point} for code rows, JSON {instruction_id_list, kwargs} for ifeval rows",
    "label": f"label must be {' or '.join(repr(x) for x in LABELS)}",
    "verifier": f"verifier must be one of {', '.join(VERIFIERS)}",
    "id": "every row needs a unique, non-null id",
    "source": "every row records where it came from (provenance): set 'source'",
    "license": "every row records its licence (provenance): set 'license'",
    "source_version": "every row records its source's version (provenance): package version, file sha256 or dataset fingerprint",
    "seed": "every row records the generator/sampling seed it was made with (provenance)",
    "transform_version": "every row records the version of the conversion that made it (tasks/curate/sources.TRANSFORM_VERSION)",
}


class DataValidationError(ValueError):
    """Data that breaks the contract; the message names where, what and the fix."""


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def role_sequence(turns) -> str:
    """The roles of a chat field joined by commas (what ROLES matches); never raises: a malformed
    field gives a description that matches no pattern."""
    if not isinstance(turns, list):
        return f"<{type(turns).__name__}, expected a list of {{role, content}}>"
    roles = []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("role"), str):
            return "<turn without a 'role' string>"
        roles.append(t["role"])
    return ",".join(roles)


def turns_problem(field: str, turns) -> tuple[str, str] | None:
    """(reason, message) when `turns` is not a well-formed chat for `field` (see ROLES), else None."""
    if not isinstance(turns, list):
        return "wrong_type", f"expected a list of {{role, content}} turns, got {type(turns).__name__} {str(turns)[:60]!r}"
    if not turns:
        return "empty_turn", "no turns"
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            return "wrong_type", f"turn {k} is not {{\"role\": str, \"content\": str}}: {str(t)[:60]!r}"
        if not t["content"].strip():
            return "empty_turn", f"turn {k} ({t['role']}) is empty or whitespace"
    if not re.match(ROLES[field], role_sequence(turns)):
        return "roles_out_of_order", f"roles {[t['role'] for t in turns]} are out of order"
    return None


def math_answer_parses(answer) -> bool:
    from math_verify import parse

    return isinstance(answer, str) and bool(answer.strip()) and len(parse(answer)) > 0


def _code_answer_problem(spec: dict) -> str | None:
    from evaluations.sandbox import humaneval_tests

    if not all(isinstance(spec.get(k), str) and spec[k].strip() for k in ("prompt", "test", "entry_point")):
        return "a code answer needs non-empty string fields prompt, test and entry_point"
    if not re.search(rf"^def {re.escape(spec['entry_point'])}\(", spec["prompt"], re.MULTILINE):
        return f"the code prompt does not define `def {spec['entry_point']}(`"
    try:
        humaneval_tests(spec["test"], spec["entry_point"])
    except (SyntaxError, ValueError) as err:
        return f"the code test is not a usable `def check(candidate): assert ...` block ({err})"
    return None


def _ifeval_answer_problem(spec: dict) -> str | None:
    from evaluations.ifeval import SUPPORTED

    ids, kwargs = spec.get("instruction_id_list"), spec.get("kwargs")
    if not isinstance(ids, list) or not ids or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        return "an ifeval answer needs instruction_id_list and kwargs: non-empty lists of equal length"
    unsupported = [i for i in ids if i not in SUPPORTED]
    if unsupported or not all(isinstance(k, dict) for k in kwargs):
        return f"ifeval instructions {unsupported} are not supported (see evaluations/ifeval.SUPPORTED), or a kwargs entry is not an object"
    return None


def answer_problem(verifier, answer) -> str | None:
    """Why `answer` cannot be checked by `verifier` (evaluations/verifiers.py's contract), or None.
    math: math-verify parses it. code: JSON {prompt, test, entry_point} whose prompt defines the
    entry point and whose test splits into sandbox tests. ifeval: JSON {instruction_id_list,
    kwargs} of equal length with checkers evaluations/ifeval.py supports. A row that fails here
    would get a constant reward (or crash the reward function) instead of a signal."""
    if not isinstance(answer, str) or not answer.strip():
        return "the gold answer must be a non-empty string"
    if verifier == "math":
        return None if math_answer_parses(answer) else f"math-verify cannot parse the gold answer {answer[:60]!r}"
    if verifier not in ("code", "ifeval"):
        return f"unknown verifier {verifier!r}"
    try:
        spec = json.loads(answer)
    except json.JSONDecodeError as err:
        return f"a {verifier} answer must be a JSON object, got invalid JSON ({err.msg})"
    if not isinstance(spec, dict):
        return f"a {verifier} answer must be a JSON object, got {type(spec).__name__}"
    return _code_answer_problem(spec) if verifier == "code" else _ifeval_answer_problem(spec)


def _values_problem(fmt: str, row: dict) -> tuple[str, str, str] | None:
    """The checks beyond chat shape: distinct preference replies, a scorable gold answer, a label."""
    if fmt == "preference" and row["chosen"][-1]["content"].strip() == row["rejected"][-1]["content"].strip():
        return "chosen", "chosen_equals_rejected", "chosen and rejected are identical, so the pair carries no preference"
    if fmt == "verifiable":
        if row["verifier"] not in VERIFIERS:
            return "verifier", "bad_value", f"unknown verifier {row['verifier']!r}"
        if not isinstance(row["answer"], str):
            return "answer", "wrong_type", f"expected a string, got {type(row['answer']).__name__}"
        why = answer_problem(row["verifier"], row["answer"])
        if why:
            return "answer", "unparseable_answer", why
    if "label" in FORMATS[fmt]:
        if row["label"] not in LABELS:
            return "label", "bad_value", f"unknown label {row['label']!r}"
        if not isinstance(row["category"], str) or not row["category"].strip():
            return "category", "wrong_type", f"expected a non-empty string, got {row['category']!r}"
    return None


def problem(fmt: str, row: dict) -> tuple[str, str, str] | None:
    """(field, reason, message) of the first thing wrong with a row of format `fmt`, or None."""
    for f in FORMATS[fmt]:
        if f not in row or row[f] is None:
            return f, "missing_field", "required field is missing"
    for f in FORMATS[fmt]:
        if f in ROLES:
            bad = turns_problem(f, row[f])
            if bad:
                return (f,) + bad
    return _values_problem(fmt, row)


def conform(fmt: str, row: dict) -> dict:
    """Plain-string prompt/chosen/rejected -> one-turn chat lists, numeric answers -> strings: the
    conversions TRL itself accepts. `messages` is never converted: a string there is an error."""
    out = dict(row)
    if "prompt" in FORMATS[fmt] and isinstance(out.get("prompt"), str):
        out["prompt"] = user(out["prompt"])
    for f in ("chosen", "rejected"):
        if fmt == "preference" and isinstance(out.get(f), str):
            out[f] = assistant(out[f])
    if fmt == "verifiable" and isinstance(out.get("answer"), (int, float)) and not isinstance(out.get("answer"), bool):
        out["answer"] = str(out["answer"])
    return out
