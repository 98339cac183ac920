"""One image value of a foreign row -> a glmv image source (a path string or the encoded bytes).

The spellings met in the wild, all accepted wherever a row names an image:

* a path, relative to the data file's directory (or ``--image-root``) or absolute;
* ``file:///abs/path.png`` (OpenAI-style ``image_url`` pointing at a local file);
* ``data:image/png;base64,....`` (a data URL; base64 decoded here, once);
* raw ``bytes`` (verl / EasyR1 parquet columns) or a :class:`glmv_cli.data.blobs.Blob`;
* an HF ``Image`` feature read with ``decode=False``: ``{"bytes": ..., "path": ...}`` -- bytes
  when present, else the path;
* ``{"url": ...}`` (an ``image_url`` object) and ``{"path": ...}``.

``http(s)://`` URLs are refused with a message: glmv runs offline and never fetches data. The
bytes are not decoded here (packing reads sizes from headers; a broken image is reported with its
row when its header is read).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote, urlparse

from glmv_cli.data.blobs import Blob
from glmv_cli.data.schema import RecordError


def image_source(value: Any, path: str, line: int, field: str) -> Any:
    """The glmv image source of ``value`` (see the module docstring); RecordError names the field."""
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise RecordError(path, line, field, "empty image bytes", "bad_image")
        return bytes(value)
    if isinstance(value, Blob):
        return value
    if isinstance(value, str):
        return _from_string(value, path, line, field)
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is not None:
            return image_source(data, path, line, f"{field}.bytes")
        for key in ("path", "url", "image_url", "image"):
            if value.get(key) is not None:
                return image_source(value[key], path, line, f"{field}.{key}")
        raise RecordError(path, line, field, "an image object needs 'bytes', 'path' or 'url' "
                          f"(got keys: {', '.join(sorted(value)) or 'none'})", "bad_image")
    if value is None:
        raise RecordError(path, line, field, "image is null", "bad_image")
    raise RecordError(path, line, field, f"expected an image path, URL, bytes or {{bytes, path}}, got "
                      f"{type(value).__name__}", "bad_image")


def _from_string(s: str, path: str, line: int, field: str) -> Any:
    if not s:
        raise RecordError(path, line, field, "empty image path", "bad_field")
    head = s[:16].lower()
    if head.startswith("data:"):
        return _data_url(s, path, line, field)
    if head.startswith("file://"):
        u = urlparse(s)
        if u.netloc not in ("", "localhost"):
            raise RecordError(path, line, field, f"file URL of another host '{u.netloc}' (expected file:///path)",
                              "bad_image")
        return unquote(u.path)
    if head.startswith(("http://", "https://")):
        raise RecordError(path, line, field, f"remote image URL '{s[:80]}': glmv reads local data only; download "
                          "the images and give their paths (or embed them as bytes / data URLs)", "bad_image")
    return s


def _data_url(s: str, path: str, line: int, field: str) -> bytes:
    meta, sep, payload = s.partition(",")
    if not sep:
        raise RecordError(path, line, field, "data URL without a ',' before its payload", "bad_image")
    media = meta[5:].split(";")[0].strip().lower()
    if media and not media.startswith("image/"):
        raise RecordError(path, line, field, f"data URL of type '{media}' (expected image/...)", "bad_image")
    if ";base64" not in meta.lower():
        data = unquote(payload).encode("latin-1", errors="replace")
    else:
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as e:
            raise RecordError(path, line, field, f"data URL with invalid base64 ({e})", "bad_image") from None
    if not data:
        raise RecordError(path, line, field, "data URL with an empty payload", "bad_image")
    return data


def image_list(value: Any, path: str, line: int, field: str) -> list[Any]:
    """An ``images`` column (a list, one image, or null) as a list of sources."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [image_source(v, path, line, f"{field}[{k}]") for k, v in enumerate(value)]
    return [image_source(value, path, line, field)]
