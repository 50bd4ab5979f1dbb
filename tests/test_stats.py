"""limr.stats against closed forms: degenerate cases are exact, the bootstrap's spread matches the binomial one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from limr.stats import Interval, excludes_zero, mean_ci, paired_diff_ci


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
