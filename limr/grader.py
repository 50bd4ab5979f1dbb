"""Is a model's final answer right? Extraction of the last box, a normalised string match, then math-verify.

Two modes:
- "default", the correct grader: the answer is the content of the last `\\boxed{...}` / `\\fbox{...}` /
  `\\boxed 5`, found by brace matching; a normalised string comparison decides first, and only when it
  fails are both sides handed to math-verify wrapped in `\\boxed{}` (bare strings parse wrongly:
  `parse("3\\sqrt{13}")` is 3, `parse("\\pi")` is nothing). No numeric tolerance beyond math-verify's exact
  comparison (Qwen's `math_equal` accepts 100.01 for 100; we do not).
- "limr", the released reward's behaviour, bug for bug (GAIR-NLP/LIMR `openrlhf/cli/serve_rm.py` at
  98ebf1b): the release's nested-brace regex, then `verify(parse(gold), parse(pred))` on bare strings, any
  exception False. 847 of the 8,523 MATH-8k answers can never be matched this way, which shaped which
  prompts LIM kept; the faithful reproduction of the paper needs it.

Model output is untrusted. It never reaches `eval`, `sympify` or `parse_expr` here: the default mode uses
math-verify's LaTeX extraction only (an ANTLR parser that builds sympy objects, no Python evaluation).
The limr mode also runs math-verify's plain-expression extraction, which calls `parse_expr` but only on
text its regex restricts to digits, spaces and `+-*/^()`. A response can still make sympy work for a long
time (`10^{10^{10^{10}}}`): math-verify's own timeouts use `signal.alarm`, so they apply only on the main
thread, and the hard per-response limit comes from grading in worker processes (`limr.pool`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

MODES = ("default", "limr")
PARSE_TIMEOUT_S = 1  # math-verify's own soft limits (whole seconds: signal.alarm)
VERIFY_TIMEOUT_S = 1


@dataclass(frozen=True)
class Verdict:
    correct: bool
    extracted: str | None  # None: no answer could be extracted


# ---------------------------------------------------------------------------------------------------------
# Extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _match_brace(text: str, open_idx: int) -> int | None:
    """Index of the `}` closing the `{` at open_idx, skipping `\\{` and `\\}`; None if unclosed."""
    depth = 0
    i, n = open_idx, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, `\\fbox{...}` or `\\boxed 5`; None for no box, unclosed or empty."""
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    last = boxes[-1]
    i = last.end()
    while i < len(text) and text[i] in " \t":  # TeX skips spaces after a control word: `\boxed {5}`
        i += 1
    if i < len(text) and text[i] == "{":
        close = _match_brace(text, i)
        if close is None:
            return None
        content = text[i + 1 : close].strip()
    else:
        # `\boxed 5`: the box takes one space-separated token
        m = re.match(r"([^\s$]+)", text[i : i + 200]) if i > last.end() else None
        content = m.group(1).rstrip(".") if m else ""
    return content or None


# ---------------------------------------------------------------------------------------------------------
# Normalisation for the string fast path. Both sides go through the same steps, so a rule can only make two
# answers equal that a reader would call equal; each step follows Hendrycks et al.'s MATH `strip_string`
# (github.com/hendrycks/math, modeling/math_equivalence.py) or Minerva's normalize_final_answer
# (Lewkowycz et al. 2022, appendix D), trimmed to the rules that never merge different values.

_DROP_RE = re.compile(r"\\(?:left|right|displaystyle|quad|qquad)(?![A-Za-z])|\\[!,;:]|\$")
_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm|mathbf)\s*\{([^{}]*)\}")
_FRAC_SHORT_RE = re.compile(r"\\frac(\d)(\d)")
_FRAC_HALF_RE = re.compile(r"\\frac\{([^{}]*)\}(\d)")
_SQRT_SHORT_RE = re.compile(r"\\sqrt(\d)")
_SUB_BRACE_RE = re.compile(r"_\{(\w)\}")  # `1011_{2}` is `1011_2`; `x_{10}` is not `x_10`
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_ASSIGN_RE = re.compile(r"^[A-Za-z]\s*=\s*(?=[^=])")
_CHOICE_RE = re.compile(r"^\(?([A-E])\)?$")


def normalize(answer: str) -> str:
    s = _DROP_RE.sub("", answer.strip())
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace(r"\%", "%")
    s = _DEGREES_RE.sub("", s)
    s = _TEXT_RE.sub(r"\1", s)
    if _THOUSANDS_RE.match(s):  # before spaces go: `3, 100` is a list of two numbers, `3,100` is 3100
        s = s.replace(",", "")
    s = "".join(s.split())  # all whitespace
    s = _ASSIGN_RE.sub("", s)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_RE.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = _SUB_BRACE_RE.sub(r"_\1", s)
    s = s.rstrip(".")
    if s.startswith("."):
        s = "0" + s
    m = _CHOICE_RE.match(s)
    return m.group(1) if m else s


# ---------------------------------------------------------------------------------------------------------
# math-verify


def _timeouts() -> tuple[int | None, int | None]:
    # signal.alarm only works on the main thread; elsewhere the caller's process limit has to do
    if threading.current_thread() is threading.main_thread():
        return PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S
    return None, None


@lru_cache(maxsize=1)
def _latex_only_config():
    from math_verify import LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0)]


