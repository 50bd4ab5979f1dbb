"""Tests of eval/grade.py: the graded JSONL keeps every line, field and order and adds typed results; `correct`
judges the answer alone while `reward` keeps the format rules; plain-text generations are graded right and
warned about; the `--grader`, `--eos_markers` and `--hard_limit` flags; bad input fails with one `error:` line,
exit 2, and no output file."""

import importlib.util
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from limr.paper import BAD_FORMAT, CORRECT, WRONG

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "grade.py"
END = "<|im_end|>"

# (row, {grader: (reward, correct)}): the rows of one input file, with fields the grader must keep. `correct` is
# about the answer alone, so a right answer cut off (c) is correct with the format error's reward
ROWS = [
    ({"id": "a", "response": "So $\\boxed{5}$." + END, "answer": "5"},
     {"default": (CORRECT, True), "limr": (CORRECT, True)}),  # right
    ({"id": "b", "response": "So $\\boxed{6}$." + END, "answer": "5", "meta": {"n": [1, 2]}},
     {"default": (WRONG, False), "limr": (WRONG, False)}),  # wrong
    ({"id": "c", "response": "So $\\boxed{5}$.", "answer": "5"},
     {"default": (BAD_FORMAT, True), "limr": (BAD_FORMAT, True)}),  # cut off, the answer right
    ({"id": "d", "response": "No box." + END, "answer": "5", "note": "π ≠ 3"},
     {"default": (BAD_FORMAT, False), "limr": (BAD_FORMAT, False)}),  # no box
    ({"id": "e", "response": "\\boxed{3}" + END, "answer": "3\\sqrt{13}"},
     {"default": (WRONG, False), "limr": (CORRECT, True)}),  # limr: bare parse is 3
    ({"id": "f", "response": "\\boxed{\\pi}" + END, "answer": "\\pi"},
     {"default": (CORRECT, True), "limr": (WRONG, False)}),  # limr: bare \pi is nothing
    ({"response": "\\fbox{7}" + END, "answer": "7", "id": 7},
     {"default": (CORRECT, True), "limr": (BAD_FORMAT, False)}),  # field order kept; limr reads no \fbox
    ({"id": "h", "response": "\\boxed{5}" + END + "\nuser: and 6? assistant: \\boxed{6}", "answer": "5"},
     {"default": (CORRECT, True), "limr": (CORRECT, True)}),  # a made-up next turn: both grade up to the marker
]  # fmt: skip


def load_main():
    """eval/grade.py's `main`, imported from its path (eval/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("eval_grade", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The ROWS file graded with each grader: {grader: (process, output rows)}."""
    tmp = tmp_path_factory.mktemp("grade")
    src = write_jsonl(tmp / "in.jsonl", [row for row, _ in ROWS])
    out = {}
    for grader in ("default", "limr"):
        dst = tmp / grader / "out.jsonl"  # a folder that does not exist yet
        proc = run("--input", str(src), "--output", str(dst), "--grader", grader, "--workers", "2")
        out[grader] = (proc, read_jsonl(dst) if dst.exists() else None)
    return out


@pytest.mark.parametrize("grader", ["default", "limr"])
def test_graded_rows(graded, grader):
    proc, rows = graded[grader]
    assert proc.returncode == 0, proc.stderr
    assert len(rows) == len(ROWS)
    for got, (source, expected) in zip(rows, ROWS, strict=True):
        assert list(got)[: len(source)] == list(source)  # same fields, same order, results after them
        assert {k: got[k] for k in source} == source  # unchanged values
        assert set(got) - set(source) == {"correct", "reward", "extracted", "seconds"}
        assert (got["reward"], got["correct"]) == expected[grader], source
        assert type(got["reward"]) is float and type(got["seconds"]) is float and got["seconds"] >= 0
        assert got["extracted"] is None or type(got["extracted"]) is str
    n_correct = sum(e[grader][1] for _, e in ROWS)
    assert f"graded {len(ROWS)} responses ({grader} grader): {n_correct} correct" in proc.stdout
    assert "warning" not in proc.stderr  # one response in eight lacks a marker: no warning


@pytest.mark.parametrize(
    "grader, extracted",
    [
        ("default", ["5", "6", "5", None, "3", "\\pi", "7", "5"]),  # the last box before the marker, or None
        ("limr", ["5", "6", "5", None, "3", "\\pi", None, "5"]),  # the release's regex does not read \fbox
    ],
)
def test_graded_extracted(graded, grader, extracted):
    assert [r["extracted"] for r in graded[grader][1]] == extracted


