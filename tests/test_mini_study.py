"""The committed miniature study (mini/study.json) and what the README says of it (issue 21): at least 5 seeds,
every interval the t-interval over seeds of the per-seed values it holds, and the README's tables rendered from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limr.stats import Interval, seed_prediction, seeds_ci
from mini.report import beside, readme_tables

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


def test_a_one_draw_run_is_compared_with_the_studys_first_draws():
    """make demo draws RAND once; the study's RAND is a mean of draws, whose spread between seeds is narrower. Its
    first draws (the demo's subsets for the same seeds) are kept, and beside() compares a one-draw run with them."""
    one, primary = STUDY["one_draw"], STUDY["primary"]
    assert one["per_seed"]["rand"][primary] != STUDY["per_seed"]["rand"][primary]
    for name, by_bench in one["per_seed_diffs"].items():
        a, b = name.split("-")
        side = {r: one["per_seed"]["rand"] if r == "rand" else STUDY["per_seed"][r] for r in (a, b)}
        for k, diff in by_bench.items():
            assert diff == pytest.approx([x - y for x, y in zip(side[a][k], side[b][k], strict=True)], abs=0.011)
    assert set(one["per_seed_diffs"]) == {n for n in STUDY["per_seed_diffs"] if "rand" in n.split("-")}

    def printed(draws: int) -> str:
        point = Interval(80.0, 79.0, 81.0)
        result = {"rand_draws": draws, "primary": primary, "means": {"rand": {primary: point}},
                  "diffs": {"limr-rand": {primary: point}}}  # fmt: skip
        return beside(result, STUDY, {primary: "T 0.4"})

    for draws, source in ((1, one), (3, STUDY)):
        text = printed(draws)
        for label, values in (("rand T 0.4", source["per_seed"]["rand"][primary]),
                              ("limr-rand T 0.4", source["per_seed_diffs"]["limr-rand"][primary])):  # fmt: skip
            r = seed_prediction(values)
            line = next(x for x in text.splitlines() if x.strip().startswith(label + " "))
            sign = "+" if "-" in label else ""
            assert f"[{r.low:{sign}.1f}, {r.high:{sign}.1f}]" in line, (draws, line)
