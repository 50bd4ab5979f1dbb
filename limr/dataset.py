"""Data contracts between the stages: the paper's prompt JSON and the OpenRLHF prompt dataset (JSONL).

A prompt file `X.json` (the paper's format, a list of {"id", "prompt", "answer", "source"}) always has its
OpenRLHF twin `X.jsonl` beside it: one row per prompt with `context_messages` (system + user, for
`--data.input_key context_messages --data.apply_chat_template`) and `label` (for `--data.label_key label`).
The label is a compact JSON string {"id", "answer", "split"} so the reward server learns the prompt id and
gold answer without parsing chat templates; split "eval" marks validation rows, logged apart from training.

The loaders below read the release files (prompt files, scores, benchmarks, eval config) and check them,
raising DataError with a one-line message on anything the pipeline cannot use and reporting through `warn`
what it can use but a reader should know about (empty answers, one question under two ids). Last come the join of
prompt texts to ids and the selection by score, shared by data/prepare.py and lim_selection.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from limr.jsonio import DataError, is_number, iter_jsonl, read_json, write_json, write_jsonl
from limr.paper import SYSTEM_PROMPT

SPLITS = ("train", "eval")


def encode_label(prompt_id: str, answer: str, split: str = "train") -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return json.dumps({"id": prompt_id, "answer": answer, "split": split}, ensure_ascii=False, separators=(",", ":"))


def decode_label(label: str) -> dict:
    """Inverse of encode_label. A label that is not our JSON is taken as a plain gold answer (id None).

    Our JSON whose answer is not text or a number (`"answer": null` was graded against the string "None"), or that
    holds an integer too long for Python to read, is a DataError: no answer could be graded right against it."""
    if isinstance(label, str) and label.startswith("{"):
        try:
            obj = json.loads(label)
        except json.JSONDecodeError:
            obj = None
        except ValueError:  # json.loads' other ValueError: an integer of more than sys.get_int_max_str_digits()
            digits = sys.get_int_max_str_digits()
            raise DataError(
                f"the label is JSON that cannot be read (an integer of more than {digits:,} digits)"
            ) from None
        if isinstance(obj, dict) and "answer" in obj:
            answer = obj["answer"]
            if not (isinstance(answer, str) or is_number(answer) or type(answer) is int):
                got = "null" if answer is None else type(answer).__name__
                raise DataError(f"the label's answer must be text or a number, got {got} {answer!r:.40}")
            return {"id": obj.get("id"), "answer": str(answer), "split": obj.get("split", "train")}
    return {"id": None, "answer": "" if label is None else str(label), "split": "train"}


def to_openrlhf_row(item: dict, split: str = "train", system_prompt: str = SYSTEM_PROMPT) -> dict:
    return {
        "context_messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": item["prompt"]},
        ],
        "label": encode_label(item["id"], item["answer"], split),
    }


def twin_path(prompt_json: str | os.PathLike, suffix: str) -> Path:
    """`X.json` -> `X<suffix>`: where an engine's twin of a prompt file lives (.jsonl OpenRLHF's, .parquet verl's)."""
    p = Path(prompt_json)
    if p.suffix != ".json":
        raise DataError(f"{p}: a prompt file must end in .json")
    return p.with_suffix(suffix)


def openrlhf_path(prompt_json: str | os.PathLike) -> Path:
    """`X.json` -> `X.jsonl`: where the OpenRLHF twin of a prompt file lives."""
    return twin_path(prompt_json, ".jsonl")


def write_prompt_files(prompt_json: str | os.PathLike, items: Iterable[dict], split: str = "train") -> Path:
    """Write the paper's prompt JSON and its OpenRLHF JSONL twin (both atomically); returns the JSONL path."""
    items = [
        {"id": it["id"], "prompt": it["prompt"], "answer": it["answer"], "source": it.get("source", "")}
        for it in items
    ]
    write_json(prompt_json, items, indent=4)
    twin = openrlhf_path(prompt_json)
    write_jsonl(twin, (to_openrlhf_row(it, split) for it in items))
    return twin


# ---- Loading and validating the release files ------------------------------------------------------------------
# Every check raises DataError with a one-line message, or reports a warning through `warn`, so that the caller
# (data/prepare.py) can validate every input before it writes any output.

