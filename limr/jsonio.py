"""Reading and writing JSON / JSONL files without ever leaving a half-written output.

Every output of the pipeline goes through `atomic_write`: the data lands in a temporary file in the
same folder and is `os.replace`d over the target only once it is complete, so a crash or a bad input
found halfway leaves either the old file or no file, never a torn one. A command that writes several files
wraps them in `all_or_nothing()`: each is moved into place only once every one is complete, so a disk that
fills up on the third file leaves none of them behind. An output may replace a regular file only: `os.replace` over
a symlink, a FIFO or a device swaps the special file for a plain one (`--scores_output /dev/null`, run as root,
turned /dev/null into a regular file), so those are refused.

The readers turn whatever json refuses into one DataError naming the file (and line): bad JSON, text that is not
UTF-8, nesting too deep for the parser, and integers longer than Python converts (`sys.get_int_max_str_digits()`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input data; the message is one line meant for the user."""


def is_number(x: Any) -> bool:
    """A finite JSON number that fits a float: not a bool (a Python int), not NaN or infinity (json.loads accepts
    both), not an integer of 309+ digits (math.isfinite and float() raise OverflowError on it)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def not_replaceable(path: str | os.PathLike) -> str | None:
    """What stands at `path` if an output may not replace it ("a symlink", "a FIFO", ...); None for a regular file or
    nothing (or a path whose folder is missing: writing it finds out)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _refuse_special(path: Path) -> None:
    """FileExistsError (an OSError, as every CLI's write step expects) if `path` is not a regular file."""
    kind = not_replaceable(path)
    if kind is not None:
        raise FileExistsError(errno.EEXIST, f"{path} is {kind}, not a regular file: not replacing it")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("pending_writes", default=None)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside `path`; on success move it over `path` (at the end of an enclosing
    `all_or_nothing()`, if any), on error delete it."""
    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        pending = _PENDING.get()
        if pending is None:
            _refuse_special(path)  # again: one may have appeared while the data was written
            os.replace(tmp, path)
        else:
            pending.append((tmp, path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Hold back every `atomic_write` inside until all are complete, then move them into place together; on an
    error delete them all, so the command leaves every earlier output as it was."""
    pending: list[tuple[str, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
        _PENDING.reset(token)
        token = None
        for _, path in pending:  # every target checked before any is moved: all or nothing
            _refuse_special(path)
        while pending:  # renames in folders already written to: these do not run out of space
            tmp, path = pending[0]
            os.replace(tmp, path)
            pending.pop(0)
    finally:
        if token is not None:
            _PENDING.reset(token)
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def pending_path(path: str | os.PathLike) -> Path:
    """Where the bytes bound for `path` are now: inside all_or_nothing(), the temporary file an atomic_write left for
    it (not moved yet); elsewhere `path` itself. Lets a manifest written in the same all-or-nothing hash them."""
    path = Path(path)
    for tmp, final in _PENDING.get() or ():
        if final == path:
            return Path(tmp)
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def dumps_line(row: Any) -> str:
    """One JSONL line, UTF-8 where possible; a lone surrogate (valid JSON input, invalid UTF-8) is escaped."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)
    return line + "\n"


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write one compact JSON object per line; returns the number of lines."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps_line(row))
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None
    except ValueError:  # the only other error json.loads raises: an integer too long to convert
        line = _long_integer_line(text)
        raise DataError(f"{path}{'' if line is None else f':{line}'}: {_LONG_INTEGER}") from None


_LONG_INTEGER = f"an integer of more than {sys.get_int_max_str_digits():,} digits, longer than Python reads"


def _long_integer_line(text: str) -> int | None:
    """The line of the first integer json.loads refuses as too long (a guess if a string holds one earlier)."""
    m = re.search(rf'(?<![\w."])[0-9]{{{sys.get_int_max_str_digits() + 1}}}', text)  # not a fraction's digits
    return None if m is None else text.count("\n", 0, m.start()) + 1


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a line that is not a JSON object is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    # A bad byte becomes a lone surrogate, found on its own line: a strict decoder fails while reading ahead
    # (8 KiB at a time), and the error would name a line before the byte.
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            if not line.isascii():
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply to read") from None
            except ValueError:  # an integer too long to convert
                raise DataError(f"{path}:{lineno}: {_LONG_INTEGER}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def is_utf8(data: bytes, errors: str = "strict") -> bool:
    """Whether json.load would decode these bytes (errors="surrogatepass" for json.loads of bytes, which takes
    encoded surrogates). msgspec checks UTF-8 only in the fields it keeps, so its callers check the rest here."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8", errors)
    except UnicodeDecodeError:
        return False
    return True
