"""Image sizes from file headers, and the resized patch grid GLM-4.1V's processor would choose.

``glmv pack`` needs, per image, only the number of ``<|image|>`` tokens it becomes, which depends
only on the image's width and height. :func:`fast_size` reads them from the first bytes of a PNG,
JPEG, GIF or BMP (a few byte comparisons, ~3 us); anything else goes through ``PIL.Image.open``,
which parses the header and stops -- no pixel is decoded -- at ~50-100 us instead of the
milliseconds of a full decode. The encoded bytes are stored as they are; the packed reader
decodes them later.

:func:`grid_for_size` re-implements transformers' ``glm4v`` ``smart_resize`` (tests check equality
over many sizes): round each side to a multiple of ``patch_size * merge_size`` (28), then scale
down into ``max_pixels`` or up into ``min_pixels`` keeping the aspect ratio. Aspect ratios over
200:1 are rejected, as transformers does.

Image sources. A record's image is a path (str), the encoded bytes themselves (images embedded
in parquet / HF ``Image`` features / data URLs), or a :class:`glmv_cli.data.blobs.Blob` (bytes
spilled to a scratch file while a pack is built). :func:`source_head`, :func:`source_bytes`,
:func:`open_image` and :func:`describe_source` treat the three alike, so nothing downstream
re-encodes an embedded image to a file.

Pixel limits (``--image-min-pixels`` / ``--image-max-pixels``, :class:`ImageSizeConfig`) are
pixels of the resized image (width x height), the unit LLaMA-Factory and EasyR1 use. They are
applied by setting the image processor's ``size`` (``shortest_edge`` / ``longest_edge``), which
counts an image's two repeated temporal frames, to ``temporal_patch_size`` x the limit; so the
processor's own resize rule (and :func:`resized_size`) does the work everywhere the processor
is used: pack, grade-difficulty, rlcs rollouts and eval.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Optional

from PIL import Image

from glmv_cli.errors import GlmvError
from glmv_cli.options import opt

MAX_ASPECT = 200


@dataclass(frozen=True)
class ImageSettings:
    """The image-processor fields that decide the grid (GLM-4.1V defaults)."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 112 * 112
    max_pixels: int = 28 * 28 * 15000

    @classmethod
    def from_processor(cls, image_processor: Any) -> "ImageSettings":
        size = getattr(image_processor, "size", None) or {}
        get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        return cls(patch_size=int(image_processor.patch_size), merge_size=int(image_processor.merge_size),
                   temporal_patch_size=int(image_processor.temporal_patch_size),
                   min_pixels=int(get("shortest_edge") or cls.min_pixels),
                   max_pixels=int(get("longest_edge") or cls.max_pixels))

    def as_dict(self) -> dict:
        return {"patch_size": self.patch_size, "merge_size": self.merge_size,
                "temporal_patch_size": self.temporal_patch_size, "min_pixels": self.min_pixels,
                "max_pixels": self.max_pixels}


class AspectRatioError(ValueError):
    def __init__(self, width: int, height: int, ratio: float):
        super().__init__(f"aspect ratio {ratio:.1f}:1 ({width}x{height}) is over {MAX_ASPECT}:1")
        self.ratio = ratio