PROMPT_FIELDS = ("id", "prompt", "answer", "source")
SCORE_FIELDS = ("id", "prompt", "score")
BENCHMARK_FIELDS = ("id", "question", "answer")
Warn = Callable[[str], None]


def warn_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _preview(text: str, n: int = 60) -> str:
    """A short one-line rendering of a prompt for messages (repr escapes its newlines)."""
    return repr(text if len(text) <= n else text[:n] + "...")


def _ids(ids: list, n: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:n])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def check_rows(
    name: str,
    data: Any,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    strings: tuple[str, ...] = (),
    lines: list[int] | None = None,
    warn: Warn = warn_stderr,
    strict: bool = False,
) -> list[dict]:
    """Check a list of flat records: objects only, required fields present, `strings` fields are strings.

    Unknown fields are a warning (an error with `strict`): such a file is still usable, the extra fields are
    dropped on writing, and a real schema mismatch (e.g. "question" instead of "prompt") already fails as a
    missing required field.
    """
    if not isinstance(data, list):
        raise DataError(f"{name}: expected a JSON list of objects, got {type(data).__name__}")
    allowed = set(required) | set(optional)
    unknown: Counter[str] = Counter()
    for i, row in enumerate(data):
        where = f"line {lines[i]}" if lines else f"row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{name}: {where} is a JSON {type(row).__name__}, expected an object")
        missing = [f for f in required if f not in row]
        if missing:
            raise DataError(f"{name}: {where} has no field {', '.join(repr(f) for f in missing)}")
        for f in strings:
            if f in row and not isinstance(row[f], str):
                raise DataError(f"{name}: {where}: {f!r} must be a string, got {type(row[f]).__name__} {row[f]!r:.40}")
        for f in ("id", "prompt", "question"):
            if isinstance(row.get(f), str) and not row[f].strip():
                raise DataError(f"{name}: {where}: {f!r} is empty")
        unknown.update(k for k in row if k not in allowed)
    if unknown:
        msg = f"{name}: unknown field(s) {', '.join(f'{k!r} ({n} rows)' for k, n in unknown.items())}"
        if strict:
            raise DataError(f"{msg} (--strict)")
        warn(f"{msg}: dropped")
    return data


def check_ids(name: str, rows: list[dict], repeats_ok: bool = False, warn: Warn = warn_stderr) -> None:
    """Ids must be unique: the label carries the id, so the reward log could not tell two prompts apart.

    With `repeats_ok` an id may repeat as an identical row: the release's validation set lists each AIME24
    question 4 times so that the in-training evaluation samples it 4 times.
    """
    first: dict[str, int] = {}
    repeats: Counter[str] = Counter()
    for i, row in enumerate(rows):
        j = first.setdefault(row["id"], i)
        if j == i:
            continue
        if not repeats_ok or rows[j] != row:
            what = "duplicate id" if not repeats_ok else "id repeated with different content"
            raise DataError(f"{name}: {what} {row['id']!r} (rows {j} and {i})")
        repeats[row["id"]] += 1
    if repeats:
        times = Counter(n + 1 for n in repeats.values())
        shape = ", ".join(f"{k} ids appear {n} times" for n, k in sorted(times.items()))
        warn(f"{name}: {shape} as identical rows: kept (each copy is sampled once)")


def check_texts(name: str, rows: list[dict], key: str = "prompt", warn: Warn = warn_stderr) -> None:
    """The same question under two ids is kept (the paper trained on both) but never merged silently: the join
    rule (below, before `ids_by_text`) says what such a text means to a selection."""
    for text, ids in ids_by_text(rows, key).items():
        if len(ids) > 1:
            warn(
                f"{name}: the same {key} appears under {len(ids)} ids ({_ids(ids)}): kept, not merged {_preview(text)}"
            )


def check_answers(name: str, rows: list[dict], warn: Warn = warn_stderr) -> None:
    """An empty gold answer cannot be matched; the release has two in MATH-8k and the paper trained on them."""
    ids = list(dict.fromkeys(row["id"] for row in rows if not row["answer"].strip()))
    if ids:
        warn(f"{name}: {len(ids)} rows have an empty answer (ids {_ids(ids)}): kept, they can never be graded correct")


