"""Great-expectations suites, one per data format, run on every curated split.

GX reports `success=False` without raising, and reports success for a suite that evaluated
nothing; `validate_split` turns both into a `DataValidationError` that names the split, the
expectation, the failing row ids and a short sample.

Nested fields (`messages`, `prompt`, ...) are checked through derived scalar columns (role
sequence, shortest turn, type name) so that GX can express them; the derivations never raise,
they produce values that fail the expectation instead.
"""

from __future__ import annotations

import logging

SUITE_VERSION = "3"
# Provenance every curated row carries (tasks/curate/sources.py stamps it).
PROVENANCE = ("source", "source_version", "license", "seed", "transform_version")
ALTERNATING = r"^(?:system,)?(?:user,assistant,)*user,assistant$"
PROMPT_ROLES = r"^(?:system,)?(?:user,assistant,)*user$"
ANSWER_ROLES = r"^assistant$"


class DataValidationError(ValueError):
    pass


def _roles(turns) -> str:
    if not isinstance(turns, list):
        return f"<{type(turns).__name__}, expected a list of {{role, content}}>"
    roles = []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("role"), str):
            return "<turn without a 'role' string>"
        roles.append(t["role"])
    return ",".join(roles)


def _shortest_turn(turns) -> int:
    if not isinstance(turns, list) or not turns:
        return 0
    lengths = [len(t.get("content").strip()) if isinstance(t, dict) and isinstance(t.get("content"), str) else 0 for t in turns]
    return min(lengths)


def _text(turns) -> str:
    return "\n".join(t.get("content", "") for t in turns if isinstance(t, dict)) if isinstance(turns, list) else repr(turns)


def _answer_parses(answer) -> bool:
    from math_verify import parse

    return isinstance(answer, str) and bool(answer.strip()) and len(parse(answer)) > 0


def answer_problem(verifier, answer) -> str | None:
    """Why `answer` cannot be checked by `verifier` (evaluations/verifiers.py's contract), or None.
    math: math-verify parses it. code: JSON {prompt, test, entry_point} whose prompt defines the
    entry point and whose test splits into sandbox tests. ifeval: JSON {instruction_id_list,
    kwargs} of equal length with checkers evaluations/ifeval.py supports. A row that fails here
    would get a constant reward (or crash the reward function) instead of a signal."""
    import json

    if not isinstance(answer, str) or not answer.strip():
        return "the gold answer must be a non-empty string"
    if verifier == "math":
        return None if _answer_parses(answer) else f"math-verify cannot parse the gold answer {answer[:60]!r}"
    if verifier not in ("code", "ifeval"):
        return f"unknown verifier {verifier!r}"
    try:
        spec = json.loads(answer)
    except json.JSONDecodeError as err:
        return f"a {verifier} answer must be a JSON object, got invalid JSON ({err.msg})"
    if not isinstance(spec, dict):
        return f"a {verifier} answer must be a JSON object, got {type(spec).__name__}"
    if verifier == "code":
        import re

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
    from evaluations.ifeval import SUPPORTED

    ids, kwargs = spec.get("instruction_id_list"), spec.get("kwargs")
    if not isinstance(ids, list) or not ids or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        return "an ifeval answer needs instruction_id_list and kwargs: non-empty lists of equal length"
    unsupported = [i for i in ids if i not in SUPPORTED]
    if unsupported or not all(isinstance(k, dict) for k in kwargs):
        return f"ifeval instructions {unsupported} are not supported (see evaluations/ifeval.SUPPORTED), or a kwargs entry is not an object"
    return None


def derive(fmt: str, rows: list[dict]):
    """Rows -> DataFrame of the scalar columns the suite checks."""
    import pandas as pd

    out = []
    for i, r in enumerate(rows):
        d = {"id": str(r.get("id", f"<row {i}>")), **{k: r.get(k) for k in PROVENANCE}}
        if fmt in ("messages", "safety_messages"):
            d["roles"] = _roles(r.get("messages"))
            d["shortest_turn"] = _shortest_turn(r.get("messages"))
        if fmt in ("safety_messages", "safety_prompts"):
            d["label"] = r.get("label")
            d["category"] = r.get("category")
        if fmt in ("preference", "verifiable", "safety_prompts"):
            d["prompt_roles"] = _roles(r.get("prompt"))
            d["shortest_turn"] = _shortest_turn(r.get("prompt"))
        if fmt == "preference":
            d["chosen_roles"] = _roles(r.get("chosen"))
            d["rejected_roles"] = _roles(r.get("rejected"))
            d["chosen_shortest"] = _shortest_turn(r.get("chosen"))
            d["rejected_shortest"] = _shortest_turn(r.get("rejected"))
            d["chosen_differs"] = _text(r.get("chosen")) != _text(r.get("rejected"))
        if fmt == "verifiable":
            d["verifier"] = r.get("verifier")
            d["answer_parses"] = answer_problem(r.get("verifier"), r.get("answer")) is None
        out.append(d)
    return pd.DataFrame(out)


