"""The rollout log: one JSON line per scored sample, appended by one writer, resumable after a crash.

Layout (the contract `lim_selection.py` reads, with a fast path for exactly this key order and json.dumps'
default separators):

    {"step": 3, "id": "math8k-00017", "reward": 1.0, "correct": true, "response_length": 1234,
     "extracted": "5", "format_error": null, "timed_out": false, "response_sha1": "3f2a0c9e5b7d1e44"}

Evaluation rows go to a separate log with `"split": "eval"` after `response_length`; `--store_responses`
adds `"response"` last. `response_length` counts characters (the server never sees tokens); `response_sha1`
(logs from before it lack it) lets check_resume find a sample logged twice.

The writer appends a request's lines with one `write` to a file opened with O_APPEND and no user-space buffer, so
a line the server has answered for is in the kernel's hands before the reply leaves: a `kill -9` loses no answered
sample. A write that fails halfway (disk full) is cut back off, so the file only ever holds whole lines, and a
request's lines are all there or none. On opening, a torn last line (the machine went down mid-write; a power loss
can also leave NUL bytes) is moved to `<log>.torn` with a warning, and a whole last line that only lacks its
newline gets one; the line count is where the step numbering resumes. A file that does not look like a rollout log
is never appended to, and a file lock keeps a second writer out.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from limr.dataset import warn_stderr
from limr.jsonio import DataError, dumps_line

CHUNK = 1 << 20  # resume scans the log 1 MiB at a time
LINE_START = b'{"step": '  # how every line of ours begins (log_row's first key, json.dumps' separators)
# step, id and response_sha1 of a line: json.dumps escapes every quote inside a value, so these keys cannot be faked
SAMPLE_KEY = re.compile(
    rb'^\{"step": ([0-9]+), "id": "((?:[^"\\\n]|\\.)*)", [^\n]*?"response_sha1": "([0-9a-f]+)"', re.M
)


def step_of(index: int, samples_per_step: int, samples_per_epoch: int | None = None) -> int:
    """The 1-based training step of the index-th (0-based) training sample: with OpenRLHF's synchronous PPO
    every sample of step k is scored before the first sample of step k+1 is generated.

    OpenRLHF 0.11 keeps the last, partial batch of each pass over the prompts (8,523 prompts: 8 steps of 1,024
    and one of 331). Given the samples of one pass (prompts x samples per prompt), steps restart at each pass
    boundary, so the log's steps equal OpenRLHF's global_step and every epoch has ceil(epoch / step) steps.
    """
    if samples_per_epoch is None:
        return index // samples_per_step + 1
    epoch, within = divmod(index, samples_per_epoch)
    return epoch * -(-samples_per_epoch // samples_per_step) + within // samples_per_step + 1


def response_sha1(response: str) -> str:
    """16 hex digits of the response's SHA-1: equal on two lines of one step, they are almost surely one sample
    logged twice (a retried request), which check_resume reports."""
    return hashlib.sha1(response.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def log_row(
    step: int,
    prompt_id: str,
    graded,
    response_length: int,
    split: str = "train",
    response: str | None = None,
    sha1: str | None = None,
) -> dict:
    """One log line in the contract's key order; `graded` is a limr.pool.Graded, `sha1` the response_sha1."""
    row = {
        "step": step,
        "id": prompt_id,
        "reward": graded.reward,
        "correct": graded.correct,
        "response_length": response_length,
    }
    if split == "eval":
        row["split"] = "eval"
    row["extracted"] = graded.extracted
    row["format_error"] = graded.format_error
    row["timed_out"] = graded.timed_out
    if sha1 is not None:
        row["response_sha1"] = sha1
    if response is not None:
        row["response"] = response
    return row


def _scan(path: Path) -> tuple[int, int, bytes, bytes]:
    """(complete lines, bytes up to the last newline, the last complete line, the bytes after it)."""
    lines, last_line, carry = 0, b"", b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            lines += chunk.count(b"\n")
            buf = carry + chunk  # carry starts right after a newline (or at the file's start)
            end = buf.rfind(b"\n")
            if end < 0:
                carry = buf
                continue
            last_line, carry = buf[buf.rfind(b"\n", 0, end) + 1 : end], buf[end + 1 :]
    return lines, os.path.getsize(path) - len(carry), last_line, carry


def _parse_record(line: bytes):
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(obj, dict) and isinstance(obj.get("step"), int) and isinstance(obj.get("id"), str)
    return obj if ok else None


