"""lim_selection.py --method passrate: the base model's pass rates on the training prompts (eval/evaluate.py run on
the prompt file, n samples at a temperature) select the prompts it sometimes solves, ranked by p(1-p).

End to end on a tiny Qwen2 built here whose every answer is `\\boxed{5}` or `\\boxed{7}` with equal odds (the rigged
model of tests/test_evaluate.py, with the output head's rows of 5 and 7 made equal), so prompts answered 5 or 7
are solved about half the time and the others never; then unit tests of the ranking and the CLI's errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_evaluate import answer_chain, build_model, build_tokenizer, evaluate
from test_lim_selection import lim, prompt_file, run_cli, write_jsonl

from limr.dataset import write_prompt_files

ANSWERS = ["5", "7", "3", "5", "9", "7", "5", "7", "5", "7"]  # 5 and 7: solved about half the time; 3 and 9: never
N = 8


def coin_model(tokenizer):
    """After `{` the rigged model says 5 or 7 with equal logits; both go on to `}` and <|im_end|>."""
    import torch

    chain = answer_chain(tokenizer)
    model = build_model(tokenizer, chain)
    five, close = chain[-3], chain[-2]
    (seven,) = tokenizer("7", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        head[seven] = head[five]
        head[close] += 10 * emb[seven] / emb[seven].norm()
    return model


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The base model evaluated on a prompt file written as data/prepare.py writes one (with its OpenRLHF twin)."""
    tmp = tmp_path_factory.mktemp("passrate")
    tokenizer = build_tokenizer()
    model_dir = tmp / "model"
    coin_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp / "data"
    items = [{"id": f"p{i}", "prompt": f"Prompt {i}: what is {a}?", "answer": a} for i, a in enumerate(ANSWERS)]
    write_prompt_files(data / "train.json", items)  # train.jsonl beside it is the twin, not a benchmark
    settings = tmp / "settings.json"
    settings.write_text(json.dumps({"train": {"n": N, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}}))
    out = tmp / "out"
    argv = ["--model", str(model_dir), "--name", "tiny", "--settings", str(settings), "--data_dir", str(data),
            "--out", str(out), "--backend", "transformers", "--device", "cpu", "--workers", "1"]  # fmt: skip
    assert evaluate.main(argv) == 0
    return data / "train.json", out / "tiny" / "base" / "train.jsonl"


