"""Tests of data/prepare.py: the real release end to end, every validation error, and the download route offline."""

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from limr.dataset import decode_label
from limr.jsonio import iter_jsonl, read_json
from limr.paper import SYSTEM_PROMPT

PREPARE = Path(__file__).resolve().parents[1] / "data" / "prepare.py"
_spec = importlib.util.spec_from_file_location("prepare", PREPARE)  # a script in data/, not a package
prepare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare)

# ---- the real release ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(shared_data) -> Path:
    return shared_data / "limr-release"


@pytest.fixture(scope="module")
def real_run(release, tmp_path_factory):
    """The command as a user runs it, once for the module: (output folder, completed process)."""
    out = tmp_path_factory.mktemp("data")
    cmd = [sys.executable, str(PREPARE), "--from", str(release), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.parametrize(
    "name, rows",
    [
        ("math8k.json", 8523),  # MATH levels 3-5, all of it (the paper's FULL run)
        ("math8k.jsonl", 8523),  # its OpenRLHF twin, one row per prompt
        ("limr.json", 1389),  # the LIMR subset
        ("limr.jsonl", 1389),
        ("validation.json", 256),  # in-training evaluation: AIME24 x4, 134 MATH500, 2 pads
        ("validation.jsonl", 256),
        ("scores.json", 7935),  # released LIM scores
        ("aime24.jsonl", 30),
        ("amc23.jsonl", 40),
        ("math500.jsonl", 500),
    ],
)
def test_real_counts(real_run, name, rows):
    out, _ = real_run
    got = read_json(out / name) if name.endswith(".json") else list(iter_jsonl(out / name))
    assert len(got) == rows


def test_real_writes_exactly_the_listed_files(real_run):
    out, proc = real_run
    names = {"math8k", "limr", "validation"}
    expected = {f"{n}.{ext}" for n in names for ext in ("json", "jsonl", "parquet")}
    expected |= {"scores.json", "aime24.jsonl", "amc23.jsonl", "math500.jsonl", "eval_config.json", "SHA256SUMS"}
    assert {p.name for p in out.iterdir()} == expected  # nothing else, no temp files
    assert "limr.json           1389      1389  + limr.jsonl; = scores.json >= 0.6" in proc.stdout


def test_real_records_the_hash_of_every_file_it_wrote(real_run):
    """SHA256SUMS in sha256sum's own format, for every other output, matching the bytes that landed (the preflight
    checks the run's prompt files against it)."""
    out, _ = real_run
    listed = dict(reversed(row.split("  ")) for row in (out / "SHA256SUMS").read_text().splitlines())
    assert set(listed) == {p.name for p in out.iterdir()} - {"SHA256SUMS"}
    assert all(hashlib.sha256((out / name).read_bytes()).hexdigest() == h for name, h in listed.items())
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "name, split",
    [("math8k", "train"), ("limr", "train"), ("validation", "eval")],  # eval rows are marked for the reward log
)
def test_real_openrlhf_rows_match_their_prompt_file(real_run, name, split):
    out, _ = real_run
    items = read_json(out / f"{name}.json")
    assert all(list(it) == ["id", "prompt", "answer", "source"] for it in items)
    for it, (_, row) in zip(items, iter_jsonl(out / f"{name}.jsonl"), strict=True):
        assert row["context_messages"] == [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": it["prompt"]},
        ]
        assert decode_label(row["label"]) == {"id": it["id"], "answer": it["answer"], "split": split}


@pytest.mark.parametrize("name, split", [("math8k", "train"), ("limr", "train"), ("validation", "eval")])
def test_real_verl_rows_match_their_prompt_file(real_run, name, split):
    """The verl twin (limr/verl_data.py): the same prompts in the same order, our id in extra_info."""
    pq = pytest.importorskip("pyarrow.parquet")
    out, _ = real_run
    items = read_json(out / f"{name}.json")
    rows = pq.read_table(out / f"{name}.parquet").to_pylist()
    assert [(r["prompt"][1]["content"], r["reward_model"]["ground_truth"]) for r in rows] == [
        (it["prompt"], it["answer"]) for it in items
    ]
    assert [r["extra_info"] for r in rows] == [
        {"split": split, "index": i, "prompt_id": it["id"]} for i, it in enumerate(items)
    ]
    assert {r["prompt"][0]["content"] for r in rows} == {SYSTEM_PROMPT}


