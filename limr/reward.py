"""The paper's rule-based reward (§2.4): 1 correct, -0.5 wrong but well formatted, -1 format error.

One pure function, `score`, no I/O: the reward server, the miniature training loop and `eval/grade.py` all
call it (usually through `limr.pool`, which adds the hard time limit). The format rules are the released
reward server's (GAIR-NLP/LIMR `openrlhf/cli/serve_rm.py` at 98ebf1b), checked in the same order:
  1. cut off: no end-of-turn marker (Qwen's `<|im_end|>` / `<|endoftext|>`) in the response;
  2. no `\\boxed`, or 5 or more of them;
  3. garbled: over 30% of the characters outside the release's set of usual math/text characters;
  4. a chunk of 5+ characters repeated 5+ times in a row, on one line (the release's `(.{5,}?)\\1{4,}`);
  5. no answer could be extracted from the last box.
Rule 4 is our own linear-time check: the release's regex backtracks quadratically (35 ms on 10 KB).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from limr.grader import MODES, extract_boxed, grade
from limr.paper import BAD_FORMAT, CORRECT, WRONG

__all__ = ["CORRECT", "WRONG", "BAD_FORMAT", "EOS_MARKERS", "Score", "format_error", "has_repeat", "score", "reward"]

EOS_MARKERS = ("<|im_end|>", "<|endoftext|>")  # Qwen2.5's end of turn and end of text
MAX_BOXES = 5  # this many \boxed is a format error
GARBLED_RATIO = 0.3
REPEAT_MIN_CHUNK = 5
REPEAT_MIN_COUNT = 5

# Anything outside the release's set of usual characters counts towards "garbled" (the set negated, so the
# scan matches only the rare unusual characters).
_UNUSUAL_CHARS_RE = re.compile(r"[^a-zA-Z0-9\s\.,!?\"'\(\)\{\}\[\]_\-+=<>/@#$%^&*\\|:;~`\u2200-\u22FF]")
_BOX_COUNT_RE = re.compile(r"\\boxed|\\fbox(?![A-Za-z])")


@dataclass(frozen=True)
class Score:
    reward: float
    correct: bool
    extracted: str | None
    format_error: str | None  # which rule failed, None when well formatted


def _common_prefix(line: str, a: int, b: int, known: int) -> int:
    """Length of the longest common prefix of line[a:] and line[b:], given `known` characters already match.

    Galloping then bisecting over slice comparisons: O(log) Python steps, the character work done by C.
    """
    lo, step = known, max(known, 1)
    limit = len(line) - max(a, b)
    while lo + step <= limit and line[a + lo : a + lo + step] == line[b + lo : b + lo + step]:
        lo += step
        step *= 2
    hi = min(lo + step, limit + 1)  # the answer is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if line[a + lo : a + mid] == line[b + lo : b + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(line: str, a: int, b: int) -> int:
    """Length of the longest common suffix of line[:a] and line[:b] (a < b)."""
    return _common_prefix(line[::-1], len(line) - b, len(line) - a, 0)


def _line_has_repeat(line: str) -> bool:
    """Does `line` hold u repeated REPEAT_MIN_COUNT times in a row with |u| = p >= REPEAT_MIN_CHUNK?

    Periods are taken in classes [b, 2b), b = 5, 10, 20, ... A run of period p in a class is at least 5p >= 5b
    long, so a checkpoint placed every b characters falls in its first period, and the b characters from that
    checkpoint occur again exactly p later. So for each checkpoint, `str.find` the next occurrences of its block
    within [b, 2b) and measure the period-p run through it. That is n/b Python steps per class, about 2n/5
    in all, with the character work in C: linear in practice, where the release's regex is quadratic.
    """
    n = len(line)
    reversed_line = None
    b = REPEAT_MIN_CHUNK
    while REPEAT_MIN_COUNT * b <= n:
        for c in range(0, n - 2 * b + 1, b):
            block = line[c : c + b]
            q = line.find(block, c + b, c + 3 * b - 1)  # occurrences starting in [c + b, c + 2b)
            while q != -1:
                p = q - c
                right = _common_prefix(line, c, q, b)  # line[c : c + right] has period p
                if right + p >= REPEAT_MIN_COUNT * p:
                    return True
                if reversed_line is None:
                    reversed_line = line[::-1]
                left = _common_prefix(reversed_line, n - q, n - c, 0)  # ... and so has line[c - left : c]
                if left + right + p >= REPEAT_MIN_COUNT * p:
                    return True
                q = line.find(block, q + 1, c + 3 * b - 1)
        b *= 2
    return False


def has_repeat(text: str) -> bool:
    min_len = REPEAT_MIN_CHUNK * REPEAT_MIN_COUNT
    return any(len(line) >= min_len and _line_has_repeat(line) for line in text.split("\n"))


def is_garbled(text: str) -> bool:
    if not text:
        return False
    return len(_UNUSUAL_CHARS_RE.findall(text)) / len(text) > GARBLED_RATIO


def cut_at_eos(response: str, eos_markers: tuple[str, ...] | None) -> str | None:
    """The response up to its first end-of-turn marker; None if it has none (cut off by the length limit).

    With `eos_markers=None` the response is taken as complete (texts saved without special tokens).
    """
    if eos_markers is None:
        return response.strip()
    cut = min((i for i in (response.find(m) for m in eos_markers) if i >= 0), default=-1)
    return None if cut < 0 else response[:cut].strip()


def format_error(response: str, mode: str = "default") -> str | None:
    """The first format rule (2-4 above) that `response` breaks, or None."""
    boxes = response.count("\\boxed") if mode == "limr" else len(_BOX_COUNT_RE.findall(response))
    if boxes == 0:
        return "no_box"
    if boxes >= MAX_BOXES:
        return "too_many_boxes"
    if is_garbled(response):
        return "garbled"
    if has_repeat(response):
        return "repeat"
    return None


def score(
    response: str,
    answer: str,
    mode: str = "default",
    eos_markers: tuple[str, ...] | None = EOS_MARKERS,
    check_format: bool = True,
) -> Score:
    """Reward one response (the model's text after the prompt) against its gold answer.

    `check_format=False` skips rules 1-4 (evaluation scores the answer alone); no answer is still -1.
    """
    if mode not in MODES:
        raise ValueError(f"unknown grader mode {mode!r}; expected one of {MODES}")
    text = cut_at_eos(response, eos_markers) if check_format else response
    if text is None:
        return Score(BAD_FORMAT, False, None, "truncated")
    error = format_error(text, mode) if check_format else None
    if error is not None:
        return Score(BAD_FORMAT, False, extract_boxed(text) if mode == "default" else None, error)
    verdict = grade(text, answer, mode)
    if verdict.extracted is None:
        return Score(BAD_FORMAT, False, None, "no_answer")
    return Score(CORRECT if verdict.correct else WRONG, verdict.correct, verdict.extracted, None)


def reward(
    response: str, answer: str, mode: str = "default", eos_markers: tuple[str, ...] | None = EOS_MARKERS
) -> float:
    return score(response, answer, mode, eos_markers).reward
