"""The reward server for stock OpenRLHF 0.11 (`--reward.remote_url`): the paper's reward, and the rollout log LIM needs.

    python train/reward_server.py --host 127.0.0.1 --port 5000 \\
        --rollout_log outputs/math8k/rollouts.jsonl --samples_per_step 8192 --samples_per_epoch 68184

OpenRLHF's vLLM engines POST one sample per request, `{"query": [q], "prompts": [p], "labels": [l]}`, where the
query is the chat-templated prompt followed by the response (special tokens kept). The response is the query
minus the prompt (if the query does not start with the prompt: the text after the last `<|im_start|>assistant\\n`,
counted in /stats). The label, `{"id","answer","split"}` from data/prepare.py, gives the prompt id and gold answer;
a plain-text label is the gold answer, and the id is then "sha1:" + 16 hex digits of the prompt text. That request
core (and the reply below) is limr/request.py, shared with train/reward_func.py.

Each response is graded in a pool of worker processes (limr.pool: the event loop never blocks, and a response
over the hard limit gets the wrong-answer reward and is counted), written to the rollout log (limr.rollout_log)
and only then answered: `{"rewards": [...], "scores": [1/0 correct, for dynamic filtering], "extra_logs": {...}}`.
Training samples are numbered in the order they reach the log: step = index // samples_per_step + 1, restarting
the count at each pass over the prompts when --samples_per_epoch is given (OpenRLHF 0.11 ends each pass with a
partial batch: MATH-8k takes 9 steps a pass, and the log's steps then equal OpenRLHF's global_step), resuming
from the log's line count after a restart. Evaluation rows (label split "eval") go to --eval_log and do not
advance the step; their `step` is the number of training steps completed when they arrived.

A request's lines are written all or none, and not at all when its client has closed the connection first
(OpenRLHF sends the sample again after a timeout). Responses are graded round-robin across the requests waiting.

Also: GET /health (200 once the grading pool is up, 503 while it cannot grade), GET /stats, a bearer token for
`--host 0.0.0.0` (OpenRLHF cannot send headers, so it also passes in the URL: .../get_reward?token=TOKEN or
http://limr:TOKEN@host:port/...), limits on what one client can hold (connections, header size and time, body size
and time, bodies held by all connections together, samples per request, pipelining: train/README.md), 4xx with a
message for bad input, and a clean stop on SIGTERM / SIGINT with the logs flushed.
"""

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import os
import resource
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from limr.cli import float_in, int_in
from limr.grader import MODES
from limr.jsonio import DataError
from limr.pool import HARD_LIMIT_S, GradingPool, worker_memory_mb
from limr.request import PayloadError, Sample, parse_payload, reply
from limr.rollout_log import RolloutLog, check_resume, count_samples, epoch_of, log_row, response_sha1, step_of
from limr.stopping import LiveTally

SHOWN_REJECTIONS = 10  # the first rejected requests are printed; the rest are counted in /stats
GRACEFUL_S = 30  # on SIGTERM, in-flight requests get this long (10x the grading limit) to finish
RATE_WINDOW_S = 60  # samples per second is measured over the last minute

# What one client can hold (README "Limits"). OpenRLHF 0.11.2 sends one sample per request on a new connection
# and retries a failed request 4 times, 1 s apart (openrlhf/utils/agent.py, _fetch_rewards_via_http).
# more samples in one request get 413, before any is parsed further: OpenRLHF sends one, mini/'s TRL loop up to 512
MAX_SAMPLES_PER_REQUEST = 1024
MAX_REQUEST_BYTES = 4 << 20  # one OpenRLHF sample is ~20 KB (4,096 tokens)
# request bodies held by all connections together, from their first byte until the request is answered; past it 503
MAX_BUFFERED_BYTES = 256 << 20  # 64 bodies of the largest size, 13,000 OpenRLHF samples
MAX_CONNECTIONS = 4096  # open connections; the next ones get 503 at once (the open-file limit is raised to fit)
# request line and headers, more gets 431 (OpenRLHF sends ~200 bytes); also what a connection may send ahead
# (pipelining) while its request is answered, more closes it
MAX_HEADER_BYTES = 64 << 10
HEADER_TIMEOUT_S = 10.0  # a connection must send its request line and headers within this, or it is closed
BODY_TIMEOUT_S = 60.0  # a body must arrive within this, or 408
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's timeout_keep_alive)
LINGER_S = 1.0  # a refused connection is closed this long after its answer, unless the client closes first
DROP_BYTES = 1 << 20  # ... or once it has sent this much more
PARSE_IN_THREAD_BYTES = 256 << 10  # larger bodies are parsed on a thread, between the event loop's turns


