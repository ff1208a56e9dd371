"""HumanEval test extraction: one sandbox test per assert of a `check(candidate)` function."""

from __future__ import annotations

import ast


def humaneval_tests(check_src: str, entry_point: str) -> list[str]:
    """Split a HumanEval `test` field (`def check(candidate): assert ...`) into one test per assert.

    Each top-level statement of `check` that contains an assert is a test (a `for` loop of
    asserts is one test). Other statements (imports, assignments) and the module-level prelude
    are setup, prepended to the next test. `assert True, "..."` lines test nothing and are dropped
    (counting them would give `return None` free passes).
    """
    module = ast.parse(check_src)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        raise ValueError("expected exactly one `def check(candidate):` in the test source")
    check = checks[0]
    setup: list[str] = [ast.unparse(n) for n in module.body if n is not check]
    param = check.args.args[0].arg
    if param != "candidate":
        setup.append(f"{param} = candidate")
    tests: list[str] = []
    for stmt in check.body:
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) and stmt.test.value:
            continue
        setup.append(ast.unparse(stmt))
        if any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            tests.append("\n".join(setup))
            setup = []
    if not tests:
        raise ValueError("the check function has no asserts")
    if setup:  # trailing setup after the last assert still runs, as part of the last test
        tests[-1] += "\n" + "\n".join(setup)
    names = {n.id for t in tests for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Name)}
    if not names & {"candidate", param, entry_point}:
        raise ValueError(f"no test calls the solution (`candidate` or `{entry_point}`)")
    return tests
