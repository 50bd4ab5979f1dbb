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
text its regex restricts to digits, spaces and `+-*/^()`. Neither side reaches math-verify when its exact
numbers would pass MAX_DIGITS (`too_large`: `10^{10^{10^{10}}}` asked sympy for gigabytes). A response can
still make sympy work for a long time (`(x+1)^{400}` against `x^2+1`): math-verify's own timeouts use
`signal.alarm`, so they apply only on the main thread, and the hard per-response limit and memory cap come from
grading in worker processes (`limr.pool`).
"""

from __future__ import annotations

import math
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
# The size guard. sympy evaluates exact numbers as it builds them: `10^{10^{10^{10}}}` asks for a number of
# 10^{10^{10}} digits and grows the grading worker by gigabytes until the hard limit kills it; `(10^{10})!` and
# `9!!` (read as `(9!)!`) likewise. So before math-verify parses an answer, `too_large` bounds, from its tokens
# alone, the digits of every exact number in it, and refuses the answer (not equal) when one would pass
# MAX_DIGITS. Nothing is evaluated: the bound is computed on log10 sizes, a letter or a function is "not a
# number", and a power of one may not have an exponent over MAX_DIGITS (`x^{10^{10}}`, `e^{10^{10}}`).

MAX_DIGITS = 100_000  # the longest exact number an answer may build (MATH's largest, 2^{4950}, has 1,491 digits)
MAX_NESTING = 64  # levels of groups and arguments; MATH answers nest a few, and the bound is computed recursively
_LOG2 = math.log10(2)

_SIZE_TOKEN_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+|\\[A-Za-z]+|\\.|\*\*|\S")
_SKIPPED = frozenset({"\\left", "\\right", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\displaystyle", "\\!", "\\,",
                      "\\;", "\\:", "\\ ", "\\limits"})  # fmt: skip
_OPENERS = {"{": "}", "(": ")", "[": "]", "\\{": "\\}", "\\lbrace": "\\rbrace", "\\lfloor": "\\rfloor",
            "\\lceil": "\\rceil", "\\langle": "\\rangle"}  # fmt: skip
_CLOSERS = frozenset(_OPENERS.values())
_ADD_OPS = frozenset({"+", "-", "\\pm", "\\mp"})
_MUL_OPS = frozenset({"*", "/", "\\cdot", "\\times", "\\div"})
_POW_OPS = frozenset({"^", "**"})
_FRACS = frozenset({"\\frac", "\\dfrac", "\\tfrac", "\\cfrac"})
_BINOMS = frozenset({"\\binom", "\\dbinom", "\\tbinom"})
_SEPARATORS = frozenset({"\\\\", "\\le", "\\leq", "\\ge", "\\geq", "\\ne", "\\neq", "\\lt", "\\gt", "\\cup",
                         "\\cap", "\\quad", "\\qquad", "\\in", "\\to", "\\approx"})  # fmt: skip

# A size is (upper bound of log10 of the largest numerator or denominator, is it an integer), or None: not a number.
Size = tuple[float, bool] | None


class _TooLarge(Exception):
    pass


def _value_bound(size: tuple[float, bool]) -> float:
    """An upper bound of the number's absolute value (inf past float range)."""
    return 10.0 ** size[0] if size[0] < 300 else math.inf


def _checked(log10_digits: float, integer: bool) -> Size:
    if log10_digits > MAX_DIGITS:
        raise _TooLarge
    return log10_digits, integer


def _literal(token: str) -> Size:
    whole, _, fraction = token.partition(".")
    digits = (whole + fraction).lstrip("0")
    magnitude = math.log10(int(digits)) if 0 < len(digits) <= 15 else float(len(digits))
    return max(magnitude, float(len(fraction))), not fraction


def _power(base: Size, exponent: Size) -> Size:
    if exponent is None:  # 2^x: symbolic
        return None
    bound = _value_bound(exponent)
    if base is None:  # x^{10^{10}}: no number, but nothing sympy should expand or simplify either
        if bound > MAX_DIGITS:
            raise _TooLarge
        return None
    if base[0] == 0:  # 0, 1 and -1 to any power
        return 0.0, base[1] and exponent[1]
    return _checked(bound * base[0], base[1] and exponent[1])


def _factorial(n: Size) -> Size:
    """n! has at most n * log10(n) digits."""
    if n is None:
        return None
    return _checked(_value_bound(n) * n[0], True)


def _binomial(n: Size, k: Size) -> Size:
    """C(n, k) < 2^n and <= n^k."""
    if n is None or k is None:
        return None
    return _checked(min(_value_bound(n) * _LOG2, _value_bound(k) * n[0]), True)


def _sum(a: Size, b: Size) -> Size:
    if a is None or b is None:
        return None
    if a[1] and b[1]:
        return max(a[0], b[0]) + _LOG2, True
    return a[0] + b[0] + _LOG2, False  # p/q + r/s = (ps + rq) / qs


def _product(a: Size, b: Size) -> Size:
    return None if a is None or b is None else (a[0] + b[0], a[1] and b[1])


