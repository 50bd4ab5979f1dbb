"""eval/evaluate.py and eval/summarize.py on inputs from issue 22, each refused with one `error:` line and exit 2
before any model is loaded or file written: benchmark names that are paths, an unbounded --workers, and folders
whose names give one step twice (Unicode digits, leading zeros). No model is needed: every case stops first."""

import json
import os
import stat
from pathlib import Path

import pytest
from load_script import load_script

from limr.cli import MAX_WORKERS
from limr.folders import step_folders
from limr.jsonio import DataError

ROOT = Path(__file__).resolve().parents[1]
SETTING = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8}


evaluate = load_script("eval_evaluate_hardening", ROOT / "eval" / "evaluate.py")
summarize = load_script("eval_summarize_hardening", ROOT / "eval" / "summarize.py")


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with a file's bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def run_evaluate(capsys, *argv) -> tuple[int, str]:
    rc = evaluate.main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture
def world(tmp_path) -> Path:
    """A checkpoint folder (empty: nothing may get as far as loading it), benchmark data and a victim's files."""
    (tmp_path / "ckpt" / "global_step1_hf").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mini.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "x.jsonl").write_text(json.dumps({"question": "mine", "answer": "mine"}) + "\n")
    return tmp_path


@pytest.mark.parametrize("name", ["{tmp}/victim/x", "../victim/x", "a/b", "..", ".", "", "a\\b"])
def test_a_benchmark_name_that_is_a_path_is_refused_before_anything_is_read(world, capsys, name):
    """A name `/abs/x` made evaluate.py replace its own input with response rows; `../victim/x` wrote outside."""
    name = name.format(tmp=world)
    settings = world / "settings.json"
    settings.write_text(json.dumps({"mini": SETTING, name: SETTING}))
    before = tree(world)
    rc, err = run_evaluate(capsys, "--run_path", world / "ckpt", "--data_dir", world / "data", "--settings", settings,
                           "--out", world / "out", "--workers", 1)  # fmt: skip
    assert rc == 2 and err.count("\n") == 1, err
    assert (
        err == f"error: {settings}: benchmark name {name!r} is not a file name (no '/', '\\', '..' or empty names)\n"
    )
    assert tree(world) == before


def test_workers_are_bounded_as_in_grade_py(world):
    for workers in (str(MAX_WORKERS + 1), "100000"):
        with pytest.raises(SystemExit) as stopped:
            evaluate.parse_args(["--run_path", str(world / "ckpt"), "--workers", workers])
        assert stopped.value.code == 2
    assert evaluate.parse_args(["--run_path", "x", "--workers", str(MAX_WORKERS)]).workers == MAX_WORKERS


@pytest.mark.parametrize("other", ["global_step00001_hf", "global_step01_hf"])
def test_two_checkpoints_of_one_step_are_refused(world, capsys, other):
    (world / "ckpt" / other).mkdir()
    rc, err = run_evaluate(capsys, "--run_path", world / "ckpt", "--data_dir", world / "data", "--out", world / "out")
    assert rc == 2 and err.count("\n") == 1 and "both name step 1: rename or remove one" in err, err
    assert not (world / "out").exists()


def test_a_checkpoint_numbered_in_another_script_is_no_checkpoint(world, capsys):
    (world / "ckpt" / "global_step1_hf").rmdir()
    (world / "ckpt" / "global_step١_hf").mkdir()  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
    rc, err = run_evaluate(capsys, "--run_path", world / "ckpt", "--data_dir", world / "data", "--out", world / "out")
    assert (rc, err) == (2, f"error: {world / 'ckpt'}: no checkpoints (global_step<N>_hf folders)\n")
    (world / "ckpt" / "global_step1_hf").mkdir()
    rc, err = run_evaluate(
        capsys, "--run_path", world / "ckpt", "--step", "١", "--data_dir", world / "data", "--out", world / "out"
    )  # fmt: skip  (--step ١ is no step number either)
    assert rc == 2 and err.startswith(f"error: {world / 'ckpt'}: no step '١' among the checkpoints"), err


def test_two_saved_results_of_one_step_are_refused_by_regrade(world, capsys):
    for name in ("step3", "step03"):
        (world / "out" / "run" / name).mkdir(parents=True)
        (world / "out" / "run" / name / "results.json").write_text('{"benchmarks": {}}')
    rc, err = run_evaluate(capsys, "--run_path", world / "ckpt", "--name", "run", "--out", world / "out", "--regrade",
                           "--data_dir", world / "data")  # fmt: skip
    assert rc == 2 and err.count("\n") == 1 and "step03 and " in err and "both name step 3" in err, err


def test_an_output_that_is_a_symlink_or_fifo_is_refused_before_any_model_loads(world, capsys):
    step = world / "out" / "run" / "step1"
    step.mkdir(parents=True)
    os.mkfifo(step / "mini.jsonl")
    settings = world / "settings.json"
    settings.write_text(json.dumps({"mini": SETTING}))
    rc, err = run_evaluate(capsys, "--run_path", world / "ckpt", "--data_dir", world / "data", "--settings", settings,
                           "--out", world / "out", "--name", "run")  # fmt: skip
    assert rc == 2 and err == f"error: output {step / 'mini.jsonl'} is a FIFO, not a regular file: give another path\n"
    assert stat.S_ISFIFO(os.lstat(step / "mini.jsonl").st_mode)


def write_results(folder: Path, accuracy: float) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"benchmarks": {"mini": {"accuracy": accuracy, "questions": 4}}}))


@pytest.mark.parametrize("other", ["step٣", "step03", "step003"])
def test_summarize_refuses_or_ignores_what_would_replace_step3(tmp_path, capsys, other):
    """`step٣` silently took the place of `step3` (int() reads Arabic-Indic digits); now it is no step folder, and
    `step03` beside `step3` is an error."""
    write_results(tmp_path / "eval" / "run" / "step3", 0.5)
    write_results(tmp_path / "eval" / "run" / other, 0.25)
    rc = summarize.main(["--eval_dir", str(tmp_path / "eval"), "--out", str(tmp_path / "out"), "--no_plot"])
    captured = capsys.readouterr()
    if other.isascii():
        assert rc == 2 and captured.err.count("\n") == 1 and "both name step 3" in captured.err, captured.err
        assert not (tmp_path / "out").exists()
    else:
        assert rc == 0, captured.err
        assert "| run | 3 | - | 50.0 |" in (tmp_path / "out" / "summary.md").read_text()


def test_step_folders(tmp_path):
    for name in ("step1", "step10", "step٣", "step2x", "stepx", "step", "step 4", "step²"):
        (tmp_path / name).mkdir()
    (tmp_path / "step5").write_text("a file, not a folder")
    assert step_folders(tmp_path, "step") == {1: tmp_path / "step1", 10: tmp_path / "step10"}
    assert step_folders(tmp_path, "step", need="results.json") == {}
    assert step_folders(tmp_path / "missing", "step") == {}
    (tmp_path / "step01").mkdir()
    with pytest.raises(DataError, match=r"step01 and .*step1 both name step 1"):
        step_folders(tmp_path, "step")
