"""limr/full_batches.py: whole rollout batches from successive seeded shuffles; its CLI's refusals."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from limr.dataset import write_prompt_files
from limr.full_batches import full_batch_rows

ROOT = Path(__file__).resolve().parents[1]


def test_successive_shuffles_cut_to_whole_batches():
    rows = list(range(1389))
    out = full_batch_rows(rows, 1024, 189, seed=42)
    assert len(out) == 189 * 1024
    assert sorted(out[:1389]) == rows and sorted(out[1389:2778]) == rows  # each block is one permutation
    counts = Counter(out)
    assert set(counts) == set(rows) and set(counts.values()) == {139, 140}  # equal, within one
    assert out == full_batch_rows(rows, 1024, 189, seed=42) != full_batch_rows(rows, 1024, 189, seed=43)


@pytest.mark.parametrize("rows, batch, steps", [([], 4, 1), ([1], 0, 1), ([1], 4, 0)])
def test_nothing_to_draw_is_refused(rows, batch, steps):
    with pytest.raises(ValueError):
        full_batch_rows(rows, batch, steps, seed=0)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "limr.full_batches", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_cli_writes_the_file_and_refuses_to_overwrite_its_input(tmp_path):
    src = write_prompt_files(
        tmp_path / "p.json", [{"id": f"q{i}", "prompt": f"{i}?", "answer": str(i)} for i in range(5)]
    )
    before = src.read_bytes()
    r = cli("--prompts", src, "--output", tmp_path / "out" / "fb.jsonl", "--batch", 4, "--steps", 3)
    assert r.returncode == 0 and "12 rows = 3 steps of 4 prompts" in r.stdout
    lines = (tmp_path / "out" / "fb.jsonl").read_text().splitlines()
    assert len(lines) == 12 and set(lines) == set(src.read_text().splitlines())  # rows copied byte for byte
    r = cli("--prompts", src, "--output", src, "--batch", 4, "--steps", 3)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "overwrite its input" in r.stderr
    assert src.read_bytes() == before
    r = cli("--prompts", tmp_path / "missing.jsonl", "--output", tmp_path / "x.jsonl", "--batch", 4, "--steps", 3)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and not (tmp_path / "x.jsonl").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fb.jsonl"]  # no temporary file left behind
