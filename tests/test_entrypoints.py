"""Every entry point answers --help and every shell script parses, so the docs cannot name a command that is broken.

STYLE.md rec. 7: the README copies the run commands from the entry points' docstrings; this keeps them alive.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY_DIRS = [REPO, REPO / "data", REPO / "eval", REPO / "train", REPO / "scripts", REPO / "benchmarks", REPO / "mini"]
PY_ENTRY_POINTS = sorted(
    p for d in ENTRY_DIRS for p in d.glob("*.py") if re.search(r'^if __name__ == "__main__":', p.read_text(), re.M)
)
SHELL_SCRIPTS = sorted(p for d in ENTRY_DIRS for p in d.glob("*.sh"))


def test_entry_points_found():
    # the globs above must see the entry points the README names
    names = {p.relative_to(REPO).as_posix() for p in PY_ENTRY_POINTS}
    assert {"lim_selection.py", "data/prepare.py", "eval/grade.py", "scripts/demo.py"} <= names


@pytest.mark.parametrize("script", PY_ENTRY_POINTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_help(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.parametrize("script", PY_ENTRY_POINTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_docstring_opens_with_its_command(script):
    # the module docstring shows how to run the file, by its repo-relative path
    doc = script.read_text().split('"""')[1]
    assert f"python {script.relative_to(REPO).as_posix()}" in doc


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shell_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck(script):
    proc = subprocess.run(["shellcheck", "-x", str(script)], cwd=script.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
