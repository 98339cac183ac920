"""The one way glmv opens an input file and reads JSONL from it, with ``file:line`` errors.

``open_input`` refuses what is not a regular file (a FIFO would hang forever, ``/dev/zero`` would
fill memory) and files over a size limit. ``iter_lines`` yields ``(line number, text)`` of the
non-blank lines and refuses a line longer than ``max_line_bytes`` before decoding it, naming the
line, its size and the limit: one runaway line (a 50 MB base64 blob, a file without newlines)
must not drive a stage into gigabytes of tokenizer memory. ``iter_objects`` parses each line and
requires a JSON object. Every error is a ``GlmvError`` naming the file and line.

Limits (defaults; the environment may raise them: ``GLMV_MAX_LINE_BYTES``, ``GLMV_MAX_FILE_BYTES``):
a line 64 MiB (images belong in files or in a parquet column, not in a JSON line), a file 1 TiB.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any, Iterator

from glmv_cli.errors import GlmvError

MAX_LINE_BYTES = 64 << 20
MAX_FILE_BYTES = 1 << 40
_CHUNK = 1 << 20


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise GlmvError(f"${name} must be a number of bytes, got '{raw}'") from None
    if v <= 0:
        raise GlmvError(f"${name} must be > 0, got {v}")
    return v


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """The path, if it names a regular file within the size limit; else a GlmvError saying why."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise GlmvError(f"{what} '{p}' does not exist") from None
    except PermissionError:
        raise GlmvError(f"{what} '{p}' cannot be read (permission denied)") from None
    except OSError as e:
        raise GlmvError(f"{what} '{p}' cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise GlmvError(f"{what} '{p}' is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
            st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise GlmvError(f"{what} '{p}' is {kind}; glmv reads regular files only")
    limit = _limit("GLMV_MAX_FILE_BYTES", MAX_FILE_BYTES)
    if st.st_size > limit:
        raise GlmvError(f"{what} '{p}' has {st.st_size:,} bytes, more than the limit {limit:,} "
                        "(raise $GLMV_MAX_FILE_BYTES if this is intended)")
    return p


def open_input(path: str | os.PathLike, what: str = "input") -> IO[bytes]:
    """Opens a checked input file for binary reading."""
    p = check_input_file(path, what)
    try:
        return open(p, "rb")
    except OSError as e:
        raise GlmvError(f"{what} '{p}' cannot be read ({e.strerror})") from None


def iter_raw_lines(path: str | os.PathLike, what: str = "input") -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of every line, 1-based, each within the line limit (not decoded)."""
    limit = _limit("GLMV_MAX_LINE_BYTES", MAX_LINE_BYTES)
    with open_input(path, what) as f:
        lineno = 0
        while True:
            raw = f.readline(limit + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                size = len(raw) + _skip_rest_of_line(f)
                raise GlmvError(f"{path}:{lineno}: the line has {size:,} bytes, more than the limit {limit:,} "
                                "(put images in files or a parquet column; $GLMV_MAX_LINE_BYTES raises the limit)")
            yield lineno, raw


def iter_lines(path: str | os.PathLike, what: str = "input") -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` of every non-blank line, 1-based."""
    for lineno, raw in iter_raw_lines(path, what):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GlmvError(f"{path}:{lineno}: not UTF-8 text (byte {e.start}: {e.reason}); is this a "
                            "binary file (parquet, arrow)?") from None
        text = text.rstrip("\r\n")
        if text.strip():
            yield lineno, text


def _skip_rest_of_line(f: IO[bytes]) -> int:
    n = 0
    while True:
        chunk = f.readline(_CHUNK)
        n += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return n


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def append_rows(path: str | os.PathLike, rows: list[dict[str, Any]], *, default: Any = None) -> None:
    """Appends rows as JSONL in one write + fsync: a batch lands whole, or (a crash mid-write) torn
    and redone by a resume (the readers drop a torn tail). ``default``: as ``json.dumps``'."""
    blob = "".join(json.dumps(r, ensure_ascii=False, default=default) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, blob)
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_object(text: str, path: str | os.PathLike, lineno: int) -> dict[str, Any]:
    """One JSONL line as a JSON object, or a GlmvError naming file:line."""
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise GlmvError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # NaN / Infinity: Python's json reads them, JSON has no such numbers
        raise GlmvError(f"{path}:{lineno}: invalid JSON ({e})") from None
    except RecursionError:
        raise GlmvError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise GlmvError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_objects(path: str | os.PathLike, what: str = "input") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line; any bad line is a GlmvError naming it."""
    for lineno, text in iter_lines(path, what):
        yield lineno, parse_object(text, path, lineno)
