"""limr.stability on hand-made histories whose Jaccard and Spearman are worked out by hand."""

import math

import pytest

from limr.dataset import select_by_score as select  # what lim_selection.py passes
from limr.stability import average_ranks, chance_jaccard, epochs_to_reach, jaccard, spearman, stability_rows


def mean_scores(complete):
    return {pid: sum(h) / len(h) for pid, h in complete.items()}


def test_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == 1 / 3
    assert jaccard([], []) == 1.0
    assert jaccard("ab", "ab") == 1.0


def test_average_ranks_share_ties():
    assert average_ranks([3, 1, 2, 2]) == [4, 1, 2.5, 2.5]
    assert average_ranks([5, 5, 5]) == [2, 2, 2]


@pytest.mark.parametrize(
    ("x", "y", "rho"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 3, 4], [1, 3, 2, 4], 1 - 6 * 2 / (4 * 15)),  # no ties: 1 - 6 Σd² / (n(n²-1)) = 0.8
        ([1, 0, 0.6, 0], [1 / 3, 2 / 3, 0.6, 0], -0.5 / math.sqrt(4.5 * 5)),  # ties: Pearson of ranks, by hand
    ],
)
def test_spearman(x, y, rho):
    assert math.isclose(spearman(x, y), rho)


def test_spearman_of_a_constant_is_undefined():
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_stability_rows_by_hand():
    complete = {"a": [1, 0, 0], "b": [0, 1, 1], "c": [0.6, 0.6, 0.6], "d": [0, 0, 0]}
    # all 3 epochs: means a 1/3, b 2/3, c 0.6, d 0 -> top 2 {b, c}; >= 0.5 {b, c}
    rows = stability_rows(complete, mean_scores, select, theta=0.5, size=2)
    by = {(r["epochs"], r["mode"]): r for r in rows}
    assert len(rows) == 6
    # K=1: a 1, b 0, c 0.6, d 0 -> top 2 {a, c}, >= 0.5 {a, c}: Jaccard with {b, c} = 1/3
    assert by[1, "same size"]["jaccard"] == by[1, "threshold"]["jaccard"] == 1 / 3
    assert math.isclose(by[1, "same size"]["spearman"], -0.5 / math.sqrt(4.5 * 5))
    # K=2: a 0.5, b 0.5, c 0.6, d 0 -> top 2 {c, a} (tie a/b in input order); >= 0.5 {a, b, c}: 2/3
    assert by[2, "same size"]["jaccard"] == 1 / 3
    assert by[2, "threshold"]["jaccard"] == 2 / 3 and by[2, "threshold"]["selected"] == 3
    assert by[3, "same size"]["jaccard"] == by[3, "threshold"]["jaccard"] == 1.0
    assert by[3, "same size"]["spearman"] == 1.0
    assert by[1, "same size"]["jaccard_by_chance"] == chance_jaccard(2, 4) == 1 / 3
    assert epochs_to_reach(rows, "threshold", 0.6) == 2  # 2/3 at K=2, 1 at K=3
    assert epochs_to_reach(rows, "threshold", 0.7) == 3
    assert epochs_to_reach(rows, "same size", 0.3) == 1


def test_first_epoch_and_no_threshold():
    complete = {"a": [0, 1], "b": [1, 0]}
    rows = stability_rows(complete, mean_scores, select, theta=None, size=1, first_epoch=2)
    assert [(r["epochs"], r["mode"]) for r in rows] == [(2, "same size")]
