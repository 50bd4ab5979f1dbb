"""Tests of limr/dataset.py: the label contract, the prompt-file writer, and the loaders' checks."""

import json

import pytest

from limr.dataset import (
    check_ids,
    check_rows,
    check_subset,
    check_texts,
    decode_label,
    encode_label,
    load_eval_config,
    load_prompts,
    load_scores,
    openrlhf_path,
    scores_by_id,
    select_by_score,
    spread_by_text,
    to_openrlhf_row,
    write_prompt_files,
)
from limr.jsonio import DataError, all_or_nothing, iter_jsonl, read_json, write_json, write_jsonl
from limr.paper import SYSTEM_PROMPT


def row(id_, prompt, answer="1", source="math"):
    return {"id": id_, "prompt": prompt, "answer": answer, "source": source}


@pytest.mark.parametrize(
    "prompt_id, answer, split",
    [
        ("a1", "5", "train"),  # the plain case
        ("a2", "\\frac{1}{2}", "train"),  # backslashes survive the JSON round trip
        ("a3", 'say "x"', "eval"),  # quotes, and the eval split
        ("a4", "", "train"),  # an empty answer (two release rows) stays empty, not None
        ("a5", "π/√2", "eval"),  # non-ASCII is kept as is
    ],
)
def test_label_round_trip(prompt_id, answer, split):
    label = encode_label(prompt_id, answer, split)
    assert label == json.dumps(json.loads(label), ensure_ascii=False, separators=(",", ":"))  # compact, one line
    assert decode_label(label) == {"id": prompt_id, "answer": answer, "split": split}


@pytest.mark.parametrize(
    "label, answer",
    [
        ("42", "42"),  # a bare gold answer, as other OpenRLHF datasets carry
        ("{not json", "{not json"),  # looks like JSON but is not: taken as the answer
        ('{"x": 1}', '{"x": 1}'),  # JSON without an answer field is an answer string too
        (None, ""),  # no label at all
    ],
)
def test_decode_plain_label(label, answer):
    assert decode_label(label) == {"id": None, "answer": answer, "split": "train"}


@pytest.mark.parametrize(
    "label, message",
    [
        ('{"id": "a", "answer": null}', "answer must be text or a number, got null"),  # was graded against "None"
        ('{"id": "a", "answer": true}', "got bool"),  # was "True"
        ('{"id": "a", "answer": ["1"]}', "got list"),
        ('{"id": "a", "answer": {"x": 1}}', "got dict"),
        ('{"id": "a", "answer": "1", "x": ' + "9" * 4301 + "}", "an integer of more than 4,300 digits"),  # ValueError
    ],
)
def test_decode_label_refuses_a_label_no_answer_can_match(label, message):
    with pytest.raises(DataError, match=message):
        decode_label(label)


def test_decode_label_takes_a_numeric_answer_as_its_text():
    assert decode_label('{"id": "a", "answer": 12}')["answer"] == "12"
    assert decode_label('{"id": "a", "answer": 0.5}')["answer"] == "0.5"


def test_encode_label_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        encode_label("a", "1", "test")


def test_openrlhf_row_and_path(tmp_path):
    r = to_openrlhf_row(row("a", "What is 1+1?", "2"), split="eval")
    assert r["context_messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is 1+1?"},
    ]
    assert decode_label(r["label"]) == {"id": "a", "answer": "2", "split": "eval"}
    assert openrlhf_path(tmp_path / "x.json") == tmp_path / "x.jsonl"
    with pytest.raises(DataError, match="must end in .json"):
        openrlhf_path(tmp_path / "x.txt")