def resized_size(width: int, height: int, s: ImageSettings) -> tuple[int, int]:
    """(resized_height, resized_width) exactly as transformers' glm4v ``smart_resize``."""
    factor = s.patch_size * s.merge_size
    w0, h0 = width, height
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT:
        raise AspectRatioError(w0, h0, ratio)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    frames = s.temporal_patch_size  # an image is one temporal patch of repeated frames
    t_bar = round(frames / s.temporal_patch_size) * s.temporal_patch_size
    if t_bar * h_bar * w_bar > s.max_pixels:
        beta = math.sqrt(frames * height * width / s.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < s.min_pixels:
        beta = math.sqrt(s.min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def grid_for_size(width: int, height: int, s: ImageSettings) -> tuple[int, int, int]:
    """The (t, h, w) patch grid of an image of ``width x height`` (t is 1 for images)."""
    rh, rw = resized_size(width, height, s)
    return 1, rh // s.patch_size, rw // s.patch_size


def tokens_for_grid(grid: tuple[int, int, int], s: ImageSettings) -> int:
    """How many ``<|image|>`` tokens the merger turns a grid into."""
    t, h, w = grid
    return t * h * w // (s.merge_size * s.merge_size)


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG start-of-frame markers


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        seg = int.from_bytes(b[i + 2:i + 4], "big")
        if marker in _SOF:
            if i + 9 > n:
                return None
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        i += 2 + seg
    return None


def fast_size(b: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF or BMP from its first bytes; None if unsure.

    A few byte comparisons instead of PIL's plugin machinery (~3 us vs ~60 us per image); any
    other format, or a header this does not recognise, falls back to PIL.
    """
    if b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:3] == b"\xff\xd8\xff":
        return _jpeg_size(b)
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        return int.from_bytes(b[6:8], "little"), int.from_bytes(b[8:10], "little")
    if b[:2] == b"BM" and len(b) >= 26 and int.from_bytes(b[14:18], "little") >= 40:
        return int.from_bytes(b[18:22], "little", signed=True), abs(int.from_bytes(b[22:26], "little", signed=True))
    return None


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the encoded bytes' header, without decoding pixels.

    Raises ``ValueError`` when the bytes are not an image PIL can identify.
    """
    fast = fast_size(data)
    if fast is not None and fast[0] > 0 and fast[1] > 0:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or damaged format)") from None
    except (OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"not a readable image ({type(e).__name__}: {e})") from None


# -- pixel limits --------------------------------------------------------------------------------

_MIN_LIMIT = 28 * 28  # one merged patch block: the resize rule never goes below it


@dataclass
class ImageSizeConfig:
    """The image pixel budget of a stage (see the module docstring); None keeps the model's."""

    image_min_pixels: Optional[int] = opt(None, "Scale smaller images up to at least this many pixels (width x "
                                                "height of the resized image); default: the model's processor.",
                                          min=1)
    image_max_pixels: Optional[int] = opt(None, "Scale larger images down to at most this many pixels (width x "
                                                "height of the resized image, as LLaMA-Factory's image_max_pixels); "
                                                "default: the model's processor.", min=_MIN_LIMIT)

    def check(self) -> None:
        lo, hi = self.image_min_pixels, self.image_max_pixels
        if lo is not None and hi is not None and lo > hi:
            raise GlmvError(f"--image-min-pixels ({lo}) must not be larger than --image-max-pixels ({hi})")

    @property
    def is_set(self) -> bool:
        return self.image_min_pixels is not None or self.image_max_pixels is not None


def apply_pixel_limits(image_processor: Any, limits: Optional[ImageSizeConfig]) -> dict:
    """Sets the processor's ``size`` from ``limits`` (in place); returns the resulting size.

    Raises GlmvError when the limits contradict the processor's other bound (a minimum above
    its maximum or the reverse)."""
    ip = getattr(image_processor, "image_processor", image_processor)
    size = ip.size
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo, hi = int(get("shortest_edge")), int(get("longest_edge"))
    if limits is None or not limits.is_set:
        return {"shortest_edge": lo, "longest_edge": hi}
    t = int(ip.temporal_patch_size)
    if limits.image_min_pixels is not None:
        lo = t * int(limits.image_min_pixels)
    if limits.image_max_pixels is not None:
        hi = t * int(limits.image_max_pixels)
    if lo > hi:
        raise GlmvError(f"image pixel limits: the minimum ({lo // t} px) is above the maximum ({hi // t} px) "
                        "once combined with the model processor's own bound; give both --image-min-pixels and "
                        "--image-max-pixels")
    ip.size = {"shortest_edge": lo, "longest_edge": hi}
    return dict(ip.size)


# -- image sources -------------------------------------------------------------------------------

def source_head(src: Any, n: int) -> bytes:
    """The first ``n`` bytes of an image source (a path, bytes or a Blob)."""
    if isinstance(src, str):
        with open(src, "rb") as f:
            return f.read(n)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src[:n])
    return src.read(n)


def source_bytes(src: Any) -> bytes:
    """The whole encoded image of a source, as stored (never re-encoded)."""
    if isinstance(src, str):
        with open(src, "rb") as f:
            return f.read()
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    return src.read()


def source_size(src: Any, head_bytes: int = 4096) -> tuple[int, int]:
    """(width, height) from the header; the whole image only for formats :func:`fast_size` does not know."""
    head = source_head(src, head_bytes)
    size = fast_size(head)
    if size is not None and size[0] > 0 and size[1] > 0:
        return size
    return header_size(source_bytes(src) if len(head) >= head_bytes else head)


def open_image(src: Any) -> Image.Image:
    """The decoded RGB image of a source."""
    if isinstance(src, str):
        with Image.open(src) as im:
            return im.convert("RGB")
    with Image.open(io.BytesIO(source_bytes(src))) as im:
        return im.convert("RGB")


def describe_source(src: Any) -> str:
    """How an image source reads in a message: its path, or what kind of embedded bytes it is."""
    if isinstance(src, str):
        return f"'{src}'"
    n = len(src) if isinstance(src, (bytes, bytearray, memoryview)) else src.length
    return f"embedded image ({n} bytes)"