# ---- Authorization (the request itself is parsed by limr.request, shared with reward_func.py) ----------------


def authorized(header: str | None, query_token: str | None, token: str | None) -> bool:
    """Is the request allowed? OpenRLHF's client sends no headers, so besides `Authorization: Bearer TOKEN` the token
    may come in its URL: as `?token=TOKEN`, or as the user or password of http://limr:TOKEN@host (Basic auth)."""
    if token is None:
        return True
    offered = [] if query_token is None else [query_token]
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    elif scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode("latin-1").partition(":")
            offered += [user, password]
        except (binascii.Error, ValueError):
            pass
    return any(hmac.compare_digest(o.encode("utf-8", "replace"), token.encode("utf-8")) for o in offered)


# ---- The server's state: the logs, the step counter, the statistics ------------------------------------------


class Recorder:
    """Writes each graded sample to its log (one writer: everything runs on the event loop) and keeps /stats."""

    def __init__(
        self,
        train_log: RolloutLog,
        eval_log: RolloutLog,
        samples_per_step: int,
        store_responses: bool,
        samples_per_epoch: int | None = None,
        selection_size: int | None = None,
    ):
        self.train_log, self.eval_log = train_log, eval_log
        self.samples_per_step, self.samples_per_epoch = samples_per_step, samples_per_epoch
        self.store_responses = store_responses
        self.resumed_lines = train_log.lines
        self.started = time.monotonic()
        self.counts = dict.fromkeys(
            ("requests", "rejected", "failed", "client_gone", "train", "eval", "correct", "fallbacks"), 0
        )
        self.grading = 0  # requests whose samples are queued or being graded
        self.reward_sum = 0.0
        self.step_totals = [0, 0.0, 0, 0]  # samples, reward sum, correct, timeouts of the step in progress
        self.recent: deque = deque()  # (second, samples) over the last RATE_WINDOW_S, for samples per second
        self.selection = None  # the live stopping rule counts passes: only with samples_per_epoch
        if samples_per_epoch is not None:
            self.selection = resume_selection(train_log, samples_per_step, samples_per_epoch, selection_size)

    def step_at(self, index: int) -> int:
        """The training step of the index-th training sample (see limr.rollout_log.step_of)."""
        return step_of(index, self.samples_per_step, self.samples_per_epoch)

    def epoch_at(self, index: int) -> int | None:
        """The pass over the prompts of the index-th training sample (see limr.rollout_log.epoch_of)."""
        return epoch_of(index, self.samples_per_epoch)

    def record(self, samples: list[Sample], graded: list) -> None:
        """Log a request's samples all or nothing: one write per log, and a failed write leaves both logs as they
        were (the client's retry then logs each sample once)."""
        train, evals, index = [], [], self.train_log.lines
        for sample, g in zip(samples, graded, strict=True):
            response = sample.response if self.store_responses else None
            sha1 = response_sha1(sample.response)
            if sample.split == "eval":  # its step and epoch: the training steps and passes completed
                epoch = None if self.samples_per_epoch is None else self.epoch_at(index) - 1
                evals.append(log_row(self.step_at(index) - 1, sample.prompt_id, g, len(sample.response), "eval",
                                     response, sha1, epoch))  # fmt: skip
            else:
                train.append(log_row(self.step_at(index), sample.prompt_id, g, len(sample.response), "train",
                                     response, sha1, self.epoch_at(index)))  # fmt: skip
                index += 1
        size, lines = self.train_log.size, self.train_log.lines
        self.train_log.write_rows(train)
        try:
            self.eval_log.write_rows(evals)
        except BaseException:
            self.train_log.cut_back(size, lines)
            raise
        for i, (s, g) in enumerate((s, g) for s, g in zip(samples, graded, strict=True) if s.split != "eval"):
            self.counts["correct"] += g.correct
            self.reward_sum += g.reward
            self._step_progress(g, lines + i)
            if self.selection is not None:
                self._pass_progress(s.prompt_id, g, lines + i)
        self.counts["train"] += len(train)
        self.counts["eval"] += len(evals)
        self.counts["fallbacks"] += sum(s.fallback for s in samples)
        self._count_rate(len(samples))

    def _step_progress(self, graded, index: int) -> None:
        """One printed line per completed training step (never per sample); `index` is the sample's line."""
        totals = self.step_totals
        totals[0] += 1
        totals[1] += graded.reward
        totals[2] += graded.correct
        totals[3] += graded.timed_out
        step = self.step_at(index)
        if self.step_at(index + 1) != step:  # the sample just logged was its step's last
            n, reward, correct, timeouts = totals
            print(f"step {step} logged: {n} samples, reward mean {reward / n:.3f}, accuracy {correct / n:.3f}, "
                  f"{timeouts} timeouts", flush=True)  # fmt: skip
            self.step_totals = [0, 0.0, 0, 0]

    def _pass_progress(self, prompt_id: str, graded, index: int) -> None:
        """The stopping rule's verdict at the end of each pass (limr/stopping.py), from the tally kept here."""
        self.selection.add(prompt_id, graded.correct)
        if self.epoch_at(index + 1) != self.epoch_at(index):
            print(self.selection.end_pass()["line"], flush=True)

    def _count_rate(self, samples: int) -> None:
        now = int(time.monotonic())
        if self.recent and self.recent[-1][0] == now:
            self.recent[-1][1] += samples
        else:
            self.recent.append([now, samples])
            while self.recent[0][0] <= now - RATE_WINDOW_S:
                self.recent.popleft()

    def stats(self, timeouts: int) -> dict:
        uptime = time.monotonic() - self.started
        recent = sum(n for t, n in self.recent if t > time.monotonic() - RATE_WINDOW_S)
        samples = self.counts["train"] + self.counts["eval"]
        return {
            **{k: self.counts[k] for k in ("requests", "rejected", "failed", "client_gone")},
            "grading": self.grading,
            "samples": samples,
            "train_samples": self.counts["train"],
            "eval_samples": self.counts["eval"],
            "samples_per_s": round(recent / max(min(uptime, RATE_WINDOW_S), 1e-9), 2),
            "reward_mean": self.reward_sum / self.counts["train"] if self.counts["train"] else None,
            "accuracy": self.counts["correct"] / self.counts["train"] if self.counts["train"] else None,
            "timeouts": timeouts,
            "prompt_fallbacks": self.counts["fallbacks"],
            "step": self.step_at(self.train_log.lines),
            "log_lines": self.train_log.lines,
            "resumed_lines": self.resumed_lines,
            "uptime_s": round(uptime, 1),
            "stopping": None if self.selection is None else self.selection.last,  # the latest pass's verdict
        }