def test_real_outputs_keep_the_release(real_run, release):
    out, _ = real_run
    assert read_json(out / "math8k.json") == read_json(release / "math8k.json")
    assert read_json(out / "validation.json") == read_json(release / "validation.json")
    assert (out / "scores.json").read_bytes() == (release / "scores.json").read_bytes()
    assert read_json(out / "eval_config.json") == read_json(release / "eval_config.json")
    math8k = {it["id"]: it for it in read_json(out / "math8k.json")}
    limr = read_json(out / "limr.json")
    assert [it["id"] for it in limr] == [it["id"] for it in read_json(release / "limr.json")]
    assert all(math8k[it["id"]] == it for it in limr)  # verbatim MATH-8k rows (source "math")


@pytest.mark.parametrize("bench", ["aime24", "amc23", "math500"])
def test_real_benchmarks(real_run, release, bench):
    out, _ = real_run
    rows = [obj for _, obj in iter_jsonl(out / f"{bench}.jsonl")]
    src = [obj for _, obj in iter_jsonl(release / f"{bench}.jsonl")]
    assert [r["id"] for r in rows] == [f"{bench}-{i}" for i in range(len(src))]  # ids made from the position
    assert [(r["question"], r["answer"]) for r in rows] == [(s["question"], s["answer"]) for s in src]


@pytest.mark.parametrize(
    "warning",
    [
        # the one MATH-8k question listed twice: both ids named, nothing merged
        "math8k.json: the same prompt appears under 2 ids "
        "(79d59aed-2c45-4495-b106-ff140575c33f, cc8cb950-42aa-4be0-ae14-ee61682398fd): kept, not merged",
        # the two MATH-8k rows with no gold answer, kept as the paper trained on them
        "math8k.json: 2 rows have an empty answer "
        "(ids 73da0863-47b8-45fc-bd89-d190cf570aa9, 2705e82d-a4ad-4349-a256-657ad33899f9): kept",
        # the Arrow subset's source label differs from MATH-8k's for the same rows
        "limr.json: 1389 rows say source 'olympiads.23k' where math8k.json says 'math'",
        # AIME24 listed 4 times so the in-training evaluation samples it 4 times
        "validation.json: 30 ids appear 4 times as identical rows: kept",
        # the two "1+1" padding rows
        "validation.json: the same prompt appears under 2 ids "
        "(34f61301-d26b-4f4b-9ea2-7855fb1f8786, af31f3da-e7b6-45f6-abad-12ca90a8d986): kept, not merged '1+1'",
    ],
)
def test_real_warnings(real_run, warning):
    _, proc = real_run
    assert f"warning: {warning}" in proc.stderr
    assert proc.stderr.count("warning: ") == 5  # a new warning on the real data must be looked at


def test_strict_accepts_the_real_release(release, tmp_path, capsys):
    assert prepare.main(["--from", str(release), "--out", str(tmp_path / "out"), "--strict"]) == 0


# ---- hand-made folders -----------------------------------------------------------------------------------------


def row(id_, prompt, answer, source="math"):
    return {"id": id_, "prompt": prompt, "answer": answer, "source": source}


def tiny_files():
    """A valid 3-prompt release; tests replace one file each."""
    math8k = [row("a", "1+1", "2"), row("b", "2+2", "4"), row("c", "3+3", "6")]
    return {
        "math8k.json": math8k,
        "limr.json": [row("b", "2+2", "4")],
        "scores.json": [{"prompt": "1+1", "score": 0.2}, {"prompt": "2+2", "score": 0.6}],
        "validation.json": [row("v", "5+5", "10", "aime"), row("v", "5+5", "10", "aime"), row("w", "6+6", "12")],
        "aime24.jsonl": [{"question": "q1", "answer": "1"}],
        "amc23.jsonl": [{"question": "q2", "answer": "2"}],
        "math500.jsonl": [{"question": "q3", "answer": "3"}],
        "eval_config.json": {b: {"n": 1, "temperature": 0.0} for b in ("aime24", "amc23", "math500")},
    }


