"""Embedded image bytes spilled to a scratch file while ``glmv pack`` runs.

``glmv pack`` holds every record until all are encoded (packing is global). Records read from
parquet / Arrow / Hub datasets carry their images as bytes; keeping them in the record list would
hold the whole dataset in memory, and shipping them to ``--workers`` processes would copy each
image twice. So the reading loop moves each byte string into a :class:`BlobStore` -- one
append-only file next to the output -- and the record keeps a :class:`Blob` (file, offset,
length). Workers read the first 4 kB for the header, the shard writer reads the whole blob back:
one sequential write and two reads per image, no decode and no re-encode (the bytes stored in the
pack are the bytes the dataset held).

A Blob names its file by path, so it works in forked and spawned workers alike; each process
keeps one open handle per store file. The store deletes its file when closed (the stage closes
it in a ``finally``); a process killed outright leaves ``.glmv-images-*.bin`` behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HANDLES: dict[str, int] = {}  # store path -> read fd, per process


@dataclass(frozen=True)
class Blob:
    """``length`` bytes at ``offset`` of the store file ``store``."""

    store: str
    offset: int
    length: int

    def read(self, n: int | None = None) -> bytes:
        fd = _HANDLES.get(self.store)
        if fd is None:
            fd = _HANDLES[self.store] = os.open(self.store, os.O_RDONLY)
        want = self.length if n is None else min(n, self.length)
        data = os.pread(fd, want, self.offset)
        if len(data) != want:
            raise OSError(f"image store '{self.store}' is truncated (wanted {want} bytes at {self.offset})")
        return data

    def __len__(self) -> int:
        return self.length


class BlobStore:
    """An append-only scratch file of image bytes (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike):
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix=".glmv-images-", suffix=".bin", dir=str(directory))
        self._f = os.fdopen(fd, "wb")
        self._end = 0
        self.count = 0

    def put(self, data: bytes) -> Blob:
        self._f.write(data)
        blob = Blob(self.path, self._end, len(data))
        self._end += len(data)
        self.count += 1
        return blob

    def flush(self) -> None:
        """Makes every put visible to readers (call before handing Blobs to other processes)."""
        self._f.flush()

    @property
    def bytes(self) -> int:
        return self._end

    def spill(self, value: Any) -> Any:
        """``value`` with every ``bytes`` inside (dicts and lists, any depth) replaced by a Blob.
        Containers without bytes are returned as they are (no copy of the text fields)."""
        if isinstance(value, (bytes, bytearray)):
            return self.put(bytes(value)) if value else value
        if isinstance(value, dict):
            out = None
            for k, v in value.items():
                if isinstance(v, (dict, list, bytes, bytearray)):
                    new = self.spill(v)
                    if new is not v:
                        if out is None:
                            out = dict(value)
                        out[k] = new
            return value if out is None else out
        if isinstance(value, list):
            new_list = [self.spill(v) if isinstance(v, (dict, list, bytes, bytearray)) else v for v in value]
            return value if all(a is b for a, b in zip(new_list, value)) else new_list
        return value

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        fd = _HANDLES.pop(self.path, None)
        if fd is not None:
            os.close(fd)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> "BlobStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
