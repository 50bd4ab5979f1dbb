"""The reward server for stock OpenRLHF 0.11 (`--reward.remote_url`): the paper's reward, and the rollout log LIM needs.

    python train/reward_server.py --host 127.0.0.1 --port 5000 \\
        --rollout_log outputs/math8k/rollouts.jsonl --samples_per_step 8192 --samples_per_epoch 68184

OpenRLHF's vLLM engines POST one sample per request, `{"query": [q], "prompts": [p], "labels": [l]}`, where the
query is the chat-templated prompt followed by the response (special tokens kept). The response is the query
minus the prompt (if the query does not start with the prompt: the text after the last `<|im_start|>assistant\\n`,
counted in /stats). The label, `{"id","answer","split"}` from data/prepare.py, gives the prompt id and gold answer;
a plain-text label is the gold answer, and the id is then "sha1:" + 16 hex digits of the prompt text.

Each response is graded in a pool of worker processes (limr.pool: the event loop never blocks, and a response
over the hard limit gets the wrong-answer reward and is counted), written to the rollout log (limr.rollout_log)
and only then answered: `{"rewards": [...], "scores": [1/0 correct, for dynamic filtering], "extra_logs": {...}}`.
Training samples are numbered in the order they reach the log: step = index // samples_per_step + 1, restarting
the count at each pass over the prompts when --samples_per_epoch is given (OpenRLHF 0.11 ends each pass with a
partial batch: MATH-8k takes 9 steps a pass, and the log's steps then equal OpenRLHF's global_step), resuming
from the log's line count after a restart. Evaluation rows (label split "eval") go to --eval_log and do not
advance the step; their `step` is the number of training steps completed when they arrived.

Also: GET /health (200 once the grading pool is up), GET /stats, a bearer token for `--host 0.0.0.0` (OpenRLHF
cannot send headers, so it also passes in the URL: .../get_reward?token=TOKEN or http://limr:TOKEN@host:port/...), a
request size limit, 4xx with a message for bad input, and a clean stop on SIGTERM / SIGINT with the logs flushed.
"""

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from limr.dataset import SPLITS, decode_label
from limr.grader import MODES
from limr.jsonio import DataError
from limr.pool import HARD_LIMIT_S, GradingPool
from limr.rollout_log import RolloutLog, check_resume, log_row, step_of

ASSISTANT_TURN = "<|im_start|>assistant\n"  # Qwen's chat template opens the model's turn with this
MAX_REQUEST_BYTES = 16 << 20  # one sample is ~20 KB (4,096 tokens); a batch of hundreds still fits
SHOWN_REJECTIONS = 10  # the first rejected requests are printed; the rest are counted in /stats
GRACEFUL_S = 30  # on SIGTERM, in-flight requests get this long (10x the grading limit) to finish
RATE_WINDOW_S = 60  # samples per second is measured over the last minute


# ---- The request core: pure functions, shared with reward_func.py (OpenRLHF's file mode) ----------------------


class PayloadError(ValueError):
    """A request the server cannot use; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sample:
    prompt_id: str
    answer: str
    split: str  # "train" or "eval"
    response: str
    fallback: bool  # the query did not start with the prompt: split at the assistant turn instead


def split_query(query: str, prompt: str | None) -> tuple[str, str, bool]:
    """(prompt text, response, fell back): the query minus its prompt, else the text after the last assistant turn.

    The query is OpenRLHF's decode of prompt + response tokens, which can differ from the prompt text (the prompt
    cut to fit, or a tokenizer that does not round-trip); with no assistant turn either, all of it is the response.
    """
    if prompt and query.startswith(prompt):
        return prompt, query[len(prompt) :], False
    cut = query.rfind(ASSISTANT_TURN)
    if cut < 0:
        return "", query, True
    cut += len(ASSISTANT_TURN)
    return query[:cut], query[cut:], True


def prompt_hash(prompt_text: str) -> str:
    """A short stable id for a prompt whose label names none (a plain gold answer)."""
    return "sha1:" + hashlib.sha1(prompt_text.strip().encode("utf-8", "surrogatepass")).hexdigest()[:16]


def make_sample(query: str, prompt: str | None, label: str, where: str = "") -> Sample:
    prompt_text, response, fallback = split_query(query, prompt)
    decoded = decode_label(label)
    if decoded["split"] not in SPLITS:
        raise PayloadError(422, f"{where}the label's split must be one of {SPLITS}, got {decoded['split']!r}")
    pid = decoded["id"]
    pid = prompt_hash(prompt_text) if pid is None or pid == "" else str(pid)
    return Sample(pid, decoded["answer"], decoded["split"], response, fallback)


def _string_list(data: dict, key: str, optional: bool = False) -> list | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise PayloadError(422, f"'{key}' must be a list of strings, got {got}")
    for i, item in enumerate(value):
        if not (isinstance(item, str) or (optional and item is None)):
            raise PayloadError(422, f"'{key}'[{i}] must be a string, got {type(item).__name__}")
    return value


def parse_payload(body: bytes) -> list[Sample]:
    """OpenRLHF 0.11's {"query", "prompts", "labels"} (prompts may be left out) -> one Sample per query."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError(400, f"the body is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise PayloadError(422, f"expected a JSON object with 'query', 'prompts', 'labels'; got {type(data).__name__}")
    queries, labels = _string_list(data, "query"), _string_list(data, "labels")
    prompts = _string_list(data, "prompts", optional=True) or [None] * len(queries)
    if not len(queries) == len(prompts) == len(labels):
        lengths = f"{len(queries)}, {len(prompts)}, {len(labels)}"
        raise PayloadError(422, f"'query', 'prompts' and 'labels' must be as long as each other, got {lengths}")
    return [
        make_sample(q, p, label, f"labels[{i}]: ")
        for i, (q, p, label) in enumerate(zip(queries, prompts, labels, strict=True))
    ]


