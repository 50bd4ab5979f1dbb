"""limr.cli: the shared checks on numeric flags and on outputs that would replace an input."""

import argparse
import os

import pytest

from limr.cli import float_in, int_in, refuse_overwriting_inputs, refuse_unwritable_outputs
from limr.jsonio import DataError


@pytest.mark.parametrize(
    "parse, text, ok",
    [
        (int_in(1), "1", True),  # the bound itself
        (int_in(1), "0", False),  # below
        (int_in(1), "-1", False),  # `--workers -1` used to hang grade.py
        (int_in(1), "2.5", False),  # not an integer
        (int_in(0, 3), "4", False),  # above
        (float_in(0, low_open=True), "0", False),  # `--hard_limit 0` marked every answer wrong
        (float_in(0, low_open=True), "0.5", True),
        (float_in(0, low_open=True), "nan", False),  # `--hard_limit nan` hung every request
        (float_in(0, low_open=True), "inf", False),
        (float_in(0, 1), "1", True),
        (float_in(0, 1), "1.01", False),
        (float_in(0, 1), "abc", False),
    ],
)
def test_numeric_flags(parse, text, ok):
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_argparse_reports_the_flag():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int_in(1))
    with pytest.raises(SystemExit):
        p.parse_args(["--workers", "-1"])


def test_outputs_that_are_inputs_are_refused(tmp_path):
    log = tmp_path / "rollouts.jsonl"
    log.write_text("x\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(log)
    hard = tmp_path / "hard.jsonl"
    os.link(log, hard)
    steps = tmp_path / "steps"
    steps.mkdir()
    for out in (log, tmp_path / "." / "rollouts.jsonl", link, hard, steps / "step_1.json"):
        with pytest.raises(DataError, match="would overwrite the input"):
            refuse_overwriting_inputs([None, log, steps], [out])
    refuse_overwriting_inputs([log, steps], [tmp_path / "limr.json", None])  # a new file is fine
    assert log.read_text() == "x\n"


def test_a_threshold_may_be_any_finite_number():
    parse = float_in(None)
    assert parse("-3.5") == -3.5 and parse("1e300") == 1e300
    for text in ("nan", "-inf", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be finite"):
            parse(text)


def test_unwritable_outputs_are_refused_without_creating_anything(tmp_path):
    (tmp_path / "file").write_text("")
    refuse_unwritable_outputs([tmp_path / "new" / "deeper" / "x.json", None])  # folders are made on writing
    assert not (tmp_path / "new").exists()
    with pytest.raises(DataError, match="is not a folder"):
        refuse_unwritable_outputs([tmp_path / "file" / "x.json"])
    with pytest.raises(DataError, match="is a folder"):
        refuse_unwritable_outputs([tmp_path])
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(DataError, match="no permission"):
            refuse_unwritable_outputs([ro / "x.json"])
