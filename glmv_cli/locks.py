"""The exclusive lock of a staging directory: one run per ``--out`` at a time.

A stage writes its artifact in ``.<out>.incomplete`` (``glmv_cli.artifacts``). Without a lock, a
second run on the same ``--out`` (a scheduler requeue while the first job still runs) wipes or
interleaves the first one's files and one of them commits a mixed artifact. The lock is a small
JSON file, ``.lock`` inside the staging directory, naming its holder: pid, host, the process's
start time and the time the lock was taken.

Taking it is atomic on POSIX file systems (local and NFS alike): the holder record is written to a
private temporary file and published with ``os.link``, which fails when the lock already exists,
so two runs can never both succeed and a reader never sees a half-written record.

A lock whose holder is gone (SIGKILL, OOM killer, a node reboot) stays on disk. It is broken only
when that is provable: the record names this host and its pid is not running, or runs a process
that started later than the holder did (a reused pid), or this host booted after the lock was
taken. A lock from another host is never broken automatically (its pid means nothing here); the
message says which file to delete once that job is known to be gone. Breaking renames the stale
record away and re-reads it, so two runs breaking the same stale lock at once cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

LOCK = ".lock"


def _proc_start(pid: int) -> float | None:
    """The start time of ``pid`` in seconds since the epoch (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def holder_record() -> dict[str, Any]:
    """Who takes the lock: this process."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_start": _proc_start(pid),
            "locked_at": round(time.time(), 3), "token": uuid.uuid4().hex}


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def holder_gone(rec: dict[str, Any]) -> bool:
    """True only when the holder provably no longer runs (see the module docstring)."""
    if rec.get("host") != socket.gethostname():
        return False
    pid = rec.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    locked_at = rec.get("locked_at")
    try:
        if isinstance(locked_at, (int, float)) and _boot_time() > locked_at:
            return True  # this host rebooted since
    except (OSError, ValueError):
        pass
    if not _pid_running(pid):
        return True
    started, theirs = _proc_start(pid), rec.get("process_start")
    # the pid now belongs to a process younger than the holder: reused (1 s slack for rounding)
    return started is not None and isinstance(theirs, (int, float)) and started > theirs + 1.0


def describe(rec: dict[str, Any]) -> str:
    when = rec.get("locked_at")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else "?"
    return f"pid {rec.get('pid')} on host {rec.get('host')}, since {since}"


def read_lock(path: Path) -> dict[str, Any] | None:
    """The holder record, None when there is no lock; an unreadable record counts as held."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {"pid": None, "host": "?"}
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError:
        return {"pid": None, "host": "?"}
    return rec if isinstance(rec, dict) else {"pid": None, "host": "?"}


def _held_error(lock: Path, out: Path, rec: dict[str, Any]) -> GlmvError:
    if rec.get("host") not in (socket.gethostname(), "?"):
        hint = (f"; if that run is gone, delete {lock} (a lock from another host is never broken "
                "automatically)")
    else:
        hint = "; wait for it to finish, or use another --out"
    return GlmvError(f"--out '{out}' is being written by another glmv run ({describe(rec)}){hint}")


def check_free(directory: Path, out: Path) -> None:
    """Refuses early (before anything heavy) when a live run holds ``directory``'s lock."""
    rec = read_lock(Path(directory) / LOCK)
    if rec is not None and not holder_gone(rec):
        raise _held_error(Path(directory) / LOCK, out, rec)


def acquire(directory: Path, out: Path, attempts: int = 5) -> dict[str, Any]:
    """Takes the lock of ``directory`` (created if missing); returns this holder's record."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK
    mine = holder_record()
    tmp = directory / f".lock.{mine['token']}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(mine))
        f.flush()
        os.fsync(f.fileno())
    try:
        for _ in range(attempts):
            try:
                os.link(tmp, lock)
                return mine
            except FileExistsError:
                pass
            rec = read_lock(lock)
            if rec is None:
                continue  # released meanwhile
            if not holder_gone(rec):
                raise _held_error(lock, out, rec)
            _break(lock, rec)
        raise GlmvError(f"--out '{out}': could not take the lock {lock} (other runs keep taking it)")
    finally:
        tmp.unlink(missing_ok=True)


def _break(lock: Path, stale: dict[str, Any]) -> None:
    """Moves a stale lock away; puts it back when it turned out not to be the one judged stale."""
    aside = lock.with_name(f".lock.broken.{uuid.uuid4().hex}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if read_lock(aside) != stale:  # another run took the lock between our read and the rename
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def release(directory: Path, rec: dict[str, Any] | None) -> None:
    """Removes the lock if it is still ``rec``'s (never another run's)."""
    if rec is None:
        return
    lock = Path(directory) / LOCK
    cur = read_lock(lock)
    if cur is not None and cur.get("token") == rec.get("token"):
        lock.unlink(missing_ok=True)
