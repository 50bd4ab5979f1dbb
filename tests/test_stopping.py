"""limr/stopping.py: the rule that says when stage 1 may stop, offline and live, against hand-made selections."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
if "lim_selection" not in sys.modules:  # a script, not a package (tests/test_lim_selection.py loads it the same way)
    _spec = importlib.util.spec_from_file_location("lim_selection", REPO / "lim_selection.py")
    sys.modules["lim_selection"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["lim_selection"])
lim = sys.modules["lim_selection"]


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


def test_live_tally_with_no_prompt_in_every_pass_gives_an_empty_verdict_not_an_error():
    live = LiveTally()
    live.add("a", True)
    live.end_pass()
    live.add("b", False)  # the only prompt of pass 2 was not in pass 1
    row = live.end_pass()
    assert row["prompts"] == 0 and row["num_samples"] == 0 and row["jaccard_previous"] == 0.0
    assert row["line"] == "pass 2: selection of 0 changed by 100.0% since pass 1 (Jaccard 0.000); stable: no"


def test_simulation_runs_and_writes_its_choice(tmp_path):
    out = tmp_path / "sim.json"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "scripts/stopping_sim.py", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2 and result["chosen"]["coverage"] >= 0.95
    assert "chosen (coverage >= 95%, most saved)" in done.stdout


# ---- lim_selection.py --stopping ------------------------------------------------------------------------------------


def _settling_history(path: Path, prompts: int = 120, epochs: int = 10) -> np.ndarray:
    """Every prompt keeps its own solve rate, seen through 64 samples: the top K settles as the epochs add up."""
    rng = np.random.default_rng(3)
    accuracy = rng.binomial(64, rng.uniform(0, 1, (prompts, 1)), (prompts, epochs)) / 64
    path.write_text(json.dumps({f"q{i}": row.tolist() for i, row in enumerate(accuracy)}))
    return accuracy


def test_lim_selection_stopping_prints_and_writes_the_verdicts(tmp_path, capsys):
    accuracy = _settling_history(tmp_path / "acc.json")
    out = tmp_path / "sel.json"
    rc = lim.main(["--accuracy_path", str(tmp_path / "acc.json"), "--output_path", str(out), "--max_epochs", "10",
                   "--num_samples", "30", "--stopping"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert rc == 0
    expected = stopping_result(accuracy, 30)
    written = json.loads((tmp_path / "sel.stopping.json").read_text())
    assert written == json.loads(json.dumps(expected))  # the rule's own result, nothing else
    assert set(written) >= {"rule", "num_samples", "stop_epoch", "rows"} and written["num_samples"] == 30
    assert all(set(r) >= {"epoch", "jaccard_previous", "stable"} for r in written["rows"])
    assert written["stop_epoch"] is not None and written["stop_epoch"] < 10  # this history settles
    report = json.loads((tmp_path / "sel.report.json").read_text())["stopping"]
    assert report["jaccard_with_all_epochs"] == written["jaccard_with_all_epochs"]
    assert report["stage1_saved"] == pytest.approx(1 - written["stop_epoch"] / 10)
    for r in written["rows"][1:]:  # one printed row per epoch: its input and its verdict
        assert f"{r['epoch']:>6} {r['jaccard_previous']:>8.3f} {r['overlap_previous']:>6} " in stdout
    assert f"stop at epoch {written['stop_epoch']}: its top 30 has Jaccard" in stdout
    assert (tmp_path / "sel.stopping.png").stat().st_size > 0


def test_lim_selection_stopping_defaults_to_the_paper_share(tmp_path, capsys):
    _settling_history(tmp_path / "acc.json")
    rc = lim.main(["--accuracy_path", str(tmp_path / "acc.json"), "--output_path", str(tmp_path / "s.json"),
                   "--max_epochs", "10", "--stopping", "--no_plots"])  # fmt: skip
    capsys.readouterr()
    assert rc == 0 and json.loads((tmp_path / "s.stopping.json").read_text())["num_samples"] == paper_size(120) == 20
    assert not (tmp_path / "s.stopping.png").exists()


@pytest.mark.parametrize("extra", [("--method", "linear"), ("--method", "rand")])
def test_lim_selection_stopping_is_lim_only_and_writes_nothing_otherwise(tmp_path, capsys, extra):
    _settling_history(tmp_path / "acc.json")
    rc = lim.main(["--accuracy_path", str(tmp_path / "acc.json"), "--output_path", str(tmp_path / "s.json"),
                   "--max_epochs", "10", "--stopping", *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --stopping") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.json"]


def test_held_out_one_shot_rlvr_as_docs_selection_reports(shared_data, tmp_path, capsys):
    """The held-out check of docs/selection.md, run with the rule as committed before it (not a tuning target)."""
    rc = lim.main(["--accuracy_path", str(shared_data / "one-shot-rlvr" / "acc_step_500.json"), "--output_path",
                   str(tmp_path / "os.json"), "--max_epochs", "44", "--num_samples", "575", "--stopping",
                   "--no_plots"])  # fmt: skip
    capsys.readouterr()
    result = json.loads((tmp_path / "os.stopping.json").read_text())
    assert rc == 0 and result["rule"] == {"level": 0.97, "patience": 2, "window": 1}
    assert result["stop_epoch"] == 19 and round(result["jaccard_with_all_epochs"], 3) == 0.895
    assert round(result["stage1_saved"], 2) == 0.57


# ---- Live, in the reward server: a real server on loopback, one pass at a time ------------------------------------

# 8 prompts, 1 sample each a pass, 5 passes: the top 3 changes at passes 2 and 3, then holds (stable at pass 5)
PASSES = np.array([[1, 0, 1, 0, 0], [1, 1, 0, 1, 1], [1, 1, 1, 1, 0], [0, 1, 0, 1, 1],
                   [0, 0, 1, 0, 1], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 1, 1, 0, 1]])  # fmt: skip


def _post_pass(server, epoch: int) -> dict:
    """Post one pass (prompt by prompt, each answered before the next) and return /stats once it is answered."""
    from test_reward_server import _sample, request

    for p in range(len(PASSES)):
        body, reward = _sample(p, bool(PASSES[p, epoch - 1]))
        status, reply = request(server.port, "POST", "/get_reward", json.dumps(body).encode())
        assert status == 200 and reply["rewards"] == [reward]
    return request(server.port, "GET", "/stats")[1]["stopping"]


def test_reward_server_prints_and_serves_the_verdict_at_each_pass_and_after_a_restart(tmp_path):
    from test_reward_server import ServerProcess, request

    expected = stopping_result(PASSES.astype(float), 3)
    assert [r["stable"] for r in expected["rows"]] == [False, False, False, False, True]
    log, args = tmp_path / "rollouts.jsonl", ("--samples_per_epoch", "8", "--selection_size", "3")

    def check(server, epoch: int, stopping: dict) -> None:
        row = expected["rows"][epoch - 1]
        line = server._wait_for(rf"^pass {epoch}: selection of 3 .*stable: (yes|no)$", 60).group(0)
        assert line.endswith("stable: yes" if row["stable"] else "stable: no")
        if row["jaccard_previous"] is not None:
            changed = 1 - row["overlap_previous"] / 3
            assert f"changed by {changed:.1%} since pass {epoch - 1} (Jaccard {row['jaccard_previous']:.3f})" in line
        assert {k: stopping[k] for k in row} == row
        assert stopping["num_samples"] == 3 and stopping["prompts"] == 8 and stopping["line"] == line.strip()
        assert stopping["stop_epoch"] == (5 if epoch == 5 else None) and stopping["rule"] == RULE.params()

    with ServerProcess(log, *args, samples_per_step=4) as server:
        assert request(server.port, "GET", "/stats")[1]["stopping"] is None  # no pass finished yet
        for epoch in (1, 2, 3):
            check(server, epoch, _post_pass(server, epoch))
    with ServerProcess(log, *args, samples_per_step=4) as server:  # restarted: the passes logged are replayed once
        stopping = request(server.port, "GET", "/stats")[1]["stopping"]
        assert stopping["epoch"] == 3 and stopping["jaccard_previous"] == expected["rows"][2]["jaccard_previous"]
        for epoch in (4, 5):
            check(server, epoch, _post_pass(server, epoch))
    assert len(log.read_text().splitlines()) == 40  # every sample logged once


def test_reward_server_without_passes_has_no_verdict_and_refuses_a_size_without_them(tmp_path):
    from test_reward_server import ServerProcess, request

    with ServerProcess(tmp_path / "rollouts.jsonl", samples_per_step=4) as server:
        _post_pass(server, 1)
        assert request(server.port, "GET", "/stats")[1]["stopping"] is None
    done = subprocess.run([sys.executable, "train/reward_server.py", "--rollout_log", str(tmp_path / "x.jsonl"),
                           "--samples_per_step", "4", "--selection_size", "3"], cwd=REPO, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2 and "--selection_size needs --samples_per_epoch" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()