def make_release(root: Path, **changes) -> Path:
    """Write tiny_files() with `changes` (file name with "_" for "."): a str is written raw, None deletes."""
    files = tiny_files()
    files.update({k.replace("_json", ".json"): v for k, v in changes.items()})
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if content is None:
            continue
        if not isinstance(content, str):
            lines = [json.dumps(r) for r in content] if name.endswith(".jsonl") else [json.dumps(content)]
            content = "\n".join(lines) + "\n"
        (root / name).write_text(content)
    return root


def run(capsys, src, out, *flags):
    """prepare.py on a hand-made folder: --no_verify, as its files are not the release's."""
    rc = prepare.main(["--from", str(src), "--out", str(out), "--no_verify", *flags])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


ERRORS = [
    ("math8k_json", "[{", "math8k.json: not valid JSON"),  # truncated file
    ("math8k_json", {"a": 1}, "math8k.json: expected a JSON list of objects, got dict"),  # not a list
    ("math8k_json", [row("a", "1+1", "2"), "b"], "math8k.json: row 1 is a JSON str"),  # a row that is no object
    ("math8k_json", [{"id": "a", "prompt": "1+1"}], "math8k.json: row 0 has no field 'answer'"),  # missing field
    ("math8k_json", [row(7, "1+1", "2")], "math8k.json: row 0: 'id' must be a string"),  # numeric id
    ("math8k_json", [row("a", ["1+1"], "2")], "math8k.json: row 0: 'prompt' must be a string"),  # list prompt
    ("math8k_json", [row("a", "1+1", 2)], "math8k.json: row 0: 'answer' must be a string"),  # numeric answer
    ("math8k_json", [row("", "1+1", "2")], "math8k.json: row 0: 'id' is empty"),  # blank id
    ("math8k_json", [row("a", "1+1", "2"), row("a", "2+2", "4")], "math8k.json: duplicate id 'a'"),  # id reused
    ("math8k_json", None, "math8k.json: no such file"),  # the folder lacks a file
    ("limr_json", [row("z", "2+2", "4")], "limr.json: 1 ids are not in math8k.json (z)"),  # LIMR id unknown
    ("limr_json", [row("b", "2+2", "5")], "limr.json: id b: answer differs from math8k.json's"),  # other release
    ("scores_json", [{"prompt": "1+1", "score": "high"}], "scores.json: row 0: 'score' must be a finite number"),
    ("scores_json", '[{"prompt": "1+1", "score": NaN}]', "scores.json: row 0: 'score' must be a finite"),  # NaN
    ("scores_json", [{"prompt": "9+9", "score": 1.0}], "scores.json: 1 prompts are not in math8k.json"),  # no match
    ("scores_json", [{"score": 1.0}], "scores.json: row 0 has no field 'prompt'"),  # score without its prompt
    ("validation_json", [row("v", "5+5", "10"), row("v", "5+5", "11")], "validation.json: id repeated with diff"),
    ("aime24_jsonl", "not json\n", "aime24.jsonl:1: not valid JSON"),  # a broken line
    ("amc23_jsonl", "[1, 2]\n", "amc23.jsonl:1: expected a JSON object, got list"),  # a line that is no object
    ("math500_jsonl", [{"answer": "3"}], "math500.jsonl: line 1 has no field 'question'"),  # missing question
    ("math500_jsonl", [{"question": "q", "answer": 3}], "math500.jsonl: line 1: 'answer' must be a string"),
    ("math500_jsonl", [{"id": "x", "question": "q", "answer": "1"}] * 2, "math500.jsonl: duplicate id 'x'"),
    ("amc23_jsonl", None, "amc23.jsonl: no such file"),  # a benchmark missing
    ("eval_config_json", {"aime24": {"n": 4, "temperature": 0.4}}, "eval_config.json: no settings object for"),
    ("eval_config_json", {b: {"n": "4", "temperature": 0} for b in ("aime24", "amc23", "math500")}, "'n' must be"),
]


@pytest.mark.parametrize("file, content, message", ERRORS)
def test_errors_exit_2_with_one_line_and_no_output(tmp_path, capsys, file, content, message):
    src = make_release(tmp_path / "src", **{file: content})
    rc, out, err = run(capsys, src, tmp_path / "out")
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no warnings before it
    assert message in err
    assert not (tmp_path / "out").exists() and out == ""  # nothing written, not even the folder


