"""limr.jsonio hardening (issue 22): an output never replaces a symlink, a FIFO or a device, and whatever json
refuses (an integer longer than Python converts, 309+ digits where a float is needed) is one DataError naming the
file and line, never a traceback. The CLIs that write through atomic_write are run on such paths too."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from load_script import load_script

from limr.cli import refuse_unwritable_outputs
from limr.jsonio import DataError, all_or_nothing, atomic_write, is_number, iter_jsonl, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
DIGITS = sys.get_int_max_str_digits() + 1  # 4,301: one more than json.loads converts


def special_files(folder: Path) -> dict[str, Path]:
    """A symlink to a regular file, a FIFO and (as root) a character device like /dev/null, all in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "target.json"
    target.write_text("keep\n")
    found = {"symlink": folder / "link.json", "fifo": folder / "fifo.json"}
    found["symlink"].symlink_to(target)
    os.mkfifo(found["fifo"])
    try:
        os.mknod(folder / "null.json", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        found["device"] = folder / "null.json"
    except PermissionError:  # mknod needs root (CAP_MKNOD): test the other two
        pass
    return found


def kinds(found: dict[str, Path]) -> dict[str, int]:
    return {name: stat.S_IFMT(os.lstat(p).st_mode) for name, p in found.items()}


def test_atomic_write_refuses_every_output_that_is_not_a_regular_file(tmp_path):
    found = special_files(tmp_path)
    before = kinds(found)
    for path in found.values():
        with pytest.raises(FileExistsError, match="not a regular file: not replacing it"):
            write_json(path, [1])
        with pytest.raises(FileExistsError), all_or_nothing():  # held back, then refused: the other file too
            write_json(tmp_path / "other.json", [1])
            write_json(path, [1])
    assert kinds(found) == before and (tmp_path / "target.json").read_text() == "keep\n"
    assert not (tmp_path / "other.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_a_special_file_that_appears_while_writing_is_not_replaced(tmp_path):
    out = tmp_path / "out.json"
    with pytest.raises(FileExistsError), atomic_write(out) as f:
        f.write("[]")
        os.mkfifo(out)  # the output becomes a FIFO before the rename
    assert stat.S_ISFIFO(os.lstat(out).st_mode)
    write_json(tmp_path / "plain.json", [1])  # a regular file or a new name is fine
    write_json(tmp_path / "plain.json", [2])
    assert read_json(tmp_path / "plain.json") == [2]


def test_refuse_unwritable_outputs_names_what_is_there(tmp_path):
    found = special_files(tmp_path)
    words = {"symlink": "a symlink", "fifo": "a FIFO", "device": "a character device"}
    for name, path in found.items():
        with pytest.raises(DataError, match=f"output {path} is {words[name]}, not a regular file"):
            refuse_unwritable_outputs([path])
    refuse_unwritable_outputs([tmp_path / "target.json", tmp_path / "new.json"])


@pytest.fixture
def selection_inputs(tmp_path) -> tuple[Path, Path]:
    prompts = [{"id": f"p{i}", "prompt": f"q{i}", "answer": "1", "source": "t"} for i in range(3)]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    scores = [{"id": f"p{i}", "score": s} for i, s in enumerate((0.9, 0.5, 0.7))]
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    return tmp_path / "prompts.json", tmp_path / "scores.json"


def test_clis_refuse_special_outputs_with_one_line(tmp_path, selection_inputs, capsys):
    """lim_selection.py --scores_output /dev/null (as root) used to turn the device into a regular file; grade.py,
    summarize.py and prepare.py write through the same writer."""
    lim = load_script("lim_selection", ROOT / "lim_selection.py")
    grade = load_script("eval_grade_jsonio", ROOT / "eval" / "grade.py")
    summarize = load_script("eval_summarize_jsonio", ROOT / "eval" / "summarize.py")
    prompts, scores = selection_inputs
    (tmp_path / "gen.jsonl").write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + "\n")
    results = tmp_path / "eval" / "run" / "step1"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps({"benchmarks": {"b": {"accuracy": 0.5, "questions": 2}}}))
    found = special_files(tmp_path / "special")
    before = kinds(found)
    for path in found.values():
        runs = [
            lambda p: lim.main(
                [
                    "--scores_path",
                    str(scores),
                    "--original_prompts_path",
                    str(prompts),
                    "--output_path",
                    str(tmp_path / "sel" / "x.json"),
                    "--scores_output",
                    str(p),
                    "--no_plots",
                ]
            ),  # fmt: skip
            lambda p: grade.main(["--input", str(tmp_path / "gen.jsonl"), "--output", str(p), "--workers", "1"]),
        ]
        for run in runs:
            assert run(path) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1 and "not a regular file" in err, err
    assert not (tmp_path / "sel").exists()
    summary = tmp_path / "special" / "summary.md"
    summary.symlink_to(tmp_path / "special" / "target.json")
    assert summarize.main(["--eval_dir", str(tmp_path / "eval"), "--out", str(tmp_path / "special"), "--no_plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is a symlink" in err, err
    assert kinds(found) == before and summary.is_symlink()
    assert (tmp_path / "special" / "target.json").read_text() == "keep\n"


def test_prepare_refuses_a_symlinked_output(tmp_path, capsys):
    from test_prepare import make_release, prepare

    src = make_release(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "mine.json").write_text("mine\n")
    (out / "scores.json").symlink_to(tmp_path / "mine.json")
    assert prepare.main(["--from", str(src), "--out", str(out), "--no_verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "scores.json is a symlink" in err, err
    assert (
        sorted(p.name for p in out.iterdir()) == ["scores.json"] and (tmp_path / "mine.json").read_text() == "mine\n"
    )


# ---- integers json.loads will not convert ---------------------------------------------------------------------


def test_an_integer_too_long_to_read_is_a_data_error_naming_the_line(tmp_path):
    big = "9" * DIGITS
    (tmp_path / "x.json").write_text('[\n  {"a": 1.5},\n  {"a": ' + big + "}\n]\n")
    with pytest.raises(DataError, match=r"x.json:3: an integer of more than 4,300 digits"):
        read_json(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"a": "' + big + '", "b": -' + big + "}")  # the digits in a string are fine
    with pytest.raises(DataError, match=r"y.json:1: an integer of more than"):
        read_json(tmp_path / "y.json")
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": ' + big + "}\n")
    with pytest.raises(DataError, match=r"x.jsonl:3: an integer of more than 4,300 digits"):
        list(iter_jsonl(tmp_path / "x.jsonl"))
    (tmp_path / "ok.json").write_text('{"a": 0.' + big + ', "b": ' + "9" * (DIGITS - 1) + "}")  # both readable
    assert set(read_json(tmp_path / "ok.json")) == {"a", "b"}


def test_an_integer_too_large_for_a_float_is_not_a_number():
    assert is_number(10**308) and is_number(-3) and is_number(0.5)
    assert not is_number(10**309) and not is_number(-(10**400))  # math.isfinite raised OverflowError
    assert not is_number(True) and not is_number(float("nan")) and not is_number("1")


@pytest.mark.parametrize("bad", ["9" * DIGITS, "1" + "0" * 400])
def test_lim_selection_refuses_such_numbers_with_one_line(tmp_path, selection_inputs, capsys, bad):
    lim = load_script("lim_selection", ROOT / "lim_selection.py")
    prompts, _ = selection_inputs
    scores = tmp_path / "bad_scores.json"
    scores.write_text('[{"id": "p0", "score": 0.5},\n {"id": "p1", "score": ' + bad + "}]")
    accuracy = tmp_path / "acc.json"
    accuracy.write_text('{"p0": [0.5, 0.5],\n "p1": [0.5, ' + bad + "]}")
    for flags in (["--scores_path", scores], ["--accuracy_path", accuracy, "--max_epochs", "2"]):
        rc = lim.main([*map(str, flags), "--original_prompts_path", str(prompts),
                       "--output_path", str(tmp_path / "o" / "x.json"), "--no_plots"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_grade_and_summarize_name_the_line_of_an_integer_too_long_to_read(tmp_path, capsys):
    """Both printed json's ValueError as a traceback."""
    grade = load_script("eval_grade_jsonio", ROOT / "eval" / "grade.py")
    summarize = load_script("eval_summarize_jsonio", ROOT / "eval" / "summarize.py")
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + '\n{"response": "x", "answer": "1", "n": '
                   + "9" * DIGITS + "}\n")  # fmt: skip
    assert grade.main(["--input", str(gen), "--output", str(tmp_path / "graded.jsonl"), "--workers", "1"]) == 2
    assert (
        capsys.readouterr().err == f"error: {gen}:2: an integer of more than 4,300 digits, longer than Python reads\n"
    )
    results = tmp_path / "eval" / "run" / "step1" / "results.json"
    results.parent.mkdir(parents=True)
    for accuracy in ("9" * DIGITS, "1" + "0" * 400):  # unreadable; readable but no float (math.isfinite raised)
        results.write_text('{"benchmarks": {"b": {"questions": 2,\n "accuracy": ' + accuracy + "}}}")
        assert summarize.main(["--eval_dir", str(tmp_path / "eval"), "--no_plot"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {results}") and err.count("\n") == 1, err
    assert not (tmp_path / "graded.jsonl").exists() and not (tmp_path / "eval" / "summary.md").exists()
