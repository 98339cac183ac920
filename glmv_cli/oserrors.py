"""Operating-system failures (a full disk, a read-only mount, a permission) as one-line user errors.

Two layers. Write sites that know how much they are about to write wrap the write in
:func:`writing`: it checks the free space first (so a shard or checkpoint that cannot fit fails
before a byte is written, with the size it needed) and turns an ``ENOSPC`` / ``EDQUOT`` during the
write into the same message. safetensors' writer is Rust and reports a full disk as a
``SafetensorError`` whose text holds the OS error code; :func:`os_error_from` recognises it.
Everything else reaches the CLI wrapper (``glmv_cli.cli.user_errors``), which prints
:func:`describe` of any ``OSError`` as ``error: ...`` instead of a traceback.

The free-space pre-check is a lower bound on trouble, not a guarantee: another process may fill
the disk between the check and the write, which the second layer then reports.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from glmv_cli.errors import GlmvError

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def margin(needed: int) -> int:
    """Room kept beside a write of ``needed`` bytes: file-system metadata and the small files
    written next to it (a checkpoint's RNG and state JSON, the manifest)."""
    return (64 << 10) + needed // 100
_RUST_CODE = re.compile(r"code: (\d+)")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    for cand in (p, *p.parents):
        if cand.exists():
            try:
                return shutil.disk_usage(cand).free
            except OSError:
                return None
    return None


def space_message(path: str | os.PathLike, needed: int | None, spare: int = 0) -> str:
    free = free_bytes(path)
    need = f"needed {human(needed)}" if needed else "needed more space"
    if needed and spare:
        need += f" and a {human(spare)} margin"
    have = f", {human(free)} free" if free is not None else ""
    return f"no space left on the device writing '{path}' ({need}{have}); free some space and run again"


def describe(e: OSError) -> str:
    """One line naming the path and what went wrong."""
    where = e.filename if e.filename is not None else "?"
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    if e.errno in SPACE_ERRNOS:
        return space_message(where, None)
    if e.errno == errno.EROFS:
        return f"'{where}' is on a read-only file system; choose a writable path"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: '{where}'"
    reason = e.strerror or type(e).__name__
    return f"{reason}: '{where}'"


def os_error_from(e: BaseException, path: str | os.PathLike) -> OSError | None:
    """The OSError inside ``e``: itself, or one a Rust writer reported as text ("code: 28")."""
    if isinstance(e, OSError):
        return e
    m = _RUST_CODE.search(str(e)) if type(e).__name__ == "SafetensorError" else None
    if m is not None:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return None


def check_space(path: str | os.PathLike, needed: int) -> None:
    """An error naming the path when ``needed`` bytes clearly do not fit."""
    free = free_bytes(path)
    if free is not None and needed + margin(needed) > free:
        raise GlmvError(space_message(path, needed, margin(needed)))


@contextmanager
def writing(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Checks the space for ``needed`` bytes, then reports a full disk during the block by path and size."""
    if needed:
        check_space(path, needed)
    try:
        yield
    except GlmvError:
        raise
    except Exception as e:  # noqa: BLE001 - only OS errors are translated; the rest re-raise as they are
        ose = os_error_from(e, path)
        if ose is None:
            raise
        if ose.errno in SPACE_ERRNOS:
            raise GlmvError(space_message(path, needed)) from None
        if ose.filename is None:
            ose.filename = str(path)
        raise GlmvError(describe(ose)) from None