@pytest.mark.parametrize(
    "eos_flag, expected",
    [
        ([], [BAD_FORMAT, CORRECT]),  # default markers: the first row is cut off
        (["--eos_markers", ""], [CORRECT, CORRECT]),  # no markers: every response is complete
        (["--eos_markers", "</s>"], [CORRECT, BAD_FORMAT]),  # a custom marker: only it counts
        (["--eos_markers", "</s>,<|im_end|>"], [CORRECT, CORRECT]),  # a comma-separated list
    ],
)
def test_eos_markers(tmp_path, eos_flag, expected):
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"response": "\\boxed{5}</s>", "answer": "5"}, {"response": "\\boxed{5}" + END, "answer": "5"}],
    )
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--workers", "1", *eos_flag)
    assert proc.returncode == 0, proc.stderr
    assert [r["reward"] for r in read_jsonl(tmp_path / "out.jsonl")] == expected


# plain-text generations, as vLLM and most tools save them: no end-of-turn marker
PLAIN = [
    {"response": "2 + 3 = 5, so the answer is $\\boxed{5}$.", "answer": "5"},
    {"response": "It is $\\boxed{\\frac{1}{2}}$.", "answer": "0.5"},
    {"response": "Hence $\\boxed{7}$.", "answer": "8"},
]


@pytest.mark.parametrize(
    "eos_flag, rewards",
    [
        ([], [BAD_FORMAT, BAD_FORMAT, BAD_FORMAT]),  # default markers: every reward is the cut-off one
        (["--eos_markers", ""], [CORRECT, CORRECT, WRONG]),  # taken as complete: the reward judges the answer
    ],
)
def test_plain_text_generations(tmp_path, eos_flag, rewards):
    src = write_jsonl(tmp_path / "in.jsonl", PLAIN)
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--workers", "1", *eos_flag)
    assert proc.returncode == 0, proc.stderr
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["correct"] for r in out] == [True, True, False]  # by answer, with or without the flag
    assert [r["extracted"] for r in out] == ["5", "\\frac{1}{2}", "7"]
    assert [r["reward"] for r in out] == rewards
    assert "2 correct (66.7%)" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    if eos_flag:
        assert warnings == []
    else:  # one line: how many, and what the flag does
        assert len(warnings) == 1 and warnings[0].startswith("warning: 3 of 3 responses have no end-of-turn marker")
        assert '--eos_markers ""' in warnings[0]


def test_hard_limit(tmp_path):
    rows = [
        {"response": "\\boxed{(x+1)^{400}}" + END, "answer": "x^2+1"},  # ~4 s of sympy
        {"response": "\\boxed{5}" + END, "answer": "5"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--workers", "1", "--hard_limit", "0.5")
    assert proc.returncode == 0, proc.stderr
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [(r["reward"], r["extracted"], r["seconds"]) for r in out[:1]] == [(WRONG, None, 0.5)]  # stopped
    assert out[1]["reward"] == CORRECT  # and the next one graded by a fresh worker
    assert "1 over the 0.5 s limit" in proc.stdout


# (file content, part of the message): inputs that must stop the run before any grading
BAD_INPUTS = [
    ("not json\n", "not valid JSON"),  # not JSON
    ('{"response": "\\\\boxed{5}", "answer": "5"}\n{"response": "x"\n', ":2: not valid JSON"),  # line 2 torn
    ('{"answer": "5"}\n', "`response` must be a string"),  # no response
    ('{"response": "\\\\boxed{5}"}\n', "`answer` must be a string"),  # no answer
    ('{"response": "\\\\boxed{5}", "answer": 5}\n', "`answer` must be a string, got int"),  # answer not a string
    ('{"response": null, "answer": "5"}\n', "`response` must be a string, got NoneType"),  # null response
    ("[1, 2]\n", "expected a JSON object, got list"),  # not an object
    ("", "no lines to grade"),  # empty file
    ("\n  \n", "no lines to grade"),  # blank lines only
]


@pytest.mark.parametrize("content, message", BAD_INPUTS)
def test_bad_input_in_process(tmp_path, capsys, content, message):
    main = load_main()
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    assert main(["--input", str(src), "--output", str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not dst.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (BAD_INPUTS[0][0], BAD_INPUTS[0][1]),  # not JSON
        (BAD_INPUTS[4][0], BAD_INPUTS[4][1]),  # answer not a string
        (None, "no such file"),  # a missing file
        (b"\xff\xfe{}\n", "UTF-8"),  # bytes that are not UTF-8
    ],
)
def test_bad_input(tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content, encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    proc = run("--input", str(src), "--output", str(dst))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not dst.exists()


def test_lone_surrogate_in_input(tmp_path):
    # valid JSON ("\ud800" escape) whose string is no valid UTF-8: the output must be written (escaped) or
    # the run must stop with an `error:` line; it must not end in a traceback
    src = tmp_path / "in.jsonl"
    src.write_text('{"response": "\\ud800 \\\\boxed{5}<|im_end|>", "answer": "5"}\n', encoding="utf-8")
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--workers", "1")
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 2)


def test_bad_grader_flag(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"response": "\\boxed{5}", "answer": "5"}])
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--grader", "qwen")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_help():
    proc = run("--help")
    assert proc.returncode == 0
    assert "--input" in proc.stdout and "--grader" in proc.stdout and "--eos_markers" in proc.stdout


