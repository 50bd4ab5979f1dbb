"""Grading in worker processes with a hard per-response time limit.

math-verify guards itself with `signal.alarm`, which only works on a process's main thread and cannot
interrupt sympy while it sits in C (say, expanding `10^{10^{10^{10}}}`). So each response is scored in a
worker process, one at a time, and a worker that overruns the limit is killed and replaced; the response
gets the timeout reward (wrong answer; in the release-faithful "limr" mode a format error, as the release's
2 s alarm gave). One dispatcher thread per worker keeps the caller's thread free, so the same pool serves a
batch CLI (`map`) and an asyncio server (`submit` returns a `concurrent.futures.Future`). Submissions (one
request's responses, or one `map`) share the workers round-robin. Every future ends: a worker that cannot be
replaced (out of file handles, say) fails its responses with RuntimeError, and `healthy` is False until one starts.

Memory is bounded too: each worker caps its address space (RLIMIT_AS) at its size when it starts plus
`memory_limit_mb` (WORKER_MEMORY_MB, or `$LIMR_WORKER_MEMORY_MB`). An answer whose grading runs past the cap gets
a MemoryError in the worker instead of the machine's memory: it scores as a timeout does, and the worker, its heap
now fragmented, is replaced (as is one whose peak grew by more than half the cap). A worker that dies while
grading (killed from outside, or by the kernel) costs that one response the timeout reward; only workers that die
before they start count as a broken setup. `limr.grader.too_large` refuses the known memory bombs (power
towers, giant factorials) before sympy sees them; the cap stops the ones it does not know.

    with GradingPool(workers=2) as pool:
        results = pool.map([(response, answer), ...])
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from limr.grader import MODES
from limr.jsonio import DataError
from limr.paper import BAD_FORMAT, WRONG
from limr.reward import EOS_MARKERS, score

HARD_LIMIT_S = 3.0
BATCH = 16  # responses sent to a worker at once; each still has its own time limit
MAX_DEATHS = 3  # workers dying at start this many times in a row fail the pending responses instead
SPAWN_TRIES, SPAWN_RETRY_S = 4, 0.1  # a worker that cannot start is retried after 0.1, 0.2, 0.4, 0.8 s
# Address space a worker may add to its size at start (MiB). Grading a MATH answer adds a few MiB; the answer
# `10^{10^{10^{10}}}` took 4.9 GB in 3 s before limr.grader refused it. A worker per core times this is the most
# the pool can hold beyond its start.
WORKER_MEMORY_MB = 512
WORKER_MEMORY_ENV = "LIMR_WORKER_MEMORY_MB"
WORKER_MEMORY_RANGE_MB = (64, 1 << 20)
RETIRE_SHARE = 0.5  # a worker whose peak RSS grew by more than this share of the cap is replaced after the response
_READY = "ready"  # a worker's first message: deaths before it are a broken setup, deaths after it one bad response


@dataclass(frozen=True)
class Graded:
    reward: float
    correct: bool
    extracted: str | None
    format_error: str | None
    seconds: float  # grading time in the worker (the limit when it timed out)
    timed_out: bool = False
    out_of_memory: bool = False  # grading ran past the worker's memory cap (the reward is then the timeout one)


def worker_memory_mb() -> int:
    """The memory cap of each grading worker, MiB: `$LIMR_WORKER_MEMORY_MB` or WORKER_MEMORY_MB; a value that is not
    an integer in WORKER_MEMORY_RANGE_MB raises DataError (entry points check it before any work)."""
    text = os.environ.get(WORKER_MEMORY_ENV, "").strip()
    if not text:
        return WORKER_MEMORY_MB
    low, high = WORKER_MEMORY_RANGE_MB
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise DataError(f"{WORKER_MEMORY_ENV}={text!r}: must be a whole number of MiB in [{low}, {high}]")
    return int(text)


def gave_up_reward(mode: str) -> float:
    """The reward of a response the grader could not finish (time or memory): in the release-faithful "limr" mode
    a format error, as the release's 2 s alarm gave; otherwise a wrong answer."""
    return BAD_FORMAT if mode == "limr" else WRONG


