"""Checks of a model directory's safetensors files before any tensor is loaded.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data section
after the header) and the raw data. A truncated copy, a corrupted length field or a file from
another model otherwise surfaces as a ``SafetensorError`` (or a shape error deep inside
``from_pretrained``) with no file name in it. :func:`check_model_dir` reads only the headers
(a few KiB per thousand tensors) and checks, naming the file and the tensor:

- the header: length within the file and under 100 MiB, valid JSON object, known dtypes,
  offsets that tile the data section exactly (so a truncated file is caught by its size);
- the index: every shard ``model.safetensors.index.json`` names exists;
- against ``config.json``: the model built on the ``meta`` device (no memory) gives the expected
  name and shape of every parameter; a tensor of another shape is an error, and so is a missing
  one when the files use the model's names and hold nothing of its module (a checkpoint in an
  older naming scheme, or fused MoE experts saved per expert, is left to transformers' key
  mapping). Tied weights (``lm_head`` = ``embed_tokens``) may be absent.

Cost: header reads are microseconds; the meta build is ~30 ms for the tiny preset and a second or
two for a 9B config, against minutes to load the weights it protects.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

MAX_HEADER = 100 << 20
INDEX_NAME = "model.safetensors.index.json"
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
FLOAT_DTYPES = {"F8_E5M2", "F8_E4M3", "F16", "BF16", "F32", "F64"}


def read_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file (``__metadata__`` removed), checked for consistency."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise GlmvError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n > size - 8:
            raise GlmvError(f"{path}: not a safetensors file (header length {n:,} exceeds the file of {size:,} "
                            "bytes: truncated or corrupted)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GlmvError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise GlmvError(f"{path}: not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    spans = []
    for name, t in header.items():
        if not isinstance(t, dict) or not isinstance(t.get("shape"), list) or not isinstance(t.get("data_offsets"), list):
            raise GlmvError(f"{path}: tensor '{name}' has no valid shape / data_offsets in the header")
        dt = t.get("dtype")
        if dt not in DTYPE_BYTES:
            raise GlmvError(f"{path}: tensor '{name}' has unknown dtype {dt!r}")
        shape, offs = t["shape"], t["data_offsets"]
        if not all(isinstance(d, int) and d >= 0 for d in shape) or len(offs) != 2 or \
                not all(isinstance(o, int) for o in offs) or not 0 <= offs[0] <= offs[1]:
            raise GlmvError(f"{path}: tensor '{name}' has a malformed shape {shape} or offsets {offs}")
        numel = 1
        for d in shape:
            numel *= d
        if offs[1] - offs[0] != numel * DTYPE_BYTES[dt]:
            raise GlmvError(f"{path}: tensor '{name}' ({dt} {shape}) needs {numel * DTYPE_BYTES[dt]:,} bytes but its "
                            f"offsets span {offs[1] - offs[0]:,}")
        spans.append((offs[0], offs[1]))
    data_size = size - 8 - n
    end = 0
    for b, e in sorted(spans):
        if b != end:
            raise GlmvError(f"{path}: corrupted header (tensor data overlaps or leaves a gap at byte {end:,})")
        end = e
    if end != data_size:
        what = "truncated" if end > data_size else "has trailing bytes"
        raise GlmvError(f"{path}: {what}: the header describes {end:,} bytes of tensor data, the file holds "
                        f"{data_size:,}")
    return header


def shard_files(directory: Path) -> list[Path]:
    """The weight files of a model directory: the index's shards, or the lone ``model.safetensors``."""
    directory = Path(directory)
    index = directory / INDEX_NAME
    if index.is_file():
        try:
            wmap = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise GlmvError(f"{index}: not a valid weight index (expected JSON with a 'weight_map')") from None
        if not isinstance(wmap, dict) or not wmap or not all(isinstance(v, str) for v in wmap.values()):
            raise GlmvError(f"{index}: field 'weight_map' must map tensor names to shard files")
        files = []
        for shard in sorted(set(wmap.values())):
            p = directory / shard
            if "/" in shard or ".." in shard or not p.is_file():
                raise GlmvError(f"{index}: weight_map names '{shard}', which is not a file in {directory}")
            files.append(p)
        return files
    return sorted(directory.glob("*.safetensors"))


def _expected(config: Any) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """(parameter name -> shape, names that may be absent because they are tied) from ``config``."""
    import torch

    from glmv_cli.modeling.io import model_class_for

    with torch.device("meta"):
        model = model_class_for(config)(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = set((getattr(model, "_tied_weights_keys", None) or {}))
    if not getattr(config, "tie_word_embeddings", False) and not getattr(
            getattr(config, "text_config", None), "tie_word_embeddings", False):
        tied = set()
    return shapes, tied


def check_model_dir(directory: Path, config: Any) -> None:
    """Header, index and shape checks of a model directory's weights (see the module docstring)."""
    directory = Path(directory)
    files = shard_files(directory)
    if not files:
        raise GlmvError(f"{directory}: no weights (expected {INDEX_NAME} with its shards, or model.safetensors)")
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in files:
        for name, t in read_header(f).items():
            found[name] = (f, t)
    shapes, tied = _expected(config)
    for name, (f, t) in found.items():
        want = shapes.get(name)
        if want is not None and tuple(t["shape"]) != want:
            raise GlmvError(f"{f}: tensor '{name}' has shape {t['shape']}, config.json gives {list(want)}: the weights "
                            "belong to another model configuration")
        if want is not None and t["dtype"] not in FLOAT_DTYPES:
            raise GlmvError(f"{f}: tensor '{name}' has dtype {t['dtype']}, expected a floating-point dtype")
    matched = sum(1 for n in found if n in shapes)
    if matched * 2 >= len(shapes):  # the files use the model's own names: every parameter must be there
        prefixes = {n[:i + 1] for n in found for i, c in enumerate(n) if c == "."}
        # a parameter stored under other names (fused MoE experts saved per expert) keeps its module
        missing = sorted(n for n in shapes if n not in found and n not in tied and n.rsplit(".", 1)[0] + "."
                         not in prefixes)
        if missing:
            raise GlmvError(f"{directory}: the weights lack {len(missing)} tensor(s) of this config, e.g. '{missing[0]}'")
