"""The shape of the code: lint, the one-way dependency direction, and size limits.

Dependencies point one way: the command (posttrain/, bench/) -> flows/ -> pipeline/ -> tasks/
-> evaluations/ -> core/, with no cycles between sibling modules; pyproject.toml holds the
import-linter contracts and the ruff settings.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workspace import checkout_files, make
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80  # in the pipeline shell and the stage bodies
SHELL_AND_BODIES = ("pipeline/", "tasks/")


def _sources() -> list[str]:
    return [f for f in checkout_files(ROOT) if f.endswith(".py") and not f.startswith("tests/")]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": str(BIN), "PYTHONPATH": str(root), "HOME": str(root)})


def test_ruff_passes():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_import_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("source, target", [("core/paths.py", "pipeline.runner"),
                                            ("evaluations/diversity.py", "tasks.sft")])
def test_an_upward_import_is_reported(tmp_path, source, target):
    """A library or evaluation module that imports a layer above it breaks the layers contract,
    and import-linter names the offending import."""
    ws = make(tmp_path / "ws")
    path = ws / source
    path.write_text(path.read_text() + f"\n\nimport {target}  # noqa: E402,F401\n")
    proc = _lint_imports(ws)
    assert proc.returncode != 0
    assert f"{source[:-3].replace('/', '.')} -> {target}" in proc.stdout, proc.stdout[-3000:]


def test_no_module_is_too_long():
    long = {f: n for f in _sources() if (n := (ROOT / f).read_text().count("\n")) > MAX_MODULE_LINES}
    assert not long, f"split these modules (> {MAX_MODULE_LINES} lines): {long}"


def test_no_function_is_too_long_in_the_shell_and_stage_bodies():
    long = {}
    for f in _sources():
        if not f.startswith(SHELL_AND_BODIES):
            continue
        for node in ast.walk(ast.parse((ROOT / f).read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{f}::{node.name}"] = n
    assert not long, f"split these functions (> {MAX_FUNCTION_LINES} lines): {long}"


def test_ruff_and_import_linter_are_installed_by_the_test_extra():
    """CI installs from nothing: both tools must come with `pip install -e .[test]`."""
    import tomllib

    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    names = {r.split("=")[0].split("<")[0].split(">")[0].strip() for r in test_extra}
    assert {"ruff", "import-linter"} <= names
    assert shutil.which("ruff", path=str(BIN)) and shutil.which("lint-imports", path=str(BIN))


def test_readme_table_cells_are_short():
    """The README is a newcomer's page: details of a measured run go to docs/, not into a cell."""
    cells = [c.strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")
             for c in line.strip().strip("|").split("|")]
    long = [c[:80] + "..." for c in cells if len(c) >= 300]
    assert cells and not long, long


def test_no_dated_measurement_notes_in_config_or_code():
    """What a run measured lives in MLflow and docs/, never in params.yaml, gates.yaml or code."""
    import re

    dated = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
    files = ["params.yaml", "evaluations/gates.yaml", *(f for f in _sources() if not f.startswith("bench/"))]
    hits = [f"{f}:{i}" for f in files for i, line in enumerate((ROOT / f).read_text().splitlines(), 1)
            if dated.search(line)]
    assert not hits, hits