def resume_selection(train_log: RolloutLog, samples_per_step: int, samples_per_epoch: int, size: int | None):
    """The live stopping rule's tally; after a restart, the passes already logged (read once, here: each line's
    pass from its step, numbered as step_of numbers them)."""
    tally = LiveTally(size)
    if train_log.lines:
        steps, _, pids, oks, n = count_samples(train_log.path).columns()
        epochs = ((steps - 1) // -(-samples_per_epoch // samples_per_step) + 1).tolist()
        tally.resume(pids, epochs, oks, n, train_log.lines // samples_per_epoch)
    return tally


# ---- The HTTP layer -----------------------------------------------------------------------------------------------


@dataclass
class BodyBudget:
    """The bytes of request bodies all connections hold together (--max_buffered_bytes): each connection may hold
    a body up to --max_request_bytes, and 4,096 of them would be 16 GiB. A request holds its body's bytes from the
    moment they arrive until it is answered (its samples are about as large)."""

    limit: int = MAX_BUFFERED_BYTES
    held: int = 0
    trim_after: int = 64 << 20  # bytes released since the last malloc_trim
    released: int = 0

    def take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise PayloadError(503, f"server busy: {self.held} bytes of request bodies held, at most {self.limit} "
                                    "(--max_buffered_bytes); retry")  # fmt: skip
        self.held += n

    def give(self, n: int) -> None:
        self.held -= n
        self.released += n
        if self.held == 0 and self.released >= self.trim_after:  # all bodies gone: hand their memory back
            self.released = 0
            _malloc_trim()


def _malloc_trim() -> None:
    """glibc keeps freed blocks of a few MiB in its heap instead of returning them to the system (its mmap threshold
    grows to the largest block freed), so a burst of large bodies would keep the server's memory high for good."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass
class Limits:
    """What one client can hold; the connection counters are kept by GuardedHTTP, shown in /stats."""

    max_request_bytes: int = MAX_REQUEST_BYTES
    max_samples: int = MAX_SAMPLES_PER_REQUEST
    max_connections: int = MAX_CONNECTIONS
    max_header_bytes: int = MAX_HEADER_BYTES
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    bodies: BodyBudget = field(default_factory=BodyBudget)
    counts: dict = field(
        default_factory=lambda: dict.fromkeys(
            ("busy", "header_timeouts", "headers_too_large", "pipelined_too_large"), 0
        )
    )


class HeldBody:
    """One request's share of the BodyBudget, given back when the request is done (`with`)."""

    def __init__(self, budget: BodyBudget):
        self.budget, self.bytes = budget, 0

    def take(self, n: int) -> None:
        self.budget.take(n)
        self.bytes += n

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.budget.give(self.bytes)
        self.bytes = 0


async def read_body(request, limit: int, held: HeldBody) -> bytes:
    """The request body, refusing more than `limit` bytes (declared or streamed) with 413, and with 503 what the
    server as a whole cannot hold (held takes each chunk's bytes as it arrives)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadError(413, f"request body of {declared} bytes is over the limit of {limit} (--max_request_bytes)")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadError(413, f"request body is over the limit of {limit} bytes (--max_request_bytes)")
            held.take(len(chunk))
            chunks.append(chunk)
    except BaseException:
        # the error's traceback keeps this frame, in a reference cycle through asyncio.wait_for's task, until the
        # garbage collector runs: without this, the bodies of clients that left stayed in memory (350 MB after
        # 100 connections of 4 MiB had closed)
        chunks.clear()
        raise
    return b"".join(chunks)


async def read_samples(request, limits: Limits, held: HeldBody) -> list[Sample]:
    """The request's samples; a body slower than the limit gets 408, a large one is parsed off the event loop."""
    from starlette.requests import ClientDisconnect

    try:
        body = await asyncio.wait_for(read_body(request, limits.max_request_bytes, held), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise PayloadError(408, f"the request body did not arrive within {limits.body_timeout_s:g} s") from None
    except ClientDisconnect:  # the client left mid-body, or the parser refused the rest (h11: a trailer too large)
        raise PayloadError(400, "the client closed the connection before its body was complete") from None
    if len(body) > PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse_payload, body, limits.max_samples)
    return parse_payload(body, limits.max_samples)


async def _client_gone(receive) -> None:
    """Returns when the client has closed its connection (after the body, the server's receive waits for that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def grade_unless_gone(pool: GradingPool, samples: list[Sample], receive) -> list | None:
    """The samples graded, or None when the client left first: its samples not yet graded are dropped, and
    nothing of it may be logged, since OpenRLHF sends the same sample again after a timeout."""
    futures = pool.submit_many((s.response, s.answer) for s in samples)
    grading = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    gone = asyncio.ensure_future(_client_gone(receive))
    try:
        await asyncio.wait({grading, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if gone.done() and not gone.cancelled():
        grading.cancel()
        for task in (gone, grading):  # retrieve any error, so that asyncio does not log it as lost
            if task.done() and not task.cancelled():
                task.exception()
        return None
    try:
        return grading.result()
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def create_app(pool: GradingPool, recorder: Recorder, token: str | None, limits: Limits | None = None):
    # fastapi is imported here, not at the top, so that the module's other parts load without the web stack
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    limits = limits or Limits()
    app = FastAPI(title="limr reward server", docs_url=None, redoc_url=None, openapi_url=None)

    def allowed(request: Request) -> bool:
        return authorized(request.headers.get("authorization"), request.query_params.get("token"), token)

    def refuse(status: int, message: str, counter: str, close: bool = False) -> JSONResponse:
        recorder.counts[counter] += 1
        if recorder.counts["rejected"] + recorder.counts["failed"] <= SHOWN_REJECTIONS:
            print(f"warning: answered {status}: {message}", file=sys.stderr, flush=True)
        # close: the rest of a refused body is not read (an unauthenticated client costs nothing more)
        return JSONResponse({"error": message}, status_code=status, headers={"connection": "close"} if close else None)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        if not allowed(request):
            return refuse(
                401, "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)", "rejected", True
            )
        with HeldBody(limits.bodies) as held:  # the body's bytes count until the request is answered
            return await answer(request, held)

    async def answer(request: Request, held: HeldBody):
        try:
            samples = await read_samples(request, limits, held)
        except PayloadError as e:
            return refuse(e.status, str(e), "rejected", close=True)
        recorder.grading += 1  # in the same turn of the event loop as the samples reach the pool's queue
        try:
            graded = await grade_unless_gone(pool, samples, request.receive)
        except RuntimeError as e:  # no worker could grade (they keep dying, or cannot start): the client retries
            return refuse(503, f"grading failed: {e}", "failed")
        finally:
            recorder.grading -= 1
        if graded is None:
            recorder.counts["client_gone"] += 1
            return JSONResponse({"error": "the client closed the connection"}, status_code=400)
        try:
            recorder.record(samples, graded)  # no await since the check above: the client was there just now
        except OSError as e:  # disk full: the client retries; the logs are as they were before this request
            return refuse(500, f"could not write the rollout log: {e}", "failed")
        recorder.counts["requests"] += 1
        return JSONResponse(reply(graded))

    @app.get("/health")
    async def health():
        step = recorder.step_at(recorder.train_log.lines)
        body = {"status": "ok", "workers": pool.workers, "grader": pool.mode, "step": step}
        if not pool.healthy:  # a worker cannot be started: requests would fail with 503
            return JSONResponse({**body, "status": "unhealthy", "error": pool.broken or "a grading thread ended"},
                                status_code=503)  # fmt: skip
        return body

    @app.get("/stats")
    async def stats(request: Request):
        if not allowed(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401, headers={"connection": "close"})
        return {**recorder.stats(pool.timeouts), **{f"connections_{k}": v for k, v in limits.counts.items()},
                "body_bytes_held": limits.bodies.held}  # fmt: skip

    return app


def _raw_reply(status: str, message: str) -> bytes:
    """A whole HTTP response written straight to the socket, for connections refused before any request."""
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


def guarded_protocol(kind: str, limits: Limits):
    """uvicorn's HTTP protocol (httptools or h11) with what uvicorn 0.54 lacks (read in protocols/http/*_impl.py):
    it closes kept-alive connections after timeout_keep_alive, but arms no timer before a connection's first
    request nor while headers trickle in, caps headers only with h11 (h11_max_incomplete_event_size), and its
    limit_concurrency counts idle connections too and answers a bare 503. This adds a header deadline, a header
    size cap for both, and a connection cap answered with a JSON 503 before any parsing: each costs microseconds.

    Pipelining: both parsers tell only a connection's newest request that its client left (connection_lost), and
    httptools parses what is sent ahead while a request is answered (its headers escaped the cap and deadline).
    Here the bytes sent ahead are held unparsed (at most the header cap, or the connection is closed) until the
    answer is out, and a lost connection marks every request of it not yet answered, so none of them is logged.
    Chunked trailers are capped by h11 only (h11_max_incomplete_event_size): h11 is the default."""
    if kind == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base

    class GuardedHTTP(Base):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_bytes, self._deadline, self._refused = 0, None, False
            self._cycles, self._held = [], bytearray()  # requests not yet answered; bytes sent ahead meanwhile
            if len(self.connections) > limits.max_connections:
                limits.counts["busy"] += 1
                message = f"server busy: {limits.max_connections} connections open (--max_connections); retry"
                self._refuse("503 Service Unavailable", message)
                return
            self._await_headers()

        def _refuse(self, status: str, message: str) -> None:
            """Answer, stop reading (what still arrives is dropped unparsed), and close once the client has read
            the answer or after LINGER_S: closing at once, with its data unread, would send a reset that can destroy
            the answer before the client reads it."""
            self._refused, self._dropped = True, 0
            if self._deadline is not None:
                self._deadline.cancel()
            self.transport.write(_raw_reply(status, message))
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._deadline = self.loop.call_later(LINGER_S, self.transport.close)

        def _await_headers(self) -> None:
            self._header_bytes = 0
            self._deadline = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _header_timeout(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                limits.counts["header_timeouts"] += 1
                self.transport.close()

        def _answering(self) -> bool:
            """Is a request whole and waiting for its answer? Both parsers start the next request only after it."""
            self._cycles = [c for c in self._cycles if not c.response_complete]
            return any(not c.more_body for c in self._cycles)

        def _track(self) -> None:
            if self.cycle is not None and self.cycle not in self._cycles:
                self._cycles.append(self.cycle)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # dropped unparsed; a client that keeps sending after its answer is cut off
                self._dropped += len(data)
                if self._dropped > DROP_BYTES:
                    self.transport.close()
                return
            if self._answering():
                # Pipelined: held unparsed until the answer is out, and reading goes on, so that the client's leaving
                # is seen (uvicorn tells only its newest request, and h11 stops reading). Past the header cap the
                # connection is closed: no client waits for an answer while sending that much ahead.
                self._held += data
                if len(self._held) > limits.max_header_bytes and not self.transport.is_closing():
                    limits.counts["pipelined_too_large"] += 1
                    self.transport.close()
                return
            cycle = self.cycle
            super().data_received(data)
            self._track()
            if self.cycle is not cycle:  # a request's headers are complete
                self._header_bytes = 0
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None
            elif self._deadline is not None and not self.transport.is_closing():  # still in the headers
                self._header_bytes += len(data)
                if self._header_bytes > limits.max_header_bytes:
                    limits.counts["headers_too_large"] += 1
                    self._refuse(
                        "431 Request Header Fields Too Large", f"request headers over {limits.max_header_bytes} bytes"
                    )

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()  # h11 parses the next request here, if it already has it
            self._track()
            if self.transport.is_closing() or self._refused:
                return
            if self.cycle is cycle and self._deadline is None:
                self._await_headers()  # the next request's headers: same deadline as the first's
            if self._held and not self._answering():
                held, self._held = bytes(self._held), bytearray()
                self.data_received(held)

        def connection_lost(self, exc) -> None:
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()
            super().connection_lost(exc)
            # uvicorn tells only the newest request that its client left: tell every request not yet answered, so
            # that none of them is logged (the client sends them again)
            queued = [c for c, _ in getattr(self, "pipeline", ())]  # httptools: requests parsed ahead, not started
            for c in getattr(self, "_cycles", []) + queued:
                if not c.response_complete:
                    c.disconnected = True
                    c.message_event.set()

    return GuardedHTTP


# ---- The command line ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other nodes (then set --token)")
    p.add_argument("--port", type=int_in(0, 65535), default=5000, help="0 picks a free port (printed at start)")
    p.add_argument("--rollout_log", required=True, help="training rollout log (JSONL), appended to and resumed")
    p.add_argument("--eval_log", help="evaluation rows (default: rollouts.eval.jsonl beside --rollout_log)")
    p.add_argument("--samples_per_step", type=int_in(1), required=True,
                   help="rollout batch x samples per prompt (paper: 1,024 x 8 = 8,192)")  # fmt: skip
    p.add_argument("--samples_per_epoch", type=int_in(1),
                   help="prompts x samples per prompt: steps restart at each pass over the prompts, as OpenRLHF "
                        "0.11 keeps each pass's last partial batch (MATH-8k: 8,523 x 8 = 68,184, 9 steps a pass)")  # fmt: skip
    p.add_argument("--selection_size", type=int_in(1),
                   help="K of the live stopping rule (limr/stopping.py; needs --samples_per_epoch): the top K by LIM "
                        "after each pass (default: the paper's share, 1,389 / 8,523 of the prompts seen)")  # fmt: skip
    p.add_argument("--grader", choices=MODES, default="default", help="limr: the release's reward, bug for bug")
    p.add_argument(
        "--workers", type=int_in(1, 4096), help="grading processes (default: the CPU cores this process may use)"
    )
    p.add_argument("--hard_limit", type=float_in(0, 3600, low_open=True), default=HARD_LIMIT_S,
                   help="seconds per response before it is wrong")  # fmt: skip
    p.add_argument("--store_responses", action="store_true", help="also log each response's text")
    p.add_argument("--token", default=os.environ.get("LIMR_REWARD_TOKEN"),
                   help="require this bearer token (default: $LIMR_REWARD_TOKEN)")  # fmt: skip
    p.add_argument("--max_request_bytes", type=int_in(1), default=MAX_REQUEST_BYTES, help="larger requests get 413")
    p.add_argument("--max_buffered_bytes", type=int_in(1), default=MAX_BUFFERED_BYTES,
                   help="request bodies all connections hold together; past it 503")  # fmt: skip
    p.add_argument("--max_samples_per_request", type=int_in(1), default=MAX_SAMPLES_PER_REQUEST,
                   help="more get 413 (OpenRLHF sends one, the miniature's TRL loop up to 512)")  # fmt: skip
    p.add_argument("--max_connections", type=int_in(1), default=MAX_CONNECTIONS,
                   help="open connections; more get 503 (lowered to fit the open-file limit)")  # fmt: skip
    p.add_argument("--header_timeout", type=float_in(0, 30, low_open=True), default=HEADER_TIMEOUT_S,
                   help="seconds a connection has to send its request line and headers before it is closed")  # fmt: skip
    p.add_argument("--http", choices=("h11", "httptools"), default="h11",
                   help="uvicorn's HTTP parser; httptools is faster but caps no chunked trailer (train/README.md)")  # fmt: skip
    args = p.parse_args(argv)
    if args.eval_log is None:
        log = Path(args.rollout_log)
        args.eval_log = str(log.with_name(log.name.removesuffix(".jsonl") + ".eval.jsonl"))
    if Path(args.eval_log).resolve() == Path(args.rollout_log).resolve():
        p.error("--eval_log must differ from --rollout_log")
    if args.selection_size and not args.samples_per_epoch:
        p.error("--selection_size needs --samples_per_epoch: the stopping rule runs at the end of each pass")
    return args


def open_logs(args) -> tuple[RolloutLog, RolloutLog]:
    train_log = RolloutLog(args.rollout_log)
    check_resume(train_log, args.samples_per_step, args.samples_per_epoch)
    return train_log, RolloutLog(args.eval_log)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts so that --port 0 can print the port it got.

    proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP, and
    with Nagle on every reply on a kept-alive connection waits 40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def fit_open_files(max_connections: int, workers: int) -> int:
    """Raise this process's open-file limit to fit the connections (up to the hard limit); returns how many
    connections fit. Out of file handles, a grading worker cannot be restarted."""
    reserve = 64 + 4 * workers  # logs, the listening socket, the workers' pipes, the forkserver
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= want:
        return max_connections
    fit = max(1, soft - reserve)
    print(f"warning: the open-file limit ({soft}) fits {fit} connections, not --max_connections {max_connections}; "
          "raise it with ulimit -n", file=sys.stderr)  # fmt: skip
    return fit


def serve(app, sock: socket.socket, http: str = "h11", limits: Limits | None = None) -> None:
    """Run uvicorn until SIGTERM / SIGINT; it then stops accepting and lets in-flight requests finish."""
    import uvicorn

    limits = limits or Limits()
    # h11's own cap on an incomplete request (it answers 400) stays above ours, so both parsers answer 431
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_S, timeout_keep_alive=KEEP_ALIVE_S,
                            http=guarded_protocol(http, limits),
                            h11_max_incomplete_event_size=limits.max_header_bytes + (1 << 20))  # fmt: skip
    # uvicorn catches SIGTERM / SIGINT itself, shuts down gracefully, then raises the signal again to run the
    # handler it found: this one, which makes that a normal return (exit code 0, logs closed by the caller)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except SystemExit:
        pass
    for sig in (signal.SIGTERM, signal.SIGINT):  # closing the logs and the pool is not to be cut short
        signal.signal(sig, signal.SIG_IGN)


def _stop(signum, frame) -> None:
    raise SystemExit(0)


def usable_cores() -> int:
    """The cores this process may run on (a container's or Ray's CPU set), not the whole machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print(
            f"warning: serving {args.host} without --token: anyone who can reach it can write the log", file=sys.stderr
        )
    try:
        memory_mb = worker_memory_mb()  # $LIMR_WORKER_MEMORY_MB, each grading worker's memory cap
        sock = bind(args.host, args.port)  # first: a port in use leaves the logs untouched
        train_log, eval_log = open_logs(args)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    workers = args.workers or usable_cores()
    connections = fit_open_files(args.max_connections, workers)
    limits = Limits(args.max_request_bytes, args.max_samples_per_request, connections,
                    header_timeout_s=args.header_timeout, bodies=BodyBudget(args.max_buffered_bytes))  # fmt: skip
    # batch=1: each worker takes one response at a time, round-robin over the requests waiting (no head-of-line)
    pool = GradingPool(
        workers=workers, hard_limit_s=args.hard_limit, mode=args.grader, batch=1, memory_limit_mb=memory_mb
    )
    recorder = Recorder(train_log, eval_log, args.samples_per_step, args.store_responses, args.samples_per_epoch,
                        args.selection_size)  # fmt: skip
    app = create_app(pool, recorder, args.token, limits)
    port = sock.getsockname()[1]
    print(f"reward server: http://{args.host}:{port}/get_reward, {pool.workers} grading workers ({args.grader}), "
          f"log {train_log.path} from line {train_log.lines} (step {recorder.step_at(train_log.lines)}),"
          f" eval log {eval_log.path}", flush=True)  # fmt: skip
    try:
        serve(app, sock, args.http, limits)
    finally:
        pool.close()
        train_log.close()
        eval_log.close()
        s = recorder.stats(pool.timeouts)
        print(f"reward server: stopped after {s['requests']} requests, {s['samples']} samples "
              f"({s['rejected']} rejected, {s['timeouts']} timeouts); log at line {s['log_lines']}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
