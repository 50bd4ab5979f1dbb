"""The rollout log: one JSON line per scored sample, appended by one writer, resumable after a crash, and its reader.

One line per training sample (train/reward_server.py writes them, `lim_selection.py` reads them):

    {"step": 12, "epoch": 2, "id": "math8k-00017", "reward": 1.0, "correct": true, "response_length": 1234,
     "extracted": "5", "format_error": null, "timed_out": false, "response_sha1": "3f2a0c9e5b7d1e44"}

`step` is OpenRLHF's 1-based training step. `epoch` is the 1-based pass over the prompts the sample belongs to
(LIM's epoch k, as the paper counts k = 1..K); the server writes it when it counts passes (`--samples_per_epoch`),
so a reader needs no steps-per-epoch (OpenRLHF 0.11 runs 9 steps a pass over MATH-8k, the paper's fork 8). Logs
from before the field, or from a server without `--samples_per_epoch`, lack it. Readers take the keys in any order.
Evaluation rows go to a separate log with `"split": "eval"`; their step and epoch are the training steps and passes
completed when they arrived. `--store_responses` adds `"response"`. `response_length` counts characters (the server
never sees tokens); `response_sha1` (logs from before it lack it) lets check_resume find a sample logged twice.

The writer appends a request's lines with one `write` to a file opened with O_APPEND and no user-space buffer, so
a line the server has answered for is in the kernel's hands before the reply leaves: a `kill -9` loses no answered
sample. A write that fails halfway (disk full) is cut back off, so the file only ever holds whole lines, and a
request's lines are all there or none. On opening, a torn last line (the machine went down mid-write; a power loss
can also leave NUL bytes, at the end or further up with later records after them) is moved to `<log>.torn` with a
warning, every whole record kept, and a whole last line that only lacks its newline gets one; the line count is
where the step numbering resumes. A file that does not look like a rollout log, or is not a regular file, is never
appended to, and a file lock keeps a second writer out. Lines of any length are read in time linear in their size.

The reader (count_samples) types each line with msgspec, a chunk at a time, and reads exactly what json.loads
reads: a chunk msgspec refuses (or one that is not UTF-8, which msgspec checks only in the fields it keeps, or not
one object a line) goes through json.loads line by line, which counts what it accepts and names the first bad line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
from tqdm import tqdm

from limr.dataset import warn_stderr
from limr.jsonio import DataError, dumps_line, is_number, is_utf8

CHUNK = 1 << 18  # logs are read 256 KiB at a time: what msgspec decodes stays in the CPU cache (15% faster than 1 MiB)


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


def epoch_of(index: int, samples_per_epoch: int | None) -> int | None:
    """The 1-based pass over the prompts of the index-th (0-based) training sample; None when passes are not counted."""
    return None if samples_per_epoch is None else index // samples_per_epoch + 1


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
    epoch: int | None = None,
) -> dict:
    """One log line (see the layout above); `graded` is a limr.pool.Graded, `sha1` the response_sha1."""
    row = {"step": step} if epoch is None else {"step": step, "epoch": epoch}
    row |= {
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


def _scan(f) -> tuple[int, int, bytes, bytes, tuple[int, int] | None]:
    """(complete lines, bytes up to the last newline, the last complete line, the bytes after it, and where the first
    line holding a NUL byte starts: (byte offset, complete lines before it), or None). Linear in the file's size
    however long its lines: the bytes since the last newline are kept as a list of chunks and joined once."""
    lines, offset, line_start, last_line, pending, damaged = 0, 0, 0, b"", [], None
    while chunk := f.read(CHUNK):
        if damaged is None and (nul := chunk.find(b"\0")) >= 0:
            before = chunk.count(b"\n", 0, nul)
            damaged = (offset + chunk.rfind(b"\n", 0, nul) + 1 if before else line_start, lines + before)
        if (newlines := chunk.count(b"\n")) == 0:
            pending.append(chunk)
        else:
            end = chunk.rfind(b"\n")
            if newlines > 1:
                last_line = chunk[chunk.rfind(b"\n", 0, end) + 1 : end]
            else:
                last_line = b"".join([*pending, chunk[:end]])
            lines, pending, line_start = lines + newlines, [chunk[end + 1 :]], offset + end + 1
        offset += len(chunk)
    return lines, line_start, last_line, b"".join(pending), damaged


def _line_before(f, offset: int) -> bytes:
    """The line that ends with the newline just before `offset` (b"" at the file's start), read backwards."""
    pieces, pos = [], offset - 1
    while pos > 0:
        start = max(0, pos - CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            pieces.append(block[cut + 1 :])
            break
        pieces.append(block)
        pos = start
    return b"".join(reversed(pieces))


def _parse_record(line: bytes):
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, an integer over 4,300 digits, or nested too deep
        return None
    ok = isinstance(obj, dict) and isinstance(obj.get("step"), int) and isinstance(obj.get("id"), str)
    return obj if ok else None


@dataclass
class _Recovered:
    """What a damaged end of a log becomes: the records kept and the bytes set aside."""

    kept: list[bytes] = field(default_factory=list)
    damage: list[bytes] = field(default_factory=list)


def _recover(path: Path, region: bytes, first_line: int, known_record: bool) -> _Recovered:
    """Sort the end of a log, from the first line with a NUL byte or from its unfinished last line, into whole records
    (kept) and damage: a line cut short, or NUL bytes where a power loss lost the data (the file's size was updated,
    its blocks never written), with anything of a lost line after them. A whole record after a NUL block is kept.
    Damage must look like what this writer leaves (a line begun with '{', or NULs): anything else is not ours to cut."""
    *whole, tail = region.split(b"\n")
    out = _Recovered()
    for n, line in enumerate([*whole, tail], first_line):
        is_tail = n == first_line + len(whole)
        if b"\0" not in line:
            if _parse_record(line.strip()) is not None:
                out.kept.append(line.strip())
            elif is_tail and not line.strip():
                pass  # stray whitespace after the last line
            elif is_tail and line.startswith(b"{"):
                out.damage.append(line)
            elif is_tail:
                raise DataError(f"{path}: ends in {len(line)} bytes that are not a rollout-log line; not appending")
            else:
                raise DataError(f"{path}:{n}: not a rollout-log record, after a NUL block; not appending")
            continue
        first, last = line.find(b"\0"), line.rfind(b"\0")
        if line[:first].strip() and not line.startswith(b"{"):  # not a line this writer began: not ours to cut
            raise DataError(f"{path}:{n}: {len(line)} bytes with NULs that are not a rollout-log line; not appending")
        after = line[last + 1 :].strip()
        if after and _parse_record(after) is not None:  # a whole record written after the NULs
            out.kept.append(after)
            out.damage.append(line[: last + 1])
        else:
            out.damage.append(line)
    shown = b"".join(d.replace(b"\0", b"") for d in out.damage).strip()
    if shown and not known_record and not out.kept:  # no line of it is a record: not a log this writer wrote
        raise DataError(f"{path}: holds NUL bytes and no rollout-log record; not appending")
    return out


def _append_synced(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class RolloutLog:
    """Append-only JSONL writer. `lines` counts the file's complete lines, old ones included (the resume point)."""

    def __init__(self, path: str | os.PathLike, warn: Callable[[str], None] = warn_stderr):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():  # a FIFO would block the open, /dev/null swallow the log
            raise DataError(f"{self.path}: not a regular file; a rollout log must be one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO swapped in since the check fails at once (no reader) instead of blocking
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise DataError(f"{self.path}: not a regular file; a rollout log must be one")
            os.set_blocking(self._fd, True)
            self._lock(warn)
            if self._pending.exists():
                self._finish_repair()
            with open(self.path, "rb") as f:
                self.lines, self.size, last_line, tail, damaged = _scan(f)
                if damaged is None and not tail.strip():
                    if tail:  # stray whitespace after the last line
                        os.ftruncate(self._fd, self.size)
                    self.last_row = self._check_last(last_line)
                    return
                start, lines_before = (self.size, self.lines) if damaged is None else damaged
                before = last_line if damaged is None else _line_before(f, start)
                f.seek(start)
                region = f.read()
            self.lines, self.size = lines_before, start
            self.last_row = self._check_last(before) if lines_before else None
            self._set_aside(_recover(self.path, region, lines_before + 1, self.last_row is not None), warn)
        except BaseException:
            os.close(self._fd)  # nothing was written that needs syncing (and a device file cannot be synced)
            self._fd = -1
            raise

    @property
    def _pending(self) -> Path:
        return self.path.with_name(self.path.name + ".kept")

    def _finish_repair(self) -> None:
        """A repair stopped after its copy of the records to keep: done if the log ends with them, else refused."""
        kept = self._pending.read_bytes()
        with open(self.path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - len(kept)))
            if f.read() == kept:
                self._pending.unlink()
                return
        raise DataError(f"{self.path}: a repair was cut short: {self._pending} holds whole records that belong after "
                        f"its last line; append them (cat) and delete it")  # fmt: skip

    def _check_last(self, line: bytes):
        row = _parse_record(line) if self.lines else None
        if self.lines and row is None:
            raise DataError(f"{self.path}: the last line is not a rollout-log record; not appending to this file")
        return row

    def _set_aside(self, recovered: _Recovered, warn: Callable[[str], None]) -> None:
        """Move the damage to <log>.torn (synced first), cut the log back to its last whole line before it, and
        write the records kept after it back: every whole record stays, in order, once."""
        torn = self.path.with_name(self.path.name + ".torn")
        if recovered.damage:
            _append_synced(torn, b"".join(d + b"\n" for d in recovered.damage))
        kept = b"".join(line + b"\n" for line in recovered.kept)
        if len(recovered.kept) > 1:  # whole records after a NUL block: a copy until they are back in the log
            _append_synced(self._pending, kept)
        os.ftruncate(self._fd, self.size)
        if kept:
            self.write_bytes(kept)
            self.last_row = _parse_record(recovered.kept[-1])
            os.fsync(self._fd)
        self._pending.unlink(missing_ok=True)
        if not recovered.damage:
            return
        lost = sum(map(len, recovered.damage))
        nuls = sum(d.count(b"\0") for d in recovered.damage)
        nuls = f", {nuls} of them NUL bytes, as a power loss leaves" if nuls else ""
        what = "a torn last line" if len(recovered.damage) == 1 and not recovered.kept else "damaged lines"
        kept = f"; kept the {len(recovered.kept)} whole records after it" if recovered.kept else ""
        warn(f"{self.path}: skipped {what} ({lost} bytes{nuls}; cut off when the writer stopped){kept}; "
             f"moved to {torn}")  # fmt: skip

    def _lock(self, warn: Callable[[str], None]) -> None:
        """One writer per log: a second server on the same file would interleave its own step numbering.
        A file system without locks (some NFS mounts) only gets a warning: the run should not stop for it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{self.path}: another process is writing this log (a second reward server?)") from None
        except OSError as e:
            warn(f"{self.path}: cannot lock it ({e.strerror}); make sure only one reward server writes it")

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


class _SampleKey(msgspec.Struct):
    step: Annotated[int, msgspec.Meta(le=(1 << 63) - 1)]  # a larger one is refused by _check_readable
    id: str
    response_sha1: str | None = None


def find_duplicates(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(line, earlier line) for each line whose prompt id and response_sha1 match a line of the same or the
    previous step: one sample logged twice. Lines without response_sha1 (logs from before it) are not checked."""
    decode = msgspec.json.Decoder(_SampleKey).decode
    duplicates, seen, previous, current_step = [], {}, {}, None
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = decode(line)
            except (msgspec.DecodeError, RecursionError):  # not a line of ours, or one no reader can count
                _check_readable(path, lineno, line)
                continue
            if row.response_sha1 is None:
                continue
            if row.step != current_step:
                previous, seen, current_step = seen, {}, row.step
            key = (row.id, row.response_sha1)
            first = seen.get(key) or previous.get(key)
            if first:
                duplicates.append((lineno, first))
            else:
                seen[key] = lineno
    return duplicates


def _check_readable(path, lineno: int, line: bytes) -> None:
    """A line the server would resume past must not stop lim_selection.py later with what no one can fix by then:
    JSON json.loads reads, and a step (when it has one) that fits the reader's int64 columns."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):  # not JSON at all: the reader names it
        return
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}:{lineno}: {_unreadable(e)}; not appending to this log") from None
    step = obj.get("step") if isinstance(obj, dict) else None
    if isinstance(step, int) and step >= 1 << 63:
        raise DataError(f"{path}:{lineno}: 'step' must be a positive integer below 2**63, got {step}; not appending")


# ---- The reader ---------------------------------------------------------------------------------------------------

NEWLINE, OPEN, CLOSE = b"\n{}"
FINITE = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]  # no NaN, no infinity
INT64 = (1 << 63) - 1  # steps and epochs are counted in int64 columns
POSITIVE = Annotated[int, msgspec.Meta(ge=1, le=INT64)]


class LogLine(msgspec.Struct, gc=False):  # gc=False: scalar fields only, so 1.4 M of them cost the collector nothing
    """The fields of a line the reader keeps; the others are checked as JSON and skipped."""

    step: POSITIVE
    id: str
    reward: FINITE
    epoch: POSITIVE | None = None
    split: str = "train"


@dataclass
class LogCounts:
    """A training log counted: samples[(step, epoch or None, prompt id, success)] = how many; success is reward 1
    (the paper's definition; a line without a reward may give `correct` instead)."""

    samples: Counter = field(default_factory=Counter)
    eval_rows: int = 0  # evaluation rows in the training log (skipped)
    torn_last_line: int | None = None  # the line number of a torn last line (skipped with a warning)

    def columns(self) -> tuple[np.ndarray, tuple, tuple, np.ndarray, np.ndarray]:
        """samples as columns: step, epoch (None where missing), prompt id, success, samples; in log order."""
        steps, epochs, pids, oks = zip(*self.samples, strict=True) if self.samples else ((),) * 4
        n = np.fromiter(self.samples.values(), np.int64, len(self.samples))
        return np.array(steps, dtype=np.int64), epochs, pids, np.array(oks, dtype=bool), n


def count_samples(path: Path, warn: Callable[[str], None] = warn_stderr) -> LogCounts:
    """Count a rollout log's training samples, streaming (a paper-scale log is 1.4 M lines)."""
    counts, lineno, pending, carry = LogCounts(), 0, [], b""
    decode_lines = msgspec.json.Decoder(LogLine).decode_lines
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=None)
    for chunk, is_last in _read_ahead(path, bar):
        # the bytes since the last newline wait in `pending`, joined once a newline comes: a line of any length
        # costs its size, not its size squared / CHUNK
        if is_last:  # the file's last line is read on its own below: a torn one is skipped, not fatal
            buf = b"".join([*pending, chunk]).rstrip()
            end = buf.rfind(b"\n") + 1
            lines, carry = buf[:end], buf[end:]
        elif end := chunk.rfind(b"\n") + 1:
            lines, pending = b"".join([*pending, chunk[:end]]), [chunk[end:]]
        else:
            pending.append(chunk)
            continue
        data = np.frombuffer(lines, np.uint8)
        ends = np.flatnonzero(data == NEWLINE)
        try:
            if not (_one_object_a_line(data, ends) and is_utf8(lines, "surrogatepass")):
                raise ValueError
            rows = decode_lines(lines)
            if len(rows) != len(ends):
                raise ValueError
        except (msgspec.DecodeError, ValueError, RecursionError):  # json.loads says what the line is
            _count_strictly(path, lines, lineno, counts)
        else:
            train = [r for r in rows if r.split != "eval"]
            counts.eval_rows += len(rows) - len(train)
            counts.samples.update((r.step, r.epoch, r.id, r.reward == 1) for r in train)
        lineno += len(ends)
    bar.close()
    if carry:
        try:
            obj = json.loads(carry)
        except (json.JSONDecodeError, UnicodeDecodeError):
            warn(f"{path}:{lineno + 1}: skipping a torn last line (written when the run stopped?)")
            counts.torn_last_line = lineno + 1
        except (ValueError, RecursionError) as e:  # whole, but unreadable: an integer over 4,300 digits, too deep
            raise DataError(f"{path}:{lineno + 1}: {_unreadable(e)}") from None
        else:
            _count_object(counts, obj, f"{path}:{lineno + 1}")
    return counts


def _read_ahead(path: Path, bar: tqdm) -> Iterator[tuple[bytes, bool]]:
    """(chunk, is_last) of a file read CHUNK bytes at a time, one chunk ahead so the last one is known."""
    with open(path, "rb") as f:
        chunk = f.read(CHUNK)
        while chunk:
            more = f.read(CHUNK)
            bar.update(len(chunk))
            yield chunk, not more
            chunk = more


def _one_object_a_line(data: np.ndarray, ends: np.ndarray) -> bool:
    """msgspec's decode_lines reads values separated by any whitespace, newlines included. Every line (the bytes
    `data`, its newlines at `ends`) beginning with '{' and ending with '}' keeps each value on its line ('}' then '{'
    is JSON only between two values), so a line holds one object when msgspec finds as many as there are lines."""
    if not len(ends):
        return False
    return data[0] == OPEN and bool((data[ends - 1] == CLOSE).all() and (data[ends[:-1] + 1] == OPEN).all())


def _count_strictly(path: Path, lines: bytes, lineno: int, counts: LogCounts) -> None:
    for n, line in enumerate(lines.split(b"\n"), lineno + 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise DataError(f"{path}:{n}: {_unreadable(e)}") from None
        _count_object(counts, obj, f"{path}:{n}")


def _unreadable(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "JSON nested too deeply to read"
    return f"not valid JSON ({e})"


def _count_object(counts: LogCounts, obj, where: str) -> None:
    """Count one parsed line (evaluation rows are skipped); DataError if it breaks the contract."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("split") == "eval":
        counts.eval_rows += 1
        return
    step, epoch, pid = obj.get("step"), obj.get("epoch"), obj.get("id")
    if not _positive_int(step):
        raise DataError(
            f"{where}: 'step' must be a positive integer below 2**63 (1-based training step), got {step!r:.40}"
        )
    if epoch is not None and not _positive_int(epoch):
        raise DataError(f"{where}: 'epoch' must be a positive integer below 2**63 (1-based pass over the prompts), "
                        f"got {epoch!r:.40}")  # fmt: skip
    if not isinstance(pid, str):
        raise DataError(f"{where}: 'id' must be a string (the prompt id), got {pid!r}")
    if "reward" in obj:
        if not is_number(obj["reward"]):
            raise DataError(f"{where}: 'reward' must be a number, got {obj['reward']!r}")
        ok = obj["reward"] == 1
    elif isinstance(obj.get("correct"), bool):
        ok = obj["correct"]
    else:
        raise DataError(f"{where}: a sample needs 'reward' (a number) or 'correct' (true/false)")
    counts.samples[step, epoch, pid, ok] += 1


def _positive_int(x) -> bool:
    """1 <= x < 2**63: steps and epochs are counted in int64 columns (and msgspec reads no larger int)."""
    return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= INT64


def steps_per_epoch_of(
    path: Path,
    steps: np.ndarray,
    epochs: tuple,
    given: int | None,
    default: int | None = None,
    warn: Callable[[str], None] = warn_stderr,
) -> int:
    """The steps in one epoch (columns from LogCounts.columns): the log's own when its lines carry their epoch (a
    `given` one must agree), else `given` or `default`, with a warning. Each line's epoch must be its step's."""
    pairs = set(zip(steps.tolist(), epochs, strict=True))
    labelled = {(step, epoch) for step, epoch in pairs if epoch is not None}
    flag = "--steps_per_epoch"
    if labelled and len(labelled) == len(pairs):
        found = max((step for step, epoch in labelled if epoch == 1), default=None)
        if found is None:
            raise DataError(f"{path}: no sample of epoch 1 (the lines' 'epoch' counts passes from 1)")
        if given is not None and given != found:
            raise DataError(f"{path}: {flag} {given} contradicts the log, whose lines carry their epoch: {found} steps "
                            f"each. Leave out {flag}")  # fmt: skip
        steps_per_epoch, hint = found, "its epochs are not of equal length"
    else:
        steps_per_epoch = given or default
        if steps_per_epoch is None:
            raise DataError(f"{path}: its lines carry no epoch: pass the run's {flag}")
        source = f"{flag} {given}" if given else f"the default {flag} {default} (pass the run's)"
        warn(f"{path}: lines without an epoch (a log from before the field, or a server without "
             f"--samples_per_epoch): epochs of {steps_per_epoch} steps from {source}")  # fmt: skip
        hint = f"pass the run's {flag}"
    for step, epoch in sorted(labelled):
        if (step - 1) // steps_per_epoch + 1 != epoch:
            raise DataError(f"{path}: step {step} is logged in epoch {epoch}, but epochs of {steps_per_epoch} steps "
                            f"put it in epoch {(step - 1) // steps_per_epoch + 1}: {hint}")  # fmt: skip
    return steps_per_epoch


@dataclass
class EpochTally:
    """Samples and successes (reward 1) per prompt and epoch: row i of each array is prompt ids[i], column k epoch k+1."""

    ids: list[str]
    successes: np.ndarray  # int64, prompts x epochs
    samples: np.ndarray

    @classmethod
    def of(cls, ids: Iterable[str], pids, epochs: np.ndarray, oks: np.ndarray, n: np.ndarray, num_epochs: int):
        """From columns, one entry per group of samples: prompt id, 0-based epoch (< num_epochs), success, samples.
        Rows follow `ids` (every prompt seen, in the input's order, some perhaps only past num_epochs)."""
        ids = list(dict.fromkeys(ids))
        row = {pid: i for i, pid in enumerate(ids)}
        cells = (np.fromiter(map(row.__getitem__, pids), np.int64, len(pids)), epochs)
        successes, samples = np.zeros((2, len(ids), num_epochs), dtype=np.int64)
        np.add.at(samples, cells, n)
        np.add.at(successes, cells, n * oks)
        return cls(ids, successes, samples)

    def accuracy(self) -> dict[str, list[float | None]]:
        """Each prompt's accuracy per epoch: the share of its samples with reward 1; None where it was not sampled."""
        return {
            pid: [c / n if n else None for c, n in zip(correct, total, strict=True)]
            for pid, correct, total in zip(self.ids, self.successes.tolist(), self.samples.tolist(), strict=True)
        }

    def curve(self) -> list[float]:
        """The run's accuracy per epoch, over all its samples."""
        return (self.successes.sum(axis=0) / self.samples.sum(axis=0)).tolist()


def epoch_tally(
    path: Path, steps_per_epoch: int | None = None, warn: Callable[[str], None] = warn_stderr
) -> EpochTally:
    """A whole log's tally, every epoch (the miniature's training curve); LIM's reader adds its own checks."""
    steps, epochs, pids, oks, n = count_samples(path, warn).columns()
    if not len(steps):
        raise DataError(f"{path}: no training samples")
    epoch = (steps - 1) // steps_per_epoch_of(path, steps, epochs, steps_per_epoch, warn=warn)
    return EpochTally.of(pids, pids, epoch, oks, n, int(epoch.max()) + 1)
