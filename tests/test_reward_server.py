"""Tests of train/reward_server.py and limr/rollout_log.py (the request core, limr/request.py, is tested in
tests/test_request.py): the log writer (resume, torn lines, failed writes), and the real server as a process on
127.0.0.1 driven by OpenRLHF 0.11.2's own client (SingleTurnAgentExecutor), by bad requests, by 64 concurrent
clients (20,000+ requests, read back by lim_selection.py), by kill -9 under load and a restart, and by SIGTERM
under load.

LIMR_LOAD_REQUESTS sets the load test's size (default 20,000 training requests plus 5% evaluation requests).
"""

import asyncio
import base64
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from load_script import load_script
from test_request import BAD_BODIES, END, P, _payload, chat

from limr.dataset import encode_label
from limr.jsonio import DataError
from limr.paper import BAD_FORMAT, CORRECT, WRONG
from limr.pool import Graded
from limr.request import make_sample, prompt_hash
from limr.rollout_log import (
    RolloutLog,
    check_resume,
    count_samples,
    epoch_of,
    find_duplicates,
    log_row,
    response_sha1,
    step_of,
)

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "train" / "reward_server.py"
LOAD_REQUESTS = int(os.environ.get("LIMR_LOAD_REQUESTS", "20000"))
CLIENTS = 64


rs = load_script("reward_server", SERVER)
lim = load_script("lim_selection", ROOT / "lim_selection.py")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "header, query_token, ok",
    [
        ("Bearer s3cret", None, True),  # the bearer token
        ("bearer  s3cret ", None, True),  # scheme in any case, spaces around
        ("Bearer s3cre", None, False),  # a prefix of it
        ("Bearer ", None, False),  # empty
        (_basic("limr", "s3cret"), None, True),  # http://limr:s3cret@host/ (OpenRLHF's aiohttp client sends it so)
        (_basic("s3cret", ""), None, True),  # http://s3cret@host/
        (_basic("limr", "wrong"), None, False),  # wrong password
        ("Basic %%%", None, False),  # not base64
        ("Token s3cret", None, False),  # another scheme
        (None, "s3cret", True),  # .../get_reward?token=s3cret (scripts/train_common.sh passes it so)
        (None, "wrong", False),  # a wrong token in the URL
        ("Bearer wrong", "s3cret", True),  # either place will do
        (None, None, False),  # nothing
    ],
)
def test_authorized(header, query_token, ok):
    assert rs.authorized(header, query_token, "s3cret") is ok
    assert rs.authorized(header, query_token, None)  # no token set: everyone


# ---- The rollout log ----------------------------------------------------------------------------------------------

G = Graded(CORRECT, True, "5", None, 0.01)


def test_log_row_is_what_the_reader_reads(tmp_path):
    rows = [log_row(step_of(i, 2, 3), f"p{i}", G, 10 + i, epoch=epoch_of(i, 3)) for i in range(5)]
    log = RolloutLog(tmp_path / "r.jsonl")
    for row in rows:
        log.write(row)
    log.close()
    data = (tmp_path / "r.jsonl").read_bytes()
    assert data.startswith(b'{"step": 1, "epoch": 1, "id": "p0", "reward": 1.0, "correct": true, ')
    assert [(json.loads(x)["step"], json.loads(x)["epoch"]) for x in data.splitlines()] == [
        (1, 1), (1, 1), (2, 1), (3, 2), (3, 2)]  # fmt: skip
    counts = count_samples(tmp_path / "r.jsonl")
    assert counts.samples == {(s, e, f"p{i}", True): 1 for i, (s, e) in enumerate([(1, 1), (1, 1), (2, 1), (3, 2),
                                                                                  (3, 2)])}  # fmt: skip
    assert "epoch" not in log_row(1, "p", G, 1)  # a server that does not count passes writes none
    eval_row = log_row(0, "e", G, 3, "eval", "\\boxed{5}", epoch=0)
    assert list(eval_row)[:7] == ["step", "epoch", "id", "reward", "correct", "response_length", "split"]
    assert list(eval_row)[-1] == "response" and eval_row["split"] == "eval"


def _write_lines(path: Path, n: int, samples_per_step: int, tail: bytes = b"") -> None:
    rows = [json.dumps(log_row(step_of(i, samples_per_step), f"p{i}", G, 1)) + "\n" for i in range(n)]
    path.write_bytes("".join(rows).encode() + tail)


def test_resume_counts_lines_and_checks_the_step_size(tmp_path):
    path = tmp_path / "r.jsonl"
    _write_lines(path, 7, 3)
    log = RolloutLog(path)
    assert (log.lines, log.last_row["step"]) == (7, 3)
    check_resume(log, 3)  # the same samples per step: fine
    with pytest.raises(DataError, match="another --samples_per_step"):
        check_resume(log, 4)
    log.write(log_row(step_of(log.lines, 3), "p7", G, 1))
    log.close()
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 1, 1, 2, 2, 2, 3, 3]


@pytest.mark.parametrize(
    "tail, kept_lines, moved",
    [
        (b'{"step": 3, "id": "p', 6, True),  # torn mid-line: moved to .torn, with a warning
        (b'{"step": 2, "id": "x", "reward": 1.0}', 7, False),  # a whole record that lost its newline: completed
        (b"  ", 6, False),  # stray spaces: dropped
    ],
)
def test_torn_last_line_is_repaired_on_open(tmp_path, tail, kept_lines, moved):
    path = tmp_path / "r.jsonl"
    _write_lines(path, 6, 3, tail)
    warnings = []
    log = RolloutLog(path, warn=warnings.append)
    log.write(log_row(3, "next", G, 1))
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == kept_lines + 1 and all(json.loads(x) for x in lines)  # every line whole
    assert json.loads(lines[-1])["id"] == "next"
    torn = tmp_path / "r.jsonl.torn"
    assert torn.exists() == moved == bool(warnings)
    if moved:
        assert torn.read_bytes() == tail + b"\n" and "torn last line" in warnings[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"id": "a", "prompt": "p"}]\n', "not a rollout-log record"),  # a prompt file
        ('[{"id": "a", "prompt": "p"}]', "not a rollout-log line"),  # ... without its last newline: not "torn"
        ('{"step": 1, "id": "a", "reward": 1.0}\nsome notes', "not a rollout-log line"),  # a log someone wrote in
    ],
)
def test_refuses_to_append_to_a_file_that_is_not_a_log(tmp_path, content, message):
    path = tmp_path / "prompts.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        RolloutLog(path)
    assert path.read_text() == content  # untouched


def test_one_writer_per_log(tmp_path):
    first = RolloutLog(tmp_path / "r.jsonl")
    with pytest.raises(DataError, match="another process is writing this log"):
        RolloutLog(tmp_path / "r.jsonl")
    first.close()
    RolloutLog(tmp_path / "r.jsonl").close()  # free again once the first writer closed


