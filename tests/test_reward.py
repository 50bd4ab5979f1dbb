"""Tests of limr/reward.py: the three outcomes, every format rule on both sides of its threshold, the
release-faithful "limr" mode against a transcription of the released reward, and the repeat check against
the release's regex."""

import random
import re
import string

import pytest

from limr.paper import BAD_FORMAT, CORRECT, WRONG
from limr.reward import (
    EOS_MARKERS,
    _line_has_repeat,
    cut_at_eos,
    format_error,
    has_repeat,
    is_garbled,
    reward,
    score,
)

END = "<|im_end|>"
EOT = "<|endoftext|>"
RELEASE_REPEAT_RE = re.compile(r"(.{5,}?)\1{4,}")  # GAIR-NLP/LIMR serve_rm.py, repeat_pattern


def invalid_share(n_invalid: int, total: int = 100) -> str:
    """A `total`-character well-formed response body, `\\boxed{5}` included, with `n_invalid` characters
    outside the release's set (distinct CJK ideographs, so that they never form a repeat)."""
    box = "\\boxed{5} "
    filler = "".join(str(i) for i in range(100))  # 0123456789101112...: no chunk repeats 5 times
    bad = "".join(chr(0x4E00 + i) for i in range(n_invalid))
    text = box + filler[: total - len(box) - n_invalid] + bad
    assert len(text) == total
    return text


# (response, answer, reward, format_error, extracted) in the default mode with Qwen's end markers
SCORE_CASES = [
    ("The answer is $\\boxed{5}$." + END, "5", CORRECT, None, "5"),  # correct: +1
    ("The answer is $\\boxed{6}$." + END, "5", WRONG, None, "6"),  # well formatted but wrong: -0.5
    ("The answer is $\\boxed{5}$.", "5", BAD_FORMAT, "truncated", None),  # right answer, no end marker: cut off
    ("\\boxed{5}" + EOT, "5", CORRECT, None, "5"),  # <|endoftext|> ends a response as well as <|im_end|>
    ("  \\boxed{5}  \n" + END + "\n", "5", CORRECT, None, "5"),  # whitespace around the body is ignored
    ("The answer is 5." + END, "5", BAD_FORMAT, "no_box", None),  # no box at all
    ("\\fbox{5}" + END, "5", CORRECT, None, "5"),  # \fbox is a box in the default mode
    ("\\boxed{1} \\boxed{2} \\boxed{3} \\boxed{5}" + END, "5", CORRECT, None, "5"),  # 4 boxes: fine, last wins
    ("\\boxed{1} \\boxed{2} \\boxed{3} \\boxed{4} \\boxed{5}" + END, "5", BAD_FORMAT, "too_many_boxes", "5"),  # 5
    ("\\boxed{1} \\boxed{2} \\boxed{3} \\boxed{4} \\fbox{5}" + END, "5", BAD_FORMAT, "too_many_boxes", "5"),  # mixed
    (invalid_share(29) + END, "5", CORRECT, None, "5"),  # 29% unusual characters: not garbled
    (invalid_share(30) + END, "5", CORRECT, None, "5"),  # exactly 30%: the rule is "over 30%"
    (invalid_share(31) + END, "5", BAD_FORMAT, "garbled", "5"),  # 31%: garbled
    ("∀x ∈ S, x ≥ 0 ∑∏∫ \\boxed{5}" + END, "5", CORRECT, None, "5"),  # U+2200-22FF math symbols are usual
    ("so " + "abcde" * 4 + " \\boxed{5}" + END, "5", CORRECT, None, "5"),  # 5-char chunk x4: no repeat
    ("so " + "abcde" * 5 + " \\boxed{5}" + END, "5", BAD_FORMAT, "repeat", "5"),  # 5-char chunk x5: repeat
    ("so " + "abcd" * 9 + " \\boxed{5}" + END, "5", CORRECT, None, "5"),  # 4-char chunk x9 = 8-char x4.5: none
    ("so " + "abcd" * 10 + " \\boxed{5}" + END, "5", BAD_FORMAT, "repeat", "5"),  # x10 = "abcdabcd" x5: repeat
    ("abcde\n" * 5 + "\\boxed{5}" + END, "5", CORRECT, None, "5"),  # the same line 5 times: `.` stops at \n
    ("\\boxed{}" + END, "5", BAD_FORMAT, "no_answer", None),  # a box but nothing in it
    ("\\boxed{5" + END, "5", BAD_FORMAT, "no_answer", None),  # unclosed box
    ("\\boxed{5}" + END + " \\boxed{6}", "5", CORRECT, None, "5"),  # text after the end marker is ignored
    ("\\boxed{5}" + END + "\u4e00" * 50, "5", CORRECT, None, "5"),  # ... garbage after it too
    ("\\boxed{6}" + EOT + "\\boxed{5}" + END, "5", WRONG, None, "6"),  # the first marker of either kind cuts
    ("\u4e00" * 50 + END, "5", BAD_FORMAT, "no_box", None),  # no box comes before garbled
    ("\\boxed{1}" * 5 + "\u4e00" * 50 + END, "1", BAD_FORMAT, "too_many_boxes", "1"),  # too many before garbled
    ("\u4e00\u4e01\u4e02\u4e03\u4e04" * 10 + "\\boxed{5}" + END, "5", BAD_FORMAT, "garbled", "5"),  # before repeat
]


