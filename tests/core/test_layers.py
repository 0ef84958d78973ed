"""The shape of the code, checked: layers that only point down (import-linter contracts in pyproject.toml),
no import cycle, imports at module top unless a comment says why, and no source file over 450 lines."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mood_dpa

SRC = Path(mood_dpa.__file__).resolve().parent
ROOT = SRC.parents[1]
MAX_LINES = 450


def lint_imports(root: Path, src: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the contracts of ``root/pyproject.toml`` over the package under ``src``."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env=env)


def test_the_import_contracts_are_kept():
    proc = lint_imports(ROOT, SRC.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    # an upward import: the data layer reaching into the detector shell
    ("data/folds.py", "from ..inference import tuning  # noqa: F401\n", "layers point down"),
    # one method importing another
    ("methods/histogram/scorer.py", "from ..dpa import model  # noqa: F401\n", "no method imports another"),
])
def test_a_deliberate_bad_import_breaks_a_contract(tmp_path, module, line, broken):
    """The contracts can fail: a scratch copy of the package with one bad import added is refused."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(SRC, tmp_path / "src" / "mood_dpa", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "src" / "mood_dpa" / module
    text = target.read_text()
    at = text.index("\nfrom ") + 1  # before the first relative import at the top
    target.write_text(text[:at] + line + text[at:])
    proc = lint_imports(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout[-3000:]


def _function_imports_without_reason(path: Path, root: Path = SRC) -> list[str]:
    """Imports inside functions with no comment on their line or on the comment line(s) just above their block."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    top = {id(node) for node in tree.body}
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        i = node.lineno - 1
        if "#" in lines[i]:
            continue
        j = i - 1  # walk up over the import statements of the same block to a comment line
        while j >= 0 and lines[j].strip().startswith(("import ", "from ", ")")) or (j >= 0 and lines[j].strip().endswith(",")):
            j -= 1
        if j >= 0 and lines[j].strip().startswith("#"):
            continue
        bad.append(f"{path.relative_to(root)}:{node.lineno}: {lines[i].strip()}")
    return bad


def test_imports_sit_at_module_top_unless_a_comment_says_why():
    """Command modules are exempt as a whole: each says in its docstring that it imports the library inside
    its commands (start-up time of ``mood-dpa --help``)."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name == "cli":
            assert "start-up time" in (ast.get_docstring(ast.parse(path.read_text())) or ""), path
            continue
        bad += _function_imports_without_reason(path)
    assert bad == [], "\n".join(bad)


def test_no_source_file_is_over_450_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_an_unexplained_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import os\n    return os\n\n\ndef g():\n    # start-up: json only here\n"
                     "    import json\n    import csv\n    return json, csv\n\n\ndef h():\n    import re  # heavy\n    return re\n")
    assert _function_imports_without_reason(probe, tmp_path) == ["probe.py:2: import os"]
