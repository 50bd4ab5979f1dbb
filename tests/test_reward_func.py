"""Tests of train/reward_func.py, OpenRLHF's file mode (`--reward.remote_url train/reward_func.py`): loaded and
called by OpenRLHF 0.11.2's own SingleTurnAgentExecutor, it gives the reward server's exact replies, takes the
grader from LIMR_GRADER, writes no file, and refuses a bad label loudly."""

import importlib.util
import json
from pathlib import Path

import pytest
from test_reward_server import END, ServerProcess, chat, chat_tokenizer, openrlhf_client, run_executor

from limr import request
from limr.dataset import encode_label
from limr.paper import BAD_FORMAT, CORRECT, WRONG

ROOT = Path(__file__).resolve().parents[1]
REWARD_FUNC = ROOT / "train" / "reward_func.py"

# (prompt, label, response, cut off by the length limit, expected reward)
CASES = [
    (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{5}$." + END, False, CORRECT),  # right
    (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{6}$." + END, False, WRONG),  # wrong
    (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{5}$.", True, BAD_FORMAT),  # cut off
    (
        chat("Area?"),
        encode_label("m4", "\\pi"),
        "It is $\\boxed{\\pi}$." + END,
        False,
        CORRECT,
    ),  # the release missed it
    (chat("AIME?"), encode_label("a1", "204", "eval"), "\\boxed{204}" + END, False, CORRECT),  # an evaluation row
    (chat("Plain?"), "7", "\\boxed{7}" + END, False, CORRECT),  # a plain-answer label
    (chat("Root?"), encode_label("m5", "3\\sqrt{13}"), "\\boxed{3}" + END, False, WRONG),  # the release said right
]


@pytest.fixture(scope="module")
def tokenizer():
    return chat_tokenizer()


def file_mode(cases, tokenizer) -> list[dict]:
    """OpenRLHF's executor in file mode; closes the grading pool the file started."""
    client = openrlhf_client(str(REWARD_FUNC))
    try:
        return run_executor(client, cases, tokenizer)
    finally:
        pool = client.reward_func.__globals__["_pool"]
        if pool is not None:
            pool.close()


def test_file_mode_rewards(tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = file_mode(CASES, tokenizer)
    assert [o["reward"] for o in outputs] == [[c[-1]] for c in CASES]
    assert [o["scores"] for o in outputs] == [[float(c[-1] == CORRECT)] for c in CASES]
    assert outputs[2]["extra_logs"] == {"correct": [0.0], "format_error": [1.0], "timed_out": [0.0]}
    assert list(tmp_path.iterdir()) == []  # file mode writes no rollout log (nor anything else)


def test_file_mode_answers_as_the_server_does(tokenizer, tmp_path):
    from_file = file_mode(CASES, tokenizer)
    with ServerProcess(tmp_path / "rollouts.jsonl") as server:
        from_server = run_executor(openrlhf_client(server.url + "/get_reward"), CASES, tokenizer)
    fields = ("reward", "scores", "extra_logs")
    assert [[o[k] for k in fields] for o in from_file] == [[o[k] for k in fields] for o in from_server]


def test_grader_from_the_environment(tokenizer, monkeypatch):
    # the release's reward, bug for bug: \pi never matches, and 3 is taken for 3\sqrt{13}
    monkeypatch.setenv("LIMR_GRADER", "limr")
    monkeypatch.setenv("LIMR_REWARD_WORKERS", "1")
    outputs = file_mode([CASES[3], CASES[6]], tokenizer)
    assert [o["reward"] for o in outputs] == [[WRONG], [CORRECT]]


def test_a_bad_label_raises_a_clear_error():
    spec = importlib.util.spec_from_file_location("reward_func_under_test", REWARD_FUNC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.make_sample is request.make_sample  # the shared request core, imported as a package module
    label = '{"id": "a", "answer": "5", "split": "valid"}'
    with pytest.raises(ValueError, match=r"labels\[0\]: the label's split must be one of \('train', 'eval'\)"):
        module.reward_func([chat("q") + "\\boxed{5}" + END], [chat("q")], [label])
    assert module._pool is None  # refused before any grading started


@pytest.mark.parametrize("workers", ["-1", "0", "four"])
def test_a_bad_worker_count_raises_instead_of_hanging(workers, monkeypatch):
    monkeypatch.setenv("LIMR_REWARD_WORKERS", workers)
    spec = importlib.util.spec_from_file_location("reward_func_bad_workers", REWARD_FUNC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ValueError, match="LIMR_REWARD_WORKERS: "):
        module.reward_func([chat("q") + "\\boxed{5}" + END], [chat("q")], ['{"id": "a", "answer": "5"}'])


@pytest.mark.parametrize(
    "label, message",
    [
        ('{"id": "a", "answer": null}', r"labels\[0\]: .*the label's answer must be text or a number, got null"),
        (
            '{"id": "a", "answer": ' + "9" * 4301 + "}",
            r"labels\[0\]: the label is JSON that cannot be read \(an integer of more than 4,300 digits",
        ),
    ],
)
def test_a_label_no_answer_can_match_is_refused_as_the_server_refuses_it(label, message):
    """Issue 22: a null answer was graded against "None", and a 4,301-digit integer raised json's bare ValueError
    into OpenRLHF; both are now the server's 422 for that request, and this file's ValueError with the same words."""
    with pytest.raises(request.PayloadError, match=message) as refused:
        request.parse_payload(json.dumps({"query": ["\\boxed{5}"], "labels": [label]}).encode(), 8)
    assert refused.value.status == 422
    spec = importlib.util.spec_from_file_location("reward_func_null_answer", REWARD_FUNC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ValueError, match=message):
        module.reward_func([chat("q") + "\\boxed{5}" + END], [chat("q")], [label])
    assert module._pool is None  # refused before any grading started