@pytest.mark.parametrize(
    "changes, flags, message",
    [
        ({}, ["--strict"], "math8k.json: 3 rows, expected 8523 (--strict)"),  # counts must be the paper's
        ({"math8k_json": [{**row("a", "1+1", "2"), "level": 3}]}, ["--strict"], "unknown field(s) 'level' (1 rows)"),
    ],
)
def test_strict_errors(tmp_path, capsys, changes, flags, message):
    rc, _, err = run(capsys, make_release(tmp_path / "src", **changes), tmp_path / "out", *flags)
    assert rc == 2 and message in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, warning",
    [
        ({}, "math8k.json: 3 rows, expected 8523"),  # counts differ: a warning without --strict
        ({"math8k_json": [{**row("a", "1+1", "2"), "level": 3}, row("b", "2+2", "4")]}, "'level' (1 rows): dropped"),
        ({"math8k_json": [row("a", "1+1", ""), row("b", "2+2", "4")]}, "1 rows have an empty answer (ids a)"),
        ({"math8k_json": tiny_files()["math8k.json"] + [row("d", "1+1", "2")]}, "appears under 2 ids (a, d)"),
        ({"limr_json": [row("b", "2+2", "4", "x")]}, "limr.json: 1 rows say source 'x' where math8k.json says 'math'"),
        ({"limr_json": [row("a", "1+1", "2")]}, "limr.json: not the scores.json >= 0.6 selection (1 ids extra, 1"),
    ],
)
def test_warnings_still_write(tmp_path, capsys, changes, warning):
    rc, out, err = run(capsys, make_release(tmp_path / "src", **changes), tmp_path / "out")
    assert rc == 0 and f"{warning}" in err and "math8k.json" in out
    assert all("level" not in it for it in read_json(tmp_path / "out" / "math8k.json"))


def test_tiny_release_outputs(tmp_path, capsys):
    rc, _, _ = run(capsys, make_release(tmp_path / "src", limr_json=None), tmp_path / "out")
    out = tmp_path / "out"
    assert rc == 0
    assert [it["id"] for it in read_json(out / "limr.json")] == ["b"]  # rebuilt: score 0.6 is kept, 0.2 is not
    labels = [decode_label(obj["label"]) for _, obj in iter_jsonl(out / "validation.jsonl")]
    assert [(lb["id"], lb["split"]) for lb in labels] == [("v", "eval"), ("v", "eval"), ("w", "eval")]
    assert [obj for _, obj in iter_jsonl(out / "amc23.jsonl")] == [{"id": "amc23-0", "question": "q2", "answer": "2"}]


