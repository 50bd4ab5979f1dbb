"""Folders named by a training step: OpenRLHF's checkpoints `global_step{N}_hf`, eval/evaluate.py's results `step{N}`.

The step is ASCII digits only: `\\d` also matches other scripts' digits, so `step٣` was read as step 3 and silently
took the place of `step3`. Two folders that name one step (`global_step1_hf`, `global_step00001_hf`) are an error,
never one chosen over the other in directory order.
"""

from __future__ import annotations

import re
from pathlib import Path

from limr.jsonio import DataError


def step_folders(folder: Path, prefix: str, suffix: str = "", need: str | None = None) -> dict[int, Path]:
    """{step: folder} of the sub-folders named prefix + digits + suffix (holding the file `need`, if given), by step;
    {} when `folder` is not a folder. DataError when two of them name one step."""
    if not folder.is_dir():
        return {}
    pattern = re.compile(re.escape(prefix) + "([0-9]+)" + re.escape(suffix))
    found: dict[int, Path] = {}
    for sub in sorted(folder.iterdir()):
        m = pattern.fullmatch(sub.name)
        if m is None or not sub.is_dir() or (need is not None and not (sub / need).is_file()):
            continue
        step = int(m.group(1))
        if step in found:
            raise DataError(f"{found[step]} and {sub} both name step {step}: rename or remove one")
        found[step] = sub
    return dict(sorted(found.items()))
