"""`mini/run.py --overwrite` deletes what an earlier run wrote and nothing else (issue 22 item 8): it deleted the
whole --out folder when that merely held data/pool.json, and an --out that is a file, or a symlink with --overwrite,
was a traceback. A run lists what it writes in --out/.mini-run.json before writing; --overwrite deletes exactly
those entries. main() runs for real up to the first stage, which is replaced by a stop: the tests need no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

import mini.run  # noqa: E402
from mini.run import MANIFEST, planned_entries  # noqa: E402


class Started(Exception):
    """Raised where the first stage would start: --out was accepted."""


@pytest.fixture
def stop_at_first_stage(monkeypatch):
    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr(mini.run, "run_seed", started)


def files(folder: Path) -> dict[str, str | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_text() for p in sorted(folder.rglob("*"))}


def earlier_run(out: Path, seeds=(0,)) -> None:
    """What an earlier run left: its manifest and some of its entries."""
    seed_dir = out if len(seeds) == 1 else out / f"seed{seeds[0]}"
    (seed_dir / "data").mkdir(parents=True)
    (seed_dir / "data" / "pool.json").write_text("[]")
    (seed_dir / "eval" / "warmup").mkdir(parents=True)
    (out / "report.md").write_text("old report")
    (out / MANIFEST).write_text(json.dumps({"written_by": "mini/run.py", "entries": planned_entries(list(seeds))}))


def run(out: Path, *flags: str) -> int:
    return mini.run.main(["--size", "tiny", "--out", str(out), *flags])


def test_a_folder_without_a_manifest_is_never_deleted(tmp_path, capsys, stop_at_first_stage):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "pool.json").write_text("[]")  # looked like a run folder: the user's thesis went with it
    (out / "thesis.tex").write_text("years of work")
    before = files(out)
    assert run(out, "--overwrite") == 2
    assert capsys.readouterr().err == f"error: {out} is not a mini/run.py output folder: not deleting it\n"
    assert files(out) == before


def test_overwrite_deletes_only_what_the_manifest_lists(tmp_path, capsys, stop_at_first_stage):
    out = tmp_path / "out"
    earlier_run(out)
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    assert run(out) == 2  # without --overwrite: refused
    assert capsys.readouterr().err.startswith(f"error: {out} is not empty: pass --overwrite")
    with pytest.raises(Started):
        run(out, "--overwrite")
    assert files(out) == {MANIFEST: files(out)[MANIFEST], "mine": None, "notes.txt": "mine"}
    assert json.loads((out / MANIFEST).read_text())["entries"] == planned_entries([0])


def test_an_entry_this_run_would_write_that_no_run_wrote_is_refused(tmp_path, capsys, stop_at_first_stage):
    out = tmp_path / "out"
    earlier_run(out, seeds=(0, 1))  # a study: seed0/, seed1/, the reports
    (out / "eval").mkdir()  # not the study's: one seed's run would write eval/ here
    (out / "eval" / "mine.txt").write_text("mine")
    before = files(out)
    assert run(out, "--overwrite") == 2
    assert capsys.readouterr().err == f"error: {out / 'eval'} was not written by mini/run.py: not replacing it " \
                                      "(move it away)\n"  # fmt: skip
    assert files(out) == before


@pytest.mark.parametrize("entries", [["../victim"], ["data/../../victim"], "data", [""], [MANIFEST]])
def test_a_manifest_naming_anything_but_plain_names_deletes_nothing(tmp_path, capsys, stop_at_first_stage, entries):
    out = tmp_path / "out"
    (tmp_path / "victim").mkdir()
    (out / "data").mkdir(parents=True)
    (out / MANIFEST).write_text(json.dumps({"entries": entries}))
    before = files(tmp_path)
    assert run(out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert err == f"error: {out / MANIFEST}: not a mini/run.py manifest (a list of names in 'entries'): not deleting " \
                  "anything\n"  # fmt: skip
    assert files(tmp_path) == before


def test_an_out_that_is_a_file_is_one_error_line(tmp_path, capsys, stop_at_first_stage):
    out = tmp_path / "out.txt"
    out.write_text("mine")
    for flags in ([], ["--overwrite"]):
        assert run(out, *flags) == 2
        assert capsys.readouterr().err == f"error: {out} is not a folder: give another --out\n"
    assert out.read_text() == "mine"


def test_an_out_that_is_a_symlink_keeps_the_link_and_the_users_files(tmp_path, capsys, stop_at_first_stage):
    real = tmp_path / "real"
    earlier_run(real)
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(Started):  # rmtree on the link was an OSError traceback
        run(link, "--overwrite")
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == [MANIFEST, "notes.txt"]


def test_a_fresh_or_empty_out_gets_its_manifest_first(tmp_path, stop_at_first_stage):
    for out in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        with pytest.raises(Started):
            run(out, "--seeds", "0,1")
        assert json.loads((out / MANIFEST).read_text())["entries"] == ["seed0", "seed1", *mini.run.REPORT_ENTRIES]
