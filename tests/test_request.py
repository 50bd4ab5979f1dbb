"""Tests of limr/request.py, the request core train/reward_server.py and train/reward_func.py share, as tables:
splitting a query into prompt and response, the label, bad bodies and the reply's layout. The server and file
mode that use it are tested in tests/test_reward_server.py and tests/test_reward_func.py."""

import json
import re

import pytest

from limr.dataset import encode_label
from limr.paper import BAD_FORMAT, CORRECT, WRONG
from limr.pool import Graded
from limr.request import PayloadError, make_sample, parse_payload, prompt_hash, reply, split_query

END = "<|im_end|>"
MAX_SAMPLES = 1024  # the server's default --max_samples_per_request


def chat(question: str) -> str:
    """The chat-templated prompt OpenRLHF sends (Qwen's template, as --data.apply_chat_template renders it)."""
    return f"<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


# ---- The request core ---------------------------------------------------------------------------------------------

P = chat("What is 2+3?")


@pytest.mark.parametrize(
    "query, prompt, expected",
    [
        (P + "So \\boxed{5}" + END, P, (P, "So \\boxed{5}" + END, False)),  # the query starts with the prompt
        (P[10:] + "ok" + END, P, (P[10:], "ok" + END, True)),  # the prompt cut on the left: after the assistant turn
        ("<|im_start|>assistant\nA<|im_start|>assistant\nB", "zz", ("<|im_start|>assistant\nA<|im_start|>assistant\n", "B", True)),  # last turn
        ("no template at all", "zz", ("", "no template at all", True)),  # nothing to split on: all of it
        ("x\\boxed{1}", None, ("", "x\\boxed{1}", True)),  # no prompt sent
        (P + "r", "", (P, "r", True)),  # an empty prompt: after the assistant turn
    ],
)  # fmt: skip
def test_split_query(query, prompt, expected):
    assert split_query(query, prompt) == expected


@pytest.mark.parametrize(
    "label, expected_id, expected_answer, expected_split",
    [
        (encode_label("math-1", "\\frac{1}{2}"), "math-1", "\\frac{1}{2}", "train"),  # our label
        (encode_label("aime-3", "204", "eval"), "aime-3", "204", "eval"),  # an evaluation row
        ('{"id": 17, "answer": 5}', "17", "5", "train"),  # numbers in someone else's JSON label: as text
        ('{"id": "", "answer": "5"}', prompt_hash(P), "5", "train"),  # an empty id: keyed by the prompt
        ("5", prompt_hash(P), "5", "train"),  # a plain gold answer: keyed by a hash of the prompt
        ("{not json", prompt_hash(P), "{not json", "train"),  # broken JSON is a plain answer too
    ],
)
def test_make_sample(label, expected_id, expected_answer, expected_split):
    s = make_sample(P + "\\boxed{5}" + END, P, label)
    assert (s.prompt_id, s.answer, s.split, s.response, s.fallback) == (
        expected_id, expected_answer, expected_split, "\\boxed{5}" + END, False)  # fmt: skip


def test_prompt_hash_is_short_stable_and_strips():
    h = prompt_hash(P)
    assert re.fullmatch(r"sha1:[0-9a-f]{16}", h)
    assert prompt_hash("  " + P + "\n") == h != prompt_hash(chat("What is 2+4?"))
    assert prompt_hash("\ud800").startswith("sha1:")  # a lone surrogate (valid JSON) does not crash


def _payload(**fields) -> bytes:
    base = {"query": [P + "\\boxed{5}" + END], "prompts": [P], "labels": [encode_label("a", "5")]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


# (body, status, part of the message): what a bad request gets
BAD_BODIES = [
    (b'{"query": [', 400, "not valid JSON"),  # cut off
    (b"\xff\xfe\x00{", 400, "not valid JSON"),  # not UTF-8 text
    (b"[" * 100_000, 400, "RecursionError"),  # nested too deep for the parser
    (b'{"query": [1' + b"0" * 5000 + b"]}", 400, "not valid JSON"),  # an integer too long to convert
    (b"[]", 422, "expected a JSON object"),  # a list
    (_payload(labels=...), 422, "'labels' must be a list of strings, got nothing"),  # no labels
    (_payload(query="text"), 422, "'query' must be a list of strings, got str"),  # a string, not a list
    (_payload(labels=[5]), 422, "'labels'[0] must be a string, got int"),  # a number as a label
    (_payload(prompts=[{"a": 1}]), 422, "'prompts'[0] must be a string, got dict"),  # an object as a prompt
    (_payload(labels=[encode_label("a", "5")] * 2), 422, "got 1, 1, 2"),  # lengths differ
    (_payload(labels=['{"id": "a", "answer": "5", "split": "test"}']), 422, "labels[0]: the label's split"),
    (
        _payload(labels=['{"answer": ' + "[" * 100_000 + "]" * 100_000 + "}"]),
        422,
        "labels[0]: the label is JSON nested",
    ),
    (  # an integer of more than 4,300 digits in the label: Python's json will not read it
        _payload(labels=['{"id": "a", "answer": 1' + "0" * 5000 + "}"]),
        422,
        "labels[0]: the label is JSON that cannot be read",
    ),
    (
        _payload(query=["q"] * 1025, prompts=["p"] * 1025, labels=["5"] * 1025),
        413,
        "1025 samples in one request; at most 1024",
    ),
]


@pytest.mark.parametrize("body, status, message", BAD_BODIES)
def test_parse_payload_rejects(body, status, message):
    with pytest.raises(PayloadError) as e:
        parse_payload(body, MAX_SAMPLES)
    assert e.value.status == status and message in str(e.value)


def test_parse_payload_accepts():
    assert parse_payload(_payload(query=[], prompts=[], labels=[]), MAX_SAMPLES) == []  # empty lists: an empty reply
    no_prompts = parse_payload(_payload(prompts=...), MAX_SAMPLES)  # prompts left out: split at the assistant turn
    assert [(s.prompt_id, s.response, s.fallback) for s in no_prompts] == [("a", "\\boxed{5}" + END, True)]


def test_reply_layout():
    graded = [Graded(CORRECT, True, "5", None, 0.01), Graded(WRONG, False, None, None, 3.0, timed_out=True),
              Graded(BAD_FORMAT, False, None, "no_box", 0.0)]  # fmt: skip
    assert reply(graded) == {
        "rewards": [1.0, -0.5, -1.0],
        "scores": [1.0, 0.0, 0.0],
        "extra_logs": {"correct": [1.0, 0.0, 0.0], "format_error": [0.0, 0.0, 1.0], "timed_out": [0.0, 1.0, 0.0]},
    }
