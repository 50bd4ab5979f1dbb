"""What every entry point checks before it does any work: numeric flags in range, outputs that are not inputs.

A flag that argparse accepts but the code cannot use (`--workers -1`, `--hard_limit nan`) used to hang or lie,
and an output path that resolved to an input silently replaced it (a rollout log is days of GPU time). Both are
refused here, before anything is read or written, with one line that names the flag or the file.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable
from pathlib import Path

from limr.jsonio import DataError, not_replaceable

MAX_WORKERS = 1024  # --workers of the grading CLIs: one process each, so more is a fork bomb, not a speed-up


def int_in(low: int, high: int | None = None):
    """An argparse `type`: an integer in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bound}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def float_in(low: float | None, high: float | None = None, low_open: bool = False):
    """An argparse `type`: a finite float in [low, high] (or (low, high] with low_open; None: no bound); never NaN
    or infinity."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            bounds = [f"{'>' if low_open else '>='} {low}"] if low is not None else []
            bounds += [] if high is None else [f"<= {high}"]
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {' and '.join(['finite', *bounds])}")
        return value

    parse.__name__ = "number"
    return parse


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Same path after resolving symlinks, or the same inode (a hard link)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: no inode to share
        return False


def refuse_overwriting_inputs(inputs: Iterable[str | os.PathLike | None], outputs: Iterable[str | os.PathLike | None]):
    """Raise DataError when any output would replace an input (same path, symlink or hard link); Nones are skipped.

    A folder given as an input protects every file under it (the fork's step files live in one).
    """
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        for src in ins:
            if same_file(out, src) or (src.is_dir() and out.resolve().is_relative_to(src.resolve())):
                raise DataError(f"output {out} would overwrite the input {src}: choose another output path")


def refuse_unwritable_outputs(outputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise DataError when an output cannot be written: found before any work, not after hours of grading.

    The folders need not exist yet (they are made on writing): the nearest one that does must be a folder this
    process may create entries in. An existing output must be a regular file (not a symlink, FIFO or device, which
    writing would replace). Nothing is created here.
    """
    for out in (Path(p) for p in outputs if p is not None):
        if out.is_dir():
            raise DataError(f"output {out} is a folder: give a file name")
        kind = not_replaceable(out)
        if kind is not None:  # os.replace would swap it for a regular file (/dev/null, as root)
            raise DataError(f"output {out} is {kind}, not a regular file: give another path")
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise DataError(f"cannot write {out}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DataError(f"cannot write {out}: no permission to write in {folder}")
