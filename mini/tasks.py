"""A synthetic arithmetic task family with graded difficulty, generated from a seed.

Worked solutions go digit by digit, units first, the way a pupil writes them, so that a tiny model can learn each
step as a lookup (a character-level model cannot carry across a number it writes most significant digit first):

  level 1  two-digit plus one-digit         65+8   ->  5+8=13. 6+0+1=7. \\boxed{73}
  level 2  two-digit plus two-digit         47+38  ->  7+8=15. 4+3+1=8. \\boxed{85}
  level 3  two-digit minus two-digit        83-47  ->  13-7=6. 8-1-4=3. \\boxed{36}
  level 4  one-digit times two-digit        7*38   ->  7*8=56. 7*3+5=26. \\boxed{266}

Every solution ends with the answer in `\\boxed{}`, so the paper's reward (`limr.reward.score`) grades it unchanged.
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

LEVELS = (1, 2, 3, 4)
QUESTION_RE = re.compile(r"Compute (\d+)([-+*])(\d+)\.")


def add_steps(a: int, b: int) -> str:
    """a+b for a two-digit a and b < 100: the units sum, then the tens plus the carry."""
    units = a % 10 + b % 10
    carry = f"+{units // 10}" if units >= 10 else ""
    return f"{a % 10}+{b % 10}={units}. {a // 10}+{b // 10}{carry}={a // 10 + b // 10 + units // 10}."


def sub_steps(a: int, b: int) -> str:
    """a-b for two-digit a > b: the units difference (borrowing ten when needed), then the tens minus the borrow."""
    borrow = int(a % 10 < b % 10)
    units = f"{10 * borrow + a % 10}-{b % 10}={10 * borrow + a % 10 - b % 10}."
    return f"{units} {a // 10}{'-1' * borrow}-{b // 10}={a // 10 - borrow - b // 10}."


def mul_steps(a: int, b: int) -> str:
    """a*b for one-digit a and two-digit b: a times the units, then a times the tens plus the carry."""
    units = a * (b % 10)
    carry = f"+{units // 10}" if units >= 10 else ""
    return f"{a}*{b % 10}={units}. {a}*{b // 10}{carry}={a * (b // 10) + units // 10}."


def make_problem(rng: random.Random, level: int) -> tuple[str, str, str]:
    """(question, worked solution, answer) of one problem of the given level."""
    if level == 1:
        a, b = rng.randint(10, 99), rng.randint(1, 9)
        q, steps, ans = f"{a}+{b}", add_steps(a, b), a + b
    elif level == 2:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        q, steps, ans = f"{a}+{b}", add_steps(a, b), a + b
    elif level == 3:
        a, b = sorted(rng.sample(range(10, 100), 2), reverse=True)
        q, steps, ans = f"{a}-{b}", sub_steps(a, b), a - b
    elif level == 4:
        a, b = rng.randint(2, 9), rng.randint(11, 99)
        q, steps, ans = f"{a}*{b}", mul_steps(a, b), a * b
    else:
        raise ValueError(f"unknown level {level}")
    return f"Compute {q}.", f"{steps} \\boxed{{{ans}}}", str(ans)


def problem_key(question: str) -> tuple:
    """What makes two questions the same problem: the operator and its operands, unordered where the operator
    commutes (`47+38` and `38+47` are one problem; `83-47` and `47-83` are two)."""
    m = QUESTION_RE.fullmatch(question)
    if m is None:
        raise ValueError(f"not a question of this task family: {question!r}")
    a, op, b = int(m[1]), m[2], int(m[3])
    return (op, *sorted((a, b))) if op in "+*" else (op, a, b)


def make_items(n: int, rng: random.Random, prefix: str, seen: set[tuple], unique: bool = True) -> list[dict]:
    """n new problems (none in `seen`, a set of `problem_key`s, which grows), levels in turn, as prompt-file items
    {id, prompt, answer, source} plus `solution` and `level`; `unique=False` allows repeats within these n."""
    items = []
    while len(items) < n:
        level = LEVELS[len(items) % len(LEVELS)]
        question, solution, answer = make_problem(rng, level)
        key = problem_key(question)
        if key in seen:
            continue
        if unique:
            seen.add(key)
        items.append(
            {
                "id": f"{prefix}-{len(items):05d}",
                "prompt": question,
                "answer": answer,
                "source": f"mini-level{level}",
                "solution": solution,
                "level": level,
            }
        )
    return items


class Splits(NamedTuple):
    pool: list[dict]  # RL's training prompts (stage 1 and the subsets of stage 2)
    val: list[dict]  # validation: every setting that is tuned is tuned here
    test: list[dict]  # held out: read once per reported run
    warm: list[dict]  # the supervised warm-up's problems (may repeat among themselves)


def make_splits(n_pool: int, n_val: int, n_test: int, n_warmup: int, seed: int) -> Splits:
    """The four sets of one seed: pool, validation and test are distinct problems (a commuted twin counts as the same
    problem), and none of them is in the warm-up set."""
    rng, seen = random.Random(seed), set()
    pool = make_items(n_pool, rng, "pool", seen)
    val = make_items(n_val, rng, "val", seen)
    test = make_items(n_test, rng, "test", seen)
    warm = make_items(n_warmup, rng, "warm", seen, unique=False)
    return Splits(pool, val, test, warm)
