"""The docs cannot point at nothing: every relative link resolves, every `#anchor` names a heading, and every
`python X.py --flag` in the README's code blocks uses flags its script declares."""

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".git", "outputs", "node_modules"}
DOCS = sorted(p for p in REPO.rglob("*.md") if not SKIP & set(p.relative_to(REPO).parts) and "egg-info" not in str(p))
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [a or b for a, b in LINK.findall(text) if not (a or b).startswith(("http://", "https://", "mailto:"))]


def test_docs_found():
    assert {"README.md", "limr/README.md", "benchmarks/README.md"} <= {p.relative_to(REPO).as_posix() for p in DOCS}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_resolve(doc):
    broken = []
    for target in links(doc):
        file, _, frag = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(target)
        elif frag and path.suffix == ".md" and frag not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: {broken}"


def readme_commands() -> list[tuple[str, list[str]]]:
    """(script, flags) for each `python X.py ...` command in the README's code blocks, continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        m = re.match(r"\s*python (\S+\.py)(.*)", line.split("#")[0])
        if m:
            commands.append((m.group(1), re.findall(r"(?<!\S)(--[a-z_]+)", m.group(2))))
    return commands


@cache
def help_text(script: str) -> str:
    proc = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_readme_has_commands():
    assert {"lim_selection.py", "data/prepare.py", "eval/grade.py"} <= {s for s, _ in readme_commands()}


@pytest.mark.parametrize("script,flags", readme_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_readme_flags_exist(script, flags):
    usage = help_text(script)
    assert not [f for f in flags if not re.search(rf"{f}\b", usage)], usage