def reply(graded: list) -> dict:
    """OpenRLHF's reply: one reward per sample, `scores` 1/0 correctness, and per-sample numbers it logs."""
    return {
        "rewards": [g.reward for g in graded],
        "scores": [float(g.correct) for g in graded],
        "extra_logs": {
            "correct": [float(g.correct) for g in graded],
            "format_error": [float(g.format_error is not None) for g in graded],
            "timed_out": [float(g.timed_out) for g in graded],
        },
    }


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
    ):
        self.train_log, self.eval_log = train_log, eval_log
        self.samples_per_step, self.samples_per_epoch = samples_per_step, samples_per_epoch
        self.store_responses = store_responses
        self.resumed_lines = train_log.lines
        self.started = time.monotonic()
        self.counts = dict.fromkeys(("requests", "rejected", "failed", "train", "eval", "correct", "fallbacks"), 0)
        self.reward_sum = 0.0
        self.step_totals = [0, 0.0, 0, 0]  # samples, reward sum, correct, timeouts of the step in progress
        self.recent: deque = deque()  # (second, samples) over the last RATE_WINDOW_S, for samples per second

    def step_at(self, index: int) -> int:
        """The training step of the index-th training sample (see limr.rollout_log.step_of)."""
        return step_of(index, self.samples_per_step, self.samples_per_epoch)

    def record(self, sample: Sample, graded) -> None:
        response = sample.response if self.store_responses else None
        if sample.split == "eval":
            step = self.step_at(self.train_log.lines) - 1  # training steps completed
            self.eval_log.write(log_row(step, sample.prompt_id, graded, len(sample.response), "eval", response))
            self.counts["eval"] += 1
        else:
            step = self.step_at(self.train_log.lines)
            self.train_log.write(log_row(step, sample.prompt_id, graded, len(sample.response), "train", response))
            self.counts["train"] += 1
            self.counts["correct"] += graded.correct
            self.reward_sum += graded.reward
            self._step_progress(graded)
        self.counts["fallbacks"] += sample.fallback
        self._count_rate()

    def _step_progress(self, graded) -> None:
        """One printed line per completed training step (never per sample)."""
        totals = self.step_totals
        totals[0] += 1
        totals[1] += graded.reward
        totals[2] += graded.correct
        totals[3] += graded.timed_out
        step = self.step_at(self.train_log.lines - 1)
        if self.step_at(self.train_log.lines) != step:  # the sample just logged was its step's last
            n, reward, correct, timeouts = totals
            print(f"step {step} logged: {n} samples, reward mean {reward / n:.3f}, accuracy {correct / n:.3f}, "
                  f"{timeouts} timeouts", flush=True)  # fmt: skip
            self.step_totals = [0, 0.0, 0, 0]

    def _count_rate(self) -> None:
        now = int(time.monotonic())
        if self.recent and self.recent[-1][0] == now:
            self.recent[-1][1] += 1
        else:
            self.recent.append([now, 1])
            while self.recent[0][0] <= now - RATE_WINDOW_S:
                self.recent.popleft()

    def stats(self, timeouts: int) -> dict:
        uptime = time.monotonic() - self.started
        recent = sum(n for t, n in self.recent if t > time.monotonic() - RATE_WINDOW_S)
        samples = self.counts["train"] + self.counts["eval"]
        return {
            **{k: self.counts[k] for k in ("requests", "rejected", "failed")},
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
        }


# ---- The HTTP layer -----------------------------------------------------------------------------------------------


