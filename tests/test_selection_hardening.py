"""lim_selection.py on inputs from issue 22: a log line whose step overflows int64, a value nested past any parser's
depth or an integer longer than Python reads is one `error:` line naming the file and line (exit 2, nothing
written), in the log and in the fork's step files; and one epoch is enough for every method but LINEAR."""

import json
from pathlib import Path

import pytest
from load_script import load_script

ROOT = Path(__file__).resolve().parents[1]
DEEP = "[" * 100_000 + "]" * 100_000  # past json's and msgspec's depth limits (RecursionError from both)


lim = load_script("lim_selection", ROOT / "lim_selection.py")


def line(step, pid, reward, extra: str = "") -> str:
    return f'{{"step": {step}, "epoch": {(step + 1) // 2 if isinstance(step, int) else 1}, "id": "{pid}", ' \
           f'"reward": {reward}{extra}}}'  # fmt: skip


def prompts(tmp_path: Path, ids="ab") -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"id": i, "prompt": f"What is {i}?", "answer": "1", "source": "t"} for i in ids]))
    return path


def select(capsys, *argv) -> tuple[int, str, str]:
    rc = lim.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


GOOD = [line(s, p, r) for s in range(1, 5) for p in "ab" for r in (1.0, -0.5)]  # 2 epochs of 2 steps


BAD_LINES = [
    (line(10**20, "a", 1.0), "log.jsonl:{n}: 'step' must be a positive integer below 2**63"),  # was OverflowError
    (line(2**63, "a", 1.0), "log.jsonl:{n}: 'step' must be a positive integer below 2**63"),
    (line(1, "a", 1.0, ', "x": ' + DEEP), "log.jsonl:{n}: JSON nested too deeply to read"),  # was RecursionError
]
# the line number, or "last" for a last line without its newline (a whole last line json.loads reads but Python
# refuses, such as a 4,301-digit integer, is an error too: tests/test_reward_server.py)
WHERE = [1, 9, "last"]
CASES = [(bad, message, where) for bad, message in BAD_LINES for where in WHERE] + [
    (line(1, "a", "9" * 4301), "log.jsonl:{n}: not valid JSON (Exceeds the limit (4300 digits)", where)
    for where in WHERE[:2]
]


@pytest.mark.parametrize("bad, message, where", CASES)
def test_a_log_line_past_what_python_reads_is_one_error_line(tmp_path, capsys, bad, message, where):
    rows = list(GOOD)
    n = len(rows) + 1 if where == "last" else where
    rows.insert(n - 1, bad)
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(rows) + ("\n" if where != "last" else ""))  # a last line without its newline too
    out = tmp_path / "out" / "sel.json"
    rc, _, err = select(capsys, "--train_samples_path", log, "--original_prompts_path", prompts(tmp_path),
                        "--output_path", out, "--max_epochs", 2, "--no_plots")  # fmt: skip
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message.format(n=n) in err, err
    assert not out.parent.exists()


def test_a_step_file_nested_past_msgspecs_depth_is_one_error_line(tmp_path, capsys):
    folder = tmp_path / "steps"
    folder.mkdir()
    for step in range(1, 5):
        rows = [{"prompt": "What is a?", "response": "x", "reward": 1.0, "response_length": 1}]
        (folder / f"step_{step}.json").write_text(json.dumps(rows))
    (folder / "step_3.json").write_text('[{"prompt": "What is a?", "reward": 1.0, "response": ' + DEEP + "}]")
    out = tmp_path / "out" / "sel.json"
    rc, _, err = select(capsys, "--train_samples_path", folder, "--original_prompts_path", prompts(tmp_path),
                        "--output_path", out, "--max_epochs", 2, "--steps_per_epoch", 2, "--no_plots")  # fmt: skip
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "step_3.json: JSON nested too deeply to read" in err
    assert not out.parent.exists()


@pytest.mark.parametrize("deep_in", ["a field", "the ground truth"])
def test_a_verl_dump_nested_past_msgspecs_depth_is_one_error_line(tmp_path, capsys, deep_in):
    """verl's dumps, like step files, are read by msgspec first: its depth limit raises RecursionError, not a
    DecodeError, and that was a traceback."""
    folder = tmp_path / "dumps"
    folder.mkdir()
    for step in range(1, 5):
        rows = [{"input": f"user What is {p}? assistant", "output": "x", "gts": "1", "score": 1.0, "step": step}
                for p in "ab"]  # fmt: skip
        (folder / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = '"extra": ' + DEEP + ', "gts": "1"' if deep_in == "a field" else '"gts": ' + DEEP
    (folder / "3.jsonl").write_text(
        '{"input": "user What is a? assistant", "output": "x", "score": 1.0, "step": 3, ' + bad + "}\n"
    )
    out = tmp_path / "out" / "sel.json"
    rc, _, err = select(capsys, "--train_samples_path", folder, "--original_prompts_path", prompts(tmp_path),
                        "--output_path", out, "--max_epochs", 2, "--steps_per_epoch", 2, "--no_plots")  # fmt: skip
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "3.jsonl, line 1: JSON nested too deeply to read" in err
    assert not out.parent.exists()


@pytest.mark.parametrize("method", ["lim", "rand", "variance", "learnability", "dapo"])
def test_one_epoch_is_enough_for_every_method_but_linear(tmp_path, capsys, method):
    """Issue 22 item 12: `--max_epochs 1 --method lim` was refused with "LINEAR needs at least 2 epochs"."""
    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(line(s, p, r) + "\n" for s in (1, 2) for p in "ab" for r in ((1.0, -0.5) if p == "a" else (1.0, 1.0)))
    )
    out = tmp_path / "sel.json"
    argv = ["--train_samples_path", log, "--original_prompts_path", prompts(tmp_path), "--output_path", out,
            "--max_epochs", 1, "--no_plots"]  # fmt: skip
    rc, stdout, err = select(capsys, *argv, "--method", method, "--num_samples", 1)
    assert rc == 0, err
    assert len(json.loads(out.read_text())) == 1
    report = json.loads((tmp_path / "sel.report.json").read_text())
    assert report["scored"] == 2 and list(report["at_default_thresholds"]) == ["lim >= 0.6"]
    rc, _, err = select(capsys, *argv, "--method", "linear")
    assert rc == 2 and err == "error: LINEAR needs at least 2 epochs\n"