def _parse_boxed(answer: str):
    from math_verify import parse

    parse_timeout, _ = _timeouts()
    try:
        return parse("\\boxed{" + answer + "}", extraction_config=_latex_only_config(), parsing_timeout=parse_timeout)
    except Exception:
        return []


def _verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    if not gold_parsed or not pred_parsed:
        return False
    _, verify_timeout = _timeouts()
    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=verify_timeout))
    except Exception:
        return False


@dataclass(frozen=True)
class Gold:
    """A gold answer prepared once per prompt; its math-verify parse is made on first need, then cached."""

    text: str
    norm: str

    @property
    def parsed(self) -> list:
        return list(_parse_gold(self.text))


@lru_cache(maxsize=16384)
def _parse_gold(answer: str) -> tuple:
    return tuple(_parse_boxed(answer)) if answer else ()


@lru_cache(maxsize=16384)
def prepare_gold(answer: str) -> Gold:
    answer = answer.strip()
    return Gold(answer, normalize(answer))


def max_answer_length(gold: str) -> int:
    """Longer predictions are wrong without parsing: no right answer is many times its gold's length."""
    return 4 * len(gold) + 64


_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_FRACTION_RE = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+)")


def as_number(norm: str) -> Fraction | None:
    """The exact value of a normalised plain number (`-12`, `0.25`, `\\frac{3}{4}`, `3/4`), else None."""
    if _NUMBER_RE.fullmatch(norm):
        return Fraction(norm)
    m = _FRACTION_RE.fullmatch(norm)
    if m is None:
        return None
    sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else ("", m.group(4), m.group(5))
    if int(den) == 0:
        return None
    return Fraction(int(num), int(den)) * (-1 if sign else 1)


_COMPOUND_MARKS = ("\\begin{", "\\cup", "\\cap", ";")


def is_compound(norm: str) -> bool:
    """Tuples, lists, intervals, sets and matrices: a comma outside braces, a matrix, a union."""
    depth = 0
    for ch in norm:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return any(mark in norm for mark in _COMPOUND_MARKS)


_TEXT_GROUP_RE = re.compile(r"\\(?:text\w*|math\w+|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")


def has_variable(answer: str) -> bool:
    """A letter outside LaTeX commands and `\\text{}` (units, words): an expression, not a constant."""
    return re.search(r"[A-Za-z]", _TEXT_GROUP_RE.sub("", _ASSIGN_RE.sub("", answer.strip()))) is not None


@lru_cache(maxsize=16384)
def _parse_pred(pred: str) -> tuple:
    # a policy repeats its wrong answers across a prompt's samples: parse each distinct one once
    return tuple(_parse_boxed(pred))


def is_equivalent(pred: str, gold: Gold) -> bool:
    if not gold.text or not pred:
        return False
    if len(pred) > max_answer_length(gold.text):
        return False
    norm = normalize(pred)
    if norm == gold.norm:
        return True
    # Two plain numbers compare exactly, without sympy: most MATH answers are integers, and wrong ones
    # would otherwise each cost a parse. Exact means 0.333333 is not 1/3 (math-verify rounds to 6 places).
    gold_value, pred_value = as_number(gold.norm), as_number(norm)
    if gold_value is not None and pred_value is not None:
        return gold_value == pred_value
    # A tuple, interval, set or matrix never equals a single value: skip parsing (the costly part) when
    # exactly one side is compound.
    if is_compound(norm) != is_compound(gold.norm):
        return False
    # Likewise a plain number never equals an expression in a variable (`2k`, `x^2+1`).
    if (gold_value is not None and has_variable(pred)) or (pred_value is not None and has_variable(gold.text)):
        return False
    # ... or a word (`Saturday`, a choice letter).
    if (gold_value is not None and norm.isalpha()) or (pred_value is not None and gold.norm.isalpha()):
        return False
    return _verify(gold.parsed, list(_parse_pred(pred)))


# ---------------------------------------------------------------------------------------------------------
# The released reward's behaviour (mode "limr")

# The release's pattern, rewritten: `\boxed{` then content with up to four levels of nested braces.
_L0 = r"(?:[^{}]|\\{|\\})"
_LIMR_BOXED_RE = re.compile(
    r"\\boxed\{((?:" + _L0 + r"|(?:\{(?:" + _L0 + r"|(?:\{(?:" + _L0 + r"|(?:\{[^{}]*\}))*\}))*\}))*\})"
)


def extract_boxed_limr(response: str) -> str | None:
    matches = _LIMR_BOXED_RE.findall(response)
    return matches[-1][:-1] if matches else None


@lru_cache(maxsize=16384)
def _parse_bare(text: str) -> tuple:
    from math_verify import parse

    parse_timeout, _ = _timeouts()
    try:
        return tuple(parse(text, parsing_timeout=parse_timeout))
    except Exception:
        return ()


def is_equivalent_limr(pred: str, gold: str) -> bool:
    return _verify(list(_parse_bare(gold)), list(_parse_bare(pred)))


# ---------------------------------------------------------------------------------------------------------


def grade(response: str, answer: str, mode: str = "default") -> Verdict:
    """Grade one response against its gold answer; `response` is the model's text after the prompt."""
    if mode == "default":
        pred = extract_boxed(response)
        return Verdict(pred is not None and is_equivalent(pred, prepare_gold(answer)), pred)
    if mode == "limr":
        pred = extract_boxed_limr(response)
        return Verdict(pred is not None and is_equivalent_limr(pred, answer), pred)
    raise ValueError(f"unknown grader mode {mode!r}; expected one of {MODES}")
