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

LEVELS = (1, 2, 3, 4)


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


def make_items(n: int, rng: random.Random, prefix: str, seen: set[str], unique: bool = True) -> list[dict]:
    """n new problems (none in `seen`, which grows), levels in turn, as prompt-file items
    {id, prompt, answer, source} plus `solution` and `level`; `unique=False` allows repeats within these n."""
    items = []
    while len(items) < n:
        level = LEVELS[len(items) % len(LEVELS)]
        question, solution, answer = make_problem(rng, level)
        if question in seen:
            continue
        if unique:
            seen.add(question)
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


def make_splits(n_pool: int, n_test: int, n_warmup: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Training pool, held-out test set and supervised warm-up set: pool and test questions are distinct and unseen
    in warm-up (whose own questions may repeat)."""
    rng, seen = random.Random(seed), set()
    pool = make_items(n_pool, rng, "pool", seen)
    test = make_items(n_test, rng, "test", seen)
    warm = make_items(n_warmup, rng, "warm", seen, unique=False)
    return pool, test, warm
