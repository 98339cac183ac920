"""On-disk format of a packed dataset: safetensors shards plus ``packs.json``.

Each shard ``packs-NNNNN.safetensors`` holds a run of packs as flat arrays (no padding, no
pickles), so a reader slices one pack out with a few offset look-ups and lazy ``get_slice`` reads:

=====================  ==========  =============================================================
tensor                 dtype       shape / meaning
=====================  ==========  =============================================================
input_ids              int32       [T] tokens of every pack, back to back
labels                 int32       [T] loss targets, -100 where no loss
position_ids           int32       [4, T] text row (restarts per sample) + t/h/w rope rows
pack_token_offsets     int64       [P+1] pack p is tokens [o[p], o[p+1])
pack_sample_offsets    int64       [P+1] pack p holds samples [s[p], s[p+1])
sample_token_offsets   int64       [S+1] sample boundaries (shard-relative)
sample_source          int64       [S, 2] (input index, 1-based line) of each sample
pack_image_offsets     int64       [P+1] pack p holds images [i[p], i[p+1])
image_grid_thw         int32       [I, 3] resized patch grid of each image
image_byte_offsets     int64       [I+1] image k is bytes [b[k], b[k+1]) of image_bytes
image_bytes            uint8       [B] the encoded files as read (PNG/JPEG/...), never re-encoded
image_kind             int8        [I] 0 image, 1 video (only in shards that hold a video)
=====================  ==========  =============================================================

A video is one media entry: its grid is the whole video's (t, h, w) and its bytes are the file as
read, or for a frame folder a bundle of the sampled frames' files (``glmv_cli.data.video``);
``packs.json`` then holds the sampling settings the reader needs to re-derive the frames.

Storing the four position rows costs 16 bytes per token but makes the reader trivially correct
(no model config needed to rebuild the rope ids). Storing encoded images instead of pixels keeps
a pack ~20-50x smaller than float32 patches; the reader pays one decode + resize per image.
``packs.json`` lists the shards with their pack/token/sample/image counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FORMAT = "glmv-packs"
FORMAT_VERSION = 1
INDEX = "packs.json"


@dataclass
class Sample:
    """One tokenised record, ready to be packed."""

    input_ids: np.ndarray            # int32 [n]
    labels: np.ndarray               # int32 [n]
    positions: np.ndarray            # int32 [4, n]
    images: list[bytes] = field(default_factory=list)
    grids: list[tuple[int, int, int]] = field(default_factory=list)
    source: tuple[int, int] = (0, 0)  # (input index, line)
    kinds: list[int] = field(default_factory=list)  # per media entry, 0 image / 1 video; empty: images

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def shard_name(k: int) -> str:
    return f"packs-{k:05d}.safetensors"


def write_shard(path: str | Path, packs: Sequence[Sequence[Sample]]) -> dict[str, Any]:
    """Writes one shard of packs; returns its entry for ``packs.json``."""
    from safetensors.numpy import save_file

    samples = [s for p in packs for s in p]
    images = [b for s in samples for b in s.images]
    grids = [g for s in samples for g in s.grids]
    tokens = sum(len(s) for s in samples)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt))
    tensors = {
        "input_ids": cat([s.input_ids for s in samples], np.int32),
        "labels": cat([s.labels for s in samples], np.int32),
        "position_ids": (np.concatenate([s.positions for s in samples], axis=1).astype(np.int32, copy=False)
                         if samples else np.zeros((4, 0), np.int32)),
        "pack_token_offsets": _offsets([sum(len(s) for s in p) for p in packs]),
        "pack_sample_offsets": _offsets([len(p) for p in packs]),
        "sample_token_offsets": _offsets([len(s) for s in samples]),
        "sample_source": np.array([s.source for s in samples], dtype=np.int64).reshape(-1, 2),
        "pack_image_offsets": _offsets([sum(len(s.images) for s in p) for p in packs]),
        "image_grid_thw": np.array(grids, dtype=np.int32).reshape(-1, 3),
        "image_byte_offsets": _offsets([len(b) for b in images]),
        "image_bytes": (np.frombuffer(b"".join(images), dtype=np.uint8) if images else np.zeros(0, np.uint8)),
    }
    kinds = [k for s in samples for k in (s.kinds or [0] * len(s.images))]
    if any(kinds):  # only then: image-only shards keep their exact bytes
        tensors["image_kind"] = np.array(kinds, dtype=np.int8)
    # One metadata key only: safetensors keeps metadata in a hash map, so several keys would be
    # written in a per-process random order and identical packs would hash differently.
    save_file(tensors, str(path), metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    return {"file": Path(path).name, "packs": len(packs), "samples": len(samples), "tokens": int(tokens),
            "images": len(images)}


def write_index(directory: str | Path, shards: list[dict[str, Any]], **extra: Any) -> None:
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, **extra, "shards": shards}
    (Path(directory) / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


@dataclass
class RawPack:
    """One pack as stored (numpy arrays; images still encoded)."""

    input_ids: np.ndarray       # int32 [L]
    labels: np.ndarray          # int32 [L]
    position_ids: np.ndarray    # int32 [4, L]
    sample_lengths: np.ndarray  # int64 [samples in pack]
    sources: np.ndarray         # int64 [samples, 2]
    images: list[bytes]
    grids: np.ndarray           # int32 [images, 3]
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # int8 [images], 0 image 1 video


class ShardReader:
    """Random access to the packs of a directory written by :func:`write_shard` + :func:`write_index`."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        index_path = self.dir / INDEX
        try:
            self.index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{index_path} is missing") from None
        if self.index.get("format") != FORMAT or self.index.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{index_path}: not a {FORMAT} v{FORMAT_VERSION} index")
        self.shards = self.index["shards"]
        self._starts = _offsets([s["packs"] for s in self.shards])
        self._handles: dict[int, Any] = {}
        self._small: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _open(self, k: int):
        if k not in self._handles:
            from safetensors import safe_open

            h = safe_open(str(self.dir / self.shards[k]["file"]), framework="np")
            self._handles[k] = h
            self._small[k] = {name: h.get_tensor(name) for name in (
                "pack_token_offsets", "pack_sample_offsets", "sample_token_offsets", "sample_source",
                "pack_image_offsets", "image_grid_thw", "image_byte_offsets")}
            kinds = h.get_tensor("image_kind") if "image_kind" in h.keys() else None
            self._small[k]["image_kind"] = (kinds if kinds is not None else
                                            np.zeros(len(self._small[k]["image_grid_thw"]), np.int8))
        return self._handles[k], self._small[k]

    def pack(self, i: int) -> RawPack:
        if not 0 <= i < len(self):
            raise IndexError(f"pack {i} out of range 0..{len(self) - 1}")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        j = i - int(self._starts[k])
        h, o = self._open(k)
        t0, t1 = int(o["pack_token_offsets"][j]), int(o["pack_token_offsets"][j + 1])
        s0, s1 = int(o["pack_sample_offsets"][j]), int(o["pack_sample_offsets"][j + 1])
        i0, i1 = int(o["pack_image_offsets"][j]), int(o["pack_image_offsets"][j + 1])
        images = []
        if i1 > i0:
            b = o["image_byte_offsets"]
            blob = h.get_slice("image_bytes")[int(b[i0]):int(b[i1])].tobytes()
            images = [blob[int(b[q] - b[i0]):int(b[q + 1] - b[i0])] for q in range(i0, i1)]
        return RawPack(
            input_ids=h.get_slice("input_ids")[t0:t1],
            labels=h.get_slice("labels")[t0:t1],
            position_ids=h.get_slice("position_ids")[:, t0:t1],
            sample_lengths=np.diff(o["sample_token_offsets"][s0:s1 + 1]),
            sources=o["sample_source"][s0:s1],
            images=images,
            grids=o["image_grid_thw"][i0:i1],
            kinds=o["image_kind"][i0:i1],
        )