def test_a_failed_run_leaves_earlier_outputs_alone(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, make_release(tmp_path / "good"), out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run(capsys, make_release(tmp_path / "bad", amc23_jsonl="{\n"), out)[0] == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_help_and_a_cli_error():
    help_ = subprocess.run([sys.executable, str(PREPARE), "--help"], capture_output=True, text=True, timeout=30)
    assert help_.returncode == 0 and "python data/prepare.py --from" in help_.stdout and "--strict" in help_.stdout
    bad = subprocess.run([sys.executable, str(PREPARE), "--from", "/nonexistent"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr == "error: /nonexistent: no such folder\n"


# ---- the download route, offline -------------------------------------------------------------------------------


def test_git_blob_sha1_is_gits():
    assert prepare.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


@pytest.mark.parametrize("name", sorted(prepare.RELEASE_FILES))
def test_pinned_blobs_match_the_shared_release(release, name):
    assert prepare.git_blob_sha1((release / name).read_bytes()) == prepare.RELEASE_FILES[name][1]


def mirror(release: Path, root: Path) -> str:
    """Lay the shared files out as GAIR-NLP/LIMR does and return a file:// base URL for them."""
    for name, (path, _) in prepare.RELEASE_FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(release / name, root / path)
    return root.as_uri()


def test_download_route_gives_the_same_outputs(real_run, release, tmp_path, capsys):
    rc = prepare.main(["--base_url", mirror(release, tmp_path / "repo"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 0 and "rebuilt: scores.json >= 0.6" in captured.out
    for p in real_run[0].iterdir():  # byte for byte what --from wrote
        assert (tmp_path / "out" / p.name).read_bytes() == p.read_bytes(), p.name


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda root: shutil.rmtree(root / "data"), "download failed: file://"),  # a missing file names its URL
        (lambda root: (root / "data/scores.json").write_text("[]"), "scores.json does not match the release at"),
    ],
)
def test_download_failures(release, tmp_path, capsys, tamper, message):
    base = mirror(release, tmp_path / "repo")
    tamper(tmp_path / "repo")
    rc = prepare.main(["--base_url", base, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


# ---- local copies are checked like downloads; outputs never replace inputs; all or nothing ----------------------


def edited_copy(release: Path, root: Path, name: str, old: str, new: str) -> Path:
    """A copy of the release with one gold answer changed in `name`."""
    shutil.copytree(release, root)
    text = (root / name).read_text(encoding="utf-8")
    assert text.count(old) >= 1
    (root / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "name, old, new",
    [
        ("aime24.jsonl", '"answer": "204"', '"answer": "904"'),  # AIME24's 204 -> 904
        ("math8k.json", '"answer": "118"', '"answer": "918"'),  # a MATH-8k gold 118 -> 918
    ],
)
def test_a_changed_local_copy_is_refused_unless_no_verify(release, tmp_path, capsys, name, old, new):
    src = edited_copy(release, tmp_path / "src", name, old, new)
    rc = prepare.main(["--from", str(src), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {src / name} is not ") and "--no_verify" in err
    assert not (tmp_path / "out").exists()
    assert prepare.main(["--from", str(src), "--out", str(tmp_path / "out"), "--no_verify"]) == 0
    assert new.split(": ")[1] in (tmp_path / "out" / name).read_text(encoding="utf-8")


def test_a_local_limr_json_must_be_the_verified_selection(release, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(release, src)
    rows = json.loads((src / "limr.json").read_text(encoding="utf-8"))
    (src / "limr.json").write_text(json.dumps(rows[:-1]), encoding="utf-8")  # one prompt dropped
    assert prepare.main(["--from", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "limr.json: not the scores.json >= 0.6 selection" in capsys.readouterr().err


def test_a_hand_made_folder_needs_no_verify(tmp_path, capsys):
    src = make_release(tmp_path / "src")
    assert prepare.main(["--from", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {src / 'math8k.json'} is not data/prompts/math.8k.json of the release at 98ebf1bd54cc " \
        "(changed on purpose? --no_verify)\n"  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_no_verify_without_from_is_an_error():
    proc = subprocess.run([sys.executable, str(PREPARE), "--no_verify"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--no_verify goes with --from" in proc.stderr


@pytest.mark.parametrize("out", ["same", "link"])
def test_outputs_over_the_inputs_are_refused(tmp_path, capsys, out):
    src = make_release(tmp_path / "src")
    (tmp_path / "link").symlink_to(src)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    rc, stdout, err = run(capsys, src, src if out == "same" else tmp_path / "link")
    assert rc == 2 and err.count("\n") == 1 and "would overwrite the input" in err and stdout == "", err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_an_unwritable_out_is_found_before_reading(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    rc, stdout, err = run(capsys, tmp_path / "missing", tmp_path / "file" / "data")
    assert rc == 2 and err.startswith("error: cannot write ") and "is not a folder" in err and stdout == ""


@pytest.fixture(params=["tiny", "release"])
def source(request, tmp_path) -> tuple[Path, list[str]]:
    """A hand-made folder (--no_verify) or the real release (skips without it): (folder, flags)."""
    if request.param == "tiny":
        return make_release(tmp_path / "src"), ["--no_verify"]
    return request.getfixturevalue("release"), []


def test_a_full_disk_writes_nothing(source, tmp_path, capsys, disk_full_past):
    """Past a file-size limit every write fails with EFBIG, as on a full disk: math8k.json (written first) fits,
    its larger twin does not, and nothing may be left behind."""
    src, flags = source
    assert prepare.main(["--from", str(src), "--out", str(tmp_path / "full"), *flags]) == 0
    limit = (tmp_path / "full" / "math8k.json").stat().st_size + 1
    assert (tmp_path / "full" / "math8k.jsonl").stat().st_size > limit
    capsys.readouterr()
    with disk_full_past(limit):
        rc = prepare.main(["--from", str(src), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err[-1].startswith(f"error: cannot write to {tmp_path / 'out'}, nothing written"), err
    assert not any((tmp_path / "out").iterdir())  # no math8k.json, no temporary file