async def read_body(request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes (declared or streamed) with 413."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadError(413, f"request body of {declared} bytes is over the limit of {limit} (--max_request_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"request body is over the limit of {limit} bytes (--max_request_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(pool: GradingPool, recorder: Recorder, token: str | None, max_request_bytes: int):
    # fastapi is imported here, not at the top, so that reward_func.py can reuse the request core above
    # without the web stack
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="limr reward server", docs_url=None, redoc_url=None, openapi_url=None)

    def allowed(request: Request) -> bool:
        return authorized(request.headers.get("authorization"), request.query_params.get("token"), token)

    def refuse(status: int, message: str, counter: str) -> JSONResponse:
        recorder.counts[counter] += 1
        if recorder.counts["rejected"] + recorder.counts["failed"] <= SHOWN_REJECTIONS:
            print(f"warning: answered {status}: {message}", file=sys.stderr, flush=True)
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        if not allowed(request):
            return refuse(401, "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)", "rejected")
        try:
            samples = parse_payload(await read_body(request, max_request_bytes))
        except PayloadError as e:
            return refuse(e.status, str(e), "rejected")
        try:
            graded = await asyncio.gather(*(asyncio.wrap_future(pool.submit(s.response, s.answer)) for s in samples))
        except RuntimeError as e:  # the pool gives up when its workers keep dying at start
            return refuse(503, f"grading failed: {e}", "failed")
        try:
            for sample, g in zip(samples, graded, strict=True):
                recorder.record(sample, g)
        except OSError as e:  # disk full: the client retries; the log keeps only whole lines
            return refuse(500, f"could not write the rollout log: {e}", "failed")
        recorder.counts["requests"] += 1
        return JSONResponse(reply(graded))

    @app.get("/health")
    async def health():
        step = recorder.step_at(recorder.train_log.lines)
        return {"status": "ok", "workers": pool.workers, "grader": pool.mode, "step": step}

    @app.get("/stats")
    async def stats(request: Request):
        if not allowed(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        return recorder.stats(pool.timeouts)

    return app


# ---- The command line ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other nodes (then set --token)")
    p.add_argument("--port", type=int, default=5000, help="0 picks a free port (printed at start)")
    p.add_argument("--rollout_log", required=True, help="training rollout log (JSONL), appended to and resumed")
    p.add_argument("--eval_log", help="evaluation rows (default: rollouts.eval.jsonl beside --rollout_log)")
    p.add_argument("--samples_per_step", type=int, required=True,
                   help="rollout batch x samples per prompt (paper: 1,024 x 8 = 8,192)")  # fmt: skip
    p.add_argument("--samples_per_epoch", type=int,
                   help="prompts x samples per prompt: steps restart at each pass over the prompts, as OpenRLHF "
                        "0.11 keeps each pass's last partial batch (MATH-8k: 8,523 x 8 = 68,184, 9 steps a pass)")  # fmt: skip
    p.add_argument("--grader", choices=MODES, default="default", help="limr: the release's reward, bug for bug")
    p.add_argument("--workers", type=int, help="grading processes (default: the CPU cores this process may use)")
    p.add_argument("--hard_limit", type=float, default=HARD_LIMIT_S, help="seconds per response before it is wrong")
    p.add_argument("--store_responses", action="store_true", help="also log each response's text")
    p.add_argument("--token", default=os.environ.get("LIMR_REWARD_TOKEN"),
                   help="require this bearer token (default: $LIMR_REWARD_TOKEN)")  # fmt: skip
    p.add_argument("--max_request_bytes", type=int, default=MAX_REQUEST_BYTES, help="larger requests get 413")
    args = p.parse_args(argv)
    if args.samples_per_step < 1 or (args.workers is not None and args.workers < 1) or args.hard_limit <= 0:
        p.error("--samples_per_step and --workers must be >= 1 and --hard_limit > 0")
    if args.samples_per_epoch is not None and args.samples_per_epoch < 1:
        p.error("--samples_per_epoch must be >= 1")
    if args.eval_log is None:
        log = Path(args.rollout_log)
        args.eval_log = str(log.with_name(log.name.removesuffix(".jsonl") + ".eval.jsonl"))
    if Path(args.eval_log).resolve() == Path(args.rollout_log).resolve():
        p.error("--eval_log must differ from --rollout_log")
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


def serve(app, sock: socket.socket) -> None:
    """Run uvicorn until SIGTERM / SIGINT; it then stops accepting and lets in-flight requests finish."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=GRACEFUL_S)  # fmt: skip
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
        sock = bind(args.host, args.port)  # first: a port in use leaves the logs untouched
        train_log, eval_log = open_logs(args)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pool = GradingPool(workers=args.workers or usable_cores(), hard_limit_s=args.hard_limit, mode=args.grader)
    recorder = Recorder(train_log, eval_log, args.samples_per_step, args.store_responses, args.samples_per_epoch)
    app = create_app(pool, recorder, args.token, args.max_request_bytes)
    port = sock.getsockname()[1]
    print(f"reward server: http://{args.host}:{port}/get_reward, {pool.workers} grading workers ({args.grader}), "
          f"log {train_log.path} from line {train_log.lines} (step {recorder.step_at(train_log.lines)}),"
          f" eval log {eval_log.path}", flush=True)  # fmt: skip
    try:
        serve(app, sock)
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