def test_a_failed_write_leaves_only_whole_lines(tmp_path):
    # the file-size limit makes the kernel accept part of a write and then fail it, as a full disk does
    path = tmp_path / "r.jsonl"
    _write_lines(path, 2, 1)
    script = f"""
import resource, signal, sys
from limr.pool import Graded
from limr.rollout_log import RolloutLog, log_row
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = RolloutLog({str(path)!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (log.size + 150, log.size + 150))
g = Graded(1.0, True, "5", None, 0.0)
try:
    log.write(log_row(3, "big", g, 500, response="x" * 500))
except OSError as e:
    print("failed", e.errno, log.lines)
log.write(log_row(3, "small", g, 1))
print("written", log.lines)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed", "27", "2", "written", "3"]  # EFBIG; the count did not move
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["p0", "p1", "small"]


# ---- The server as a process ----------------------------------------------------------------------------------------


class ServerProcess:
    """train/reward_server.py on 127.0.0.1 (a free port), its output collected; always stopped on exit."""

    def __init__(self, log: Path, *args: str, samples_per_step: int = 4, preexec_fn=None):
        cmd = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", "--rollout_log", str(log),
               "--samples_per_step", str(samples_per_step), "--workers", "2", *args]  # fmt: skip
        self.log = log
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)  # fmt: skip
        self.stdout, self.stderr, self._lines = [], [], queue.Queue()
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True).start()
        self.port = None
        try:
            self.port = int(self._wait_for(r"http://127\.0\.0\.1:(\d+)/get_reward", 60).group(1))
            self.url = f"http://127.0.0.1:{self.port}"
            self._wait_healthy(60)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def _collect(self, stream, sink: list) -> None:
        for line in stream:
            sink.append(line)
            self._lines.put(line)

    def _wait_for(self, pattern: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = re.search(pattern, self._lines.get(timeout=0.5))
            except queue.Empty:
                m = None
                if self.proc.poll() is not None:
                    break
            if m:
                return m
        raise AssertionError(f"server did not print {pattern!r}; stderr: {''.join(self.stderr)[-2000:]}")

    def _wait_healthy(self, timeout: float) -> None:
        for _ in range(int(timeout / 0.1)):
            try:
                if request(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server never became healthy")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, decoded JSON reply) over a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- OpenRLHF's own client ------------------------------------------------------------------------------------------


def chat_tokenizer():
    """A byte-level tokenizer built here (no download): decode(encode(text)) == text, and Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=END, clean_up_tokenization_spaces=False)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", END, "<|endoftext|>"]})
    return tok


class ScriptedEngine:
    """Stands in for the vLLM engine (the one part that needs a GPU): it answers every prompt with `response`."""

    def __init__(self, tokenizer, response: str, truncated: bool = False):
        self.ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        self.response, self.finish = response, "length" if truncated else "stop"

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        out = SimpleNamespace(token_ids=self.ids, text=self.response, finish_reason=self.finish, logprobs=None)
        return SimpleNamespace(outputs=[out])


def run_executor(executor, cases: list[tuple], tokenizer, max_length: int = 4096) -> list[dict]:
    """OpenRLHF's SingleTurnAgentExecutor.execute for each (prompt, label, response, truncated, ...), in order."""

    async def go():
        outputs = []
        for prompt, label, response, truncated, *_ in cases:
            params = SimpleNamespace(max_tokens=256, logprobs=None)
            engine = ScriptedEngine(tokenizer, response, truncated)
            outputs.append(await executor.execute(prompt, label, params, max_length, tokenizer, engine))
        return outputs

    return asyncio.run(go())


