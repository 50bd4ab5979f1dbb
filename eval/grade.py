"""Regrade saved generations: each JSONL line's `response` against its `answer`, with the paper's reward.

    python eval/grade.py --input generations.jsonl --output graded.jsonl
    python eval/grade.py --input generations.jsonl --output graded.jsonl --grader limr   # the release's reward

Writes the same lines in the same order with `correct` (bool), `reward` (float: 1 / -0.5 / -1),
`extracted` (the boxed answer, or null) and `seconds` (grading time) added; every other field is kept.
Grading runs in worker processes with a hard per-response limit (see limr/pool.py). The output is checked
first (not an input, writable) and written only once every line is graded; bad input or flags print one
`error:` line and exit 2 with nothing written. `response` is the text
the model generated after the prompt; by default a response without Qwen's end-of-turn marker counts as
cut off (a format error, as in training) — pass `--eos_markers ""` for texts saved without special tokens.
"""

from __future__ import annotations

import argparse
import os
import sys

from limr.cli import float_in, int_in, refuse_overwriting_inputs, refuse_unwritable_outputs
from limr.grader import MODES
from limr.jsonio import DataError, atomic_write, dumps_line, iter_jsonl
from limr.pool import HARD_LIMIT_S, GradingPool
from limr.reward import EOS_MARKERS

MAX_WORKERS = 1024  # one process each: more is a fork bomb, not a speed-up
MAX_HARD_LIMIT_S = 3600.0  # a response that needs an hour is not being graded


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="JSONL with `response` and `answer` on every line")
    p.add_argument("--output", required=True, help="where the graded JSONL goes (written atomically)")
    p.add_argument("--grader", choices=MODES, default="default", help="default: correct grader; limr: the release's")
    p.add_argument(
        "--eos_markers",
        default=",".join(EOS_MARKERS),
        help="comma-separated end-of-turn markers; a response with none is cut off. '' disables the check",
    )
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=os.cpu_count(), help="grading processes")
    p.add_argument("--hard_limit", type=float_in(0, MAX_HARD_LIMIT_S, low_open=True), default=HARD_LIMIT_S,
                   help="seconds per response before it is killed (> 0)")  # fmt: skip
    return p.parse_args(argv)


def read_rows(path: str) -> list[dict]:
    rows = []
    for lineno, row in iter_jsonl(path):
        for key in ("response", "answer"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{path}:{lineno}: `{key}` must be a string, got {type(row.get(key)).__name__}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no lines to grade")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    eos = tuple(m for m in args.eos_markers.split(",") if m) or None
    try:
        refuse_overwriting_inputs([args.input], [args.output])  # found before grading, not after hours of it
        refuse_unwritable_outputs([args.output])
        rows = read_rows(args.input)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with GradingPool(args.workers, args.hard_limit, args.grader, eos) as pool:
        results = pool.map(((r["response"], r["answer"]) for r in rows), progress="grading")
        timeouts = pool.timeouts
    try:
        with atomic_write(args.output) as f:
            for row, g in zip(rows, results, strict=True):
                row.update(correct=g.correct, reward=g.reward, extracted=g.extracted, seconds=round(g.seconds, 6))
                f.write(dumps_line(row))
    except (OSError, RecursionError) as e:  # a full disk; a row nested too deeply for json.dumps
        print(f"error: cannot write {args.output}, nothing written: {e}", file=sys.stderr)
        return 2
    n_correct = sum(g.correct for g in results)
    mean_reward = sum(g.reward for g in results) / len(results)
    print(
        f"graded {len(rows)} responses ({args.grader} grader): {n_correct} correct ({100 * n_correct / len(rows):.1f}%), "
        f"mean reward {mean_reward:.3f}, {timeouts} over the {args.hard_limit:g} s limit -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
