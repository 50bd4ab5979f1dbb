"""limr.stats against closed forms: degenerate cases are exact, the bootstrap's spread matches the binomial one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from limr.stats import Interval, excludes_zero, mean_ci, paired_diff_ci, seed_prediction, seeds_ci, t_quantile


def test_constant_scores_have_a_zero_width_interval():
    assert mean_ci([np.full((50, 4), 0.25)]) == Interval(0.25, 0.25, 0.25)


def test_strata_are_averaged_per_stratum_not_per_question():
    # 10 questions at 0.2 and 30 at 0.6: the mean of the two seeds' accuracies is 0.4 (not the pooled 0.5)
    ci = mean_ci([np.full(10, 0.2), np.full(30, 0.6)])
    assert ci.estimate == pytest.approx(0.4) and ci.low == pytest.approx(0.4) and ci.high == pytest.approx(0.4)


def test_question_resampling_matches_the_binomial_standard_error():
    # one sample per question, 600 of 2,000 right: the mean's standard error is sqrt(p (1 - p) / n)
    n, p = 2000, 0.3
    scores = np.r_[np.ones(int(n * p)), np.zeros(n - int(n * p))]
    ci = mean_ci([scores], resamples=4000, seed=1)
    half = 1.959964 * math.sqrt(p * (1 - p) / n)
    assert ci.estimate == pytest.approx(p)
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)
    assert ci.low < p < ci.high


def test_sample_resampling_is_part_of_the_noise():
    # every question is right in 2 of 4 samples: redrawing questions alone would give zero width, but redrawing
    # each question's 4 samples gives the mean of n x 4 fair coins: standard error sqrt(0.25 / (4 n))
    n = 500
    scores = np.tile([1.0, 0.0, 1.0, 0.0], (n, 1))
    ci = mean_ci([scores], resamples=4000, seed=2)
    half = 1.959964 * math.sqrt(0.25 / (4 * n))
    assert ci.estimate == 0.5 and (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)


def test_a_paired_difference_cancels_question_difficulty():
    # b is a shifted by 0.25 on every question: the difference is exactly 0.25 whatever questions are redrawn,
    # although each run's own interval is wide
    rng = np.random.default_rng(0)
    a = rng.random(300)
    d = paired_diff_ci([a], [a - 0.25])
    assert d.estimate == pytest.approx(0.25) and d.low == pytest.approx(0.25) and d.high == pytest.approx(0.25)
    assert mean_ci([a]).high - mean_ci([a]).low > 0.05
    assert paired_diff_ci([a], [a]) == Interval(0.0, 0.0, 0.0)


def test_paired_difference_of_independent_coins():
    # two runs, one sample per question, independent: var(diff) = p1 q1 / n + p2 q2 / n
    n = 4000
    rng = np.random.default_rng(3)
    a, b = (rng.random(n) < 0.6).astype(float), (rng.random(n) < 0.5).astype(float)
    d = paired_diff_ci([a], [b], resamples=4000, seed=4)
    pa, pb = a.mean(), b.mean()
    half = 1.959964 * math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
    assert d.estimate == pytest.approx(pa - pb) and (d.high - d.low) / 2 == pytest.approx(half, rel=0.1)
    assert excludes_zero(d) and not excludes_zero(Interval(0.0, -0.1, 0.1))


def test_seeded_and_scaled():
    scores = [np.random.default_rng(5).random((40, 2))]
    assert mean_ci(scores, seed=7) == mean_ci(scores, seed=7)
    assert mean_ci(scores).scaled(100).estimate == pytest.approx(100 * mean_ci(scores).estimate)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mean_ci([]), "no strata"),
        (lambda: mean_ci([np.zeros((0, 4))]), "stratum 0: expected a non-empty"),
        (lambda: mean_ci([[float("nan")]]), "finite"),
        (lambda: mean_ci([[1.0]], level=1.5), "level must be in"),
        (lambda: paired_diff_ci([[1.0]], [[1.0], [0.0]]), "1 strata against 2"),
        (lambda: paired_diff_ci([[1.0, 0.0]], [[1.0]]), "2 questions against 1"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("df, want", [(1, 12.7062), (2, 4.302653), (4, 2.776445), (9, 2.262157), (30, 2.042272)])
def test_t_quantile_matches_the_table(df, want):
    assert t_quantile(0.975, df) == pytest.approx(want, abs=1e-5)


def test_seeds_ci_is_the_t_interval_over_seeds():
    """The issue's example: LIMR - FULL per seed +0.4, -5.2, +0.2 is [-9.4, +6.4] over seeds, where the bootstrap
    over questions and samples said [-2.6, -0.5]."""
    ci = seeds_ci([0.4, -5.2, 0.2])
    assert (round(ci.estimate, 2), round(ci.low, 1), round(ci.high, 1)) == (-1.53, -9.4, 6.4)
    assert not excludes_zero(ci)
    for bad in ([1.0], [1.0, math.nan], [[1.0, 2.0]]):
        with pytest.raises(ValueError):
            seeds_ci(bad)


def simulated_seeds(rng, n_seeds: int, seed_sd: float, questions: int = 200, samples: int = 4) -> list[np.ndarray]:
    """Each seed: a training effect drawn N(0, seed_sd) on the accuracy scale, its own held-out questions (difficulty
    Beta(2, 2)), `samples` 0/1 scores a question: (questions x samples) arrays, as the miniature's seeds give."""
    out = []
    for _ in range(n_seeds):
        p = np.clip(rng.beta(2, 2, questions) + rng.normal(0, seed_sd), 0, 1)
        out.append((rng.random((questions, samples)) < p[:, None]).astype(float))
    return out