def load_prompts(
    path: str | os.PathLike, repeats_ok: bool = False, warn: Warn = warn_stderr, strict: bool = False
) -> list[dict]:
    """Read and check a prompt file (the paper's format); returns rows holding only PROMPT_FIELDS."""
    name = Path(path).name
    rows = check_rows(
        name, read_json(path), PROMPT_FIELDS[:3], PROMPT_FIELDS[3:], PROMPT_FIELDS, warn=warn, strict=strict
    )
    rows = [{f: row.get(f, "") for f in PROMPT_FIELDS} for row in rows]
    check_ids(name, rows, repeats_ok, warn)
    check_texts(name, rows, "prompt", warn)
    check_answers(name, rows, warn)
    return rows


def load_scores(path: str | os.PathLike, warn: Warn = warn_stderr, strict: bool = False) -> list[dict]:
    """Read and check a scores file: rows {"id" and/or "prompt", "score"} with finite scores.

    The release's scores.json names prompts by text; lim_selection.py's scores output adds the id. Which prompt-file
    rows a row scores is decided by `scores_by_id` (the join below), which also refuses a prompt scored twice.
    """
    name = Path(path).name
    rows = check_rows(name, read_json(path), (), SCORE_FIELDS, ("prompt", "id"), warn=warn, strict=strict)
    for i, row in enumerate(rows):
        if "score" not in row:
            raise DataError(f"{name}: row {i} needs a numeric 'score'")
        if not is_number(row["score"]):
            raise DataError(f"{name}: row {i}: 'score' must be a finite number, got {row['score']!r:.40}")
        if "id" not in row and "prompt" not in row:
            raise DataError(f"{name}: row {i} has no field 'prompt' or 'id'")
    return [{f: row[f] for f in SCORE_FIELDS if f in row} for row in rows]


def load_benchmark(path: str | os.PathLike, warn: Warn = warn_stderr, strict: bool = False) -> list[dict]:
    """Read and check a benchmark JSONL file; rows without an id get `<file stem>-<index>`."""
    path = Path(path)
    pairs = list(iter_jsonl(path))
    lines, data = [n for n, _ in pairs], [obj for _, obj in pairs]
    check_rows(path.name, data, ("question", "answer"), ("id",), BENCHMARK_FIELDS, lines, warn, strict)
    rows = [
        {"id": r.get("id", f"{path.stem}-{i}"), "question": r["question"], "answer": r["answer"]}
        for i, r in enumerate(data)
    ]
    check_ids(path.name, rows, warn=warn)
    check_texts(path.name, rows, "question", warn)
    check_answers(path.name, rows, warn)
    return rows


def load_eval_config(path: str | os.PathLike, benchmarks: Iterable[str]) -> dict:
    """Read and check the per-benchmark sampling table: each benchmark needs an integer n >= 1 and a temperature >= 0."""
    name = Path(path).name
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise DataError(f"{name}: expected a JSON object keyed by benchmark, got {type(cfg).__name__}")
    for bench in benchmarks:
        entry = cfg.get(bench)
        if not isinstance(entry, dict):
            raise DataError(f"{name}: no settings object for benchmark {bench!r}")
        n, t = entry.get("n"), entry.get("temperature")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"{name}: {bench}: 'n' must be an integer >= 1, got {n!r}")
        if not is_number(t) or t < 0:
            raise DataError(f"{name}: {bench}: 'temperature' must be a number >= 0, got {t!r}")
    return cfg


def check_subset(name: str, subset: list[dict], full: list[dict], full_name: str) -> list[dict]:
    """Every row of a subset must be a row of the full set (same id, prompt and answer); returns the full set's rows.

    The full set's rows are returned so that a subset is always a verbatim part of it, whatever `source` label
    its own file carries (the release's LIMR Arrow file says "olympiads.23k" where MATH-8k says "math").
    """
    by_id = {row["id"]: row for row in full}
    missing = [row["id"] for row in subset if row["id"] not in by_id]
    if missing:
        raise DataError(f"{name}: {len(missing)} ids are not in {full_name} ({_ids(missing)})")
    for row in subset:
        other = by_id[row["id"]]
        for f in ("prompt", "answer"):
            if row[f] != other[f]:
                raise DataError(f"{name}: id {row['id']}: {f} differs from {full_name}'s {_preview(other[f])}")
    return [by_id[row["id"]] for row in subset]


