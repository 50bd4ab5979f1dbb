"""limr/stopping.py: the rule that says when stage 1 may stop, offline and live, against hand-made selections."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lim_selection as lim
from limr.stopping import (
    RULE,
    LiveTally,
    StoppingRule,
    Verdict,
    lim_score_array,
    paper_size,
    select_top,
    stopping_result,
)

REPO = Path(__file__).resolve().parents[1]


def test_lim_score_array_is_lim_selections_formula():
    rng = np.random.default_rng(0)
    accuracy = rng.binomial(8, rng.uniform(0, 1, (300, 7))) / 8
    listed = lim.lim_scores({str(i): row.tolist() for i, row in enumerate(accuracy)})
    assert lim_score_array(accuracy) == pytest.approx([listed[str(i)] for i in range(300)], abs=1e-12)
    assert lim_score_array(np.ones((3, 4))).tolist() == [1.0, 1.0, 1.0]  # all solved: no division by zero


def test_select_top_keeps_ties_in_row_order_like_select_by_score():
    accuracy = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    scores = lim.lim_scores({str(i): row.tolist() for i, row in enumerate(accuracy)})
    assert select_top(accuracy, 2) == {int(i) for i in lim.select_by_score(scores, k=2)} == {0, 1}


def test_verdict_needs_patience_epochs_in_a_row_above_the_level():
    verdict = Verdict(StoppingRule(level=0.8, patience=2))
    a, b = frozenset(range(10)), frozenset(range(1, 11))  # Jaccard 9/11 = 0.818
    c = frozenset(range(5, 15))  # Jaccard with b: 6/14
    rows = [verdict.add(s) for s in (a, b, c, c, c, c)]
    assert [r["jaccard_previous"] for r in rows] == [None, pytest.approx(9 / 11), pytest.approx(6 / 14), 1.0, 1.0, 1.0]
    assert [r["overlap_previous"] for r in rows] == [None, 9, 6, 10, 10, 10]
    assert [r["stable"] for r in rows] == [False, False, False, False, True, True]  # the drop at 3 restarts the count
    assert verdict.stop_epoch == 5


def test_window_compares_with_the_selection_that_many_epochs_back():
    verdict = Verdict(StoppingRule(level=0.9, patience=1, window=2))
    rows = [verdict.add(frozenset({e})) for e in (1, 2, 1, 2)]
    assert [r["compared_with"] for r in rows] == [None, None, 1, 2]
    assert [r["stable"] for r in rows] == [False, False, True, True] and verdict.stop_epoch == 3


def test_stopping_result_on_a_settled_history_stops_early_and_reports_hindsight():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (200, 1))  # every prompt keeps its solve rate: the ranking settles once noise averages out
    accuracy = np.repeat(p, 12, axis=1)
    result = stopping_result(accuracy, 40)
    assert result["rule"] == RULE.params() and result["num_samples"] == 40
    assert result["stop_epoch"] == RULE.window + RULE.patience  # identical epochs: nothing ever changes
    assert result["jaccard_with_all_epochs"] == 1.0
    assert result["stage1_saved"] == pytest.approx(1 - result["stop_epoch"] / 12)
    assert [r["epoch"] for r in result["rows"]] == list(range(1, 13))


def test_stopping_result_on_a_history_that_keeps_moving_never_stops():
    accuracy = np.zeros((10, 6))
    for e in range(6):  # a different pair of prompts is solved in each epoch: the top 2 change every time
        accuracy[2 * (e % 5) : 2 * (e % 5) + 2, e] = 1
    result = stopping_result(accuracy, 2)
    assert result["stop_epoch"] is None and "jaccard_with_all_epochs" not in result
    assert not any(r["stable"] for r in result["rows"])


def test_live_tally_gives_the_offline_rows_pass_by_pass():
    rng = np.random.default_rng(2)
    samples, passes, prompts = 4, 6, 60
    correct = rng.binomial(1, rng.uniform(0, 1, (prompts, 1, 1)), (prompts, passes, samples))
    live = LiveTally(size=12, rule=StoppingRule(0.7, 1))
    rows = []
    for e in range(passes):
        for s in range(samples):
            for i in rng.permutation(prompts):  # arrival order differs from row order
                live.add(f"p{i}", bool(correct[i, e, s]))
        rows.append(live.end_pass())
    # rows follow first arrival: rebuild the same order for the offline call
    order = sorted(range(prompts), key=lambda i: live.row_of[f"p{i}"])
    offline = stopping_result(correct.mean(axis=2)[order], 12, StoppingRule(0.7, 1))
    keys = ("epoch", "jaccard_previous", "overlap_previous", "stable")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in offline["rows"]]
    assert rows[-1]["stop_epoch"] == offline["stop_epoch"] and rows[-1]["prompts"] == prompts


def test_live_tally_scores_only_prompts_sampled_in_every_pass_and_defaults_to_the_paper_share():
    live = LiveTally()
    for i in range(100):
        live.add(f"p{i}", i % 3 == 0)
    first = live.end_pass()
    assert first["num_samples"] == paper_size(100) == 16 and first["prompts"] == 100
    for i in range(50):  # half the prompts missed the second pass
        live.add(f"p{i}", True)
    second = live.end_pass()
    assert second["prompts"] == 50 and second["num_samples"] == paper_size(50)
    assert second["line"].startswith(f"pass 2: selection of {paper_size(50)} changed by ")


def test_simulation_runs_and_writes_its_choice(tmp_path):
    out = tmp_path / "sim.json"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "scripts/stopping_sim.py", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2 and result["chosen"]["coverage"] >= 0.95
    assert "chosen (coverage >= 95%, most saved)" in done.stdout