def openrlhf_client(url_or_file):
    """OpenRLHF 0.11.2's own reward client, as each vLLM engine builds it from --reward.remote_url."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    return SingleTurnAgentExecutor(url_or_file)


def test_openrlhf_client_end_to_end(tmp_path):
    """OpenRLHF's client (token passed in the URL, as it must be) -> server -> rewards, training and eval logs."""
    tok = chat_tokenizer()
    long_q = "Compute the sum of the series. " * 20 + "What is 2+3?"
    cases = [
        (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{5}$." + END, False),  # correct
        (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{6}$." + END, False),  # wrong
        (chat("What is 1/2?"), encode_label("m2", "\\frac{1}{2}"), "So $\\boxed{0.5}$" + END, False),  # math-verify
        (chat("What is 2+3?"), encode_label("m1", "5"), "Add: $\\boxed{5}$.", True),  # cut off: format error
        (chat("AIME?"), encode_label("aime-1", "204", "eval"), "\\boxed{204}" + END, False),  # evaluation row
        (chat("Plain?"), "7", "\\boxed{7}" + END, False),  # a plain-answer label
        (chat(long_q), encode_label("m3", "5"), "\\boxed{5}" + END, False),  # prompt cut by max_length: fallback
    ]
    expected = [CORRECT, WRONG, CORRECT, BAD_FORMAT, CORRECT, CORRECT, CORRECT]
    log = tmp_path / "run" / "rollouts.jsonl"
    with ServerProcess(log, "--token", "s3cret", "--store_responses", samples_per_step=2) as server:
        url = f"http://limr:s3cret@127.0.0.1:{server.port}/get_reward"
        client = openrlhf_client(url)
        outputs = run_executor(client, cases[:-1], tok) + run_executor(client, cases[-1:], tok, len(long_q) + 300)
        status, stats = request(server.port, "GET", "/stats", headers={"Authorization": "Bearer s3cret"})
        assert server.stop() == 0
    assert [o["reward"] for o in outputs] == [[r] for r in expected]  # OpenRLHF keeps the reply's list
    assert [o["scores"] for o in outputs] == [[float(r == CORRECT)] for r in expected]
    assert outputs[3]["extra_logs"] == {"correct": [0.0], "format_error": [1.0], "timed_out": [0.0]}
    assert status == 200 and (stats["requests"], stats["train_samples"], stats["eval_samples"]) == (7, 6, 1)
    assert stats["prompt_fallbacks"] == 1 and stats["step"] == 4
    train = read_log(log)
    assert [(r["step"], r["id"], r["reward"]) for r in train] == [
        (1, "m1", CORRECT), (1, "m1", WRONG), (2, "m2", CORRECT), (2, "m1", BAD_FORMAT),
        (3, prompt_hash(chat("Plain?")), CORRECT), (3, "m3", CORRECT)]  # fmt: skip
    first = "Add: $\\boxed{5}$." + END
    assert train[0] == {"step": 1, "id": "m1", "reward": 1.0, "correct": True, "response_length": len(first),
                        "extracted": "5", "format_error": None, "timed_out": False,
                        "response_sha1": response_sha1(first), "response": first}  # fmt: skip
    assert train[3]["format_error"] == "truncated" and train[-1]["response"] == "\\boxed{5}" + END
    assert read_log(log.with_name("rollouts.eval.jsonl")) == [
        {"step": 2, "id": "aime-1", "reward": 1.0, "correct": True, "response_length": 11 + len(END), "split": "eval",
         "extracted": "204", "format_error": None, "timed_out": False,
         "response_sha1": response_sha1("\\boxed{204}" + END), "response": "\\boxed{204}" + END}]  # fmt: skip


def test_openrlhf_rotates_several_urls_so_use_one(tmp_path):
    """Why the docs say one URL: given two, OpenRLHF 0.11.2 sends each sample to one server in turn (no empty-list
    requests), so each server would number only half of every step."""
    tok = chat_tokenizer()
    case = (chat("What is 2+3?"), encode_label("m1", "5"), "\\boxed{5}" + END, False)
    with ServerProcess(tmp_path / "a.jsonl") as a, ServerProcess(tmp_path / "b.jsonl") as b:
        outputs = run_executor(openrlhf_client([a.url + "/get_reward", b.url + "/get_reward"]), [case] * 4, tok)
        counts = [request(s.port, "GET", "/stats")[1]["requests"] for s in (a, b)]
    assert [o["reward"] for o in outputs] == [[CORRECT]] * 4
    assert counts == [2, 2] and len(read_log(tmp_path / "a.jsonl")) == len(read_log(tmp_path / "b.jsonl")) == 2


# ---- Bad input, auth, limits ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("token_server") / "rollouts.jsonl"
    with ServerProcess(log, "--token", "s3cret", "--max_request_bytes", "250000") as server:
        yield server


AUTH = {"Authorization": "Bearer s3cret"}


def _chunked(port: int, n_chunks: int, chunk: bytes) -> int:
    """POST a body sent in chunks, with no Content-Length: the limit must hold while streaming too."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/get_reward", body=iter([chunk] * n_chunks), headers=AUTH, encode_chunked=True)
        return conn.getresponse().status
    finally:
        conn.close()


def test_bad_requests_get_4xx_and_the_server_goes_on(token_server):
    port = token_server.port
    before = request(port, "GET", "/stats", headers=AUTH)[1]
    for body, status, message in BAD_BODIES:
        got = request(port, "POST", "/get_reward", body, AUTH)
        assert got[0] == status and message in got[1]["error"], (body[:40], got)
    assert request(port, "POST", "/get_reward", _payload(), {})[0] == 401  # no token
    assert request(port, "POST", "/get_reward", _payload(), {"Authorization": "Bearer nope"})[0] == 401
    assert request(port, "POST", "/get_reward?token=s3cret", _payload())[0] == 200  # the token in the URL
    assert request(port, "GET", "/stats")[0] == 401
    too_big = _payload(query=["x" * 300_000])
    assert request(port, "POST", "/get_reward", too_big, AUTH)[0] == 413  # declared too big
    assert _chunked(port, 26, b"x" * 10_000) == 413  # streamed too big
    assert request(port, "GET", "/get_reward")[0] == 405
    after = request(port, "GET", "/stats", headers=AUTH)[1]
    assert after["rejected"] - before["rejected"] == len(BAD_BODIES) + 4  # 2 wrong tokens, 2 too big (not /stats)
    # it still serves, and none of that reached the log
    assert request(port, "GET", "/health")[1]["status"] == "ok"
    status, reply = request(port, "POST", "/get_reward", _payload(), AUTH)
    assert (status, reply["rewards"]) == (200, [CORRECT])
    assert request(port, "POST", "/get_reward", _payload(query=[], prompts=[], labels=[]), AUTH)[1]["rewards"] == []
    assert request(port, "GET", "/health")[0] == 200  # an empty request left the grading pool whole
    assert [r["id"] for r in read_log(token_server.log)] == ["a", "a"]


def test_refuses_a_log_written_with_another_step_size(tmp_path):
    log = tmp_path / "rollouts.jsonl"
    _write_lines(log, 5, 2)
    cmd = [sys.executable, str(SERVER), "--port", "0", "--rollout_log", str(log), "--samples_per_step", "4"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "--samples_per_step" in out.stderr
    assert len(log.read_text().splitlines()) == 5


def test_a_response_over_the_hard_limit_gets_wrong_and_is_counted(tmp_path):
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--hard_limit", "0.5") as server:
        # ~4 s of sympy (a power tower no longer serves: the grader refuses it at once)
        stuck = _payload(query=[P + "\\boxed{(x+1)^{400}}" + END], labels=[encode_label("a", "x^2+1")])
        assert request(server.port, "POST", "/get_reward", stuck)[1]["rewards"] == [WRONG]
        assert request(server.port, "POST", "/get_reward", _payload())[1]["rewards"] == [CORRECT]  # a new worker
        assert request(server.port, "GET", "/stats")[1]["timeouts"] == 1
    assert [(r["reward"], r["timed_out"]) for r in read_log(log)] == [(WRONG, True), (CORRECT, False)]


def test_a_log_write_that_fails_gets_500_and_keeps_the_log_whole(tmp_path):
    import resource

    def limit_file_size():  # in the server process: files stop growing at 4 KB, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--store_responses", preexec_fn=limit_file_size) as server:
        big = _payload(query=[P + "x" * 5000 + "\\boxed{5}" + END])
        status, reply = request(server.port, "POST", "/get_reward", big)
        assert status == 500 and "could not write the rollout log" in reply["error"]
        assert request(server.port, "POST", "/get_reward", _payload())[0] == 200
    assert [r["response"] for r in read_log(log)] == ["\\boxed{5}" + END]


# ---- Load, crash, shutdown ------------------------------------------------------------------------------------------


def _sample(prompt_idx: int, correct: bool, split: str = "train") -> tuple[dict, float]:
    """One OpenRLHF-shaped request for prompt p{prompt_idx} (gold answer = its index) and the reward it should get."""
    prompt = chat(f"What is {prompt_idx} + 0?")
    boxed = prompt_idx if correct else prompt_idx + 1
    body = {"query": [prompt + f"Adding zero changes nothing, so $\\boxed{{{boxed}}}$." + END], "prompts": [prompt],
            "labels": [encode_label(f"p{prompt_idx}", str(prompt_idx), split)]}  # fmt: skip
    return body, (CORRECT if correct else WRONG)


async def _send_all(url: str, bodies: list[tuple[dict, float]], session) -> list:
    """Send every body with CLIENTS concurrent clients; returns (status, rewards, expected reward) per body."""
    todo, results = iter(enumerate(bodies)), [None] * len(bodies)

    async def client():
        for i, (body, expected) in todo:
            async with session.post(url, json=body) as resp:
                results[i] = (resp.status, (await resp.json())["rewards"], expected)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return results


def correct_at(p: int, step: int, j: int) -> bool:
    """Which samples the test makes correct: a per-prompt accuracy that drifts with the step."""
    return j < (p + step) % 11


def test_load_64_clients_steps_and_lim_selection_round_trip(tmp_path):
    """OpenRLHF's synchronous PPO: each step's samples all at once (64 clients), then 5% evaluation requests."""
    import aiohttp

    prompts, per_prompt = 100, 10
    sps = prompts * per_prompt
    steps = max(2, LOAD_REQUESTS // sps)
    log = tmp_path / "rollouts.jsonl"
    sent = {}  # (prompt, step) -> correct samples

    async def drive(url):
        results = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:
            for step in range(1, steps + 1):
                bodies = [_sample(p, correct_at(p, step, j)) for p in range(prompts) for j in range(per_prompt)]
                results += await _send_all(url, bodies, session)
                evals = [_sample(p, p % 2 == 0, "eval") for p in range(sps // 20)]
                results += await _send_all(url, evals, session)
        return results

    with ServerProcess(log, samples_per_step=sps) as server:
        results = asyncio.run(drive(server.url + "/get_reward"))
        stats = request(server.port, "GET", "/stats")[1]
    assert len(results) == steps * sps * 21 // 20 >= min(LOAD_REQUESTS, 20_000)
    assert all(status == 200 and rewards == [expected] for status, rewards, expected in results)  # all answered
    assert (stats["requests"], stats["train_samples"], stats["step"]) == (len(results), steps * sps, steps + 1)
    rows = read_log(log)
    assert len(rows) == steps * sps  # one line per training request
    assert all(r["step"] == i // sps + 1 for i, r in enumerate(rows))  # steps numbered in order
    eval_rows = read_log(tmp_path / "rollouts.eval.jsonl")
    assert len(eval_rows) == steps * sps // 20 and {r["step"] for r in eval_rows} == set(range(1, steps + 1))
    for step in range(1, steps + 1):
        for p in range(prompts):
            sent[(p, step)] = sum(correct_at(p, step, j) for j in range(per_prompt))

    # lim_selection reads what the server wrote: the per-prompt per-epoch accuracy is what was sent
    prompt_file = tmp_path / "prompts.json"
    prompt_file.write_text(json.dumps([{"id": f"p{p}", "prompt": f"q{p}", "answer": str(p)} for p in range(prompts)]))
    accuracy = lim.scan_rollout_log(log, {f"p{p}" for p in range(prompts)}, 2, steps // 2).tally.accuracy()
    for p in range(prompts):
        expected = [(sent[(p, 2 * e + 1)] + sent[(p, 2 * e + 2)]) / (2 * per_prompt) for e in range(steps // 2)]
        assert accuracy[f"p{p}"] == pytest.approx(expected)
    out = tmp_path / "lim" / "limr.json"
    argv = ["--train_samples_path", log, "--original_prompts_path", prompt_file, "--output_path", out,
            "--steps_per_epoch", 2, "--max_epochs", steps // 2, "--no_plots"]  # fmt: skip
    assert lim.main([str(a) for a in argv]) == 0
    report = json.loads(out.with_name("limr.report.json").read_text())
    assert (report["samples"], report["eval_rows_skipped"], report["torn_last_line"]) == (steps * sps, 0, None)


async def _load_until(url: str, answered_min: int, action, limit_s: float = 120) -> tuple[int, int]:
    """Keep CLIENTS clients sending until `answered_min` are answered, call `action()`, then wait for the clients
    to stop on their own (their server is going away). Returns (answered with 200, other outcomes)."""
    import aiohttp

    answered, failed, done = 0, 0, asyncio.Event()
    deadline = time.monotonic() + limit_s

    async def client(session, c):
        nonlocal answered, failed
        i = 0
        while time.monotonic() < deadline:
            body, _ = _sample((c * 7 + i) % 50, i % 3 == 0)
            i += 1
            try:
                async with session.post(url, json=body) as resp:
                    if resp.status != 200:
                        failed += 1
                        return
                    await resp.json()
                    answered += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                failed += 1
                return
            if answered >= answered_min and not done.is_set():
                done.set()
                action()

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS), timeout=timeout) as session:
        await asyncio.gather(*(client(session, c) for c in range(CLIENTS)))
    assert done.is_set(), "the load never reached its target"
    return answered, failed


def test_kill_9_under_load_then_restart_resumes(tmp_path):
    sps = 100
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, samples_per_step=sps) as server:
        answered, _ = asyncio.run(_load_until(server.url + "/get_reward", 2000, server.proc.kill))
        assert server.stop() == -signal.SIGKILL
    data = log.read_bytes()
    lines = data.splitlines()
    # every line the server wrote is whole and readable; every answered request is in it (logged before the
    # reply), plus at most the requests in flight at the kill
    assert data.endswith(b"\n")
    assert all(json.loads(line)["step"] == i // sps + 1 for i, line in enumerate(lines))
    assert answered <= len(lines) <= answered + CLIENTS

    # kill -9 cannot cut one write() of a line short, but a power loss or a full disk can: make a torn line
    with open(log, "ab") as f:
        f.write(b'{"step": 99, "id": "p1", "rew')
    read = lim.scan_rollout_log(log, None, 1, 1)  # lim_selection skips it with a warning
    assert read.torn_last_line == len(lines) + 1 and read.samples == len(lines)

    with ServerProcess(log, samples_per_step=sps) as server:
        assert any("torn last line" in line for line in server.stderr)
        assert request(server.port, "GET", "/health")[1]["step"] == len(lines) // sps + 1
        assert request(server.port, "GET", "/stats")[1]["resumed_lines"] == len(lines)
        for i in range(150):
            assert request(server.port, "POST", "/get_reward", json.dumps(_sample(i % 50, True)[0]).encode())[0] == 200
    rows = read_log(log)  # all whole again, numbering continued across the crash
    assert len(rows) == len(lines) + 150
    assert all(r["step"] == i // sps + 1 for i, r in enumerate(rows))
    assert (tmp_path / "rollouts.jsonl.torn").read_bytes() == b'{"step": 99, "id": "p1", "rew\n'


def test_sigterm_under_load_answers_in_flight_requests_and_flushes(tmp_path):
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, samples_per_step=100) as server:
        answered, _ = asyncio.run(_load_until(server.url + "/get_reward", 1000, server.proc.terminate))
        assert server.stop() == 0
    assert any("stopped after" in line for line in server.stdout)
    rows = read_log(log)
    assert log.read_bytes().endswith(b"\n")
    assert len(rows) == answered  # in-flight requests were finished and answered, none was dropped
    assert all(r["step"] == i // 100 + 1 for i, r in enumerate(rows))


def test_help_and_bad_flags():
    out = subprocess.run([sys.executable, str(SERVER), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--samples_per_step" in out.stdout and "python train/reward_server.py" in out.stdout
    bad = [sys.executable, str(SERVER), "--rollout_log", "x.jsonl", "--samples_per_step", "0"]
    out = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--samples_per_step" in out.stderr


# ---------------------------------------------------------------------------------------------------------
# Steps with a partial last batch per pass (--samples_per_epoch)


@pytest.mark.parametrize(
    "index, expected",
    [
        (0, 1),  # the first sample
        (8 * 8192 - 1, 8),  # the last sample of the 8 full steps of pass 1
        (8 * 8192, 9),  # the 331 prompts x 8 left over make step 9
        (68184 - 1, 9),  # the last sample of pass 1
        (68184, 10),  # pass 2 starts a new step, not a continuation of step 9
        (21 * 68184 - 1, 189),  # 21 passes: 189 steps, OpenRLHF's global_step count
    ],
)
def test_steps_restart_at_each_pass(index, expected):
    assert step_of(index, 8192, 68184) == expected
    assert step_of(index, 8192) == index // 8192 + 1  # without epochs: plain division


def test_resume_checks_samples_per_epoch(tmp_path):
    # a log numbered with passes must be resumed with the same pass size
    path = tmp_path / "rollouts.jsonl"
    rows = [json.dumps(log_row(step_of(i, 4, 10), f"p{i}", G, 1)) + "\n" for i in range(12)]
    path.write_text("".join(rows))  # passes of 10 in steps of 4: 4 + 4 + 2, then 4: line 12 is step 4
    log = RolloutLog(path)
    try:
        check_resume(log, 4, 10)  # the same numbering: fine
        with pytest.raises(DataError, match="samples_per_epoch"):
            check_resume(log, 4)  # without passes line 12 would be step 3
    finally:
        log.close()


def test_server_numbers_steps_per_pass(tmp_path):
    # passes of 6 samples in steps of 4: each pass is a step of 4 and a partial step of 2, as OpenRLHF 0.11 runs it
    log = tmp_path / "rollouts.jsonl"
    P = chat("What is 2+3?")
    body = json.dumps({"query": [P + "\\boxed{5}" + END], "prompts": [P], "labels": [encode_label("a", "5")]})
    with ServerProcess(log, "--samples_per_epoch", "6", samples_per_step=4) as server:
        for n in range(14):
            assert request(server.port, "POST", "/get_reward", body.encode())[0] == 200
            if n in (5, 6):  # an evaluation row after the first pass and one after a sample of the second
                evaluation = body.replace(
                    json.dumps(encode_label("a", "5")), json.dumps(encode_label("a", "5", "eval"))
                )
                assert request(server.port, "POST", "/get_reward", evaluation.encode())[0] == 200
        assert request(server.port, "GET", "/health")[1]["step"] == 5  # the 15th sample still belongs to step 5
    assert [row["step"] for row in read_log(log)] == [1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5]
    assert [row["epoch"] for row in read_log(log)] == [1] * 6 + [2] * 6 + [3] * 2  # each line says its pass
    evals = read_log(tmp_path / "rollouts.eval.jsonl")  # the training steps and passes completed
    assert [(row["step"], row["epoch"]) for row in evals] == [(2, 1), (2, 1)]


# ---- What one client can hold: connections, headers, samples, time; a client gone; a pool that cannot grade -----


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (the grading workers and the forkserver they fork from), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


class Paused:
    """SIGSTOP the server's grading processes, so that what is queued stays queued until the block ends: tests
    then order events without timing. The hard limit must be long enough not to kill a stopped worker."""

    def __init__(self, server: ServerProcess):
        self.pids = descendants(server.proc.pid)
        assert self.pids, "the server has no grading processes"

    def __enter__(self):
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        for pid in self.pids:
            os.kill(pid, signal.SIGCONT)


def wait_for_stat(server: ServerProcess, key: str, value: int, timeout: float = 60) -> None:
    """Poll /stats until stats[key] == value (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while (got := request(server.port, "GET", "/stats")[1][key]) != value:
        assert time.monotonic() < deadline, f"/stats {key} stayed {got}, expected {value}"
        time.sleep(0.05)


def raw_post(port: int, body: bytes) -> socket.socket:
    """A POST sent on a raw socket, its reply left unread."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (60 s hang guard)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_idle_connections_are_closed_and_never_block_a_request(tmp_path, http):
    """300 connections that send nothing and 50 that send half a header; a real request is served meanwhile, and
    each of them is closed at the header deadline (uvicorn alone never closes them). The deadline is 3 s, not less:
    the real request's own connection must reach its headers within it on a loaded machine."""
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--http", http, "--header_timeout", "3") as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(300)]
        half = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(50)]
        for sock in half:
            sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, reply = request(server.port, "POST", "/get_reward", _payload())  # served among them
        assert (status, reply["rewards"]) == (200, [CORRECT])
        for sock in idle + half:
            assert read_reply(sock) == b""  # closed by the server: recv sees the end (or the 60 s guard fails)
            sock.close()
        stats = request(server.port, "GET", "/stats")[1]
    assert stats["connections_header_timeouts"] >= 350 and len(read_log(log)) == 1


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_headers_over_the_cap_get_431_and_cost_nothing_later(tmp_path, http):
    with ServerProcess(tmp_path / "r.jsonl", "--http", http, "--token", "s3cret") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        try:
            sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
        except OSError:  # the server may close before all of it is sent
            pass
        reply = read_reply(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 431 ") and b"request headers over 65536 bytes" in reply
        assert request(server.port, "POST", "/get_reward", _payload(), AUTH)[0] == 200
        assert request(server.port, "GET", "/stats", headers=AUTH)[1]["connections_headers_too_large"] == 1


def test_connections_over_the_cap_get_a_clear_503(tmp_path):
    with ServerProcess(tmp_path / "r.jsonl", "--max_connections", "5") as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(5)]
        extra = raw_post(server.port, _payload())
        reply = read_reply(extra)
        extra.close()
        assert reply.startswith(b"HTTP/1.1 503 ") and b"--max_connections" in reply
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 60  # the server sees the closes soon; until then the cap still holds
        while (status := request(server.port, "POST", "/get_reward", _payload())[0]) == 503:
            assert time.monotonic() < deadline
        assert status == 200
    assert len(read_log(tmp_path / "r.jsonl")) == 1


def test_an_unauthenticated_body_is_never_read(token_server):
    # 401 as soon as the headers are in, the connection closed: the 4 MB the client announced cost nothing
    sock = socket.create_connection(("127.0.0.1", token_server.port), timeout=60)
    sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n{")
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 401 ") and b"connection: close" in reply.lower()


def test_a_client_gone_before_its_reply_is_not_logged(tmp_path):
    """OpenRLHF sends a request again after its 180 s timeout: the first try must not reach the log too."""
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--workers", "1", "--hard_limit", "600") as server:
        with Paused(server):  # the sample cannot be graded before its client leaves
            gone = raw_post(server.port, _payload(labels=[encode_label("gone", "5")]))
            wait_for_stat(server, "grading", 1)
            gone.close()
            wait_for_stat(server, "client_gone", 1)
        status, _ = request(server.port, "POST", "/get_reward", _payload(labels=[encode_label("retried", "5")]))
        assert status == 200
        stats = request(server.port, "GET", "/stats")[1]
    assert [r["id"] for r in read_log(log)] == ["retried"]
    assert (stats["requests"], stats["client_gone"], stats["train_samples"]) == (1, 1, 1)


def test_requests_are_graded_round_robin(tmp_path):
    """A request of 8 samples queued first does not hold back a one-sample request behind all of them."""
    log = tmp_path / "rollouts.jsonl"
    many = _payload(query=[P + "\\boxed{5}" + END] * 8, prompts=[P] * 8, labels=[encode_label("many", "5")] * 8)
    with ServerProcess(log, "--workers", "1", "--hard_limit", "600") as server:
        with Paused(server):
            first = raw_post(server.port, many)
            wait_for_stat(server, "grading", 1)
            second = raw_post(server.port, _payload(labels=[encode_label("one", "5")]))
            wait_for_stat(server, "grading", 2)
        replies = [read_reply_once(sock) for sock in (first, second)]
    assert all(r.startswith(b"HTTP/1.1 200 ") for r in replies)
    # the one sample was graded (and logged) after at most two of the eight, not after all of them
    assert [r["id"] for r in read_log(log)] == ["one"] + ["many"] * 8


def read_reply_once(sock: socket.socket) -> bytes:
    """One kept-alive reply: read until its body (Content-Length) is in, then close."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    sock.close()
    return data


def test_a_request_is_logged_all_or_nothing(tmp_path):
    """Disk full in the middle of a 3-sample request: none of its lines stay (the retry logs each once)."""
    import resource

    def limit_file_size():  # in the server process: files stop growing at 4 KB, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    log = tmp_path / "rollouts.jsonl"
    three = _payload(
        query=[P + "x" * 1500 + "\\boxed{5}" + END] * 3, prompts=[P] * 3, labels=[encode_label("a", "5")] * 3
    )
    with ServerProcess(log, "--store_responses", preexec_fn=limit_file_size) as server:
        status, reply = request(server.port, "POST", "/get_reward", three)  # 2 lines fit, the 3rd does not
        assert status == 500 and "could not write the rollout log" in reply["error"]
        assert request(server.port, "POST", "/get_reward", _payload(labels=[encode_label("b", "5")]))[0] == 200
    assert [r["id"] for r in read_log(log)] == ["b"]


class _FailingLog(RolloutLog):
    def write_bytes(self, data: bytes) -> None:
        raise OSError(28, "No space left on device")


def test_a_failed_eval_write_takes_back_the_training_lines(tmp_path):
    train, evals = RolloutLog(tmp_path / "r.jsonl"), _FailingLog(tmp_path / "r.eval.jsonl")
    recorder = rs.Recorder(train, evals, samples_per_step=4, store_responses=False)
    samples = [make_sample(P + "\\boxed{5}" + END, P, encode_label(pid, "5", split)) for pid, split in
               [("t1", "train"), ("e1", "eval"), ("t2", "train")]]  # fmt: skip
    with pytest.raises(OSError):
        recorder.record(samples, [G] * 3)
    assert (train.lines, train.size, recorder.counts["train"]) == (0, 0, 0)
    recorder.record(samples[:1], [G])
    train.close()
    assert [r["id"] for r in read_log(tmp_path / "r.jsonl")] == ["t1"]


class _NoRestartPool(rs.GradingPool):
    refuse = False

    def _spawn(self):
        if self.refuse:
            raise OSError(24, "Too many open files")
        return super()._spawn()


def test_health_turns_unhealthy_when_a_worker_cannot_be_restarted(tmp_path):
    """Out of file handles, a worker that overran the limit cannot be replaced: the request gets 503 at once (it
    used to wait forever), /health says so, and both recover once a worker starts again. Served in-process on
    127.0.0.1 by the server's own uvicorn setup, to reach into the pool."""
    import uvicorn

    pool = _NoRestartPool(workers=1, hard_limit_s=0.3, eos_markers=None, batch=1)
    train, evals = RolloutLog(tmp_path / "r.jsonl"), RolloutLog(tmp_path / "r.eval.jsonl")
    limits = rs.Limits()
    app = rs.create_app(pool, rs.Recorder(train, evals, 4, False), None, limits)
    sock = rs.bind("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http=rs.guarded_protocol("httptools", limits))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pool.refuse = True
        stuck = _payload(query=[P + "\\boxed{(x+1)^{400}}"], labels=[encode_label("a", "x^2+1")])  # over 0.3 s
        assert request(port, "POST", "/get_reward", stuck)[1]["rewards"] == [WRONG]
        status, reply = request(port, "POST", "/get_reward", _payload())
        assert status == 503 and "Too many open files" in reply["error"]
        status, health = request(port, "GET", "/health")
        assert status == 503 and health["status"] == "unhealthy" and "cannot start" in health["error"]
        pool.refuse = False
        assert request(port, "POST", "/get_reward", _payload())[1]["rewards"] == [CORRECT]
        assert request(port, "GET", "/health")[0] == 200
    finally:
        server.should_exit = True
        thread.join(60)
        pool.close()
        train.close()
        evals.close()
    assert [r["timed_out"] for r in read_log(tmp_path / "r.jsonl")] == [True, False]


@pytest.mark.parametrize(
    "flag, value",
    [("--hard_limit", "nan"), ("--hard_limit", "0"), ("--hard_limit", "inf"), ("--workers", "-1"),
     ("--samples_per_step", "0"), ("--samples_per_epoch", "-5"), ("--port", "70000"), ("--max_connections", "0"),
     ("--max_samples_per_request", "0"), ("--header_timeout", "31"), ("--max_request_bytes", "1e3")],
)  # fmt: skip
def test_numeric_flags_are_checked_with_one_line(flag, value, tmp_path):
    cmd = [sys.executable, str(SERVER), "--rollout_log", str(tmp_path / "r.jsonl"), "--samples_per_step", "4"]
    out = subprocess.run(cmd + [flag, value], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and flag in out.stderr.splitlines()[-1] and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1].startswith("reward_server.py: error: ")
    assert not (tmp_path / "r.jsonl").exists()


def test_too_many_samples_in_one_request_cost_nothing(token_server):
    # 20,000 tiny samples in 200 KB: refused before any of them is read, graded or logged
    body = json.dumps({"query": ["x"] * 20_000, "labels": ["5"] * 20_000}).encode()
    before = len(read_log(token_server.log)) if token_server.log.exists() else 0
    status, reply = request(token_server.port, "POST", "/get_reward?token=s3cret", body)
    assert status == 413 and "at most 1024" in reply["error"]
    assert (len(read_log(token_server.log)) if token_server.log.exists() else 0) == before


def test_duplicates_are_found_and_reported_on_resume(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    rows = [log_row(step_of(i, 4), f"p{i % 3}", G, 1, sha1=response_sha1(f"r{i}")) for i in range(8)]
    rows.insert(3, dict(rows[1]))  # line 4 repeats line 2 (a retried request logged twice)
    rows.append({**rows[-1], "step": 3})  # the next step repeating the previous step's last sample: caught too
    rows.append(log_row(3, "p0", G, 1))  # a line from before response_sha1: not checked
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert find_duplicates(path) == [(4, 2), (10, 9)]
    warnings = []
    log = RolloutLog(path)
    try:
        check_resume(log, 4, warn=warnings.append)
    except DataError:  # the extra lines shift the numbering; the duplicates are reported first
        pass
    log.close()
    assert len(warnings) == 1 and "2 lines repeat a sample" in warnings[0] and "line 4 repeats line 2" in warnings[0]


@pytest.mark.parametrize(
    "tail",
    [
        b"\0" * 4096,  # whole blocks of NULs after the last line: what a power loss leaves
        b'{"step": 3, "id": "p' + b"\0" * 1000,  # a line cut short, then NULs
    ],
)
def test_a_nul_filled_tail_is_moved_aside(tmp_path, tail):
    path = tmp_path / "r.jsonl"
    _write_lines(path, 6, 3, tail)
    warnings = []
    log = RolloutLog(path, warn=warnings.append)
    assert log.lines == 6
    log.write(log_row(3, "next", G, 1))
    log.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()][-2:] == ["p5", "next"]
    assert (tmp_path / "r.jsonl.torn").read_bytes() == tail + b"\n"
    assert len(warnings) == 1 and "NUL bytes" in warnings[0]


# ---- Damage and hostile logs at start (issue 22, items 5, 6, 9, 11) -------------------------------------------------

RECORD = b'{"step": 1, "id": "late", "reward": 1.0}'


@pytest.mark.parametrize(
    "damage, kept, moved",
    [
        (b"\0" * 4096 + RECORD + b"\n", ["p5", "late"], b"\0" * 4096),  # NULs, then a whole record
        (b"\0" * 4096 + b"\n", ["p5"], b"\0" * 4096),  # NULs, then a newline
        (
            b'{"step": 2, "id": "p' + b"\0" * 4096 + RECORD + b"\n",
            ["p5", "late"],
            b'{"step": 2, "id": "p' + b"\0" * 4096,
        ),
        (b"\0" * 100 + b'"id": "q"}\n' + RECORD + b"\n", ["p5", "late"], b"\0" * 100 + b'"id": "q"}'),  # a lost start
    ],
)
def test_a_nul_block_followed_by_data_is_set_aside(tmp_path, damage, kept, moved):
    """What a power loss leaves mid-file (the blocks of a line or two never written, later ones were): every whole
    record stays, in order, once; the damage goes to <log>.torn with one warning; appending goes on."""
    path = tmp_path / "r.jsonl"
    _write_lines(path, 6, 3, damage)
    warnings = []
    log = RolloutLog(path, warn=warnings.append)
    assert log.lines == 5 + len(kept)
    log.write(log_row(3, "next", G, 1))
    log.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()][5:] == [*kept, "next"]
    assert (tmp_path / "r.jsonl.torn").read_bytes() == moved + b"\n"
    assert len(warnings) == 1 and "NUL bytes" in warnings[0]
    assert count_samples(path).samples.total() == 6 + len(kept)  # lim_selection.py reads the repaired log


@pytest.mark.parametrize(
    "content",
    [
        b"\x7fELF\x02\x01\0\0\0\0garbage\n",  # a binary file: NULs, and no line is a record
        b'{"step": 1, "id": "a", "reward": 1.0}\nnotes\0\0\0\n',  # a line with NULs that this writer never began
        b'{"step": 1, "id": "a", "reward": 1.0}\n\0\0\nnotes\n',  # ... and a line after the NULs that is no record
    ],
)
def test_nul_bytes_in_a_file_that_is_not_a_log_are_not_cut(tmp_path, content):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not appending"):
        RolloutLog(path)
    assert path.read_bytes() == content and not (tmp_path / "r.jsonl.torn").exists()


class _CountingBytes(bytes):
    """Chunks that count the bytes every `+` on them builds: joining a line's chunks pairwise is quadratic."""

    copied = 0

    def __add__(self, other):
        _CountingBytes.copied += len(self) + len(other)
        return bytes(self) + bytes(other)

    def __radd__(self, other):  # bytes + _CountingBytes: Python asks the subclass first
        _CountingBytes.copied += len(self) + len(other)
        return bytes(other) + bytes(self)


class _CountingFile:
    def __init__(self, f):
        self._f = f

    def read(self, *args):
        return _CountingBytes(self._f.read(*args))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_a_long_torn_last_line_is_read_in_linear_time(tmp_path, monkeypatch):
    """A torn tail of 8 MiB without a newline, read 4 KiB at a time: the bytes copied while reading it stay within a
    few times the file's size at server start and in the reader (chunk by chunk concatenation copies ~8 GiB)."""
    import builtins

    import limr.rollout_log as rl

    path = tmp_path / "r.jsonl"
    _write_lines(path, 6, 3, b'{"step": 3, "id": "p' + b"x" * (8 << 20))
    size = path.stat().st_size
    real_open = builtins.open
    monkeypatch.setattr(rl, "CHUNK", 4096)
    monkeypatch.setattr(rl, "open", lambda *a, **k: _CountingFile(real_open(*a, **k)), raising=False)
    _CountingBytes.copied = 0
    counts = count_samples(path, warn=lambda _: None)
    assert counts.torn_last_line == 7 and counts.samples.total() == 6
    assert _CountingBytes.copied <= 4 * size
    log = RolloutLog(path, warn=lambda _: None)
    log.close()
    assert log.lines == 6 and _CountingBytes.copied <= 8 * size
    assert (tmp_path / "r.jsonl.torn").stat().st_size == size - path.stat().st_size + 1  # the tail and a newline


@pytest.mark.parametrize(
    "line, message",
    [
        (
            b'{"step": 100000000000000000000, "id": "a", "reward": 1.0}',
            "'step' must be a positive integer below 2**63",
        ),
        (b'{"step": 1, "id": "a", "reward": 1.0, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
)
@pytest.mark.parametrize("last", [False, True])
def test_a_log_line_no_reader_can_count_stops_the_server_with_one_line(tmp_path, line, message, last):
    """Anywhere in the log: the server refuses to start (exit 2, one error line naming the line) and the reader
    raises DataError (lim_selection.py prints it as one line), instead of an OverflowError or RecursionError."""
    path = tmp_path / "r.jsonl"
    _write_lines(path, 2, 4)
    rest = b"" if last else b'{"step": 1, "id": "z", "reward": 1.0}\n'
    path.write_bytes(path.read_bytes() + line + b"\n" + rest)
    before = path.read_bytes()
    with pytest.raises(DataError, match=re.escape(message)):
        count_samples(path)
    cmd = [sys.executable, str(SERVER), "--port", "0", "--rollout_log", str(path), "--samples_per_step", "4"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.splitlines()[-1].startswith(f"error: {path}") and len(out.stderr.splitlines()) == 1
    assert path.read_bytes() == before


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_log_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    """A FIFO used to block the server at open (the subprocess's timeout is the hang guard); /dev/null gave
    /dev/null.eval.jsonl and an fsync traceback."""
    if kind == "fifo":
        log = tmp_path / "r.jsonl"
        os.mkfifo(log)
    else:
        log = Path(os.devnull)
        with pytest.raises(DataError, match="not a regular file"):
            RolloutLog(log)
    cmd = [sys.executable, str(SERVER), "--port", "0", "--rollout_log", str(log), "--samples_per_step", "4"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr == f"error: {log}: not a regular file; a rollout log must be one\n"
    assert not Path(str(log).removesuffix(".jsonl") + ".eval.jsonl").exists()


# ---- Pipelining, trailers and the memory all connections hold (issue 22, items 3 and 4) -----------------------------


def _post_bytes(body: bytes, extra: str = "") -> bytes:
    head = f"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; a reset (it closed with our data unread) ends it
    too (60 s hang guard)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.parametrize("together", [True, False])
def test_a_pipelined_request_whose_client_left_is_not_logged(tmp_path, together):
    """Two requests on one connection (in one packet, or the second while the first is graded), then the client
    leaves and sends both again: each is logged once (httptools logged the first twice: A, A, B)."""
    log = tmp_path / "rollouts.jsonl"
    first, second = (_post_bytes(_payload(labels=[encode_label(pid, "5")])) for pid in ("A", "B"))
    with ServerProcess(log, "--workers", "1", "--hard_limit", "600") as server:
        with Paused(server):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(first + second if together else first)
            wait_for_stat(server, "grading", 1)
            if not together:
                sock.sendall(second)
            sock.close()
            wait_for_stat(server, "client_gone", 1)
        for pid in ("A", "B"):
            assert request(server.port, "POST", "/get_reward", _payload(labels=[encode_label(pid, "5")]))[0] == 200
    assert [r["id"] for r in read_log(log)] == ["A", "B"]


def test_a_pipelined_request_gets_the_header_cap_and_deadline(tmp_path):
    """While a request is graded, what the connection sends ahead is held to 64 KiB (httptools parsed 160 MiB of
    headers meanwhile); the next request's headers then get the same deadline as a first request's."""
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--workers", "1", "--hard_limit", "600", "--header_timeout", "2") as server:
        with Paused(server):
            big = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            big.sendall(_post_bytes(_payload(labels=[encode_label("big", "5")])))
            wait_for_stat(server, "grading", 1)
            try:
                big.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
            except OSError:  # the server closes before all of it is sent
                pass
            assert read_until_closed(big) == b""  # closed unanswered: the client sends it again
            big.close()
            wait_for_stat(server, "client_gone", 1)
            slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            slow.sendall(_post_bytes(_payload(labels=[encode_label("slow", "5")])))
            wait_for_stat(server, "grading", 1)
            slow.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never more
        reply = read_until_closed(slow)  # the answer, then the close at the next request's header deadline
        slow.close()
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.count(b"HTTP/1.1") == 1
        stats = request(server.port, "GET", "/stats")[1]
    assert (stats["connections_pipelined_too_large"], stats["connections_header_timeouts"]) == (1, 1)
    assert [r["id"] for r in read_log(log)] == ["slow"]


def test_a_chunked_trailer_is_capped(tmp_path):
    """A 2 MiB trailer after a chunked body (httptools answered a 64 MiB one with 200): refused, nothing logged."""
    log = tmp_path / "rollouts.jsonl"
    body = _payload()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nX-Trailer: " + b"a" * (2 << 20) + b"\r\n\r\n"
    head = (
        b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with ServerProcess(log) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        try:
            sock.sendall(head + chunked)
        except OSError:  # refused before all of it is sent
            pass
        reply = read_until_closed(sock)
        sock.close()
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400 ")
        assert request(server.port, "POST", "/get_reward", _payload())[0] == 200  # and the server goes on
    assert len(read_log(log)) == 1


def test_bodies_held_by_all_connections_are_bounded_and_released(tmp_path):
    """Two slow bodies of 400 KB fill a 1 MB budget; a third gets 503 before it holds more; once they close their
    bytes are given back and a request is served."""
    log = tmp_path / "rollouts.jsonl"
    with ServerProcess(log, "--max_buffered_bytes", "1000000", "--max_request_bytes", "600000") as server:
        slow = []
        for n in (1, 2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(_post_bytes(b" " * 500_000)[:-100_000])  # 400,000 bytes of a 500,000-byte body
            wait_for_stat(server, "body_bytes_held", 400_000 * n)
            slow.append(sock)
        third = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        try:
            third.sendall(_post_bytes(b" " * 500_000))
        except OSError:  # refused before all of it is sent
            pass
        reply = read_until_closed(third)
        third.close()
        assert reply.startswith(b"HTTP/1.1 503 ") and b"--max_buffered_bytes" in reply
        for sock in slow:
            sock.close()
        wait_for_stat(server, "body_bytes_held", 0)
        assert request(server.port, "POST", "/get_reward", _payload())[0] == 200
        assert request(server.port, "GET", "/stats")[1]["body_bytes_held"] == 0
    assert len(read_log(log)) == 1


def _rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's memory from /proc")
def test_the_memory_of_bodies_whose_clients_left_is_given_back(tmp_path):
    """32 clients each send all but a byte of a 4 MiB body, then leave: the server's memory comes back to within
    64 MB of where it was (it stayed ~130 MB up: the bodies were kept in reference cycles, then in glibc's heap)."""
    size, clients = 4 << 20, 32
    with ServerProcess(tmp_path / "r.jsonl") as server:
        before = _rss_mb(server.proc.pid)
        socks = []
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(_post_bytes(b" " * size)[:-1])
            socks.append(sock)
        wait_for_stat(server, "body_bytes_held", clients * (size - 1))
        assert _rss_mb(server.proc.pid) > before + clients * size / 2**20  # they were held
        for sock in socks:
            sock.close()
        wait_for_stat(server, "body_bytes_held", 0)
        after = _rss_mb(server.proc.pid)
    assert after < before + 64, (before, after)


def test_a_repair_cut_short_loses_no_record(tmp_path):
    """Records kept after a NUL block are copied to <log>.kept before the log is cut back: a crash in between leaves
    them there; the next start finishes the repair if the log already ends with them, and refuses otherwise."""
    path, kept = tmp_path / "r.jsonl", tmp_path / "r.jsonl.kept"
    _write_lines(path, 3, 3, b"\0" * 64 + b"\n" + RECORD + b"\n" + RECORD + b"\n")
    RolloutLog(path, warn=lambda _: None).close()
    assert not kept.exists() and len(path.read_text().splitlines()) == 5
    kept.write_bytes(RECORD + b"\n" + RECORD + b"\n")  # the crash came after the log was written back: done
    RolloutLog(path).close()
    assert not kept.exists() and len(path.read_text().splitlines()) == 5
    _write_lines(path, 3, 3)  # ... before: the records are only in the copy
    kept.write_bytes(RECORD + b"\n" + RECORD + b"\n")
    with pytest.raises(DataError, match="a repair was cut short"):
        RolloutLog(path)
    assert kept.exists() and len(path.read_text().splitlines()) == 3