def pass_rates(path: Path) -> dict[str, float]:
    """An independent reader of the harness's responses: mean `correct` per id."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_id: dict[str, list[bool]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r["correct"])
    return {pid: sum(c) / len(c) for pid, c in by_id.items()}


def test_end_to_end_selects_by_p_times_one_minus_p(harness, tmp_path, capsys):
    prompts, responses = harness
    rates = pass_rates(responses)
    assert sorted(rates) == [f"p{i}" for i in range(len(ANSWERS))]
    assert all(len([1 for line in responses.read_text().splitlines() if f'"{pid}"' in line]) == N for pid in rates)
    assert all(rates[f"p{i}"] == 0 for i, a in enumerate(ANSWERS) if a not in ("5", "7"))
    assert sum(0 < p < 1 for p in rates.values()) >= 3  # the coin lands both ways on most prompts
    k = 4
    order = [f"p{i}" for i in range(len(ANSWERS))]
    ranked = sorted((pid for pid in order if 0 < rates[pid] < 1), key=lambda pid: -rates[pid] * (1 - rates[pid]))
    want = [pid for pid in order if pid in ranked[:k]]
    by_p = sorted((pid for pid in order if 0 < rates[pid] < 1), key=lambda pid: -rates[pid])
    assert set(want) != set(by_p[:k])  # the rates make p(1-p) and p itself choose differently
    out = tmp_path / "sel.json"
    rc, stdout, err = run_cli(capsys, "--method", "passrate", "--passrate_path", responses, "--original_prompts_path",
                              prompts, "--num_samples", k, "--output_path", out, "--no_plots")  # fmt: skip
    assert rc == 0, err
    assert [it["id"] for it in json.loads(out.read_text())] == want
    assert out.with_suffix(".jsonl").is_file()  # the OpenRLHF twin
    scores = json.loads((tmp_path / "sel.scores.json").read_text())
    assert {r["id"]: r["score"] for r in scores} == pytest.approx(rates)
    report = json.loads((tmp_path / "sel.report.json").read_text())
    assert report["selected"] == k and report["scored"] == len(ANSWERS) and report["samples_per_prompt"] == N
    assert report["never_solved"] == sum(p == 0 for p in rates.values())
    assert f"selected with passrate: {k}" in stdout


# ---- The ranking --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rates, k, want",
    [
        ({"a": 0.0, "b": 0.0}, 2, []),  # never solved: no signal
        ({"a": 1.0, "b": 1.0}, 2, []),  # always solved: no signal
        ({"a": 0.25, "b": 0.75, "c": 0.5}, 1, ["c"]),  # 0.5 ranks first
        ({"a": 0.25, "b": 0.75, "c": 0.5}, 2, ["a", "c"]),  # a and b tie (p(1-p) = 3/16): the first in input order
        ({"a": 0.0, "b": 0.1, "c": 1.0, "d": 0.9}, 5, ["b", "d"]),  # fewer candidates than k: all of them
    ],
)
def test_passrate_select(rates, k, want):
    assert lim.passrate_select(rates, k) == want


# ---- The CLI ------------------------------------------------------------------------------------------------------


def bool_rows(path: Path, correct: dict[str, list[bool]]) -> Path:
    rows = [{"id": pid, "sample": s, "correct": bool(c)} for pid, cs in correct.items() for s, c in enumerate(cs)]
    return write_jsonl(path, rows)


def test_size_is_lims_count_and_unevaluated_prompts_are_not_scored(tmp_path, capsys):
    ids = ["a", "b", "c", "d"]
    prompts = prompt_file(tmp_path / "prompts.json", ids)
    # LIM on two epochs: the mean curve is (0.25, 0.5); a and c follow it closely (s >= 0.6), b and d do not
    accuracy = tmp_path / "acc.json"
    accuracy.write_text(json.dumps({"a": [0.25, 0.5], "b": [1.0, 0.0], "c": [0.0, 0.5], "d": [0.0, 1.0]}))
    lim_keeps = len(lim.select_by_score(lim.lim_scores(json.loads(accuracy.read_text())), 0.6))
    assert lim_keeps == 2
    rates = bool_rows(tmp_path / "train.jsonl", {"a": [1, 0, 0, 0], "b": [1, 1, 0, 0], "c": [1, 1, 1, 0]})
    out = tmp_path / "sel.json"
    rc, stdout, err = run_cli(capsys, "--method", "passrate", "--passrate_path", rates, "--accuracy_path", accuracy,
                              "--original_prompts_path", prompts, "--max_epochs", 2, "--output_path", out,
                              "--no_plots")  # fmt: skip
    assert rc == 0, err
    assert [it["id"] for it in json.loads(out.read_text())] == ["a", "b"]  # p(1-p): b 1/4, a and c 3/16, a first
    assert "not scored: 1 no pass rate in train.jsonl" in stdout
    report = json.loads((tmp_path / "sel.report.json").read_text())
    assert report["size_from"] == "LIM's count" and report["dropped"] == {"no pass rate in train.jsonl": 1}


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown", "train.jsonl: 1 ids are not in the prompt file (first: 'zz')"),
        ("missing", "no_such.jsonl"),
        ("no size", "--method passrate takes LIM's count: pass a history"),
        ("no prompts", "--method passrate needs --passrate_path and --original_prompts_path"),
        ("stability", "not with --method passrate"),
        ("other method", "--passrate_path goes with --method passrate"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, case, message):
    prompts = prompt_file(tmp_path / "prompts.json", ["a", "b"])
    rates = bool_rows(
        tmp_path / "train.jsonl", {"a": [1, 0], "b": [0, 0], **({"zz": [1, 1]} if case == "unknown" else {})}
    )
    out = tmp_path / "out" / "sel.json"
    argv = ["--method", "passrate", "--passrate_path", rates, "--original_prompts_path", prompts, "--num_samples", 1,
            "--output_path", out]  # fmt: skip
    if case == "missing":
        argv[3] = tmp_path / "no_such.jsonl"
    elif case == "no size":
        argv = argv[:-4] + argv[-2:]
    elif case == "no prompts":
        argv = argv[:4] + argv[6:]
    elif case == "stability":
        argv += ["--stability"]
    elif case == "other method":
        argv[1] = "lim"
        argv += ["--accuracy_path", tmp_path / "acc.json"]
    rc, stdout, err = run_cli(capsys, *argv)
    assert rc == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_passrate_of_a_responses_file_is_the_mean_correct(tmp_path):
    rates = bool_rows(tmp_path / "r.jsonl", {"a": [1, 0, 0], "b": [1, 1, 1]})
    samples = lim.read_question_scores(rates)
    assert {pid: math.fsum(s) / len(s) for pid, s in samples.items()} == {"a": 1 / 3, "b": 1.0}