@pytest.mark.parametrize("response, answer, expected_reward, expected_error, expected_extracted", SCORE_CASES)
def test_score(response, answer, expected_reward, expected_error, expected_extracted):
    s = score(response, answer)
    assert (s.reward, s.format_error, s.extracted) == (expected_reward, expected_error, expected_extracted)
    assert s.correct == (expected_reward == CORRECT)
    assert reward(response, answer) == expected_reward


@pytest.mark.parametrize(
    "response, eos_markers, expected_reward, expected_error",
    [
        ("\\boxed{5}", None, CORRECT, None),  # None: texts saved without special tokens are complete
        ("\\boxed{6}" + END + "\\boxed{5}", None, CORRECT, None),  # ... and a marker is then plain text
        ("\\boxed{5}", EOS_MARKERS, BAD_FORMAT, "truncated"),  # the default markers
        ("\\boxed{5}</s>", ("</s>",), CORRECT, None),  # a custom marker
        ("\\boxed{5}" + END, ("</s>",), BAD_FORMAT, "truncated"),  # only the markers given count
        ("\\boxed{6}</s>\\boxed{5}", ("</s>",), WRONG, None),  # a custom marker cuts like the default ones
    ],
)
def test_score_eos_markers(response, eos_markers, expected_reward, expected_error):
    s = score(response, "5", eos_markers=eos_markers)
    assert (s.reward, s.format_error) == (expected_reward, expected_error)


def test_score_unknown_mode():
    with pytest.raises(ValueError, match="unknown grader mode"):
        score("\\boxed{5}" + END, "5", mode="qwen")


@pytest.mark.parametrize(
    "response, markers, expected",
    [
        ("a" + END + "b", EOS_MARKERS, "a"),  # cut at the marker
        (" a \n" + EOT, EOS_MARKERS, "a"),  # the other marker; stripped
        ("x" + EOT + "y" + END + "z", EOS_MARKERS, "x"),  # the first marker of either kind
        ("a", EOS_MARKERS, None),  # no marker: cut off
        ("", EOS_MARKERS, None),  # empty and no marker: cut off
        (END, EOS_MARKERS, ""),  # a marker right away: complete and empty
        (" a ", None, "a"),  # no markers: the whole response, stripped
        ("a</s>b", ("</s>",), "a"),  # custom marker
    ],
)
def test_cut_at_eos(response, markers, expected):
    assert cut_at_eos(response, markers) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", False),  # empty: nothing is garbled
        ("We have $x^2 + 1 = 5$, so x = \\pm 2.", False),  # plain text and LaTeX
        ("a\tb\nc", False),  # tabs and newlines are usual (\s)
        ("∀∃∈∑∏∫≤≥≠", False),  # the U+2200-22FF block counts as usual
        ("ab\u00e9", True),  # 1 of 3 (33%) outside the set: é is not in it
        ("abcdefg\u00e9\u00e9\u00e9", False),  # 3 of 10: exactly 30% is not over
        ("abcdef\u00e9\u00e9\u00e9\u00e9", True),  # 4 of 10: over
        ("\u4e2d\u6587\u6570\u5b66", True),  # Chinese only
        ("\x00\x01\x02abcdefg", False),  # 3 of 10 control characters: not over
    ],
)
def test_is_garbled(text, expected):
    assert is_garbled(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("abcde" * 5, True),  # 5-char chunk x5
        ("abcde" * 4, False),  # x4
        ("abcde" * 4 + "abcd", False),  # x4 and a partial fifth
        ("xy" + "abcde" * 5 + "z", True),  # anywhere in the line
        ("abcdef" * 5, True),  # 6-char chunk x5
        ("abcdef" * 4 + "abcde", False),  # 6-char chunk x4 and a partial fifth
        ("abcd" * 10, True),  # 4-char chunk x10: "abcdabcd" x5
        ("abcd" * 9, False),  # 4-char chunk x9: 8-char x4.5, 12-char x3
        ("ab" * 15, True),  # 2-char chunk x15: "ababab" x5
        ("ab" * 14, False),  # x14: "ababab" x4.67
        ("a" * 25, True),  # "aaaaa" x5
        ("a" * 24, False),  # one short
        ("abcde\n" * 5, False),  # the chunk would span a newline
        ("abcde" * 3 + "\n" + "abcde" * 2, False),  # a run broken by a newline
        ("first line\n" + "abcde" * 5 + "\nlast", True),  # a repeat on an inner line
        ("abcde" * 2 + "abcdX" + "abcde" * 2, False),  # one changed character breaks the run
        ("", False),  # empty
    ],
)
def test_has_repeat(text, expected):
    assert bool(RELEASE_REPEAT_RE.search(text)) == expected  # the case is right about the release's rule
    assert has_repeat(text) == expected