# ---- The prompt-text join, and selection by score ----------------------------------------------------------------
# An id names one row of a prompt file; a text names every row listed with it (stripped, as the original stripped
# its step files' side). MATH-8k lists one question under two ids, and the paper trained on both rows. Whatever an
# input keys by text (the fork's step files, a scores file of texts such as the release's) holds one value for the
# text, and that value is every listed id's: the original's last step keeps every prompt-file row whose text it
# selected (GAIR-NLP/LIMR lim/lim_selection.py, `sample['prompt'] in selected_prompts`), so both rows go together.
# Whatever an input keys by id (our rollout log, accuracy histories, scores rows with an id) is that id's alone:
# the reward server logs the two rows apart.


def ids_by_text(rows: list[dict], key: str = "prompt") -> dict[str, list[str]]:
    """Stripped text -> the ids listed with it, in file order (an id repeated as an identical row counts once)."""
    by_text: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        ids = by_text[row[key].strip()]
        if row["id"] not in ids:
            ids.append(row["id"])
    return dict(by_text)


def first_id_of(prompts: list[dict]) -> dict[str, str]:
    """Each id -> the first id listed with its text: where an input keyed by text holds the text's value."""
    return {pid: ids[0] for ids in ids_by_text(prompts).values() for pid in ids}


def spread_by_text(values: dict, prompts: list[dict]) -> dict:
    """Values held under each text's first id, given to every id of the text; in prompt-file order."""
    first = first_id_of(prompts)
    return {row["id"]: values[first[row["id"]]] for row in prompts if first[row["id"]] in values}


def scores_by_id(name: str, rows: list[dict], prompts: list[dict] | None, prompts_name: str) -> dict[str, float]:
    """{id: score} of a scores file's rows (load_scores), in prompt-file order when there is a prompt file.

    A row with an id scores that id; a row of a text scores every id of the text (the join rule above). Unknown ids
    and texts, and a prompt scored by two rows, are errors: a selection would drop or pick them silently.
    """
    by_text = {} if prompts is None else ids_by_text(prompts)
    known = None if prompts is None else {row["id"] for row in prompts}
    scored: dict[str, tuple[int, float]] = {}
    unknown_ids, unknown_texts = [], []
    for i, row in enumerate(rows):
        if "id" in row:
            ids = [row["id"]] if known is None or row["id"] in known else []
            unknown_ids += [] if ids else [row["id"]]
        else:
            ids = by_text.get(row["prompt"].strip(), [])
            unknown_texts += [] if ids else [row["prompt"]]
        for pid in ids:
            j = scored.setdefault(pid, (i, float(row["score"])))[0]
            if j != i:
                raise DataError(f"{name}: rows {j} and {i} score the same prompt {pid!r}")
    if unknown_texts:
        first = _preview(unknown_texts[0])
        raise DataError(f"{name}: {len(unknown_texts)} prompts are not in {prompts_name} (first: {first})")
    if unknown_ids:
        raise DataError(f"{name}: {len(unknown_ids)} ids are not in {prompts_name} (first: {unknown_ids[0]!r})")
    order = scored if prompts is None else (row["id"] for row in prompts if row["id"] in scored)
    return {pid: scored[pid][1] for pid in order}


def select_by_score(scores: dict[str, float], theta: float | None = None, k: int | None = None) -> list[str]:
    """Ids with score >= theta, or the k best (ties kept in input order); in input order either way.

    `>=`, not the paper's `s_i > θ` (§2.2): the original script keeps `>=`, and only `>=` gives the released 1,389
    LIMR prompts from its scores.json at θ = 0.6 (`>` gives 1,324).
    """
    if k is not None:
        chosen = set(sorted(scores, key=lambda pid: -scores[pid])[:k])
    else:
        chosen = {pid for pid, s in scores.items() if s >= theta}
    return [pid for pid in scores if pid in chosen]