# --- flags, outputs and inputs that used to hang, lie or end in a traceback ----------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--workers", "-1"),  # hung forever
        ("--workers", "0"),
        ("--workers", "100000"),
        ("--hard_limit", "nan"),  # hung forever
        ("--hard_limit", "0"),  # marked every answer wrong, exit 0
        ("--hard_limit", "-1"),
        ("--hard_limit", "inf"),
    ],
)
def test_numeric_flags_out_of_range(tmp_path, flag, value):
    src = write_jsonl(tmp_path / "in.jsonl", [{"response": "\\boxed{5}" + END, "answer": "5"}])
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"), flag, value)
    assert proc.returncode == 2 and f"error: argument {flag}: " in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_deeply_nested_input_is_one_error_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"response": "x", "answer": "1"}\n{"response": "x", "answer": "1", "m": ' + "[" * 100_000
                   + "]" * 100_000 + "}\n")  # fmt: skip
    proc = run("--input", str(src), "--output", str(tmp_path / "out.jsonl"))
    assert (proc.returncode, proc.stdout) == (2, "") and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {src}:2: JSON nested too deeply")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("bad_line", [1, 2, 100, 3001])
def test_a_bad_byte_is_reported_on_its_own_line(tmp_path, capsys, bad_line):
    """The decoder reads ahead in blocks: the line number must be the byte's, not where the block began."""
    lines = [json.dumps({"response": f"π {n} " + "x" * (n % 97), "answer": "5"}, ensure_ascii=False).encode()
             for n in range(1, 3100)]  # fmt: skip
    lines[bad_line - 1] = lines[bad_line - 1].replace("π".encode(), b"\xff")
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert load_main()(["--input", str(src), "--output", str(tmp_path / "out.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {src}:{bad_line}: not UTF-8 text\n"


def test_an_output_that_is_the_input_is_refused(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"response": "\\boxed{5}" + END, "answer": "5"}])
    (tmp_path / "link.jsonl").symlink_to(src)
    (tmp_path / "hard.jsonl").hardlink_to(src)
    before = src.read_bytes()
    for out in (src, tmp_path / "link.jsonl", tmp_path / "hard.jsonl"):
        assert load_main()(["--input", str(src), "--output", str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: output {out} would overwrite the input {src}: choose another output path\n"
    assert src.read_bytes() == before


def test_an_unwritable_output_is_found_before_grading(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("eval_grade", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "GradingPool", lambda *a, **k: pytest.fail("graded before checking the output"))
    src = write_jsonl(tmp_path / "in.jsonl", [{"response": "\\boxed{5}" + END, "answer": "5"}])
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file" / "out.jsonl", tmp_path):
        assert module.main(["--input", str(src), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_a_full_disk_leaves_no_output(tmp_path):
    """Writes past a file-size limit fail with EFBIG, as on a full disk: one error line, no output, no temp file."""
    rows = [{"response": "\\boxed{5}" + END, "answer": "5", "pad": "x" * 500}] * 4
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out" / "graded.jsonl"

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    proc = subprocess.run([sys.executable, str(SCRIPT), "--input", str(src), "--output", str(out), "--workers", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=cap)  # fmt: skip
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]  # after the progress bar
    assert proc.returncode == 2 and last.startswith(f"error: cannot write {out}, nothing written"), proc.stderr
    assert "Traceback" not in proc.stderr and not any(out.parent.iterdir())
