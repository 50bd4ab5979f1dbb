"""When to stop stage 1: a rule a user applies while the run goes on, from the epochs seen so far.

LIM's cost is stage 1, RL on the whole pool (the paper: 21 epochs on 16 GPUs). `--stability` (limr/stability.py)
shows in hindsight that a fixed-size LIM selection settles long before the run ends, but it compares with the full
history, which a user watching a run does not have. This rule sees prefixes only: after epoch j it selects the top
K prompts by LIM over epochs 1..j, compares that set with the one after epoch j-1 (Jaccard), and calls the
selection stable once that Jaccard has stayed >= `level` for `patience` epochs in a row. Stop there, and select
from the epochs that exist.

The rule's parameters (RULE) were fixed on simulated histories with a known full selection (scripts/
stopping_sim.py, docs/selection.md) before the rule was run on any real history. One rule, three callers:
lim_selection.py --stopping (offline, on a log or accuracy file), the reward server (live, on its own tally, one
pass at a time) and the simulation; all go through `select_top` and `Verdict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from limr.paper import LIMR_SIZE, MATH8K_SIZE
from limr.stability import jaccard


@dataclass(frozen=True)
class StoppingRule:
    """Stable after `patience` consecutive epochs whose top-K changed little: Jaccard with the top-K of `window`
    epochs before (1: the previous epoch) >= `level` each time. The earliest stop is epoch window + patience."""

    level: float
    patience: int
    window: int = 1

    def params(self) -> dict:
        return asdict(self)


# Fixed on simulated histories only (scripts/stopping_sim.py: 216 runs, pools of 400-5,000, 12-44 epochs, 4-16
# samples a prompt an epoch, K at the paper's share or half the pool; level x patience x window searched). The
# criterion, declared before the search: the most epochs saved among the rules whose stopped selection is within
# Jaccard 0.85 of the full one in >= 95% of the runs. This one: 97.7% covered, 7.1% of the epochs saved on average
# (docs/selection.md). Do not re-tune it on a real history: One-Shot-RLVR's is the held-out check.
RULE = StoppingRule(level=0.97, patience=2, window=1)


def paper_size(pool: int) -> int:
    """K by default: the paper's share of the pool, 1,389 of MATH-8k's 8,523 (at least 1)."""
    return max(1, round(pool * LIMR_SIZE / MATH8K_SIZE))


def lim_score_array(accuracy: np.ndarray) -> np.ndarray:
    """LIM (§2.2) of every row of a prompts x epochs accuracy matrix: 1 - Σ_k (r_ik - r̄_k)² / Σ_k (1 - r̄_k)².

    The same formula as lim_selection.py's lim_scores (a test holds them equal), on an array, because the rule
    scores every prefix of the history (and the server does so each pass). All 1s on an average curve of all 1s."""
    r_avg = accuracy.mean(axis=0)
    denominator = float(np.square(1 - r_avg).sum())
    if denominator == 0:
        return np.ones(len(accuracy))
    return 1 - np.square(accuracy - r_avg).sum(axis=1) / denominator


def select_top(accuracy: np.ndarray, size: int) -> frozenset[int]:
    """Rows of the `size` best LIM scores (ties in row order, as limr.dataset.select_by_score keeps them)."""
    order = np.argsort(-lim_score_array(accuracy), kind="stable")
    return frozenset(order[:size].tolist())


@dataclass
class Verdict:
    """The rule applied one epoch at a time: feed each epoch's selection, read the row it gives."""

    rule: StoppingRule = RULE
    selections: list[frozenset] = field(default_factory=list)
    calm: int = 0  # consecutive epochs, up to the latest, whose Jaccard with the one before is >= level
    stop_epoch: int | None = None
    rows: list[dict] = field(default_factory=list)

    def add(self, selection: frozenset) -> dict:
        """The row of the next epoch: {"epoch", "compared_with" (the epoch `window` back, None for the first
        `window`), "jaccard_previous" (with that epoch's selection), "overlap_previous" (how many of its prompts
        that selection held), "stable"}."""
        epoch = len(self.rows) + 1
        self.selections.append(selection)
        if epoch <= self.rule.window:
            before, similar, overlap = None, None, None
        else:
            before = epoch - self.rule.window
            earlier = self.selections[before - 1]
            similar, overlap = jaccard(selection, earlier), len(selection & earlier)
        self.calm = self.calm + 1 if similar is not None and similar >= self.rule.level else 0
        stable = self.calm >= self.rule.patience
        if stable and self.stop_epoch is None:
            self.stop_epoch = epoch
        row = {"epoch": epoch, "compared_with": before, "jaccard_previous": similar, "overlap_previous": overlap,
               "stable": stable}  # fmt: skip
        self.rows.append(row)
        return row


