"""How many epochs a selection needs: select with the first K epochs only and compare with the selection from all.

LIM's cost is stage 1 (21 epochs of PPO on every prompt). If the first K epochs already pick nearly the same
prompts, the rest of stage 1 buys nothing for selection. Each row compares the K-epoch selection with the full one:
Jaccard of the selected sets, Spearman of the scores (over every scored prompt), and the selected count. Pure
arithmetic: the caller passes the scorer and the selector, so every method is measured the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable


def jaccard(a: Iterable, b: Iterable) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets are identical (1.0)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span (scipy.stats.rankdata's 'average')."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the average ranks; None where a side is constant (undefined)."""
    if len(x) != len(y):
        raise ValueError("spearman needs two lists of the same length")
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = math.fsum((a - mx) ** 2 for a in rx), math.fsum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def chance_jaccard(size: int, n: int) -> float:
    """Jaccard expected of two independent random size-subsets of n (overlap ≈ size²/n): the floor to beat, high
    when a selection keeps most prompts."""
    return size / (2 * n - size) if n else 1.0


Scorer = Callable[[dict[str, list[float]]], dict[str, float]]
Selector = Callable[..., list[str]]  # limr.dataset.select_by_score(scores, theta=None, k=None) -> ids


def stability_rows(
    complete: dict[str, list[float]],
    scorer: Scorer,
    select: Selector,
    theta: float | None,
    size: int,
    first_epoch: int = 1,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """One row per K = first_epoch .. K_max and mode: 'same size' (the top `size` at K against the top `size` at
    K_max) and, when theta is given, 'threshold' (score >= theta at K against the same at K_max)."""
    k_max = len(next(iter(complete.values())))
    full = scorer(complete)
    ids = list(full)
    full_sets = {"same size": select(full, k=size)}
    if theta is not None:
        full_sets["threshold"] = select(full, theta)
    rows = []
    for k in range(first_epoch, k_max + 1):
        part = scorer({pid: h[:k] for pid, h in complete.items()})
        rho = spearman([part[pid] for pid in ids], [full[pid] for pid in ids])
        for mode, full_set in full_sets.items():
            chosen = select(part, k=size) if mode == "same size" else select(part, theta)
            rows.append({"epochs": k, "mode": mode, "jaccard": jaccard(chosen, full_set), "spearman": rho,
                         "selected": len(chosen), "selected_full": len(full_set),
                         "jaccard_by_chance": chance_jaccard(len(full_set), len(ids))})  # fmt: skip
        if progress is not None:
            progress()
    return rows


def epochs_to_reach(rows: list[dict], mode: str, target: float) -> int | None:
    """The fewest epochs from which Jaccard stays >= target for every larger K (None: never before K_max)."""
    mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["epochs"])
    reached = None
    for r in mine:
        if r["jaccard"] >= target:
            reached = reached or r["epochs"]
        else:
            reached = None
    return reached