def _random_text(rng: random.Random) -> str:
    alphabet = rng.choice(["ab", "ab\n", "abc", "a\n", "aab", "ab ", "abcd\n", "01\n"])
    if rng.random() < 0.5:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
    # a planted run with a few changed characters, so that near misses are common
    chunk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
    run = list(chunk * rng.randint(3, 12))
    for _ in range(rng.randint(0, 2)):
        if run:
            run[rng.randrange(len(run))] = rng.choice(alphabet)
    pad = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10))) for _ in range(2)]
    return pad[0] + "".join(run) + pad[1]


def test_has_repeat_matches_release_regex():
    rng = random.Random(0)
    texts = [_random_text(rng) for _ in range(4000)]
    expected = [bool(RELEASE_REPEAT_RE.search(t)) for t in texts]
    assert 300 < sum(expected) < 3700  # both answers are well represented
    mismatches = [t for t, e in zip(texts, expected, strict=True) if has_repeat(t) != e]
    assert mismatches == []


def _words(n: int, seed: int = 0) -> str:
    """n characters of one-line text from a small vocabulary, like LaTeX-heavy reasoning: no 5-fold repeat,
    but most 5-character pieces occur many times."""
    rng = random.Random(seed)
    vocab = ["the", "\\frac{1}{2}", "x", "=", "+", "so", "we", "have", "\\sqrt{3}", "and", "then", "2", "(a+b)", "is"]
    out = []
    size = 0
    while size < n:
        w = rng.choice(vocab) + " "
        out.append(w)
        size += len(w)
    return "".join(out)[:n]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("".join(random.Random(1).choices(string.ascii_letters + " ", k=200_000)), False),  # random letters
        (_words(200_000), False),  # one 200 KB line of repeating words
        ("\n".join(f"step {i}: add {i} to {i * i}" for i in range(8_000)), False),  # many short lines
        (_words(200_000) + "abcde" * 5, True),  # a repeat at the very end of a 200 KB line
        ("xy" * 100_000, True),  # a 200 KB run
    ],
)
def test_has_repeat_on_200kb(text, expected):
    assert len(text) >= 150_000
    assert has_repeat(text) == expected  # completes (the release's regex would take ~15 s on some of these)


class _CountingStr(str):
    """A str that counts the characters its slices copy and its searches scan: the work of a scan over it."""

    work = 0

    def __getitem__(self, key):
        out = str.__getitem__(self, key)
        _CountingStr.work += len(out)
        return out

    def find(self, sub, start=0, end=None):
        end = len(self) if end is None else min(end, len(self))
        _CountingStr.work += max(0, end - start)
        return str.find(self, sub, start, end)


def _work(text: str) -> int:
    _CountingStr.work = 0
    assert _line_has_repeat(_CountingStr(text)) is False
    return _CountingStr.work


def test_has_repeat_work_grows_near_linearly():
    # 4x the text may cost ~4.7x the work for O(n log n); a quadratic scan costs 16x
    small, large = _work(_words(4_000)), _work(_words(16_000))
    assert large / small < 8


# ---------------------------------------------------------------------------------------------------------
# The release-faithful mode


# (response, answer, default reward, limr reward) where the two modes differ or must agree
LIMR_CASES = [
    ("\\boxed{5}" + END, "5", CORRECT, CORRECT),  # a plain integer: both right
    ("\\boxed{6}" + END, "5", WRONG, WRONG),  # both wrong
    ("\\boxed{5}", "5", BAD_FORMAT, BAD_FORMAT),  # both cut off
    ("\\boxed{1}" * 5 + END, "1", BAD_FORMAT, BAD_FORMAT),  # both: too many boxes
    ("\\fbox{5}" + END, "5", CORRECT, BAD_FORMAT),  # the release only counts \boxed: no box
    ("\\boxed 5" + END, "5", CORRECT, BAD_FORMAT),  # the release's regex needs a brace: nothing extracted
    ("\\boxed{}" + END, "5", BAD_FORMAT, WRONG),  # the release extracts "" and grades it wrong
    ("\\boxed{\\pi}" + END, "\\pi", CORRECT, WRONG),  # bare `\pi` parses to nothing
    ("\\boxed{3\\sqrt{13}}" + END, "3\\sqrt{13}", CORRECT, CORRECT),  # bare `3\sqrt{13}` is 3 on both sides
    ("\\boxed{3}" + END, "3\\sqrt{13}", WRONG, CORRECT),  # ... so 3 is accepted for 3*sqrt(13)
    ("\\boxed{\\dfrac{1}{2}}" + END, "\\frac{1}{2}", CORRECT, WRONG),  # bare \dfrac parses to nothing
    ("\\boxed{(1,3]}" + END, "(1,3]", CORRECT, WRONG),  # bare intervals parse to nothing
]