def stopping_rows(accuracy: np.ndarray, size: int, rule: StoppingRule = RULE) -> Verdict:
    """The rule over every prefix of a complete history (prompts x epochs): what a user would have seen live."""
    verdict = Verdict(rule)
    for epoch in range(1, accuracy.shape[1] + 1):
        verdict.add(select_top(accuracy[:, :epoch], size))
    return verdict


def stopping_result(accuracy: np.ndarray, size: int, rule: StoppingRule = RULE) -> dict:
    """X.stopping.json: the rule, K, the stop epoch and every epoch's row; with the hindsight the whole history
    gives: the stopped selection's Jaccard with the one from all epochs, and the share of the epochs saved."""
    accuracy = np.asarray(accuracy, dtype=float)
    verdict = stopping_rows(accuracy, size, rule)
    result = {"rule": rule.params(), "num_samples": size, "stop_epoch": verdict.stop_epoch, "rows": verdict.rows}
    epochs, stop = accuracy.shape[1], verdict.stop_epoch
    if stop is not None:
        full = select_top(accuracy, size)
        result["jaccard_with_all_epochs"] = jaccard(select_top(accuracy[:, :stop], size), full)
        result["epochs_given"] = epochs
        result["stage1_saved"] = 1 - stop / epochs
    return result


def change_line(epoch: int, size: int, row: dict) -> str:
    """One line per epoch for a person watching the run: how much of the selection is new since the last one."""
    if row["jaccard_previous"] is None:
        return f"pass {epoch}: selection of {size:,} (nothing to compare with yet); stable: no"
    # the share of the selection that is new; an empty one (no prompt sampled in every pass) changed as much as it differs
    changed = 1 - row["overlap_previous"] / size if size else 1 - row["jaccard_previous"]
    return (
        f"pass {epoch}: selection of {size:,} changed by {changed:.1%} since pass {row['compared_with']} "
        f"(Jaccard {row['jaccard_previous']:.3f}); stable: {'yes' if row['stable'] else 'no'}"
    )


class LiveTally:
    """The reward server's per-prompt successes and samples per pass, kept in memory as samples arrive, and the
    rule's verdict at the end of each pass (prompts sampled in every pass so far take part)."""

    def __init__(self, size: int | None = None, rule: StoppingRule = RULE):
        self.size, self.verdict = size, Verdict(rule)
        self.row_of: dict[str, int] = {}
        self.passes: list[np.ndarray] = []  # per finished pass: prompts x (successes, samples)
        self.current = np.zeros((0, 2), dtype=np.int64)
        self.last: dict | None = None

    def add(self, prompt_id: str, correct: bool, samples: int = 1) -> None:
        """Count `samples` samples of the pass in progress, all correct or all not."""
        row = self.row_of.setdefault(prompt_id, len(self.row_of))
        if row >= len(self.current):
            grow = max(row + 1, 2 * len(self.current)) - len(self.current)
            self.current = np.concatenate([self.current, np.zeros((grow, 2), dtype=np.int64)])
        self.current[row] += (int(correct) * samples, samples)

    def resume(self, pids, epochs, oks, counts, passes_done: int) -> None:
        """After a restart: the passes already logged, from limr.rollout_log.count_samples's columns (prompt id,
        1-based epoch, success, samples), replayed pass by pass so the verdicts are the ones a live run gave."""
        by_epoch: dict[int, list] = {}
        for pid, epoch, ok, n in zip(pids, epochs, oks.tolist(), counts.tolist(), strict=True):
            by_epoch.setdefault(epoch, []).append((pid, ok, n))
        for epoch in range(1, passes_done + 2):
            for pid, ok, n in by_epoch.get(epoch, ()):
                self.add(pid, ok, n)
            if epoch <= passes_done:
                self.end_pass()

    def end_pass(self) -> dict:
        """Close the pass in progress: select the top K by LIM over every pass so far and apply the rule."""
        self.passes.append(self.current[: len(self.row_of)].copy())
        self.current = np.zeros_like(self.current)
        prompts = len(self.row_of)
        counts = np.stack([np.pad(p, ((0, prompts - len(p)), (0, 0))) for p in self.passes], axis=1)
        seen = (counts[:, :, 1] > 0).all(axis=1)  # sampled in every pass so far
        accuracy = counts[seen, :, 0] / counts[seen, :, 1]
        size = min(self.size or paper_size(len(accuracy)), len(accuracy))
        ids = np.flatnonzero(seen)
        chosen = frozenset(ids[sorted(select_top(accuracy, size))].tolist()) if len(accuracy) else frozenset()
        row = self.verdict.add(chosen)
        epoch = row["epoch"]
        self.last = {**row, "num_samples": size, "prompts": int(seen.sum()), "stop_epoch": self.verdict.stop_epoch,
                     "rule": self.verdict.rule.params(), "line": change_line(epoch, size, row)}  # fmt: skip
        return self.last
