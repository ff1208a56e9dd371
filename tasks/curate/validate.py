"""Great-expectations suites, one per data format, run on every curated split.

GX reports `success=False` without raising, and reports success for a suite that evaluated
nothing; `validate_split` turns both into a `DataValidationError` that names the split, the
expectation, the failing row ids and a short sample.

What a row must look like (fields, role patterns, verifiers, labels, the gold-answer check and
each column's fix) is tasks/curate/schema.py; this module expresses it as GX expectations.
Nested fields (`messages`, `prompt`, ...) are checked through derived scalar columns (role
sequence, shortest turn, type name) so that GX can express them; the derivations never raise,
they produce values that fail the expectation instead.
"""

from __future__ import annotations

import logging

from tasks.curate.schema import (
    COLUMN_FIX,
    FORMATS,
    LABELS,
    PROVENANCE,
    ROLES,
    VERIFIERS,
    DataValidationError,
    answer_problem,
    role_sequence,
)

SUITE_VERSION = "3"


def _shortest_turn(turns) -> int:
    if not isinstance(turns, list) or not turns:
        return 0
    lengths = [len(t.get("content").strip()) if isinstance(t, dict) and isinstance(t.get("content"), str) else 0 for t in turns]
    return min(lengths)


def _text(turns) -> str:
    return "\n".join(t.get("content", "") for t in turns if isinstance(t, dict)) if isinstance(turns, list) else repr(turns)


def derive(fmt: str, rows: list[dict]):
    """Rows -> DataFrame of the scalar columns the suite checks."""
    import pandas as pd

    out = []
    for i, r in enumerate(rows):
        d = {"id": str(r.get("id", f"<row {i}>")), **{k: r.get(k) for k in PROVENANCE}}
        if "messages" in FORMATS[fmt]:
            d["roles"] = role_sequence(r.get("messages"))
            d["shortest_turn"] = _shortest_turn(r.get("messages"))
        if "label" in FORMATS[fmt]:
            d["label"] = r.get("label")
            d["category"] = r.get("category")
        if "prompt" in FORMATS[fmt]:
            d["prompt_roles"] = role_sequence(r.get("prompt"))
            d["shortest_turn"] = _shortest_turn(r.get("prompt"))
        if fmt == "preference":
            d["chosen_roles"] = role_sequence(r.get("chosen"))
            d["rejected_roles"] = role_sequence(r.get("rejected"))
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
    if "messages" in FORMATS[fmt]:
        exps += [E.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLES["messages"]),
                 E.ExpectColumnValuesToBeBetween(column="shortest_turn", min_value=1)]
    if "label" in FORMATS[fmt]:
        exps += [E.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)),
                 E.ExpectColumnValuesToNotBeNull(column="category")]
    if "prompt" in FORMATS[fmt]:
        exps += [E.ExpectColumnValuesToMatchRegex(column="prompt_roles", regex=ROLES["prompt"]),
                 E.ExpectColumnValuesToBeBetween(column="shortest_turn", min_value=1)]
    if fmt == "preference":
        exps += [E.ExpectColumnValuesToMatchRegex(column="chosen_roles", regex=ROLES["chosen"]),
                 E.ExpectColumnValuesToMatchRegex(column="rejected_roles", regex=ROLES["rejected"]),
                 E.ExpectColumnValuesToBeBetween(column="chosen_shortest", min_value=1),
                 E.ExpectColumnValuesToBeBetween(column="rejected_shortest", min_value=1),
                 E.ExpectColumnValuesToBeInSet(column="chosen_differs", value_set=[True])]
    if fmt == "verifiable":
        exps += [E.ExpectColumnValuesToBeInSet(column="verifier", value_set=list(VERIFIERS)),
                 E.ExpectColumnValuesToBeInSet(column="answer_parses", value_set=[True])]
    s = gx.ExpectationSuite(name=f"{fmt}-v{SUITE_VERSION}")
    for e in exps:
        s.add_expectation(e)
    return s


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
        fix = COLUMN_FIX.get(column, "")
        problems.append(
            f"  - {cfg.type} on '{column}' failed for {len(ids) or r.result.get('observed_value')} row(s); "
            f"ids: {ids[:10]}{' ...' if len(ids) > 10 else ''}; sample values: {values}" + (f"\n    fix: {fix}" if fix else "")
        )
    if problems:
        raise DataValidationError(f"{where}: data validation ({s.name}) failed:\n" + "\n".join(problems))