def suite(fmt: str):
    import great_expectations as gx

    E = gx.expectations
    exps = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="id"),
        E.ExpectColumnValuesToBeUnique(column="id"),
    ] + [E.ExpectColumnValuesToNotBeNull(column=k) for k in PROVENANCE]
    if fmt in ("messages", "safety_messages"):
        exps += [E.ExpectColumnValuesToMatchRegex(column="roles", regex=ALTERNATING),
                 E.ExpectColumnValuesToBeBetween(column="shortest_turn", min_value=1)]
    if fmt in ("safety_messages", "safety_prompts"):
        exps += [E.ExpectColumnValuesToBeInSet(column="label", value_set=["harmful", "benign"]),
                 E.ExpectColumnValuesToNotBeNull(column="category")]
    if fmt in ("preference", "verifiable", "safety_prompts"):
        exps += [E.ExpectColumnValuesToMatchRegex(column="prompt_roles", regex=PROMPT_ROLES),
                 E.ExpectColumnValuesToBeBetween(column="shortest_turn", min_value=1)]
    if fmt == "preference":
        exps += [E.ExpectColumnValuesToMatchRegex(column="chosen_roles", regex=ANSWER_ROLES),
                 E.ExpectColumnValuesToMatchRegex(column="rejected_roles", regex=ANSWER_ROLES),
                 E.ExpectColumnValuesToBeBetween(column="chosen_shortest", min_value=1),
                 E.ExpectColumnValuesToBeBetween(column="rejected_shortest", min_value=1),
                 E.ExpectColumnValuesToBeInSet(column="chosen_differs", value_set=[True])]
    if fmt == "verifiable":
        exps += [E.ExpectColumnValuesToBeInSet(column="verifier", value_set=["math", "code", "ifeval"]),
                 E.ExpectColumnValuesToBeInSet(column="answer_parses", value_set=[True])]
    s = gx.ExpectationSuite(name=f"{fmt}-v{SUITE_VERSION}")
    for e in exps:
        s.add_expectation(e)
    return s


FIXES = {
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
    "label": "label must be 'harmful' or 'benign'",
    "verifier": "verifier must be one of math, code, ifeval",
    "id": "every row needs a unique, non-null id",
    "source": "every row records where it came from (provenance): set 'source'",
    "license": "every row records its licence (provenance): set 'license'",
    "source_version": "every row records its source's version (provenance): package version, file sha256 or dataset fingerprint",
    "seed": "every row records the generator/sampling seed it was made with (provenance)",
    "transform_version": "every row records the version of the conversion that made it (tasks/sources.TRANSFORM_VERSION)",
}


def validate_split(split: str, fmt: str, rows: list[dict], source: str = "") -> None:
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    where = source or split
    if not rows:
        raise DataValidationError(f"{where}: no rows. Check the source path and filters in params.yaml.")
    df = derive(fmt, rows)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = ctx.data_sources.add_pandas(f"curate-{split}").add_dataframe_asset(name=split)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
    s = ctx.suites.add(suite(fmt))
    result = batch.validate(s, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]})
    if not result.results:
        raise DataValidationError(f"{where}: suite {s.name} evaluated zero expectations; a validation that checks nothing is a failure")
    problems = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        column = cfg.kwargs.get("column", "<table>")
        ids = [str(x.get("id", x)) if isinstance(x, dict) else str(x) for x in (r.result.get("unexpected_index_list") or [])]
        values = (r.result.get("partial_unexpected_list") or [])[:3]
        fix = FIXES.get(column, "")
        problems.append(
            f"  - {cfg.type} on '{column}' failed for {len(ids) or r.result.get('observed_value')} row(s); "
            f"ids: {ids[:10]}{' ...' if len(ids) > 10 else ''}; sample values: {values}" + (f"\n    fix: {fix}" if fix else "")
        )
    if problems:
        raise DataValidationError(f"{where}: data validation ({s.name}) failed:\n" + "\n".join(problems))