class RolloutLog:
    """Append-only JSONL writer. `lines` counts the file's complete lines, old ones included (the resume point)."""

    def __init__(self, path: str | os.PathLike, warn: Callable[[str], None] = warn_stderr):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            self._lock(warn)
            self.lines, self.size, last_line, tail = _scan(self.path)
            self.last_row = _parse_record(last_line) if self.lines else None
            if self.lines and self.last_row is None:
                raise DataError(f"{self.path}: the last line is not a rollout-log record; not appending to this file")
            if tail.strip():
                self._repair_tail(tail, warn)
            elif tail:  # stray whitespace after the last line
                os.ftruncate(self._fd, self.size)
        except BaseException:
            self.close()
            raise

    def _lock(self, warn: Callable[[str], None]) -> None:
        """One writer per log: a second server on the same file would interleave its own step numbering.
        A file system without locks (some NFS mounts) only gets a warning: the run should not stop for it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{self.path}: another process is writing this log (a second reward server?)") from None
        except OSError as e:
            warn(f"{self.path}: cannot lock it ({e.strerror}); make sure only one reward server writes it")

    def _repair_tail(self, tail: bytes, warn: Callable[[str], None]) -> None:
        record = _parse_record(tail.strip())
        if record is not None:  # a whole record that lost only its newline
            os.ftruncate(self._fd, self.size)
            self.write_bytes(tail.strip() + b"\n")
            self.last_row = record
            return
        # a power loss can leave the file's last blocks as NUL bytes (its size was updated, its data never written)
        written = tail.rstrip(b"\0")
        if written and not written.startswith(LINE_START):  # not a line this writer began: not ours to cut
            raise DataError(f"{self.path}: ends in {len(tail)} bytes that are not a rollout-log line; not appending")
        torn = self.path.with_name(self.path.name + ".torn")
        with open(torn, "ab") as f:
            f.write(tail + b"\n")
        os.ftruncate(self._fd, self.size)
        nuls = f", {len(tail) - len(written)} of them NUL bytes, as a power loss leaves" if written != tail else ""
        warn(f"{self.path}: skipped a torn last line ({len(tail)} bytes{nuls}; cut off when the writer stopped); "
             f"moved to {torn}")  # fmt: skip

    def write_bytes(self, data: bytes) -> None:
        """Append whole lines; on any error the file is cut back to its last whole line and the error raised."""
        try:
            done = os.write(self._fd, data)
            while done < len(data):  # a regular file takes it all at once unless the disk is full
                done += os.write(self._fd, data[done:])
        except BaseException:
            os.ftruncate(self._fd, self.size)
            raise
        self.size += len(data)
        self.lines += data.count(b"\n")

    def write(self, row: dict) -> None:
        self.write_bytes(dumps_line(row).encode("utf-8"))

    def write_rows(self, rows: list[dict]) -> None:
        """All the rows in one write: all of them reach the file, or (on an error) none."""
        if rows:
            self.write_bytes("".join(dumps_line(row) for row in rows).encode("utf-8"))

    def cut_back(self, size: int, lines: int) -> None:
        """Undo the writes since the log was at `size` bytes and `lines` lines (another log's write failed)."""
        os.ftruncate(self._fd, size)
        self.size, self.lines = size, lines

    def close(self) -> None:
        """Sync to disk and release the file (and its lock)."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def check_resume(
    log: RolloutLog,
    samples_per_step: int,
    samples_per_epoch: int | None = None,
    warn: Callable[[str], None] = warn_stderr,
) -> None:
    """A training log must have been numbered with the same samples per step (and per epoch), or its steps would
    not line up; samples it holds twice are reported (see find_duplicates)."""
    if log.last_row is None:
        return
    duplicates = find_duplicates(log.path)
    if duplicates:
        line, first = duplicates[0]
        warn(f"{log.path}: {len(duplicates)} lines repeat a sample logged earlier in the same or the previous step "
             f"(same prompt id and response; first: line {line} repeats line {first}): most likely a request retried "
             f"after its client gave up (see train/README.md). Each copy moves the later step boundaries by one "
             f"sample")  # fmt: skip
    expected = step_of(log.lines - 1, samples_per_step, samples_per_epoch)
    if log.last_row["step"] != expected:
        per_epoch = f" and {samples_per_epoch} per epoch" if samples_per_epoch else ""
        raise DataError(
            f"{log.path}: its last line (line {log.lines}) is step {log.last_row['step']}, but at "
            f"{samples_per_step} samples per step{per_epoch} it would be step {expected}: was it written with "
            f"another --samples_per_step or --samples_per_epoch? Start a new log or pass the run's values"
        )


def find_duplicates(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(line, earlier line) for each line whose prompt id and response_sha1 match a line of the same or the
    previous step: one sample logged twice. Lines without response_sha1 (logs from before it) are not checked."""
    duplicates, seen, previous, current_step, lineno = [], {}, {}, None, 0
    with open(path, "rb") as f:
        carry = b""
        while chunk := f.read(CHUNK):
            buf = carry + chunk
            end = buf.rfind(b"\n") + 1
            last, lineno_at = 0, lineno + 1  # the line number at buf[last]
            for m in SAMPLE_KEY.finditer(buf, 0, end):
                lineno_at += buf.count(b"\n", last, m.start())
                last = m.start()
                step = int(m.group(1))
                if step != current_step:
                    previous, seen, current_step = seen, {}, step
                key = (m.group(2), m.group(3))
                first = seen.get(key) or previous.get(key)
                if first:
                    duplicates.append((lineno_at, first))
                else:
                    seen[key] = lineno_at
            lineno += buf.count(b"\n", 0, end)
            carry = buf[end:]
    return duplicates