def true_mean(seed_sd: float) -> float:
    rng = np.random.default_rng(99)
    return float(np.clip(rng.beta(2, 2, 2_000_000) + rng.normal(0, seed_sd, 2_000_000), 0, 1).mean())


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_seeds_ci_covers_the_mean_with_between_seed_noise(n_seeds):
    """Known between-seed variance (sd 0.1 on accuracy): the t-interval over seeds covers the true mean ~95% of the
    time; the bootstrap over questions and samples, seeds as strata, misses it most of the time (it measures
    evaluation noise only), which is why the study reports both."""
    seed_sd, truth, rng = 0.1, true_mean(0.1), np.random.default_rng(7)
    reps = 600
    hits = sum(
        (ci := seeds_ci([s.mean() for s in simulated_seeds(rng, n_seeds, seed_sd)])).low <= truth <= ci.high
        for _ in range(reps)
    )
    assert 0.92 <= hits / reps <= 0.98, hits / reps
    boot_hits = sum(
        (ci := mean_ci(simulated_seeds(rng, n_seeds, seed_sd), resamples=300, seed=i)).low <= truth <= ci.high
        for i in range(60)
    )
    assert boot_hits / 60 < 0.7, boot_hits / 60


def test_seed_prediction_covers_one_more_seed():
    """One new training (another seed, another machine) lands in the prediction range ~95% of the time with 5 seeds;
    the interval for the mean (seeds_ci) is too narrow for a single run."""
    rng = np.random.default_rng(3)
    reps, hits, mean_hits = 600, 0, 0
    for _ in range(reps):
        values = [s.mean() for s in simulated_seeds(rng, 6, 0.1)]
        new, seen = values[0], values[1:]
        hits += (p := seed_prediction(seen)).low <= new <= p.high
        mean_hits += (c := seeds_ci(seen)).low <= new <= c.high
    assert 0.92 <= hits / reps <= 0.98, hits / reps
    assert mean_hits / reps < 0.85, mean_hits / reps
    assert seed_prediction([1.0, 3.0]).estimate == 2.0
    with pytest.raises(ValueError):
        seed_prediction([1.0])