def _cap_address_space(memory_mb: int) -> None:
    """Cap this process's address space at its size now plus memory_mb (soft and hard limit: graded text cannot
    raise it again). Past it an allocation raises MemoryError. Where /proc is missing the cap is not set."""
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return
    cap = size + memory_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _worker_main(conn, mode: str, eos_markers, check_format: bool, memory_mb: int) -> None:
    """Worker loop: cap memory, say ready, then receive a batch of (response, answer) and send back (Graded, retire)
    per item as it is done; after a `retire` the worker exits and the dispatcher replaces it."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout; we count them
    _cap_address_space(memory_mb)
    retire_above_kib = _peak_rss_kib() + memory_mb * 1024 * RETIRE_SHARE
    conn.send(_READY)
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is None:
            return
        for response, answer in batch:
            start = time.perf_counter()
            try:
                s = score(response, answer, mode, eos_markers, check_format)
                result = Graded(s.reward, s.correct, s.extracted, s.format_error, time.perf_counter() - start)
            except MemoryError:  # past the cap: this answer fails, and the worker is replaced
                seconds = time.perf_counter() - start
                result = Graded(gave_up_reward(mode), False, None, None, seconds, out_of_memory=True)
            except Exception as e:  # a grader bug must cost one response, not the worker
                result = Graded(WRONG, False, None, f"error: {type(e).__name__}", time.perf_counter() - start)
            retire = result.out_of_memory or _peak_rss_kib() > retire_above_kib
            conn.send((result, retire))
            if retire:
                return


def _context():
    # forkserver: safe to start from a threaded server, and children fork from a process that has already
    # imported sympy and math-verify, so a replaced worker is ready in milliseconds
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["limr.reward", "math_verify"])
    return ctx


class _FairQueue:
    """Tasks handed out round-robin over their submissions (one per request, or one per `map`): a request of many
    slow responses delays another request by about one response per worker, not by all of its own."""

    def __init__(self):
        self._groups: deque[deque] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, tasks: list) -> None:
        if not tasks:
            return
        with self._ready:
            self._groups.append(deque(tasks))
            self._ready.notify(len(tasks))

    def get(self, block: bool) -> tuple | None:
        """The next (future, task), skipping cancelled futures; None when nothing is queued (block=False) or the
        queue is closed and empty (block=True)."""
        with self._ready:
            while True:
                while self._groups:
                    group = self._groups.popleft()
                    future, task = group.popleft()
                    if group:
                        self._groups.append(group)
                    if future.set_running_or_notify_cancel():  # False: its request is gone, skip it
                        return future, task
                if self._closed or not block:
                    return None
                self._ready.wait()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class GradingPool:
    def __init__(
        self,
        workers: int | None = None,
        hard_limit_s: float = HARD_LIMIT_S,
        mode: str = "default",
        eos_markers: tuple[str, ...] | None = EOS_MARKERS,
        check_format: bool = True,
        batch: int = BATCH,
        memory_limit_mb: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown grader mode {mode!r}; expected one of {MODES}")
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 1 (or 0 / None for one per CPU core), got {workers}")
        if not (math.isfinite(hard_limit_s) and hard_limit_s > 0):
            raise ValueError(f"hard_limit_s must be a finite number of seconds > 0, got {hard_limit_s}")
        if memory_limit_mb is None:
            memory_limit_mb = worker_memory_mb()
        low, high = WORKER_MEMORY_RANGE_MB
        if not low <= memory_limit_mb <= high:
            raise ValueError(f"memory_limit_mb must be in [{low}, {high}] MiB, got {memory_limit_mb}")
        self.workers = workers or os.cpu_count() or 1
        self.memory_limit_mb = memory_limit_mb  # address space each worker may add to its size at start
        self.hard_limit_s = hard_limit_s
        self.mode = mode
        self.eos_markers = eos_markers
        self.check_format = check_format  # False: the answer alone (evaluation), see limr.reward.score
        self.batch = batch  # 1 in the server: each response is taken round-robin, so no request waits behind another
        self.timeouts = 0
        self.broken: str | None = None  # why the last worker start failed; None while every worker runs
        self._ctx = _context()
        self._tasks = _FairQueue()
        self._lock = threading.Lock()
        # workers start here, on the caller's thread, so a failure to start raises to the caller
        self._threads = [
            threading.Thread(target=self._dispatch, args=self._spawn(), daemon=True) for _ in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def healthy(self) -> bool:
        """Can the pool grade? False while a worker cannot be started (say, out of file handles) or a dispatcher
        thread has ended before close."""
        return self.broken is None and all(t.is_alive() for t in self._threads)

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.mode, self.eos_markers, self.check_format, self.memory_limit_mb),
            daemon=True,
        )
        try:
            proc.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return proc, parent

    def _respawn(self):
        """A new worker, retried a few times (a start fails when the process is out of file handles or memory);
        None when every try failed, with the reason in `broken` until a later start succeeds."""
        for attempt in range(SPAWN_TRIES):
            try:
                worker = self._spawn()
                self.broken = None
                return worker
            except OSError as e:
                self.broken = f"cannot start a grading worker: {e}"
                time.sleep(SPAWN_RETRY_S * 2**attempt)
        return None

    def _timeout_result(self) -> Graded:
        with self._lock:
            self.timeouts += 1
        return Graded(gave_up_reward(self.mode), False, None, None, self.hard_limit_s, timed_out=True)

    def _next_batch(self) -> list | None:
        """Block for one task, then take what else is queued (up to `batch`): the worker then goes from one
        response to the next without waiting for this thread, which halves the per-response overhead."""
        first = self._tasks.get(block=True)
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.batch and (item := self._tasks.get(block=False)) is not None:
            batch.append(item)
        return batch

    def _dispatch(self, proc, conn) -> None:
        """Feed one worker until close. Every task taken ends with a result or an exception: a worker that cannot
        be replaced fails its tasks loudly (and the next ones, until a start succeeds) instead of ending the thread
        with futures that would wait forever."""
        deaths = 0  # workers in a row that died before they were ready: a broken setup, not a bad response
        ready = False  # has this worker said it is ready?
        while (pending := self._next_batch()) is not None:
            try:
                deaths, proc, conn, ready = self._grade(pending, deaths, proc, conn, ready)
            except Exception as e:  # a bug here must fail the request, not hang it; the worker is replaced
                _fail([f for f, _ in pending], RuntimeError(f"grading failed: {e!r}"))
                if proc is not None:
                    proc.kill()
                    conn.close()
                proc, conn = None, None
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()

    def _grade(self, pending: list, deaths: int, proc, conn, ready: bool):
        while pending:
            if conn is None:
                worker = self._respawn()
                if worker is None:
                    _fail([f for f, _ in pending], RuntimeError(self.broken))
                    return deaths, None, None, False
                proc, conn = worker
                ready = False
            done, died, retired = 0, False, False
            try:
                conn.send([task for _, task in pending])
                while done < len(pending) and conn.poll(self.hard_limit_s):
                    message = conn.recv()
                    if message == _READY:  # the worker's start is not counted in the first response's limit
                        ready = True
                        continue
                    graded, retired = message
                    pending[done][0].set_result(graded)
                    done, deaths = done + 1, 0
                    if retired:
                        break
            except (EOFError, OSError):
                died = True  # killed from outside or by the kernel, or it could not start
            if retired:  # it exits by itself (memory): a fresh worker takes the rest
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                conn.close()
                proc, conn, pending = None, None, pending[done:]
                continue
            if done == len(pending):
                break
            # pending[done] overran the limit or killed the worker: replace the worker, resend the rest
            proc.kill()
            proc.join()
            conn.close()
            deaths = deaths + 1 if died and not ready else 0
            if deaths >= MAX_DEATHS:
                _fail([f for f, _ in pending[done:]],
                      RuntimeError(f"grading workers died {deaths} times in a row (exit code {proc.exitcode})"))  # fmt: skip
                pending = []
            else:
                pending[done][0].set_result(self._timeout_result())
                pending = pending[done + 1 :]
            proc, conn = None, None
        return deaths, proc, conn, ready

    def submit(self, response: str, answer: str) -> Future:
        return self.submit_many([(response, answer)])[0]

    def submit_many(self, pairs: Iterable[tuple[str, str]]) -> list[Future]:
        """One future per (response, answer), queued as one submission: submissions share the workers round-robin.
        Cancelling a future that has not reached a worker drops its response."""
        tasks = [(Future(), (str(response), str(answer))) for response, answer in pairs]
        self._tasks.put(tasks)
        return [future for future, _ in tasks]

    def map(self, pairs: Iterable[tuple[str, str]], progress: str | None = None) -> list[Graded]:
        """Grade (response, answer) pairs; results in input order. `progress` names a tqdm bar."""
        futures = self.submit_many(pairs)
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(futures), desc=progress, unit="resp")
            for f in futures:
                f.add_done_callback(lambda _: bar.update())
        results = [f.result() for f in futures]
        if progress:
            bar.close()
        return results

    def close(self) -> None:
        """Grade what is queued, then stop the workers."""
        self._tasks.close()
        for t in self._threads:
            t.join()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fail(futures: list[Future], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
