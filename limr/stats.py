"""Confidence intervals for accuracies: a bootstrap over questions and samples, means and paired differences.

An evaluation scores each question with one or more samples (greedy: 1; the paper's AIME/AMC protocol: 4 at T 0.4),
so one run on one test set is a (questions x samples) array of 0/1 scores. Two sources of noise move its accuracy:
which questions the test set happens to hold, and which samples were drawn. The bootstrap here redraws both: the
questions with replacement, then the samples of each drawn question with replacement. Several seeds are strata
(each trained and evaluated on its own): their questions are redrawn within each seed and the statistic is the mean
over seeds of each seed's accuracy, so the interval covers evaluation noise for these trained models, not the
spread between trainings.

The spread between trainings is `seeds_ci`: a t-interval over the per-seed values (each seed's accuracy, or its
paired difference). Each seed's value already carries its own evaluation noise, so their spread holds both sources;
with few seeds it is wide, as it should be (3 seeds: t = 4.30). A difference is beyond noise only where both
intervals exclude 0.

A paired difference redraws the same questions for both runs (they share a test set), so question difficulty
cancels; the samples of the two runs are independent draws and are redrawn independently.

    from limr.stats import mean_ci, paired_diff_ci
    mean_ci([scores_seed0, scores_seed1])                # Interval(estimate, low, high)
    paired_diff_ci([full_seed0, ...], [warmup_seed0, ...])
    seeds_ci([+0.4, -5.2, +0.2])                          # over seeds: training and evaluation noise
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from limr.jsonio import DataError, iter_jsonl

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided percentile-bootstrap interval, in the scores' units."""

    estimate: float
    low: float
    high: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.estimate * factor, self.low * factor, self.high * factor)


def as_strata(strata: Sequence) -> list[np.ndarray]:
    """Each stratum as a float (questions x samples) array; a 1-D stratum is one sample per question."""
    if len(strata) == 0:
        raise ValueError("no strata: need at least one (questions x samples) array")
    arrays = []
    for i, s in enumerate(strata):
        a = np.asarray(s, dtype=float)
        a = a[:, None] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"stratum {i}: expected a non-empty (questions x samples) array, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"stratum {i}: scores must be finite")
        arrays.append(a)
    return arrays


def resampled_means(scores: np.ndarray, questions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mean of `scores` for each row of redrawn question indices (resamples x questions), its samples redrawn."""
    n_samples = scores.shape[1]
    samples = rng.integers(0, n_samples, size=(*questions.shape, n_samples))
    return scores[questions[..., None], samples].mean(axis=(1, 2))


def percentile(estimate: float, draws: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def mean_ci(strata: Sequence, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """The mean over strata (seeds) of each stratum's mean score, with its bootstrap interval."""
    arrays = as_strata(strata)
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for a in arrays:
        questions = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
        draws += resampled_means(a, questions, rng)
    estimate = np.mean([a.mean() for a in arrays])
    return percentile(estimate, draws / len(arrays), level)


def paired_diff_ci(
    strata_a: Sequence, strata_b: Sequence, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Interval:
    """mean(a) - mean(b) over strata, each stratum's two runs scored on the same questions (rows aligned)."""
    a_arrays, b_arrays = as_strata(strata_a), as_strata(strata_b)
    if len(a_arrays) != len(b_arrays):
        raise ValueError(f"{len(a_arrays)} strata against {len(b_arrays)}: pair each seed's runs")
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for i, (a, b) in enumerate(zip(a_arrays, b_arrays, strict=True)):
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"stratum {i}: {a.shape[0]} questions against {b.shape[0]}: a paired difference needs one set"
            )
        questions = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
        draws += resampled_means(a, questions, rng) - resampled_means(b, questions, rng)
    estimate = np.mean([a.mean() - b.mean() for a, b in zip(a_arrays, b_arrays, strict=True)])
    return percentile(estimate, draws / len(a_arrays), level)


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (numpy has none; scipy is not a dependency): bisection on the CDF, integrated by
    Simpson's rule from 0. Accurate to ~1e-6 for the levels used here."""
    if not 0.5 <= q < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= q < 1 and df >= 1, got q={q}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def upper_area(x: float) -> float:  # P(0 <= T <= x)
        grid = np.linspace(0.0, x, 4001)
        pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
        return float((x / 4000 / 3) * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum()))

    low, high = 0.0, 1.0
    while upper_area(high) < q - 0.5:
        low, high = high, high * 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if upper_area(mid) < q - 0.5 else (low, mid)
    return (low + high) / 2


def seeds_ci(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of per-seed values with a t-interval over seeds: what another set of trainings would give."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"seeds_ci needs two or more finite per-seed values, got {values!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = t_quantile((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half))


def seed_prediction(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Where one more seed's value falls, from per-seed values: mean ± t · sd · √(1 + 1/n). Wider than `seeds_ci`
    (which places the mean): one new training, on another seed or another machine, is one draw, not a mean."""
    lo = seeds_ci(values, level)  # checks the input
    x = np.asarray(values, dtype=float)
    half = t_quantile((1 + level) / 2, len(x) - 1) * x.std(ddof=1) * math.sqrt(1 + 1 / len(x))
    return Interval(lo.estimate, lo.estimate - half, lo.estimate + half)


def excludes_zero(interval: Interval) -> bool:
    """Whether a difference's interval lies wholly on one side of zero: beyond this noise."""
    return interval.low > 0 or interval.high < 0


def read_question_scores(path: str | os.PathLike) -> dict[str, list[float]]:
    """A <bench>.jsonl of eval/evaluate.py as {question id: [1.0 or 0.0 per sample, by sample index]}, ids sorted:
    the (questions x samples) scores the intervals below take (`np.array(list(....values()))`)."""
    by_id: dict[str, dict[int, float]] = {}
    for lineno, row in iter_jsonl(path):
        pid, sample, correct = row.get("id"), row.get("sample"), row.get("correct")
        if not isinstance(pid, str) or isinstance(sample, bool) or not isinstance(sample, int):
            raise DataError(f"{path}:{lineno}: needs a string 'id' and an integer 'sample'")
        if not isinstance(correct, bool):
            raise DataError(f"{path}:{lineno}: 'correct' must be true or false (ungraded?), got {correct!r:.40}")
        by_id.setdefault(pid, {})[sample] = float(correct)
    if not by_id:
        raise DataError(f"{path}: no responses")
    if len({len(v) for v in by_id.values()}) != 1:
        raise DataError(f"{path}: questions have different numbers of samples")
    return {pid: [v for _, v in sorted(samples.items())] for pid, samples in sorted(by_id.items())}
