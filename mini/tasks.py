"""A synthetic arithmetic task family with graded difficulty, generated from a seed.

Level 1: a one-digit plus a two-digit number; level 2: two-digit sums; level 3: a sum then a difference (two written steps);
level 4: a one-digit times a two-digit number. Every gold solution writes its steps and ends with the answer in
`\\boxed{}`, so the paper's reward (`limr.reward.score`) grades the policy's answers unchanged.
"""

from __future__ import annotations

import random

LEVELS = (1, 2, 3, 4)


def make_problem(rng: random.Random, level: int) -> tuple[str, str, str]:
    """(question, worked solution, answer) of one problem of the given level."""
    if level == 1:
        a, b = rng.randint(1, 9), rng.randint(10, 99)
        q, steps, ans = f"{a}+{b}", f"{a}+{b}={a + b}.", a + b
    elif level == 2:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        q, steps, ans = f"{a}+{b}", f"{a}+{b}={a + b}.", a + b
    elif level == 3:
        a, b, c = rng.randint(10, 49), rng.randint(1, 9), rng.randint(1, 9)
        q, steps, ans = f"{a}+{b}-{c}", f"{a}+{b}={a + b}. {a + b}-{c}={a + b - c}.", a + b - c
    elif level == 4:
        a, b = rng.randint(2, 9), rng.randint(11, 99)
        q, steps, ans = f"{a}*{b}", f"{a}*{b}={a * b}.", a * b
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
