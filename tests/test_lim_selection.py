"""Tests of lim_selection.py: the release's 1,389 from its scores.json, LIM against the formula on a real history,
the original's fill rule, every method, both readers (rollout log and step files, hostile input too, against
json.loads), the epoch the log carries, bad inputs, and the benchmark scripts at a tiny scale."""

import json
import math
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from load_script import load_script

import limr.rollout_log
import limr.step_files
from limr.dataset import ids_by_text
from limr.jsonio import is_number

ROOT = Path(__file__).resolve().parents[1]


lim = load_script("lim_selection", ROOT / "lim_selection.py")
gen = load_script("gen_rollouts", ROOT / "benchmarks" / "gen_rollouts.py")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = lim.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def prompt_file(path: Path, ids, texts=None) -> Path:
    texts = texts or [f"What is {i}?" for i in ids]
    items = [{"id": i, "prompt": t, "answer": "1", "source": "t"} for i, t in zip(ids, texts, strict=True)]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A generated run: 85 prompts, 3 epochs of 2 steps, 8 samples each, in both formats."""
    out = tmp_path_factory.mktemp("tiny")
    gen.main(["--out", str(out), "--num_prompts", "85", "--rollout_batch", "40", "--epochs", "3",
              "--steps_per_epoch", "2", "--response_chars", "300"])  # fmt: skip
    return out


def reference_accuracy(log: Path, steps_per_epoch: int, epochs: int) -> dict:
    """An independent reader: json.loads every line, reward == 1 is a success (correct without a reward)."""
    counts = {}
    lines = log.read_bytes().rstrip().split(b"\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            assert n == len(lines) - 1, f"line {n + 1} is not JSON"  # only a torn last line is skipped
            continue
        if row.get("split") == "eval":
            continue
        assert type(row["step"]) is int and row["step"] >= 1 and isinstance(row["id"], str)  # not a bool
        epoch = (row["step"] - 1) // steps_per_epoch
        assert row.get("epoch") is None or (type(row["epoch"]) is int and row["epoch"] == epoch + 1)
        ok = row["reward"] == 1 if "reward" in row else row["correct"]
        assert is_number(row["reward"]) if "reward" in row else isinstance(ok, bool)
        if epoch < epochs:
            c = counts.setdefault(row["id"], [[0, 0] for _ in range(epochs)])[epoch]
            c[0] += ok
            c[1] += 1
    return {pid: [c / t if t else None for c, t in h] for pid, h in counts.items()}


def read_log(path: Path, known=None, steps_per_epoch=2, epochs=3) -> dict:
    return lim.scan_rollout_log(path, known, steps_per_epoch, epochs).tally.accuracy()


def reference_or_error(read, reference) -> tuple:
    """("ok", what `read` gives) when the reference reader takes the input, else ("error", read's DataError), and
    what the reference says: a reader must agree with json.loads on what it accepts, and reject the rest."""
    try:
        expected = ("ok", reference())
    except (ValueError, KeyError, AssertionError, TypeError, AttributeError):
        expected = ("error", None)
    try:
        got = ("ok", read())
    except lim.DataError as e:
        got = ("error", None if expected[0] == "error" else str(e))
    return got, expected


# --- the release and a real history -------------------------------------------------------------------------------


def test_released_scores_select_exactly_limr(shared_data, tmp_path, capsys):
    rel = shared_data / "limr-release"
    out = tmp_path / "limr.json"
    rc, stdout, _ = run_cli(capsys, "--scores_path", rel / "scores.json", "--original_prompts_path",
                            rel / "math8k.json", "--output_path", out, "--no_plots")  # fmt: skip
    assert rc == 0, stdout
    released = json.loads((rel / "limr.json").read_text())
    ours = json.loads(out.read_text())
    assert [it["id"] for it in ours] == [it["id"] for it in released]  # the same 1,389 ids, in MATH-8k order
    # and the same rows; only "source" differs: the release's limr.json says "olympiads.23k" where math8k says "math"
    assert [{k: it[k] for k in ("id", "prompt", "answer")} for it in ours] == [
        {k: it[k] for k in ("id", "prompt", "answer")} for it in released
    ]
    twin = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [json.loads(row["label"])["id"] for row in twin] == [it["id"] for it in released]
    # >= is what reproduces the release; the paper's > would keep 1,324
    scores = json.loads((rel / "scores.json").read_text())
    assert sum(r["score"] >= 0.6 for r in scores) == 1389 and sum(r["score"] > 0.6 for r in scores) == 1324
    saved = json.loads((tmp_path / "limr.scores.json").read_text())
    assert set(saved[0]) == {"id", "prompt", "score"}
    # the release's 7,935 scored texts, one of them MATH-8k's text under two ids: both rows take its score
    assert len(saved) == 7936 and len({r["prompt"] for r in saved}) == 7935


def test_lim_on_one_shot_rlvr_history_matches_the_formula(shared_data, tmp_path, capsys):
    history = json.loads((shared_data / "one-shot-rlvr" / "acc_step_500.json").read_text())
    out = tmp_path / "os.json"
    rc, stdout, _ = run_cli(capsys, "--accuracy_path", shared_data / "one-shot-rlvr" / "acc_step_500.json",
                            "--output_path", out, "--no_plots")  # fmt: skip
    assert rc == 0, stdout
    ours = {r["id"]: r["score"] for r in json.loads((tmp_path / "os.scores.json").read_text())}
    # the formula, written out: 21 epochs, mean over all prompts, s = 1 - sum (r - mean)^2 / sum (1 - mean)^2
    K = 21
    cut = {pid: h[:K] for pid, h in history.items()}
    mean = [sum(h[k] for h in cut.values()) / len(cut) for k in range(K)]
    denominator = sum((1 - m) ** 2 for m in mean)
    expected = {pid: 1 - sum((h[k] - mean[k]) ** 2 for k in range(K)) / denominator for pid, h in cut.items()}
    assert ours.keys() == expected.keys()
    assert max(abs(ours[pid] - expected[pid]) for pid in expected) < 1e-9
    assert [it["id"] for it in json.loads(out.read_text())] == [p for p in history if expected[p] >= 0.6]
    report = json.loads((tmp_path / "os.report.json").read_text())
    assert report["at_default_thresholds"] == {"lim >= 0.6": 912, "linear >= 0.7": 123}  # the counts we report


def test_variance_ranks_like_one_shot_rlvr_std(shared_data):
    history = json.loads((shared_data / "one-shot-rlvr" / "acc_step_500.json").read_text())
    cut = {pid: h[:21] for pid, h in history.items()}
    ours = lim.select_by_score(lim.variance_scores(cut), k=128)
    by_std = sorted(cut, key=lambda pid: -statistics.pstdev(cut[pid]))[:128]  # their np.std ranking
    assert set(ours) == set(by_std)


# --- the scoring core ---------------------------------------------------------------------------------------------

FILL = [
    ([None, 0.5], [0.5, 0.5]),  # one missing epoch takes the next one's value
    ([0.1, None, 0.3, None, 0.5], [0.1, 0.3, 0.3, 0.5, 0.5]),  # every single hole
    ([None, None, 0.5], [None, 0.5, 0.5]),  # 2 in a row: one pass over the original values fills only the second
    ([None, None, None, 1.0], [None, None, 1.0, 1.0]),
    ([0.5, None], [0.5, None]),  # a missing last epoch has nothing to take
    ([0.2, 0.4], [0.2, 0.4]),  # nothing missing
]


@pytest.mark.parametrize("history,filled", FILL)
def test_fill_holes_is_the_originals_rule(history, filled):
    assert lim.fill_holes(history) == filled


def test_complete_histories_counts_why_not():
    histories = {
        "ok": [0.1, None, 0.3],  # filled
        "last": [0.1, 0.2, None],  # missing from the last epoch
        "run": [None, None, 0.3],  # 2 epochs in a row
        "never": [None, None, None],  # never sampled
        "short": [0.5, 0.5],  # an accuracy history shorter than --max_epochs
        "long": [0.2, 0.4, 0.6, 0.8],  # longer: cut to 3
    }
    complete, dropped = lim.complete_histories(histories, 3)
    assert complete == {"ok": [0.1, 0.3, 0.3], "long": [0.2, 0.4, 0.6]}
    assert dropped == {
        "last": "not sampled in the last epoch",
        "run": "not sampled in 2+ epochs in a row",
        "never": "never sampled in the first 3 epochs",
        "short": "history shorter than 3 epochs",
    }


def test_lim_score_by_hand():
    complete = {"a": [0.0, 1.0], "b": [1.0, 1.0]}  # mean curve (0.5, 1.0): denominator 0.25
    scores = lim.lim_scores(complete)
    assert scores == pytest.approx({"a": 1 - 0.25 / 0.25, "b": 1 - 0.25 / 0.25})
    complete = {"a": [0.0, 0.5], "b": [0.5, 0.5], "c": [1.0, 0.5]}  # mean (0.5, 0.5): denominator 0.5
    assert lim.lim_scores(complete) == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})


def test_an_all_solved_mean_curve_does_not_divide_by_zero(capsys):
    assert lim.lim_scores({"a": [1.0, 1.0], "b": [1.0, 1.0]}) == {"a": 1.0, "b": 1.0}
    assert "all 1s" in capsys.readouterr().err


LINEAR = [
    ([0.0, 0.25, 0.5, 0.75, 1.0], 1.0),  # learned at an even pace over the run
    ([1.0] * 5, 0.0),  # always solved
    ([0.0] * 5, 0.0),  # never solved
    ([1.0, 0.75, 0.5, 0.25, 0.0], 1 - 2.5 / 1.875),  # forgotten: below zero
]


@pytest.mark.parametrize("history,score", LINEAR)
def test_linear_score(history, score):
    assert lim.linear_scores({"x": history})["x"] == pytest.approx(score)


def test_variance_and_learnability():
    complete = {"flat": [0.5, 0.5], "jump": [0.0, 1.0], "solved": [1.0, 1.0]}
    assert lim.variance_scores(complete) == {"flat": 0.0, "jump": 0.25, "solved": 0.0}
    assert lim.learnability_scores(complete) == {"flat": 0.25, "jump": 0.0, "solved": 0.0}


def test_rand_is_seeded_and_in_pool_order():
    pool = [f"p{i}" for i in range(100)]
    first = lim.rand_select(pool, 10, seed=3)
    assert first == lim.rand_select(pool, 10, seed=3) and first != lim.rand_select(pool, 10, seed=4)
    assert first == [p for p in pool if p in set(first)] and len(first) == 10


# --- the rollout log -----------------------------------------------------------------------------------------------


def test_log_reader_matches_json_loads_on_a_generated_run(tiny, monkeypatch):
    expected = reference_accuracy(tiny / "rollouts.jsonl", 2, 3)
    assert read_log(tiny / "rollouts.jsonl", steps_per_epoch=None) == expected  # its lines carry their epoch
    monkeypatch.setattr(limr.rollout_log, "CHUNK", 997)  # many chunk boundaries, mid-line
    assert read_log(tiny / "rollouts.jsonl", steps_per_epoch=2) == expected  # the same epochs, given


def line(step, pid, reward, **extra):
    return json.dumps(
        {"step": step, "id": pid, "reward": reward, "correct": reward == 1, "response_length": 9, **extra}
    )


# (lines, what it tests): each must read as json.loads per line reads it
LOGS = [
    ([line(s, p, r) for s in (1, 3, 5) for p in "ab" for r in (1.0, -0.5)], "the contract"),
    ([line(1, "a", 1.0, response='say "hi" {"step": 2}'), line(3, "a", 1), line(5, "a", -1)], "tricky fields"),
    ([json.dumps({"id": "a", "reward": 1.0, "step": 1}), line(3, "a", 1.0), line(5, "a", 0)], "key order"),
    ([line(1, "a", 1.0), line(1, 'é"x', 1.0), line(3, 'é"x', -0.5), line(5, 'é"x', 1.0)] * 2, "escapes"),
    (
        [line(1, "a", 1.0, ensure_ascii=False)]
        + [json.dumps({"step": s, "id": "é", "reward": 1}, ensure_ascii=False) for s in (1, 3, 5)],
        "raw UTF-8",
    ),  # fmt: skip
    ([line(1, "a", 1.0, extracted='"split": "eval"', split="train"), line(3, "a", 1), line(5, "a", -1)], "train"),
    ([line(1, "a", 1.0, split="eval"), line(1, "a", -0.5, split="train"), line(3, "a", 1.0)], "eval rows"),
    ([json.dumps({"step": s, "id": "a", "correct": True}) for s in (1, 3, 5)], "correct without a reward"),
    ([line(1, "a", 1.0) + "\r", line(3, "a", 1.0) + "  ", "", line(5, "a", 1e0)], "CRLF, spaces, blank"),
    ([line(1, "a", 1.0), line(3, "a", 1.0), '{"step": 5, "id": "a", "rew'], "torn last line"),
    ([line(s, "a", 1.0) for s in range(1, 9)], "steps after --max_epochs are ignored"),
    ([line(s, "a", 1.0, epoch=(s + 1) // 2) for s in range(1, 7)], "lines with their epoch among lines without"),
]


@pytest.mark.parametrize("rows,what", LOGS, ids=[w for _, w in LOGS])
@pytest.mark.parametrize("chunk", [1 << 20, 50])
def test_log_reader_table(tmp_path, monkeypatch, rows, what, chunk):
    monkeypatch.setattr(limr.rollout_log, "CHUNK", chunk)
    rows = [r.replace(', "ensure_ascii": false', "") for r in rows]
    log = write_jsonl(tmp_path / "log.jsonl", [line(s, "pad", -0.5) for s in range(1, 7)] + rows)  # every step
    assert read_log(log, epochs=3) == reference_accuracy(log, 2, 3), what


# Valid JSON the server never writes, and lines that only look like ours: each is read exactly as json.loads reads
# it, or rejected when json.loads (or the contract) rejects it; never counted twice
HOSTILE = [
    '{"step": 1, "id": "a", "reward": 1.0, "correct": true, "reward": -0.5}',  # a duplicate key: the last one counts
    '{"step": 1, "id": "a", "reward": 1.0, "id": "b"}',
    '{"step": 1, "id": "a", "reward": 1.0, "step": 5}',
    '{"step": 1, "id": "a", "reward": 1.0, "split": "\\u0065val"}',  # an escaped evaluation row
    '{"step": 1, "id": "a", "reward": 1.0, "split": "train", "split": "eval"}',
    '{"step": 1, "id": "a", "reward": 1.0, "spl\\u0069t": "eval"}',  # an escaped key
    '{"step": 1, "id": "a", "reward": 1.0, "split": 5}',  # not an evaluation row: counted
    '{"step": 1, "id": "a", "reward": 1.0, "correct": tru}',  # garbage after a value
    '{"step": 1, "id": "a", "reward": 1.0, "correct": true}}',
    '{"step": 1, "id": "a", "reward": 1.0, "correct": true} x',
    '{"step": 1, "id": "a", "reward": 1.0} {"step": 3, "id": "a", "reward": 1.0}',  # two objects on one line
    '{"step": 1, "id": "a", "reward": 1.0 , "correct": true}',
    '{"step": 1, "id": "a\\", "reward": 1.0, "correct": true}',  # an id whose quote is escaped
    '{"step": 1, "id": "a", "reward": 1.0e999, "correct": true}',  # infinity
    '{"step": 1, "id": "a", "reward": NaN, "correct": true}',
    '{"step": 1, "id": "a", "reward": 1.0, "x": NaN}',  # json.loads takes NaN where no one reads it
    '{"step": 1, "id": "a", "reward": 01, "correct": true}',  # not a JSON number
    '{"step": 01, "id": "a", "reward": 1, "correct": true}',
    '{"step": 1.0, "id": "a", "reward": 1}',
    '{"step": true, "id": "a", "reward": 1}',
    '{"step": 1, "id": "a", "reward": true}',
    '{"step": 1, "id": "a", "reward": null, "correct": true}',
    '{"step": 1, "id": "a", "reward": 1, "x": {"step": 2, "id": "a", "reward": 1}}',  # a nested object
    '{"step": 1, "id": "a", "reward": 1, "x": [1, {"y": 2}]}',
    '{"step": 1, "id": {"a": 1}, "reward": 1}',  # a nested object where a value is read
    '{"step": 1, "id": "a\t", "reward": 1, "correct": true}',  # a raw control character in a string
    '{"step": 1, "id": "a\\\\", "reward": 1.0, "correct": true}',  # an id ending in a backslash
    '{"step": 1, "id": "\\u00e9\\n", "reward": 1.0, "correct": true}',  # escapes json.loads reads
    '{"step": 1, "id": "a", "reward": 1, "correct": true, "step": 1}',
    '{"step": 1, "id": "a", "reward": 1, "correct": true, "extracted": "\\ud800"}',  # a lone surrogate, escaped
    '{"step": 1, "id": "a", "reward": 1, "x": 123456789012345678901234567890}',
    '{"step": 1, "epoch": 1, "id": "a", "reward": 1}',  # an epoch that agrees with the step
    '{"step": 1, "epoch": 2, "id": "a", "reward": 1}',  # one that does not
    '{"step": 1, "epoch": true, "id": "a", "reward": 1}',
    '{"step": 1, "epoch": 0, "id": "a", "reward": 1}',
    '{"step": 1, "epoch": "1", "id": "a", "reward": 1}',
    '{"step": 1, "epoch": null, "id": "a", "reward": 1}',
    '{"step": 1, "epoch": 2, "id": "a", "reward": 1, "epoch": 1}',
    "[1, 2]",  # lines that are not an object
    '"step"',
    "null",
    "",  # blank lines are skipped
    "   ",
]
HOSTILE_BYTES = [
    b'{"step": 1, "id": "\xed\xa0\x80", "reward": 1.0}',  # an encoded surrogate: json.loads takes it
    b'{"step": 1, "id": "a", "reward": 1.0, "extracted": "\xed\xa0\x80"}',
    b'{"step": 1, "id": "a", "reward": 1.0, "extracted": "\xff"}',  # not UTF-8: json.loads rejects it
    b'{"step": 1, "id": "\xc3", "reward": 1.0}',
    b"\xef\xbb\xbf" + line(1, "a", 1.0).encode(),  # a byte order mark
]


@pytest.mark.parametrize("bad", HOSTILE + HOSTILE_BYTES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("chunk", [1 << 20, 64])
def test_hostile_log_lines_read_as_json_loads_reads_them(tmp_path, monkeypatch, bad, where, chunk):
    monkeypatch.setattr(limr.rollout_log, "CHUNK", chunk)
    good = [line(s, p, r).encode() for s in range(1, 7) for p in "ab" for r in (1.0, -0.5)]
    bad = bad if isinstance(bad, bytes) else bad.encode()
    rows = {"first": [bad, *good], "middle": [*good[:7], bad, *good[7:]], "last": [*good, bad]}[where]
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"\n".join(rows) + b"\n")
    got, expected = reference_or_error(lambda: read_log(log, epochs=3), lambda: reference_accuracy(log, 2, 3))
    assert got == expected


def test_the_servers_own_lines_read_as_json_loads_reads_them(tmp_path, monkeypatch):
    """Lines as limr.rollout_log writes them (hostile model output in `extracted`, a stored response), in passes,
    all typed by msgspec (json.loads line by line is for what msgspec refuses: 6x slower)."""
    from limr.pool import Graded
    from limr.rollout_log import RolloutLog, epoch_of, log_row, step_of

    answers = ["5", 'say "hi"', "\\frac{1}{2}", "π\u2028", "é", None, '"split": "eval"']  # "\ud800": HOSTILE
    log = RolloutLog(tmp_path / "log.jsonl")
    for n in range(60):  # 3 passes of 20 samples in steps of 10
        graded = Graded(1.0 if n % 3 else -0.5, n % 3 > 0, answers[n % 7], None if n % 5 else "no box", 0.01)
        response = None if n % 4 else f'\\boxed{{{n}}} "x"\n'
        log.write(log_row(step_of(n, 10, 20), "ab"[n % 2], graded, n, response=response, epoch=epoch_of(n, 20)))
    log.close()
    expected = reference_accuracy(tmp_path / "log.jsonl", 2, 3)
    monkeypatch.setattr(limr.rollout_log, "_count_strictly", lambda *a: pytest.fail("not read by msgspec"))
    assert read_log(tmp_path / "log.jsonl", steps_per_epoch=None) == expected


def test_torn_last_line_is_skipped_with_a_warning(tmp_path, capsys):
    log = write_jsonl(tmp_path / "log.jsonl", [line(s, "a", 1.0) for s in range(1, 7)])
    with open(log, "a") as f:
        f.write('{"step": 6, "id": "a", "reward": 1.0, "corr')
    read = lim.scan_rollout_log(log, None, 2, 3)
    assert read.torn_last_line == 7 and read.samples == 6
    assert "torn last line" in capsys.readouterr().err


BAD_LOGS = [
    ([line(1, "a", 1.0), "not json", line(3, "a", 1.0), line(5, "a", 1.0)], "log.jsonl:2: not valid JSON"),
    ([line(1, "a", 1.0), '{"step": 1, "id": "a", "rew' + line(3, "a", 1.0), line(5, "a", 1.0)], "log.jsonl:2: not"),
    ([line(1, "a", 1.0), line(3, "a", 1.0), line(5, "a", "1")], "'reward' must be a number"),
    ([line(1, "a", 1.0), line(3, "a", True), line(5, "a", 1.0)], "'reward' must be a number"),
    ([line(1, "a", float("nan")), line(3, "a", 1.0), line(5, "a", 1.0)], "'reward' must be a number"),
    ([line(1, "a", 1.0), json.dumps({"id": "a", "reward": 1.0}), line(5, "a", 1.0)], "'step' must be a positive"),
    ([line(0, "a", 1.0), line(3, "a", 1.0), line(5, "a", 1.0)], "'step' must be a positive"),
    ([line(1, 7, 1.0), line(3, "a", 1.0), line(5, "a", 1.0)], "'id' must be a string"),
    ([line(1, "a", 1.0), json.dumps({"step": 3, "id": "a"}), line(5, "a", 1.0)], "needs 'reward'"),
    ([line(1, "a", 1.0), "[1, 2]", line(5, "a", 1.0)], "expected a JSON object"),
    ([line(s, "a", 1.0) for s in (1, 2, 3, 4)], "no sample for step 5"),
    ([line(1, "zz", 1.0), line(3, "a", 1.0), line(5, "a", 1.0)], "1 prompt ids are not in the prompt file"),
    ([line(1, "a", 1.0, epoch=0), line(3, "a", 1.0), line(5, "a", 1.0)], "'epoch' must be a positive integer"),
    ([line(1, "a", 1.0, epoch=2), line(3, "a", 1.0), line(5, "a", 1.0)], "step 1 is logged in epoch 2"),
]


def with_epochs(row: str) -> str:
    """The line as the server writes it now, with its epoch (2 steps each), where it has a step and none yet."""
    try:
        obj = json.loads(row)
    except ValueError:
        return row
    if not isinstance(obj, dict) or "epoch" in obj or type(obj.get("step")) is not int or obj["step"] < 1:
        return row
    return json.dumps({"epoch": (obj["step"] + 1) // 2, **obj})


@pytest.mark.parametrize("rows,message", BAD_LOGS)
def test_bad_logs_fail_with_one_clear_line(tmp_path, capsys, rows, message):
    rows = [with_epochs(r) for r in rows + [line(s, "pad", -0.5) for s in (1, 2, 3, 4, 6)]]  # not step 5
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    prompts = prompt_file(tmp_path / "prompts.json", ["a", "b", "pad"])
    out = tmp_path / "out" / "sel.json"
    rc, _, err = run_cli(capsys, "--train_samples_path", log, "--original_prompts_path", prompts, "--output_path",
                         out, "--max_epochs", 3, "--steps_per_epoch", 2, "--no_plots")  # fmt: skip
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.parent.exists()  # nothing written


# --- the epoch the log carries -------------------------------------------------------------------------------------


@pytest.fixture
def nine_step_passes(tmp_path) -> tuple[Path, Path, dict]:
    """A log numbered as the server numbers OpenRLHF 0.11's run: 17 prompts x 2 samples a pass in steps of 4, so
    each pass is 8 full steps and a partial 9th (MATH-8k's 8,523 x 8 in steps of 8,192, scaled down); 3 passes.
    Returns the log, the prompt file and each prompt's accuracy per pass."""
    from limr.pool import Graded
    from limr.rollout_log import epoch_of, log_row, step_of

    ids = [f"p{i:02d}" for i in range(17)]
    rows, accuracy = [], {pid: [0.0, 0.0, 0.0] for pid in ids}
    for index in range(3 * 34):
        epoch, within = divmod(index, 34)
        pid = ids[(within // 2 + 5 * epoch) % 17]  # each pass in another order
        ok = (index * 7 + epoch) % 3 == 0
        accuracy[pid][epoch] += ok / 2
        graded = Graded(1.0 if ok else -0.5, ok, "5", None, 0.01)
        rows.append(json.dumps(log_row(step_of(index, 4, 34), pid, graded, 9, epoch=epoch_of(index, 34))))
    log = write_jsonl(tmp_path / "rollouts.jsonl", rows)
    return log, prompt_file(tmp_path / "prompts.json", ids), accuracy


def test_a_log_of_nine_step_passes_needs_no_steps_per_epoch(nine_step_passes, tmp_path, capsys):
    log, prompts, accuracy = nine_step_passes
    assert max(json.loads(x)["step"] for x in log.read_text().splitlines()) == 27
    read = lim.scan_rollout_log(log, None, None, 3)
    assert read.steps_per_epoch == 9 and read.tally.accuracy() == accuracy
    out = tmp_path / "sel.json"
    rc, _, err = run_cli(capsys, "--train_samples_path", log, "--original_prompts_path", prompts, "--output_path", out,
                         "--max_epochs", 3, "--no_plots")  # fmt: skip  # the default --steps_per_epoch is the fork's 8
    assert rc == 0 and err == "", err
    report = json.loads((tmp_path / "sel.report.json").read_text())
    assert report["steps_per_epoch"] == 9 and report["params"]["steps_per_epoch"] is None
    assert report["mean_curve"] == pytest.approx([sum(h[k] for h in accuracy.values()) / 17 for k in range(3)])
    rc, _, err = run_cli(capsys, "--train_samples_path", log, "--original_prompts_path", prompts, "--output_path", out,
                         "--max_epochs", 3, "--steps_per_epoch", 9, "--no_plots")  # fmt: skip
    assert rc == 0 and err == ""  # the same epochs, given


@pytest.mark.parametrize("given", [8, 10, 1])
def test_a_steps_per_epoch_that_contradicts_the_log_is_an_error(nine_step_passes, tmp_path, capsys, given):
    log, prompts, _ = nine_step_passes
    out = tmp_path / "out" / "sel.json"
    rc, _, err = run_cli(capsys, "--train_samples_path", log, "--original_prompts_path", prompts, "--output_path", out,
                         "--max_epochs", 2, "--steps_per_epoch", given, "--no_plots")  # fmt: skip
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"--steps_per_epoch {given} contradicts the log" in err and "9 steps each" in err
    assert not out.parent.exists()


def test_a_log_without_epochs_takes_steps_per_epoch_with_a_warning(nine_step_passes, tmp_path, capsys):
    log, prompts, accuracy = nine_step_passes
    old = write_jsonl(tmp_path / "old.jsonl", [json.dumps({k: v for k, v in json.loads(x).items() if k != "epoch"})
                                               for x in log.read_text().splitlines()])  # fmt: skip
    out = tmp_path / "sel.json"
    rc, _, err = run_cli(capsys, "--train_samples_path", old, "--original_prompts_path", prompts, "--output_path", out,
                         "--max_epochs", 3, "--steps_per_epoch", 9, "--no_plots")  # fmt: skip
    assert rc == 0 and err.count("\n") == 1 and err.startswith("warning: ") and "carry no epoch" not in err
    assert "lines without an epoch" in err and "--steps_per_epoch 9" in err
    assert lim.scan_rollout_log(old, None, 9, 3).tally.accuracy() == accuracy
    capsys.readouterr()
    # without the flag: the fork's 8, said in the warning (here 3 epochs of 8 fit in 27 steps, but straddle passes)
    rc, _, err = run_cli(capsys, "--train_samples_path", old, "--original_prompts_path", prompts, "--output_path", out,
                         "--max_epochs", 3, "--no_plots")  # fmt: skip
    assert rc == 0 and err.count("\n") == 1 and "the default --steps_per_epoch 8 (pass the run's)" in err
    assert json.loads((tmp_path / "sel.report.json").read_text())["steps_per_epoch"] == 8


def test_the_miniature_curve_is_the_logs_accuracy_per_pass(nine_step_passes):
    from limr.rollout_log import epoch_tally

    log, _, accuracy = nine_step_passes
    assert epoch_tally(log).curve() == pytest.approx([sum(h[k] for h in accuracy.values()) / 17 for k in range(3)])


# --- the fork's step files -----------------------------------------------------------------------------------------


def reference_step_accuracy(folder: Path, prompts: Path, steps_per_epoch: int, epochs: int) -> dict:
    """An independent reader: json.loads of every step file, prompts joined by stripped text, reward == 1."""
    by_text = {}
    for it in json.loads(prompts.read_text()):
        by_text.setdefault(it["prompt"].strip(), it["id"])
    counts = {}
    for step in range(1, steps_per_epoch * epochs + 1):
        for s in json.loads((folder / f"step_{step}.json").read_text(encoding="utf-8")):
            assert isinstance(s["prompt"], str) and is_number(s["reward"])
            c = counts.setdefault(by_text[s["prompt"].strip()], [[0, 0] for _ in range(epochs)])
            c[(step - 1) // steps_per_epoch][0] += s["reward"] == 1
            c[(step - 1) // steps_per_epoch][1] += 1
    return {pid: [c / t if t else None for c, t in h] for pid, h in counts.items()}


def read_steps(folder: Path, prompts: Path, steps_per_epoch=2, epochs=3) -> dict:
    by_text = {text: ids[0] for text, ids in ids_by_text(json.loads(prompts.read_text())).items()}
    return lim.scan_step_files(folder, by_text, steps_per_epoch, epochs).tally.accuracy()


def test_generated_step_files_are_what_json_dump_writes(tmp_path):
    rows = [(json.dumps('p "1"\n'), json.dumps("r\\é"), 1.0, 3), (json.dumps("p2"), json.dumps(""), -0.5, 0)]
    gen.write_step_file(tmp_path / "s.json", rows)
    objs = [
        {"prompt": json.loads(p), "response": json.loads(r), "reward": w, "response_length": n} for p, r, w, n in rows
    ]
    assert (tmp_path / "s.json").read_text() == json.dumps(objs, indent=4)


def test_step_reader_matches_json_load_on_a_generated_run(tiny, monkeypatch):
    expected = reference_step_accuracy(tiny / "steps", tiny / "prompts.json", 2, 3)
    assert expected == reference_accuracy(tiny / "rollouts.jsonl", 2, 3)  # the generator's two formats agree
    monkeypatch.setattr(limr.step_files, "_strict_step_samples", lambda *a: pytest.fail("not read by msgspec"))
    assert read_steps(tiny / "steps", tiny / "prompts.json") == expected


def test_step_files_decoded_in_worker_processes_read_the_same(tiny, tmp_path, monkeypatch):
    """The two decoding processes (limr/step_files.py, _each_file) give what one process gives, in step order, and
    a bad file stops them with the same one-line error."""
    serial = read_steps(tiny / "steps", tiny / "prompts.json")
    monkeypatch.setattr(limr.step_files, "FILES_PER_WORKER", 1)  # 6 files: the pool takes them
    forked = []
    real_pool = limr.step_files.ProcessPoolExecutor
    monkeypatch.setattr(limr.step_files, "ProcessPoolExecutor", lambda *a, **k: forked.append(1) or real_pool(*a, **k))
    assert read_steps(tiny / "steps", tiny / "prompts.json") == serial and forked
    bad = tmp_path / "steps"
    bad.mkdir()
    for f in (tiny / "steps").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "step_4.json").write_text('[{"prompt": "x", "reward": "1"}]')
    with pytest.raises(lim.DataError, match=r"step_4.json: item 0: 'reward' must be a number"):
        read_steps(bad, tiny / "prompts.json")
    assert len(forked) == 2


def sample(prompt, reward, response="ok"):
    return {"prompt": prompt, "response": response, "reward": reward, "response_length": 2}


# (step file layout, what it tests): the reader must agree with json.load on each
STEP_LAYOUTS = [
    (lambda rows: json.dumps(rows, indent=4), "the fork's layout"),
    (lambda rows: json.dumps(rows), "compact"),
    (lambda rows: json.dumps([{k: r[k] for k in ("reward", "response", "prompt")} for r in rows]), "reward first"),
    (lambda rows: json.dumps(rows, ensure_ascii=False, indent=1), "raw UTF-8"),
]
TEXTS = ["What is 1?", 'Say "reward": 1 \\ twice', "ends with a backslash \\", 'é — "quoted"\n']


def write_steps(folder: Path, layout=json.dumps, steps=6) -> Path:
    folder.mkdir()
    for step in range(1, steps + 1):
        rows = [sample(t.strip(), [1.0, -0.5, -1, 1][(step + i + j) % 4], '"reward": 1.0, "x\\') for i, t in
                enumerate(TEXTS) for j in range(2)]  # fmt: skip
        (folder / f"step_{step}.json").write_text(layout(rows), encoding="utf-8")
    return folder


@pytest.mark.parametrize("layout,what", STEP_LAYOUTS, ids=[w for _, w in STEP_LAYOUTS])
def test_step_reader_table(tmp_path, layout, what):
    prompts = prompt_file(tmp_path / "prompts.json", list("abcd"), [t + "  " for t in TEXTS])  # padded: stripped
    folder = write_steps(tmp_path / "steps", layout)
    assert read_steps(folder, prompts) == reference_step_accuracy(folder, prompts, 2, 3), what


# A sample the fork never wrote, or a damaged file: read exactly as json.load reads it, or rejected when it (or the
# format) rejects it. Each item is put into step_3.json; a function changes the whole file.
HOSTILE_STEPS = [
    '{"prompt": "What is 1?", "reward": 1.0, "prompt": "ends with a backslash \\\\"}',  # a duplicate key: the last
    '{"prompt": "What is 1?", "reward": 1.0, "reward": -0.5}',
    '{"pr\\u006fmpt": "What is 1?", "reward": 1}',  # an escaped key
    '{"prompt": "What is 1?", "reward": 1, "response": {"prompt": "x", "reward": 1}}',  # a nested object
    '{"prompt": "What is 1?", "reward": 1, "response": [1, {"a": NaN}]}',  # NaN where no one reads it
    '{"prompt": {"t": "What is 1?"}, "reward": 1}',  # a nested object where a value is read
    '{"prompt": "What is 1?", "reward": true}',
    '{"prompt": "What is 1?", "reward": NaN}',
    '{"prompt": "What is 1?", "reward": 1e999}',
    '{"prompt": "What is 1?", "reward": "1"}',
    '{"prompt": "What is 1?"}',
    '{"reward": 1}',
    '{"prompt": "Not in the prompt file", "reward": 1}',
    '{"prompt": "What is 1?", "reward": 1, "response": "\\ud800"}',  # a lone surrogate, escaped
    '{"prompt": "What is 1?", "reward": 1} {"prompt": "What is 1?", "reward": 1}',
    '"not an object"',
    "[1]",
    "null",
    b'{"prompt": "What is 1?", "reward": 1, "response": "\xff"}',  # not UTF-8: json.load rejects it
    b'{"prompt": "What is 1?", "reward": 1, "response": "\xed\xa0\x80"}',  # an encoded surrogate: rejected too
    b'{"prompt": "\xc3", "reward": 1}',
    lambda data: data[: len(data) // 2],  # a truncated file
    lambda data: data + b"x",  # garbage after the list
    lambda data: b"\xef\xbb\xbf" + data,  # a byte order mark
    lambda data: b'{"samples": ' + data + b"}",  # not a list
    lambda data: b"",
]


@pytest.mark.parametrize("bad", HOSTILE_STEPS)
def test_hostile_step_files_read_as_json_load_reads_them(tmp_path, bad):
    prompts = prompt_file(tmp_path / "prompts.json", list("abcd"), TEXTS)
    folder = write_steps(tmp_path / "steps")
    path = folder / "step_3.json"
    data = path.read_bytes()
    if callable(bad):
        data = bad(data)
    else:
        data = data[:1] + (bad if isinstance(bad, bytes) else bad.encode()) + b", " + data[1:]
    path.write_bytes(data)
    got, expected = reference_or_error(lambda: read_steps(folder, prompts),
                                       lambda: reference_step_accuracy(folder, prompts, 2, 3))  # fmt: skip
    assert got == expected


def test_a_text_under_two_ids_is_scored_once_and_selected_with_both(tmp_path, capsys):
    """The original's meaning (limr/dataset.py, the join rule): the step files pool the text's samples, it counts
    once in the average curve, and both of its rows take its score and are selected together."""
    prompts = prompt_file(tmp_path / "prompts.json", ["a", "b", "c", "dup"], ["Same?", "Other?", "Third?", "Same?"])
    folder = tmp_path / "steps"
    folder.mkdir()
    rising = {1: [-0.5, -0.5], 2: [1.0, -0.5], 3: [1.0, 1.0]}  # accuracy 0, 1/2, 1
    for step in range(1, 4):
        rows = [sample(text, r) for text in ("Same?", "Third?") for r in rising[step]]
        (folder / f"step_{step}.json").write_text(json.dumps([*rows, sample("Other?", float(step == 1))]))
    out = tmp_path / "sel.json"
    rc, stdout, _ = run_cli(capsys, "--train_samples_path", folder, "--original_prompts_path", prompts,
                            "--output_path", out, "--steps_per_epoch", 1, "--max_epochs", 3, "--no_plots")  # fmt: skip
    assert rc == 0
    report = json.loads((tmp_path / "sel.report.json").read_text())
    assert report["duplicate_prompt_texts"] == [{"ids": ["a", "dup"]}] and report["dropped"] == {}
    assert report["mean_curve"] == pytest.approx([1 / 3, 1 / 3, 2 / 3])  # "Same?" counted once, not twice
    scores = {r["id"]: r["score"] for r in json.loads((tmp_path / "sel.scores.json").read_text())}
    assert scores == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.75, "dup": 0.75}) and list(scores)[-1] == "dup"
    assert [it["id"] for it in json.loads(out.read_text())] == ["a", "c", "dup"]


# --- the command line ----------------------------------------------------------------------------------------------


def test_original_command_on_step_files_writes_every_output(tiny, tmp_path, capsys):
    out = tmp_path / "lim" / "limr.json"
    rc, stdout, _ = run_cli(capsys, "--train_samples_path", tiny / "steps", "--original_prompts_path",
                            tiny / "prompts.json", "--output_path", out, "--steps_per_epoch", 2, "--max_epochs", 3,
                            "--similarity_threshold", 0.6)  # fmt: skip
    assert rc == 0
    selected = json.loads(out.read_text())
    assert selected and set(selected[0]) == {"id", "prompt", "answer", "source"}
    rows = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [json.loads(r["label"])["id"] for r in rows] == [it["id"] for it in selected]
    report = json.loads((out.parent / "limr.report.json").read_text())
    assert report["selected"] == len(selected) and report["scored"] + sum(report["dropped"].values()) == 85
    assert len(report["mean_curve"]) == 3 and "selected with lim" in stdout
    for png in ("trajectories", "scores"):
        assert (out.parent / f"limr.{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_log_and_step_files_select_the_same(tiny, tmp_path, capsys):
    chosen = []
    for source in (tiny / "steps", tiny / "rollouts.jsonl"):
        out = tmp_path / f"{source.stem}.json"
        rc, _, _ = run_cli(capsys, "--train_samples_path", source, "--original_prompts_path", tiny / "prompts.json",
                           "--output_path", out, "--steps_per_epoch", 2, "--max_epochs", 3, "--no_plots")  # fmt: skip
        assert rc == 0
        chosen.append(json.loads(out.read_text()))
    assert chosen[0] == chosen[1]


@pytest.mark.parametrize("method", ["linear", "rand", "variance", "learnability", "dapo"])
def test_methods_and_sizes(tiny, tmp_path, capsys, method):
    out = tmp_path / "sel.json"
    args = ["--train_samples_path", tiny / "rollouts.jsonl", "--original_prompts_path", tiny / "prompts.json",
            "--output_path", out, "--steps_per_epoch", 2, "--max_epochs", 3, "--no_plots", "--method", method]  # fmt: skip
    assert run_cli(capsys, *args, "--num_samples", 11)[0] == 0
    assert len(json.loads(out.read_text())) == 11
    assert run_cli(capsys, *args)[0] == 0  # default size: LINEAR its threshold 0.7, the others LIM's count
    report = json.loads((tmp_path / "sel.report.json").read_text())
    expected = report["at_default_thresholds"]["linear >= 0.7" if method == "linear" else "lim >= 0.6"]
    assert report["selected"] == expected


def test_compare_prints_the_overlap(tiny, tmp_path, capsys):
    rc, stdout, _ = run_cli(capsys, "--accuracy_path", write_accuracy(tiny, tmp_path), "--output_path",
                            tmp_path / "c.json", "--max_epochs", 3, "--compare", "--num_samples", 20)  # fmt: skip
    assert rc == 0 and "overlap (Jaccard) at 20 prompts each" in stdout
    jac = json.loads((tmp_path / "c.report.json").read_text())["compare"]["jaccard"]
    assert set(jac) == set(lim.METHODS) and all(jac[m][m] == 1.0 for m in jac)
    assert (tmp_path / "c.overlap.png").exists()
    assert not (tmp_path / "c.jsonl").exists()  # ids only without a prompt file


def write_accuracy(tiny: Path, tmp_path: Path) -> Path:
    acc = {
        pid: [0.0 if x is None else x for x in h]
        for pid, h in reference_accuracy(tiny / "rollouts.jsonl", 2, 3).items()
    }
    path = tmp_path / "acc.json"
    path.write_text(json.dumps(acc))
    return path


def test_accuracy_history_is_cut_to_max_epochs(tmp_path, capsys):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"a": [0.0, 0.5, 1.0, 0.0], "b": [0.5, 0.5, 0.5], "c": [1.0, 1.0, 1.0, 1.0, 1.0]}))
    rc, _, _ = run_cli(capsys, "--accuracy_path", acc, "--output_path", tmp_path / "s.json", "--max_epochs", 3,
                       "--no_plots")  # fmt: skip
    assert rc == 0
    scores = {r["id"]: r["score"] for r in json.loads((tmp_path / "s.scores.json").read_text())}
    mean = [0.5, 2 / 3, 2.5 / 3]
    den = sum((1 - m) ** 2 for m in mean)
    h = [0.0, 0.5, 1.0]
    assert math.isclose(scores["a"], 1 - sum((x - m) ** 2 for x, m in zip(h, mean, strict=True)) / den)


# (arguments after the input, files to create, message): bad inputs end with one line, exit 2 and no output
BAD_INPUTS = [
    (["--accuracy_path", "{d}/acc.json"], {"acc.json": "[1, 2]"}, "expected a JSON object"),
    (["--accuracy_path", "{d}/acc.json"], {"acc.json": '{"a": 0.5}'}, "is not a list"),
    (["--accuracy_path", "{d}/acc.json"], {"acc.json": '{"a": [0.5, 2]}'}, "not an accuracy in [0, 1]"),
    (["--accuracy_path", "{d}/acc.json"], {"acc.json": "{not json"}, "not valid JSON"),
    (["--accuracy_path", "{d}/acc.json"], {"acc.json": '{"a": [0.5]}'}, "no prompt has a complete 21-epoch history"),
    (
        ["--accuracy_path", "{d}/acc.json", "--original_prompts_path", "{d}/p.json"],
        {"acc.json": '{"zz": [0.5]}', "p.json": '[{"id": "a", "prompt": "x", "answer": "1"}]'},
        "ids are not in the prompt file",
    ),  # fmt: skip
    (["--scores_path", "{d}/s.json"], {"s.json": '[{"id": "a"}]'}, "needs a numeric 'score'"),
    (["--scores_path", "{d}/s.json"], {"s.json": '[{"prompt": "x", "score": 1}]'}, "pass --original_prompts_path"),
    (
        ["--scores_path", "{d}/s.json", "--original_prompts_path", "{d}/p.json"],
        {"s.json": '[{"prompt": "y", "score": 1}]', "p.json": '[{"id": "a", "prompt": "x", "answer": "1"}]'},
        "1 prompts are not in the prompt file",
    ),  # fmt: skip
    (
        ["--scores_path", "{d}/s.json", "--original_prompts_path", "{d}/p.json"],
        {"s.json": "[]", "p.json": '{"a": 1}'},
        "p.json: expected a JSON list of objects, got dict",
    ),  # fmt: skip
    (
        ["--scores_path", "{d}/s.json", "--original_prompts_path", "{d}/p.json"],
        {"s.json": "[]", "p.json": '[{"id": "a", "prompt": "x"}]'},
        "p.json: row 0 has no field 'answer'",
    ),  # fmt: skip
    (
        ["--train_samples_path", "{d}/steps", "--original_prompts_path", "{d}/p.json"],
        {"steps/x.txt": "", "p.json": "[]"},
        "no step_{k}.json or {k}.jsonl files",
    ),  # fmt: skip
    (
        ["--train_samples_path", "{d}/steps", "--original_prompts_path", "{d}/p.json", "--max_epochs", "2"],
        {"steps/step_1.json": "[]", "steps/step_3.json": "[]", "p.json": "[]"},
        "step_2.json is missing",
    ),  # fmt: skip
    (
        [
            "--train_samples_path",
            "{d}/steps",
            "--original_prompts_path",
            "{d}/p.json",
            "--max_epochs",
            "1",
            "--steps_per_epoch",
            "1",
        ],
        {
            "steps/step_1.json": '[{"prompt": "x", "reward": "1"}]',
            "p.json": '[{"id": "a", "prompt": "x", "answer": "1"}]',
        },
        "step_1.json: item 0: 'reward' must be a number",
    ),  # fmt: skip
    (
        [
            "--train_samples_path",
            "{d}/steps",
            "--original_prompts_path",
            "{d}/p.json",
            "--max_epochs",
            "1",
            "--steps_per_epoch",
            "1",
        ],
        {
            "steps/step_1.json": '[{"prompt": "y", "reward": 1}]',
            "p.json": '[{"id": "a", "prompt": "x", "answer": "1"}]',
        },
        "1 prompt texts are not in the prompt file",
    ),  # fmt: skip
    (
        [
            "--train_samples_path",
            "{d}/steps",
            "--original_prompts_path",
            "{d}/p.json",
            "--max_epochs",
            "1",
            "--steps_per_epoch",
            "1",
        ],
        {"steps/step_1.json": '{"prompt": "x"}', "p.json": "[]"},
        "expected a JSON list",
    ),
    (["--train_samples_path", "{d}/steps"], {"steps/step_1.json": "[]"}, "pass --original_prompts_path"),
    (["--train_samples_path", "{d}/nothing"], {}, "no such file or folder"),
    (["--train_samples_path", "{d}/empty.jsonl"], {"empty.jsonl": ""}, "no training samples"),
    (["--accuracy_path", "{d}/acc.json", "--output_path", "{d}/out/x.txt"], {"acc.json": "{}"}, "must end in .json"),
]


@pytest.mark.parametrize("argv,files,message", BAD_INPUTS)
def test_bad_inputs_fail_with_one_clear_line(tmp_path, capsys, argv, files, message):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    argv = [a.format(d=tmp_path) for a in argv]
    if "--output_path" not in argv:
        argv += ["--output_path", f"{tmp_path}/out/sel.json"]
    rc, _, err = run_cli(capsys, *argv, "--no_plots")
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_help_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "lim_selection.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--train_samples_path" in proc.stdout and "--similarity_threshold" in proc.stdout


# --- the benchmark scripts, tiny ----------------------------------------------------------------------------------


def test_benchmark_runs_at_a_tiny_scale(tmp_path):
    data = tmp_path / "bench"
    gen_cmd = [sys.executable, str(ROOT / "benchmarks" / "gen_rollouts.py"), "--out", str(data), "--scale", "0.01",
               "--epochs", "3", "--response_chars", "200"]  # fmt: skip
    assert subprocess.run(gen_cmd, capture_output=True).returncode == 0
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench_lim_selection.py"), "--data", str(data),
             "--max_epochs", "3", "--partial_epochs", "2"]  # fmt: skip
    proc = subprocess.run(bench, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((data / "bench" / "results.json").read_text())
    assert results["same_selection"] and set(results["runs"]) == {"baseline", "steps", "jsonl", "steps@2", "jsonl@2"}
    assert all(r["peak_mb"] > 0 and "speedup" in r for r in results["runs"].values())
    assert set(results["linear_fit"]) == {"steps", "jsonl"}


# --- outputs: never over an input, checked before any work, all or nothing ---------------------------------------


@pytest.fixture
def small_run(tmp_path) -> Path:
    """A 2-prompt log of 3 epochs x 2 steps and its prompt file, in tmp_path/d."""
    d = tmp_path / "d"
    d.mkdir()
    rows = [line(s, p, 1.0 if (s + ord(p)) % 2 else -0.5, epoch=(s + 1) // 2) for s in range(1, 7) for p in "ab"]
    write_jsonl(d / "rollouts.jsonl", rows)
    prompt_file(d / "prompts.json", ["a", "b"])
    return d


def log_args(d: Path, *extra) -> list:
    return ["--train_samples_path", d / "rollouts.jsonl", "--original_prompts_path", d / "prompts.json",
            "--steps_per_epoch", 2, "--max_epochs", 3, *extra]  # fmt: skip


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# (arguments given the run folder d, what the output would have replaced)
OVERWRITES = [
    (lambda d: log_args(d, "--output_path", d / "rollouts.json"), "rollouts.jsonl"),  # the OpenRLHF twin: the log
    (lambda d: log_args(d, "--output_path", d / "prompts.json"), "prompts.json"),  # the selection: the prompt file
    (lambda d: log_args(d, "--output_path", d / "x.json", "--scores_output", d / "rollouts.jsonl"), "rollouts.jsonl"),
    (lambda d: log_args(d, "--output_path", d / "." / "prompts.json"), "prompts.json"),  # another spelling
    (lambda d: log_args(d, "--output_path", d / "hard.json"), "prompts.json"),  # a hard link to the prompt file
    (
        lambda d: [
            *log_args(d)[:2],
            "--original_prompts_path",
            d / "sel.report.json",
            *log_args(d)[4:],
            "--output_path",
            d / "sel.json",
        ],
        "sel.report.json",
    ),  # the report over the prompt file  # fmt: skip
    (
        lambda d: [*log_args(d)[2:], "--train_samples_path", d / "sel.scores.png", "--output_path", d / "sel.json"],
        "sel.scores.png",
    ),  # a plot over an input (a log with an odd name)  # fmt: skip
    (lambda d: ["--scores_path", d / "s.json", "--output_path", d / "s.json"], "s.json"),
]


@pytest.mark.parametrize("make_args, victim", OVERWRITES)
def test_an_output_that_is_an_input_is_refused(small_run, capsys, make_args, victim):
    d = small_run
    (d / "s.json").write_text('[{"id": "a", "score": 0.9}]')
    (d / "sel.scores.png").write_bytes((d / "rollouts.jsonl").read_bytes())
    (d / "hard.json").hardlink_to(d / "prompts.json")
    (d / "sel.report.json").write_bytes((d / "prompts.json").read_bytes())
    before = snapshot(d)
    rc, out, err = run_cli(capsys, *make_args(d), "--no_plots" if "s.json" in victim else "--compare")
    assert rc == 2 and err.startswith("error: output ") and err.count("\n") == 1, err
    assert err.endswith(f"would overwrite the input {d / victim}: choose another output path\n"), err
    assert snapshot(d) == before and out == ""  # nothing read, nothing written


def test_a_symlinked_output_is_refused(small_run, capsys):
    (small_run / "link.json").symlink_to(small_run / "prompts.json")
    before = snapshot(small_run)
    rc, _, err = run_cli(capsys, *log_args(small_run, "--output_path", small_run / "link.json", "--no_plots"))
    assert rc == 2 and "would overwrite the input" in err and snapshot(small_run) == before


def test_scores_output_on_the_scores_input_is_left_alone(small_run, capsys):
    """--scores_path's own file as the scores output already holds the scores: not rewritten, as before."""
    scores = small_run / "sel.scores.json"
    scores.write_text('[{"id": "a", "score": 0.9}, {"id": "b", "score": 0.1}]')
    before = scores.read_bytes()
    rc, _, err = run_cli(capsys, "--scores_path", scores, "--original_prompts_path", small_run / "prompts.json",
                         "--output_path", small_run / "sel.json", "--no_plots")  # fmt: skip
    assert rc == 0, err
    assert scores.read_bytes() == before and [r["id"] for r in json.loads((small_run / "sel.json").read_text())] == [
        "a"
    ]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--max_epochs", "100000000"),  # a MemoryError, not an error line
        ("--max_epochs", "0"),
        ("--steps_per_epoch", "-1"),
        ("--num_samples", "0"),
        ("--similarity_threshold", "nan"),  # selected nothing, exit 0
        ("--similarity_threshold", "inf"),
    ],
)
def test_numeric_flags_out_of_range(small_run, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        lim.main([str(a) for a in log_args(small_run, "--output_path", small_run / "o" / "x.json")] + [flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: " in err and "Traceback" not in err
    assert not (small_run / "o").exists()


def test_an_unwritable_output_is_found_before_reading(small_run, capsys):
    (small_run / "file").write_text("")
    for out in (small_run / "file" / "sel.json", small_run / "file" / "sub" / "sel.json", small_run):
        args = log_args(small_run, "--output_path", out, "--scores_output", small_run / "file" / "s.json")
        rc, stdout, err = run_cli(capsys, *args)
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and stdout == "", err
    assert sorted(p.name for p in small_run.iterdir()) == ["file", "prompts.json", "rollouts.jsonl"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_found_before_reading(small_run, capsys):
    ro = small_run / "ro"
    ro.mkdir(mode=0o500)
    rc, _, err = run_cli(capsys, *log_args(small_run, "--output_path", ro / "sel.json"))
    assert rc == 2 and "no permission to write in" in err and not any(ro.iterdir())


def test_a_full_disk_leaves_no_output(small_run, tmp_path):
    """Writing stops with EFBIG past a file-size limit (what a full disk does, for any user): every output or none."""
    cmd = [sys.executable, str(ROOT / "lim_selection.py"), *map(str, log_args(small_run, "--no_plots"))]
    full = subprocess.run([*cmd, "--output_path", str(tmp_path / "full" / "sel.json")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    sizes = sorted(p.stat().st_size for p in (tmp_path / "full").iterdir())
    limit = sizes[0] + 1  # the smallest output fits, a larger one does not

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "capped"
    proc = subprocess.run([*cmd, "--output_path", str(out / "sel.json")], capture_output=True, text=True,
                          preexec_fn=cap)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: cannot write the outputs, none written") and proc.stderr.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())  # no output, no temporary file


def test_stability_writes_the_table_and_refuses_what_it_cannot_measure(tmp_path, capsys):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"a": [0.0, 0.5, 1.0], "b": [0.5, 0.5, 0.5], "c": [1.0, 0.0, 0.0], "d": [0, 0, 0.5]}))
    out = tmp_path / "s.json"
    rc, stdout, _ = run_cli(capsys, "--accuracy_path", acc, "--output_path", out, "--max_epochs", 3, "--stability")
    assert rc == 0 and "stability: first K epochs" in stdout
    rows = json.loads((tmp_path / "s.stability.json").read_text())
    assert [(r["epochs"], r["mode"]) for r in rows] == [(k, m) for k in (1, 2, 3) for m in ("same size", "threshold")]
    assert rows[-1]["jaccard"] == 1.0 and rows[-1]["spearman"] == 1.0
    assert rows[-1]["selected"] == len(json.loads(out.read_text()))
    assert (tmp_path / "s.stability.png").stat().st_size > 0
    report = json.loads((tmp_path / "s.report.json").read_text())
    assert report["stability"]["threshold, jaccard >= 0.9"]["epochs"] is not None
    for bad in (["--method", "rand"], ["--method", "lim", "--scores_path", acc]):
        argv = ["--output_path", tmp_path / "t.json", "--stability", *bad]
        if "--scores_path" not in bad:
            argv += ["--accuracy_path", acc]
        rc, _, err = run_cli(capsys, *argv)
        assert rc == 2 and err.startswith("error: --stability needs") and not (tmp_path / "t.json").exists()


def test_dapo_scores_the_share_of_epochs_with_a_signal(tmp_path, capsys):
    complete = {"a": [0.0, 0.5, 1.0, 1.0], "b": [0.25, 0.5, 0.75, 0.5], "c": [0.0, 0.0, 0.0, 1.0]}
    assert lim.dapo_scores(complete) == {"a": 0.25, "b": 1.0, "c": 0.0}
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps(complete))
    rc, _, _ = run_cli(capsys, "--accuracy_path", acc, "--output_path", tmp_path / "d.json", "--max_epochs", 4,
                       "--method", "dapo", "--num_samples", 2, "--no_plots")  # fmt: skip
    assert rc == 0 and json.loads((tmp_path / "d.json").read_text()) == [{"id": "a"}, {"id": "b"}]
    rows = json.loads((tmp_path / "d.scores.json").read_text())
    assert {r["id"]: r["zero_variance_share"] for r in rows} == {"a": 0.75, "b": 0.0, "c": 1.0}


def test_sweep_counts_what_each_threshold_keeps(tmp_path, capsys):
    complete = {"a": [0.0, 0.5, 1.0], "b": [0.5, 0.5, 0.5], "c": [1.0, 0.0, 0.0], "d": [0.0, 0.0, 0.5]}
    rows = lim.threshold_sweep(complete)
    assert [r["theta"] for r in rows] == [i / 20 for i in range(21)]
    lim_s, lin_s = lim.lim_scores(complete), lim.linear_scores(complete)
    for r in rows:
        assert r["lim"] == sum(s >= r["theta"] for s in lim_s.values())
        assert r["linear"] == sum(s >= r["theta"] for s in lin_s.values())
    assert rows[-1]["linear"] == 1  # only "a" rises on the line: linear score exactly 1
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps(complete))
    rc, stdout, _ = run_cli(capsys, "--accuracy_path", acc, "--output_path", tmp_path / "w.json", "--max_epochs", 3,
                            "--sweep")  # fmt: skip
    assert rc == 0 and "prompts kept against the threshold" in stdout
    saved = json.loads((tmp_path / "w.sweep.json").read_text())
    assert saved == rows and (tmp_path / "w.sweep.png").stat().st_size > 0
    at_theta = next(r["lim"] for r in saved if r["theta"] == lim.THETA)
    assert at_theta == len(json.loads((tmp_path / "w.json").read_text()))
    rc, _, err = run_cli(capsys, "--scores_path", acc, "--output_path", tmp_path / "x.json", "--sweep")
    assert rc == 2 and err.startswith("error: --sweep") and not (tmp_path / "x.json").exists()
