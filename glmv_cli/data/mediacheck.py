"""What a stage checks about a record's media before it accepts the record.

``glmv pack`` reads only image headers to size the prompt (``glmv_cli.data.images``), so on its
own it would accept a truncated PNG or a 20000x20000 decompression bomb that training then fails
to decode hours later. Three checks close that gap, shared by pack, rlcs and grade-difficulty
(:class:`MediaChecks`, one option group):

- a pixel budget from the header (``--max-image-pixels``, default 178,956,970: the size at which
  PIL itself refuses an image as a decompression bomb), checked before any pixel is decoded;
- ``--verify-images on`` (default): every image is fully decoded once, in the encode workers,
  by :func:`decode_image` -- the same function the packed reader uses in training, so what pack
  accepts, training can read. The cost is one decode per image (benchmarks/pack_bench.py
  ``--verify-images`` measures it against ``off`` in the same run); ``off`` is for data one trusts;
- image and video paths must resolve inside the data root (the directory of the JSONL file)
  unless ``--allow-external-paths``: a record with ``../../`` or an absolute path elsewhere on
  the machine would otherwise be read, and packed into an artifact that may be published.
  The check is on the path as written (normalised, not following symlinks), so a data directory
  that links to a shared image store keeps working.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from glmv_cli.options import opt

PIL_BOMB_PIXELS = 178_956_970  # 2 x PIL.Image.MAX_IMAGE_PIXELS: where PIL raises DecompressionBombError
_PIL_LOCK = threading.Lock()


@dataclass
class MediaChecks:
    """How records' images are checked before they are accepted."""

    verify_images: str = opt("on", "on: fully decode every image once (with the decoder training uses) and refuse "
                                   "the record if it fails; off: trust the data, read headers only.",
                             choices=("on", "off"))
    max_image_pixels: int = opt(PIL_BOMB_PIXELS, "Refuse an image with more pixels than this (width x height, from "
                                                 "its header; the default is PIL's decompression-bomb limit).", min=1)
    allow_external_paths: bool = opt(False, "Read image and video paths that resolve outside the data directory "
                                            "(absolute paths elsewhere, '../').")

    @property
    def decode(self) -> bool:
        return self.verify_images == "on"


class ImageTooLarge(ValueError):
    def __init__(self, width: int, height: int, limit: int):
        super().__init__(f"{width}x{height} = {width * height:,} pixels, more than the limit {limit:,} "
                         "(--max-image-pixels)")


def check_pixels(width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise ImageTooLarge(width, height, limit)


def decode_image(data: bytes, max_pixels: int = PIL_BOMB_PIXELS, rgb: bool = True) -> Any:
    """The decoded RGB ``PIL.Image`` of encoded bytes; ``ValueError`` saying why when it cannot be.

    Pixels are counted from the header first (:class:`ImageTooLarge`); PIL's own bomb check is
    lifted only when ``max_pixels`` is above it (under a lock: it is a module global). ``rgb=False``
    (verification) skips the final copy of an image that is RGB already."""
    from PIL import Image

    try:
        if max_pixels > PIL_BOMB_PIXELS:
            with _PIL_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    im = Image.open(io.BytesIO(data))
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        with im:
            check_pixels(im.width, im.height, max_pixels)
            im.load()
            if im.mode != "RGB":
                return im.convert("RGB")  # also when verifying: the reader converts, so must this
            return im.copy() if rgb else None
    except ImageTooLarge:
        raise
    except Image.UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or damaged format)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError, ValueError, EOFError) as e:
        raise ValueError(f"cannot be decoded ({type(e).__name__}: {e})") from None


def outside_root(path: str, root: str) -> bool:
    """True when ``path`` (normalised, symlinks not followed) is not inside the directory ``root``."""
    p, r = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return not (p == r or p.startswith(r.rstrip(os.sep) + os.sep))
