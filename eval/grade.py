"""Regrade saved generations: each JSONL line's `response` against its `answer`, with the paper's reward.

    python eval/grade.py --input generations.jsonl --output graded.jsonl
    python eval/grade.py --input generations.jsonl --output graded.jsonl --grader limr   # the release's reward

Writes the same lines in the same order with four fields added; every other field is kept:
  `correct`   (bool) is the final answer right? The last box alone, as in evaluation (eval/evaluate.py);
  `reward`    (float) the paper's training reward: 1 / -0.5 wrong / -1 format error (limr/reward.py);
  `extracted` the boxed answer `correct` is about, or null;  `seconds` grading time.
`response` is the text the model generated after the prompt. For the reward, a response without an end-of-turn
marker (`--eos_markers`, default Qwen's) counts as cut off, as in training; `correct` grades the text up to the
first marker, or all of it when there is none. Plain-text generations (what vLLM and most tools save) have no
marker: pass `--eos_markers ""` to take every response as complete for the reward too.
Grading runs in worker processes with a hard per-response limit (see limr/pool.py). The output is checked
first (not an input, writable) and written only once every line is graded; bad input or flags print one
`error:` line and exit 2 with nothing written.
"""

from __future__ import annotations

import argparse
import os
import sys

from limr.cli import MAX_WORKERS, float_in, int_in, refuse_overwriting_inputs, refuse_unwritable_outputs
from limr.grader import MODES
from limr.jsonio import DataError, atomic_write, dumps_line, iter_jsonl
from limr.pool import HARD_LIMIT_S, Graded, GradingPool, worker_memory_mb
from limr.reward import EOS_MARKERS, cut_at_eos

MAX_HARD_LIMIT_S = 3600.0  # a response that needs an hour is not being graded


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="JSONL with `response` and `answer` on every line")
    p.add_argument("--output", required=True, help="where the graded JSONL goes (written atomically)")
    p.add_argument("--grader", choices=MODES, default="default", help="default: correct grader; limr: the release's")
    p.add_argument(
        "--eos_markers",
        default=",".join(EOS_MARKERS),
        help="comma-separated end-of-turn markers; a response with none gets the cut-off reward. '' disables the check",
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


def answer_text(response: str, eos: tuple[str, ...] | None) -> str:
    """What `correct` grades: the response up to its first end-of-turn marker, or all of it without one."""
    cut = cut_at_eos(response, eos)
    return response if cut is None else cut


def grade_rows(rows: list[dict], args, eos: tuple[str, ...] | None) -> tuple[list[Graded], list[Graded], int]:
    """(reward pass, answer pass, timeouts). The reward pass applies the format rules; where they pass, it graded
    the same text the answer pass would (limr.reward.score), so only format errors are graded again, answer alone."""
    with GradingPool(args.workers, args.hard_limit, args.grader, eos) as pool:
        rewards = pool.map(((r["response"], r["answer"]) for r in rows), progress="grading")
        timeouts = pool.timeouts
    answers = list(rewards)
    again = [i for i, g in enumerate(rewards) if g.format_error not in (None, "no_answer")]
    if again:
        with GradingPool(args.workers, args.hard_limit, args.grader, eos, check_format=False) as pool:
            pairs = ((answer_text(rows[i]["response"], eos), rows[i]["answer"]) for i in again)
            for i, g in zip(again, pool.map(pairs, progress="grading answers of format errors"), strict=True):
                answers[i] = g
            timeouts += pool.timeouts
    return rewards, answers, timeouts


def warn_if_unmarked(rows: list[dict], eos: tuple[str, ...] | None) -> None:
    """Plain-text generations have no end-of-turn marker, so every reward would be 'cut off': say so once."""
    if eos is None:
        return
    unmarked = sum(cut_at_eos(r["response"], eos) is None for r in rows)
    if 2 * unmarked > len(rows):
        print(f"warning: {unmarked} of {len(rows)} responses have no end-of-turn marker ({', '.join(eos)}), so their "
              "reward is -1 (cut off) while `correct` grades their answer; pass --eos_markers \"\" to take every "
              "response as complete (texts saved without special tokens)", file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    eos = tuple(m for m in args.eos_markers.split(",") if m) or None
    try:
        worker_memory_mb()  # $LIMR_WORKER_MEMORY_MB, each grading worker's memory cap: checked before any work
        refuse_overwriting_inputs([args.input], [args.output])  # found before grading, not after hours of it
        refuse_unwritable_outputs([args.output])
        rows = read_rows(args.input)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    warn_if_unmarked(rows, eos)
    rewards, answers, timeouts = grade_rows(rows, args, eos)
    try:
        with atomic_write(args.output) as f:
            for row, r, a in zip(rows, rewards, answers, strict=True):
                seconds = r.seconds + (a.seconds if a is not r else 0.0)
                row.update(correct=a.correct, reward=r.reward, extracted=a.extracted, seconds=round(seconds, 6))
                f.write(dumps_line(row))
    except (OSError, RecursionError) as e:  # a full disk; a row nested too deeply for json.dumps
        print(f"error: cannot write {args.output}, nothing written: {e}", file=sys.stderr)
        return 2
    n_correct = sum(a.correct for a in answers)
    mean_reward = sum(r.reward for r in rewards) / len(rewards)
    print(
        f"graded {len(rows)} responses ({args.grader} grader): {n_correct} correct ({100 * n_correct / len(rows):.1f}%), "
        f"mean reward {mean_reward:.3f}, {timeouts} over the {args.hard_limit:g} s limit -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