def test_write_prompt_files_round_trip(tmp_path):
    items = [row("a", "1+1", "2"), {"id": "b", "prompt": "2+2", "answer": "4", "level": 3}]
    twin = write_prompt_files(tmp_path / "p.json", items, split="eval")
    assert read_json(tmp_path / "p.json") == [row("a", "1+1", "2"), row("b", "2+2", "4", source="")]
    labels = [decode_label(obj["label"]) for _, obj in iter_jsonl(twin)]
    assert labels == [{"id": "a", "answer": "2", "split": "eval"}, {"id": "b", "answer": "4", "split": "eval"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.jsonl"]  # no temp files left


@pytest.mark.parametrize(
    "data, match",
    [
        ({"id": "a"}, "expected a JSON list of objects, got dict"),  # an object, not a list
        ([row("a", "x"), 3], "row 1 is a JSON int"),  # a row that is not an object
        ([{"id": "a", "prompt": "x"}], "row 0 has no field 'answer'"),  # a required field missing
        ([row(1, "x")], "'id' must be a string, got int"),  # a numeric id
        ([row("a", None)], "'prompt' must be a string, got NoneType"),  # a null prompt
        ([row("a", "x", 5)], "'answer' must be a string, got int"),  # a numeric answer
        ([row(" ", "x")], "'id' is empty"),  # a blank id
        ([row("a", "")], "'prompt' is empty"),  # a blank prompt
    ],
)
def test_check_rows_errors(data, match):
    with pytest.raises(DataError, match=match):
        check_rows("f.json", data, ("id", "prompt", "answer"), ("source",), ("id", "prompt", "answer", "source"))


def test_check_rows_unknown_fields_warn_or_fail():
    data, warnings = [{**row("a", "x"), "level": 3}], []
    check_rows("f.json", data, ("id", "prompt", "answer"), ("source",), warn=warnings.append)
    assert warnings == ["f.json: unknown field(s) 'level' (1 rows): dropped"]
    with pytest.raises(DataError, match=r"unknown field\(s\) 'level' \(1 rows\) \(--strict\)"):
        check_rows("f.json", data, ("id", "prompt", "answer"), ("source",), strict=True)


def test_check_rows_names_jsonl_lines():
    with pytest.raises(DataError, match="b.jsonl: line 7 has no field 'question'"):
        check_rows("b.jsonl", [{"answer": "1"}], ("question", "answer"), lines=[7])


@pytest.mark.parametrize(
    "rows, repeats_ok, match",
    [
        ([row("a", "x"), row("a", "y")], False, "duplicate id 'a' \\(rows 0 and 1\\)"),  # two prompts, one id
        ([row("a", "x"), row("a", "x")], False, "duplicate id 'a'"),  # identical repeats are not ok in training sets
        ([row("a", "x"), row("a", "x", "2")], True, "id repeated with different content 'a'"),  # repeat must be exact
    ],
)
def test_check_ids_errors(rows, repeats_ok, match):
    with pytest.raises(DataError, match=match):
        check_ids("f.json", rows, repeats_ok)


def test_check_ids_counts_identical_repeats():
    rows, warnings = [row("a", "x")] * 4 + [row("b", "y")] * 2 + [row("c", "z")], []
    check_ids("v.json", rows, repeats_ok=True, warn=warnings.append)
    assert warnings == [
        "v.json: 1 ids appear 2 times, 1 ids appear 4 times as identical rows: kept (each copy is sampled once)"
    ]


def test_check_texts_reports_every_id_of_a_shared_prompt():
    warnings = []
    check_texts("m.json", [row("a", "same"), row("b", "other"), row("c", "same")], warn=warnings.append)
    assert len(warnings) == 1 and "the same prompt appears under 2 ids (a, c)" in warnings[0]


def test_load_prompts_warns_on_empty_answers(tmp_path):
    path, warnings = tmp_path / "m.json", []
    path.write_text(json.dumps([row("a", "x", ""), row("b", "y", "  "), row("c", "z")]))
    rows = load_prompts(path, warn=warnings.append)
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # kept
    assert warnings == ["m.json: 2 rows have an empty answer (ids a, b): kept, they can never be graded correct"]


@pytest.mark.parametrize(
    "scores, match",
    [
        ([{"prompt": "x", "score": "0.7"}], "'score' must be a finite number, got '0.7'"),  # a string score
        ([{"prompt": "x", "score": True}], "'score' must be a finite number, got True"),  # bool is not a number here
        ([{"prompt": "x", "score": float("nan")}], "'score' must be a finite number, got nan"),  # NaN never compares
        ([{"prompt": "x"}], "row 0 needs a numeric 'score'"),  # no score at all
        ([{"score": 0.7}], "row 0 has no field 'prompt' or 'id'"),  # a score without its prompt
    ],
)
def test_load_scores_errors(tmp_path, scores, match):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(scores))
    with pytest.raises(DataError, match=match):
        load_scores(path)


def test_load_scores_keeps_only_known_fields(tmp_path):
    path, warnings = tmp_path / "scores.json", []
    path.write_text(json.dumps([{"prompt": "x", "score": 1, "id": "a", "note": "?"}]))
    assert load_scores(path, warn=warnings.append) == [{"id": "a", "prompt": "x", "score": 1}]
    assert warnings == ["scores.json: unknown field(s) 'note' (1 rows): dropped"]


@pytest.mark.parametrize(
    "scores, match",
    [
        ([{"prompt": "x", "score": 1}, {"prompt": "y ", "score": 1}], "s.json: 1 prompts are not in m.json \\(first: 'y '\\)"),
        ([{"id": "zz", "score": 1}], "s.json: 1 ids are not in m.json \\(first: 'zz'\\)"),  # an unknown id
        ([{"prompt": "x", "score": 1}, {"prompt": " x", "score": 0}], "rows 0 and 1 score the same prompt 'a'"),
        ([{"id": "a", "score": 1}, {"prompt": "x", "score": 0}], "rows 0 and 1 score the same prompt 'a'"),  # both ways
    ],
)  # fmt: skip
def test_scores_by_id_errors(scores, match):
    with pytest.raises(DataError, match=match):
        scores_by_id("s.json", scores, [row("a", "x")], "m.json")


def test_scores_by_id_joins_ids_and_texts_in_prompt_order():
    prompts = [row("a", "p1"), row("b", "p2"), row("c", "p3"), row("d", " p2\n")]
    scores = [{"prompt": "p2", "score": 0.6}, {"id": "c", "prompt": "other", "score": 1}, {"prompt": "p1", "score": 0}]
    # a text scores every id listed with it (stripped); an id scores only itself, whatever text the row carries
    assert scores_by_id("s.json", scores, prompts, "m.json") == {"a": 0.0, "b": 0.6, "c": 1.0, "d": 0.6}
    assert scores_by_id("s.json", [{"id": "z", "score": 2}], None, "-") == {"z": 2.0}  # no prompt file: ids as given


def test_spread_by_text_gives_a_texts_value_to_each_of_its_ids():
    prompts = [row("a", "same"), row("b", "other"), row("c", "same ")]
    assert spread_by_text({"a": 1, "b": 2}, prompts) == {"a": 1, "b": 2, "c": 1}  # prompt-file order
    assert spread_by_text({"b": 2}, prompts) == {"b": 2}


def test_select_by_score_threshold_top_k_and_order():
    scores = {"a": 0.6, "b": 0.9, "c": 0.5999, "d": 0.7}
    assert select_by_score(scores, 0.6) == ["a", "b", "d"]  # 0.6 itself is kept (>=), 0.5999 is not; input order
    assert select_by_score(scores, k=2) == ["b", "d"]
    assert select_by_score({"a": 1.0, "b": 1.0, "c": 1.0}, k=2) == ["a", "b"]  # ties: input order


def test_check_subset_returns_the_full_rows():
    full = [row("a", "x", "1", "math"), row("b", "y", "2", "math")]
    assert check_subset("l.json", [row("b", "y", "2", "other")], full, "m.json") == [full[1]]
    with pytest.raises(DataError, match="l.json: 1 ids are not in m.json \\(z\\)"):
        check_subset("l.json", [row("z", "y", "2")], full, "m.json")
    with pytest.raises(DataError, match="l.json: id b: answer differs from m.json's '2'"):
        check_subset("l.json", [row("b", "y", "3")], full, "m.json")


@pytest.mark.parametrize(
    "cfg, match",
    [
        ([], "expected a JSON object keyed by benchmark, got list"),  # not a table
        ({"b1": {"n": 1, "temperature": 0}}, "no settings object for benchmark 'b2'"),  # a benchmark missing
        ({"b1": {"n": 0, "temperature": 0}, "b2": {}}, "b1: 'n' must be an integer >= 1, got 0"),  # no samples
        ({"b1": {"n": 1.0, "temperature": 0}, "b2": {}}, "'n' must be an integer >= 1, got 1.0"),  # float n
        ({"b1": {"n": 4, "temperature": -1}, "b2": {}}, "'temperature' must be a number >= 0, got -1"),  # negative T
    ],
)
def test_load_eval_config_errors(tmp_path, cfg, match):
    path = tmp_path / "eval_config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(DataError, match=match):
        load_eval_config(path, ["b1", "b2"])


def test_release_scores_select_exactly_limr(shared_data):
    """The rebuild prepare.py uses when no limr.json is given reproduces the released subset, ids and order."""
    release = shared_data / "limr-release"
    math8k = load_prompts(release / "math8k.json", warn=lambda _: None)
    scores = scores_by_id("scores.json", load_scores(release / "scores.json"), math8k, "math8k.json")
    assert select_by_score(scores, 0.6) == [r["id"] for r in read_json(release / "limr.json")]


# ---- limr.jsonio: all-or-nothing writes, and the JSONL reader's line numbers ---------------------------------------


def test_all_or_nothing_moves_every_file_or_none(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(RuntimeError), all_or_nothing():
        write_json(tmp_path / "a.json", [1])
        write_jsonl(tmp_path / "b.jsonl", [{"x": 1}])
        assert (tmp_path / "a.json").read_text() == "old" and not (tmp_path / "b.jsonl").exists()  # held back
        raise RuntimeError("the third file fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"
    with all_or_nothing():
        write_json(tmp_path / "a.json", [1])
        write_jsonl(tmp_path / "b.jsonl", [{"x": 1}])
    assert read_json(tmp_path / "a.json") == [1] and [o for _, o in iter_jsonl(tmp_path / "b.jsonl")] == [{"x": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.jsonl"]  # no temporary files


def test_iter_jsonl_names_the_line_of_a_bad_byte(tmp_path):
    path = tmp_path / "x.jsonl"
    lines = [json.dumps({"n": n, "t": "é" * (n % 50)}, ensure_ascii=False).encode() for n in range(5000)]
    lines[4321] = b'{"n": "\xff"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"x.jsonl:4322: not UTF-8 text$"):
        list(iter_jsonl(path))


def test_deep_nesting_is_a_data_error(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match="x.jsonl:1: JSON nested too deeply"):
        list(iter_jsonl(tmp_path / "x.jsonl"))
    (tmp_path / "x.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="x.json: JSON nested too deeply"):
        read_json(tmp_path / "x.json")