def _quotient(a: Size, b: Size) -> Size:
    if a is None or b is None:
        return None
    return (max(a[0], b[0]) if a[1] and b[1] else a[0] + b[0]), False


class _Sizer:
    """Recursive descent over LaTeX (or math-verify's plain `**` syntax) that computes sizes, never values. It never
    fails on text it does not know: a token that starts no expression separates two (`,`, `=`, `&`)."""

    def __init__(self, text: str):
        self.tokens = [t for t in _SIZE_TOKEN_RE.findall(text) if t not in _SKIPPED]
        self.at = 0
        self.depth = 0

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _starts_atom(self, token: str | None) -> bool:
        if token is None or token in _CLOSERS or token in _SEPARATORS or token in _MUL_OPS or token in _ADD_OPS:
            return False
        return token[0].isdigit() or token[0] == "." or token in _OPENERS or token[0] == "\\" or token.isalpha()

    def check(self) -> None:
        while self.at < len(self.tokens):
            start = self.at
            self._expression()
            if self.at == start:
                self.at += 1  # a separator or a stray closer

    def _expression(self) -> Size:
        size = self._term()
        while self._peek() in _ADD_OPS:
            self.at += 1
            size = _sum(size, self._term())
        return size

    def _term(self) -> Size:
        size = self._factor()
        while True:
            token = self._peek()
            if token in _MUL_OPS:
                self.at += 1
                size = (_quotient if token in ("/", "\\div") else _product)(size, self._factor())
            elif self._starts_atom(token):  # juxtaposition: 2x, 3\sqrt{2}, \text{...}
                size = _product(size, self._factor())
            else:
                return size

    def _factor(self) -> Size:
        negative = False
        while self._peek() in _ADD_OPS:
            negative |= self.tokens[self.at] != "+"
            self.at += 1
        if not self._starts_atom(self._peek()):
            return None
        size = self._atom()
        exponents: list[Size] = []
        while (token := self._peek()) is not None:
            if token in _POW_OPS:
                self.at += 1
                exponents.append(self._argument())
            elif token == "_":  # a subscript (`1011_2`) names, it does not compute
                self.at += 1
                self._argument()
            elif token == "!":  # `a^b!` and `n!!` are read as (a^b)! and (n!)!, as math-verify's parser does
                self.at += 1
                size, exponents = _factorial(self._fold(size, exponents)), []
            elif token == "'":
                self.at += 1
            else:
                break
        size = self._fold(size, exponents)
        return (size[0], False) if negative and size is not None else size

    @staticmethod
    def _fold(base: Size, exponents: list[Size]) -> Size:
        """a^b^c as a^(b^c): the larger reading of a double script."""
        if not exponents:
            return base
        exponent = exponents[-1]
        for below in reversed(exponents[:-1]):
            exponent = _power(below, exponent)
        return _power(base, exponent)

    def _argument(self) -> Size:
        """What a script or a command takes: a group, a whole number (`2^10` is 2^{10} to math-verify), a command
        with its own arguments, or one character."""
        while self._peek() in _ADD_OPS:
            self.at += 1
        token = self._peek()
        if token is None or token in _CLOSERS:
            return None
        if self._starts_atom(token):
            return self._atom()
        self.at += 1
        return None

    def _atom(self) -> Size:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _TooLarge
        try:
            return self._atom_inner()
        finally:
            self.depth -= 1

    def _atom_inner(self) -> Size:
        token = self.tokens[self.at]
        self.at += 1
        if token[0].isdigit() or token[0] == ".":
            return _literal(token)
        if token in _OPENERS:
            return self._group()
        if token in _FRACS:
            return _quotient(self._argument(), self._argument())
        if token in _BINOMS:
            return _binomial(self._argument(), self._argument())
        if token == "\\sqrt":
            root = None
            if self._peek() == "[":
                self.at += 1
                root = self._group()
            radicand = self._argument()
            if radicand is None:
                return None
            return (radicand[0] / 2 if root is None else radicand[0]), False
        if token == "\\exp":
            return _power(None, self._argument())
        return None  # a letter, \pi, \infty, \sin, \text: not a number (its argument is read next)

    def _group(self) -> Size:
        """Up to the closer (any closer: `[0, 1)`); a list inside is as large as its largest item."""
        items: list[Size] = []
        while (token := self._peek()) is not None and token not in _CLOSERS:
            start = self.at
            items.append(self._expression())
            if self.at == start:
                self.at += 1
        if token is not None:
            self.at += 1
        if len(items) == 1:
            return items[0]
        if not items or any(item is None for item in items):
            return None
        return max(item[0] for item in items), False


def too_large(expression: str) -> bool:
    """Would parsing `expression` (LaTeX, or math-verify's plain `**` syntax) build an exact number of more than
    MAX_DIGITS digits, a power of a symbol past that exponent, or nest past MAX_NESTING? Computed on the text."""
    try:
        _Sizer(expression).check()
    except _TooLarge:
        return True
    return False


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

    if too_large(answer):  # refused before sympy builds it: no parse, so equal to nothing
        return []
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

    if too_large(text):
        return ()
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
