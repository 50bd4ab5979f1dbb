"""Grading in worker processes with a hard per-response time limit.

math-verify guards itself with `signal.alarm`, which only works on a process's main thread and cannot
interrupt sympy while it sits in C (say, expanding `10^{10^{10^{10}}}`). So each response is scored in a
worker process, one at a time, and a worker that overruns the limit is killed and replaced; the response
gets the timeout reward (wrong answer; in the release-faithful "limr" mode a format error, as the release's
2 s alarm gave). One dispatcher thread per worker keeps the caller's thread free, so the same pool serves a
batch CLI (`map`) and an asyncio server (`submit` returns a `concurrent.futures.Future`).

    with GradingPool(workers=2) as pool:
        results = pool.map([(response, answer), ...])
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from limr.grader import MODES
from limr.paper import BAD_FORMAT, WRONG
from limr.reward import EOS_MARKERS, score

HARD_LIMIT_S = 3.0
BATCH = 16  # responses sent to a worker at once; each still has its own time limit
MAX_DEATHS = 3  # workers dying at start this many times in a row fail the pending responses instead


@dataclass(frozen=True)
class Graded:
    reward: float
    correct: bool
    extracted: str | None
    format_error: str | None
    seconds: float  # grading time in the worker (the limit when it timed out)
    timed_out: bool = False


def _worker_main(conn, mode: str, eos_markers, check_format: bool) -> None:
    """Worker loop: receive a batch of (response, answer), send back one Graded per item as it is done."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout; we count them
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
            except Exception as e:  # a grader bug must cost one response, not the worker
                result = Graded(WRONG, False, None, f"error: {type(e).__name__}", time.perf_counter() - start)
            conn.send(result)


def _context():
    # forkserver: safe to start from a threaded server, and children fork from a process that has already
    # imported sympy and math-verify, so a replaced worker is ready in milliseconds
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["limr.reward", "math_verify"])
    return ctx


class GradingPool:
    def __init__(
        self,
        workers: int | None = None,
        hard_limit_s: float = HARD_LIMIT_S,
        mode: str = "default",
        eos_markers: tuple[str, ...] | None = EOS_MARKERS,
        check_format: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown grader mode {mode!r}; expected one of {MODES}")
        self.workers = workers or os.cpu_count() or 1
        self.hard_limit_s = hard_limit_s
        self.mode = mode
        self.eos_markers = eos_markers
        self.check_format = check_format  # False: the answer alone (evaluation), see limr.reward.score
        self.timeouts = 0
        self._ctx = _context()
        self._tasks: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        # workers start here, on the caller's thread, so a failure to start raises to the caller
        self._threads = [
            threading.Thread(target=self._dispatch, args=self._spawn(), daemon=True) for _ in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.mode, self.eos_markers, self.check_format), daemon=True
        )
        proc.start()
        child.close()
        return proc, parent

    def _timeout_result(self) -> Graded:
        with self._lock:
            self.timeouts += 1
        reward = BAD_FORMAT if self.mode == "limr" else WRONG
        return Graded(reward, False, None, None, self.hard_limit_s, timed_out=True)

    def _next_batch(self) -> list | None:
        """Block for one task, then take what else is queued (up to BATCH): the worker then goes from one
        response to the next without waiting for this thread, which halves the per-response overhead."""
        first = self._tasks.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._tasks.put(None)  # not ours to take yet: this thread ends on its next call
                break
            batch.append(item)
        return batch

    def _dispatch(self, proc, conn) -> None:
        deaths = 0  # workers in a row that died without finishing a response: a broken setup, not a bad response
        while (pending := self._next_batch()) is not None:
            while pending:
                done, died = 0, False
                try:
                    conn.send([task for _, task in pending])
                    while done < len(pending) and conn.poll(self.hard_limit_s):
                        pending[done][0].set_result(conn.recv())
                        done, deaths = done + 1, 0
                except (EOFError, OSError):
                    died = True  # killed from outside, out of memory, or it could not start
                if done == len(pending):
                    break
                # pending[done] overran the limit or killed the worker: replace the worker, resend the rest
                proc.kill()
                proc.join()
                conn.close()
                deaths = deaths + 1 if died and done == 0 else 0
                if deaths >= MAX_DEATHS:
                    error = RuntimeError(f"grading workers died {deaths} times in a row (exit code {proc.exitcode})")
                    for future, _ in pending:
                        future.set_exception(error)
                    pending = []
                else:
                    pending[done][0].set_result(self._timeout_result())
                    pending = pending[done + 1 :]
                proc, conn = self._spawn()
        try:
            conn.send(None)
        except OSError:
            pass
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()

    def submit(self, response: str, answer: str) -> Future:
        future: Future = Future()
        self._tasks.put((future, (str(response), str(answer))))
        return future

    def map(self, pairs: Iterable[tuple[str, str]], progress: str | None = None) -> list[Graded]:
        """Grade (response, answer) pairs; results in input order. `progress` names a tqdm bar."""
        futures = [self.submit(r, a) for r, a in pairs]
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
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
