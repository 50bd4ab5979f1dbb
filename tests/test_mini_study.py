"""The committed miniature study (mini/study.json) and what the README says of it (issue 21): at least 5 seeds,
every interval the t-interval over seeds of the per-seed values it holds, and the README's tables rendered from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limr.stats import seeds_ci
from mini.report import readme_tables

ROOT = Path(__file__).resolve().parent.parent
STUDY = json.loads((ROOT / "mini" / "study.json").read_text())


def close(interval, values) -> bool:
    ci = seeds_ci(values)
    return interval == pytest.approx([ci.estimate, ci.low, ci.high], abs=0.011)


def test_the_study_has_five_seeds_and_several_rand_draws():
    assert len(STUDY["seeds"]) >= 5 and STUDY["rand_draws"] >= 2
    assert all(len(v) == len(STUDY["seeds"]) for run in STUDY["per_seed"].values() for v in run.values())


def test_every_interval_is_as_wide_as_the_spread_between_seeds():
    for run, by_bench in STUDY["means"].items():
        for bench, interval in by_bench.items():
            assert close(interval, STUDY["per_seed"][run][bench]), (run, bench)
    for name, by_bench in STUDY["diffs"].items():
        for bench, interval in by_bench.items():
            assert close(interval, STUDY["per_seed_diffs"][name][bench]), (name, bench)
    for run, gains in STUDY["best"]["greedy_gain"].items():
        assert close(STUDY["best"]["greedy_gain_over_seeds"][run], gains)


def test_the_readme_quotes_the_study_as_rendered_from_it():
    assert readme_tables(STUDY) in (ROOT / "README.md").read_text()
