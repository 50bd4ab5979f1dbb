"""Tests of eval/summarize.py on results files written here: the Table 2 layout (Markdown and CSV), which step is a
run's row, the average, the paper's rows, the curves PNG, and bad input (one `error:` line, exit 2, nothing written).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "summarize.py"
FULL = {"aime24": 30, "math500": 500, "amc23": 40}


def load_summarize():
    spec = importlib.util.spec_from_file_location("eval_summarize", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_summarize"] = module
    spec.loader.exec_module(module)
    return module


summarize = load_summarize()


def write_results(folder: Path, accuracies: dict[str, float], questions: dict[str, int] = FULL) -> None:
    """A results.json as eval/evaluate.py writes it, reduced to what the summary reads (plus a field it ignores)."""
    folder.mkdir(parents=True)
    benchmarks = {b: {"accuracy": a, "questions": questions[b], "pass@n": 1.0} for b, a in accuracies.items()}
    (folder / "results.json").write_text(json.dumps({"run": folder.parent.name, "benchmarks": benchmarks}))


@pytest.fixture
def eval_dir(tmp_path):
    """Three runs: a base model, a run whose best step is not its last, and a run with a benchmark missing."""
    root = tmp_path / "eval"
    write_results(root / "qwen-base" / "base", {"aime24": 5 / 30, "math500": 262 / 500, "amc23": 21 / 40})
    write_results(root / "full" / "step8", {"aime24": 0.3, "math500": 0.8, "amc23": 0.65})  # average 58.3: the best
    write_results(root / "full" / "step16", {"aime24": 0.25, "math500": 0.75, "amc23": 0.6})  # average 53.3: the last
    write_results(root / "limr" / "step8", {"aime24": 0.2})  # only AIME24: no average
    (root / "limr" / "step16").mkdir()  # a folder without results is not a step
    (root / "notes").mkdir()  # neither is a folder without steps
    return root


def table_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


HEADER = ["| run | step | #questions | AIME24 | MATH500 | AMC23 | average |", "|---|---|---:|---:|---:|---:|---:|"]


def test_table_latest_step_base_models_first(eval_dir, capsys):
    assert summarize.main(["--eval_dir", str(eval_dir), "--questions", "full=8523,limr=1389"]) == 0
    assert table_lines(eval_dir / "summary.md") == [
        *HEADER,
        "| qwen-base | base | - | 16.7 | 52.4 | 52.5 | 40.5 |",  # 5/30, 262/500, 21/40
        "| full | 16 | 8,523 | 25.0 | 75.0 | 60.0 | 53.3 |",  # the last step, not the best
        "| limr | 8 | 1,389 | 20.0 | - | - | - |",  # no average without all three
    ]
    out = capsys.readouterr().out
    assert (eval_dir / "summary.md").read_text(encoding="utf-8") in out and "curves.png" in out


def test_best_step_and_run_order(eval_dir):
    assert summarize.main(["--eval_dir", str(eval_dir), "--runs", "full,qwen-base", "--step", "best"]) == 0
    assert table_lines(eval_dir / "summary.md") == [
        *HEADER,
        "| full | 8 | - | 30.0 | 80.0 | 65.0 | 58.3 |",
        "| qwen-base | base | - | 16.7 | 52.4 | 52.5 | 40.5 |",
    ]


def test_csv_and_paper_rows(eval_dir, tmp_path):
    out = tmp_path / "summary"  # a folder that does not exist yet
    assert summarize.main(["--eval_dir", str(eval_dir), "--paper", "--out", str(out), "--no_plot"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.md"]
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "run",
        "source",
        "step",
        "questions",
        "aime24",
        "math500",
        "amc23",
        "average",
        "aime24_questions",
        "math500_questions",
        "amc23_questions",
    ]
    assert rows[0] == {
        "run": "qwen-base",
        "source": "ours",
        "step": "base",
        "questions": "",
        "aime24": "16.67",
        "math500": "52.4",
        "amc23": "52.5",
        "average": "40.52",
        "aime24_questions": "30",
        "math500_questions": "500",
        "amc23_questions": "40",
    }
    assert rows[2]["average"] == "" and rows[2]["math500"] == ""  # limr: missing, not zero
    paper = {r["run"]: (r["questions"], r["aime24"], r["math500"], r["amc23"], r["average"]) for r in rows[3:]}
    assert paper == {  # Table 2 of the paper; the average is the mean of the three
        "Qwen2.5-Math-7B (paper)": ("", "16.7", "52.4", "52.5", "40.53"),
        "FULL (paper)": ("8523", "32.5", "76.6", "61.9", "57.0"),
        "RAND (paper)": ("1389", "25.8", "66.0", "56.3", "49.37"),
        "LINEAR (paper)": ("1138", "28.3", "74.6", "61.9", "54.93"),
        "LIMR (paper)": ("1389", "32.5", "78.0", "63.8", "58.1"),
    }
    assert "| LIMR (paper) |  | 1,389 | 32.5 | 78.0 | 63.8 | 58.1 |" in table_lines(out / "summary.md")


def test_partial_benchmarks_are_marked(tmp_path):
    root = tmp_path / "eval"
    write_results(root / "smoke" / "step2", {"aime24": 0.5, "math500": 1.0, "amc23": 0.25}, {**FULL, "aime24": 2})
    assert summarize.main(["--eval_dir", str(root), "--no_plot"]) == 0
    lines = table_lines(root / "summary.md")
    assert lines[2] == "| smoke | 2 | - | 50.0† | 100.0 | 25.0 | 58.3 |"
    assert lines[-1] == "† evaluated on fewer questions than the full benchmark (AIME24 30, AMC23 40, MATH500 500)."


def test_other_benchmarks_get_their_own_columns(tmp_path):
    """A settings table of other test sets (mini/): a column each, the average over them, best step by it."""
    import matplotlib.pyplot as plt

    root = tmp_path / "eval"
    write_results(root / "warmup" / "base", {"held": 0.25}, {"held": 200})
    write_results(root / "limr" / "step4", {"held": 0.5}, {"held": 200})
    write_results(root / "limr" / "step8", {"held": 0.375}, {"held": 200})
    assert summarize.main(["--eval_dir", str(root), "--questions", "limr=64"]) == 0
    assert table_lines(root / "summary.md") == [
        "| run | step | #questions | held |", "|---|---|---:|---:|",
        "| warmup | base | - | 25.0 |", "| limr | 8 | 64 | 37.5 |"]  # fmt: skip
    assert summarize.main(["--eval_dir", str(root), "--step", "best", "--no_plot"]) == 0
    assert table_lines(root / "summary.md")[-1] == "| limr | 4 | - | 50.0 |"
    assert plt.imread(root / "curves.png").shape[:2] == (456, 720)  # one panel, 6 x 3.8 inches
    write_results(root / "limr" / "step12", {"held": 0.5, "other": 0.25}, {"held": 200, "other": 8})
    assert summarize.main(["--eval_dir", str(root), "--no_plot"]) == 0
    assert table_lines(root / "summary.md")[0] == "| run | step | #questions | held | other | average |"
    assert table_lines(root / "summary.md")[-1] == "| limr | 12 | - | 50.0 | 25.0 | 37.5 |"
    with open(root / "summary.csv") as f:
        assert next(csv.reader(f)) == ["run", "source", "step", "questions", "held", "other", "average",
                                       "held_questions", "other_questions"]  # fmt: skip


def test_curves_png(eval_dir):
    import matplotlib.pyplot as plt

    assert summarize.main(["--eval_dir", str(eval_dir)]) == 0
    image = plt.imread(eval_dir / "curves.png")
    assert image.shape[:2] == (456, 1920)  # four panels, 16 x 3.8 inches at 120 dpi
    assert image[..., :3].std() > 0.05  # not blank


def test_run_with_base_and_steps_plots_base_as_step_zero(tmp_path):
    root = tmp_path / "eval"
    write_results(root / "limr" / "base", {"aime24": 0.1, "math500": 0.5, "amc23": 0.5})
    write_results(root / "limr" / "step4", {"aime24": 0.2, "math500": 0.6, "amc23": 0.6})
    points, only_base = summarize.read_run(root / "limr")
    assert list(points) == [0, 4] and not only_base
    assert summarize.main(["--eval_dir", str(root), "--no_plot"]) == 0
    assert table_lines(root / "summary.md")[2] == "| limr | 4 | - | 20.0 | 60.0 | 60.0 | 46.7 |"


def results_text(text: str):
    return lambda folder: (folder / "results.json").write_text(text)


# (what is wrong, how to make it, the error line after "error: ")
BAD = [
    ("no folder", None, "{root}: no such folder: run bash eval/eval.sh first"),
    ("no results", lambda folder: None, "{root}: no results (<run>/base/results.json or <run>/step<N>/results.json)"),
    ("not JSON", results_text("{"), "{root}/x/step1/results.json: not valid JSON"),
    ("no benchmarks", results_text("[]"), "{root}/x/step1/results.json: not a results file (no 'benchmarks' object)"),
    (
        "accuracy in %",
        results_text('{"benchmarks": {"aime24": {"accuracy": 32.5, "questions": 30}}}'),
        "{root}/x/step1/results.json: aime24: 'accuracy' must be a number in [0, 1], got 32.5",
    ),
    (
        "questions missing",
        results_text('{"benchmarks": {"aime24": {"accuracy": 0.3}}}'),
        "{root}/x/step1/results.json: aime24: 'questions' must be a positive integer, got None",
    ),
]


@pytest.mark.parametrize("what, make, error", BAD, ids=[b[0] for b in BAD])
def test_bad_results(tmp_path, capsys, what, make, error):
    root = tmp_path / "eval"
    if make is not None:
        (root / "x" / "step1").mkdir(parents=True)
        make(root / "x" / "step1")
    assert summarize.main(["--eval_dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + error.format(root=root)) and err.count("\n") == 1
    assert not (root / "summary.md").exists() and not (root / "curves.png").exists()


@pytest.mark.parametrize(
    "args, error",
    [
        (["--runs", "limr,rand"], "{root}: no results for run rand (found: full, limr, qwen-base)"),
        (["--questions", "full=lots"], "--questions: expected run=N with N >= 1, got 'full=lots'"),
        (["--questions", "8523"], "--questions: expected run=N with N >= 1, got '8523'"),
        (["--questions", "full=²"], "--questions: expected run=N with N >= 1, got 'full=²'"),  # a traceback
        (["--questions", "full=0"], "--questions: expected run=N with N >= 1, got 'full=0'"),
    ],
)
def test_bad_arguments(eval_dir, capsys, args, error):
    assert summarize.main(["--eval_dir", str(eval_dir), *args]) == 2
    assert capsys.readouterr().err == "error: " + error.format(root=eval_dir) + "\n"
    assert not (eval_dir / "summary.md").exists()


def test_help_shows_the_run_command():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "python eval/summarize.py --runs" in proc.stdout
    assert summarize.__doc__.split("\n\n")[1].lstrip().startswith("python eval/summarize.py")


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_an_output_that_is_a_results_file_is_refused(eval_dir, capsys, link):
    results = eval_dir / "full" / "step8" / "results.json"
    before = results.read_bytes()
    (eval_dir / "summary.csv").symlink_to(results) if link == "symlink" else os.link(results, eval_dir / "summary.csv")
    assert summarize.main(["--eval_dir", str(eval_dir)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: output {eval_dir / 'summary.csv'} would overwrite the input {results}: choose another " \
        "output path\n"  # fmt: skip
    assert results.read_bytes() == before and not (eval_dir / "summary.md").exists()


def test_an_unwritable_out_is_one_error_line(eval_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert summarize.main(["--eval_dir", str(eval_dir), "--out", str(tmp_path / "file" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and err.count("\n") == 1


def test_a_full_disk_writes_nothing(eval_dir, tmp_path, capsys, disk_full_past):
    """Past a file-size limit writes fail with EFBIG, as on a full disk: summary.md (written first) fits, curves.png
    does not, and no file may be left behind."""
    assert summarize.main(["--eval_dir", str(eval_dir), "--out", str(tmp_path / "full")]) == 0
    limit = (tmp_path / "full" / "summary.md").stat().st_size + 1
    assert (tmp_path / "full" / "curves.png").stat().st_size > limit
    capsys.readouterr()
    with disk_full_past(limit):
        rc = summarize.main(["--eval_dir", str(eval_dir), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: cannot write to {tmp_path / 'out'}, nothing written"), err
    assert not any((tmp_path / "out").iterdir())


def write_responses(folder: Path, bench: str, correct: list[list[bool]]) -> None:
    """results.json and <bench>.jsonl (the fields the summary reads) for a (questions x samples) verdict table."""
    write_results(folder, {bench: sum(map(sum, correct)) / sum(map(len, correct))}, {bench: len(correct)})
    rows = [{"id": f"q{q:04d}", "sample": s, "correct": c} for q, row in enumerate(correct) for s, c in enumerate(row)]
    (folder / f"{bench}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_intervals_and_paired_difference_against_closed_forms(tmp_path, capsys):
    import math

    root = tmp_path / "eval"
    write_responses(root / "perfect" / "step4", "held", [[True] * 4] * 30)  # all correct: no spread at all
    half = [[q % 2 == 0] for q in range(2000)]  # half correct, n = 1: the normal approximation holds
    write_responses(root / "half" / "step4", "held", half)
    write_responses(root / "half2" / "step4", "held", half)
    assert summarize.main(["--eval_dir", str(root), "--runs", "perfect,half", "--compare", "half,half2"]) == 2
    assert "no row for run half2" in capsys.readouterr().err
    assert summarize.main(["--eval_dir", str(root), "--compare", "half,half2", "--no_plot"]) == 0
    lines = table_lines(root / "summary.md")
    assert "| perfect | 4 | - | 100.0 [100.0, 100.0] |" in lines
    with open(root / "summary.csv", newline="") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    half_width = 1.96 * math.sqrt(0.25 / 2000) * 100  # 2.19 points
    low, high = float(rows["half"]["held_low"]), float(rows["half"]["held_high"])
    assert math.isclose((high - low) / 2, half_width, rel_tol=0.1) and math.isclose((high + low) / 2, 50, abs_tol=0.3)
    assert "| held | +0.0 | [+0.0, +0.0] | no |" in lines  # the same verdicts paired: no difference at all
    assert summarize.main(["--eval_dir", str(root), "--compare", "perfect,half"]) == 2  # 30 questions vs 2000
    assert "different questions" in capsys.readouterr().err
    write_responses(root / "worse" / "step4", "held", [[q % 4 == 0] for q in range(2000)])
    assert summarize.main(["--eval_dir", str(root), "--compare", "half,worse"]) == 0
    assert "| held | +25.0 |" in capsys.readouterr().out and (root / "curves.png").stat().st_size > 0
    for bad in ("half", "half,half", "half,"):
        assert summarize.main(["--eval_dir", str(root), "--compare", bad]) == 2
        assert capsys.readouterr().err.startswith("error: --compare: expected two different runs")