@pytest.mark.parametrize("response, answer, default_reward, limr_reward", LIMR_CASES)
def test_limr_mode(response, answer, default_reward, limr_reward):
    assert score(response, answer).reward == default_reward
    assert score(response, answer, mode="limr").reward == limr_reward


_RELEASE_BOXED_RE = re.compile(
    r"\\boxed\{((?:[^{}]|\\{|\\}|(?:\{(?:[^{}]|\\{|\\}|(?:\{(?:[^{}]|\\{|\\}|(?:\{[^{}]*\}))*\}))*\}))*\})"
)
_RELEASE_VALID_RE = re.compile(r"[a-zA-Z0-9\s\.,!?\"'\(\)\{\}\[\]_\-+=<>/@#$%^&*\\|:;~`\u2200-\u22FF]")


def release_reward(response: str, gold: str) -> float:
    """GAIR-NLP/LIMR openrlhf/cli/serve_rm.py, RuleBasedRMProxy.split_and_score (qwen template, 98ebf1b),
    transcribed from the point where the prompt has been split off."""
    from math_verify import parse, verify

    if "<|im_end|>" not in response and "<|endoftext|>" not in response:
        return -1.0
    response = response.split("<|im_end|>")[0].split("<|endoftext|>")[0].strip()
    if "\\boxed" not in response or response.count("\\boxed") >= 5:
        return -1.0
    if response and len(_RELEASE_VALID_RE.sub("", response)) / len(response) > 0.3:
        return -1.0
    if RELEASE_REPEAT_RE.search(response):
        return -1.0
    matches = _RELEASE_BOXED_RE.findall(response)
    if not matches:
        return -1.0
    try:
        ok = verify(parse(gold), parse(matches[-1][:-1]))
    except Exception:
        ok = False
    return 1.0 if ok else -0.5


@pytest.mark.parametrize(
    "response, answer",
    [(c[0], c[1]) for c in SCORE_CASES + LIMR_CASES]
    + [
        ("\\boxedx{5}" + END, "5"),  # `\boxedx` counts towards the release's box count
        ("\\boxed{\\frac{a^{b^{c}}}{2}}" + END, "\\frac{a^{b^{c}}}{2}"),  # 3 levels of nesting
        ("\\boxed{\\{1,2\\}}" + END, "\\{1,2\\}"),  # escaped braces
        ("\\boxed{1} and \\boxed{2}" + END, "2"),  # the last box
    ],
)
def test_limr_mode_matches_release(response, answer):
    assert score(response, answer, mode="limr").reward == release_reward(response, answer)


@pytest.mark.parametrize(
    "response, default_error, limr_error",
    [
        ("\\fbox{5}", None, "no_box"),  # \fbox is no box to the release
        ("\\boxed{1} \\boxed{2} \\boxed{3} \\boxed{4} \\fbox{5}", "too_many_boxes", None),  # 4 \boxed for it
        ("\\boxedx{5}", None, None),  # both count `\boxedx` (as the release did)
        ("no box", "no_box", "no_box"),  # no box either way
    ],
)
def test_format_error_modes(response, default_error, limr_error):
    assert format_error(response) == default_error
    assert format_error(response, mode="limr") == limr_error


# ---------------------------------------------------------------------------------------------------------
# check_format=False: evaluation grades the answer alone


@pytest.mark.parametrize(
    "response, answer, expected",
    [
        ("\\boxed{5}", "5", CORRECT),  # no end-of-turn marker: not cut off when format is not checked
        ("\\boxed{1} " * 4 + "\\boxed{5}", "5", CORRECT),  # five boxes: the last one counts
        ("abcde" * 5 + " \\boxed{5}", "5", CORRECT),  # a long repeat is not a format error here
        ("\\boxed{6}", "5", WRONG),  # still wrong when wrong
        ("no box at all", "5", BAD_FORMAT),  # and no answer is still no answer
    ],
)
def test_score_without_format_rules(response, answer, expected):
    assert score(response, answer, check_format=False).reward == expected
    assert score(response, answer).reward == BAD_FORMAT  # the training reward rejects every one of them
