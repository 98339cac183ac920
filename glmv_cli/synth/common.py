"""Shared pieces of the synthetic domains: seeded RNG, drawing, boxes, prompts and responses.

Determinism. Every scene is a pure function of ``(seed, pool, domain, level, index, attempt)``:
:func:`rng_for` hashes that tuple with SHA-256 into the seed of a private ``random.Random``
(Mersenne Twister, identical on every platform for an integer seed). Nothing reads global RNG
state, so the worker count and the order in which workers finish cannot change any byte.

Drawing. Only Pillow's built-in *bitmap* font (``ImageFont.load_default_imagefont()``, 6x11 px
cells, no FreeType, no antialiasing) is used, scaled by integer factors with nearest-neighbour
resampling. Shapes are drawn without antialiasing too, so every pixel of an object has exactly
its palette colour: tests recount objects from the pixels. At the default 112x112 a scale-2 glyph
is 12x22 px (9 characters per line), a scale-1 glyph 6x11 px (18 per line); anything under
scale 1 would be unreadable, so layouts shrink the text scale, never the font.

Boxes. A scene stores pixel boxes ``[x0, y0, x1, y1)`` (end exclusive). Answers use the
0-1000 normalised convention of GLM grounding and GUI data: ``round(v * 1000 / side)``
computed in integers (half up), so a full-width object is ``[0, ..., 1000, ...]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from typing import Any, Iterable, Iterator, Sequence

from PIL import Image, ImageDraw, ImageFont

from glmv_cli.errors import GlmvError

BOX_OPEN = "<|begin_of_box|>"
BOX_CLOSE = "<|end_of_box|>"

GLYPH_W, GLYPH_H = 6, 11

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 150, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 190, 20),
    "purple": (140, 60, 180),
    "orange": (245, 125, 25),
}
INK = (20, 20, 20)
WHITE = (255, 255, 255)
# Light page tints used from level 3 on; every tint is far from the palette and from the ink.
TINTS: list[tuple[int, int, int]] = [(255, 255, 255), (246, 244, 232), (236, 242, 248), (242, 242, 242)]

_FONT: ImageFont.ImageFont | None = None
_BINARY = [0] * 128 + [255] * 128  # lookup table: a lambda in Image.point costs ~0.6 ms per call


def font() -> ImageFont.ImageFont:
    global _FONT
    if _FONT is None:
        _FONT = ImageFont.load_default_imagefont()
    return _FONT


def rng_for(seed: int, pool: str, domain: str, level: int, index: int, attempt: int = 0) -> random.Random:
    """The private RNG of one scene; independent of every other scene and of the worker layout."""
    key = f"glmv-synth/v1/{seed}/{pool}/{domain}/{level}/{index}/{attempt}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def text_size(text: str, scale: int) -> tuple[int, int]:
    return GLYPH_W * len(text) * scale, GLYPH_H * scale


def fit_scale(text: str, max_w: int, max_h: int, largest: int) -> int:
    """The largest integer scale <= ``largest`` at which ``text`` fits; at least 1."""
    for s in range(largest, 0, -1):
        w, h = text_size(text, s)
        if w <= max_w and h <= max_h:
            return s
    return 1


def draw_text(img: Image.Image, xy: tuple[int, int], text: str, scale: int,
              color: tuple[int, int, int] = INK) -> None:
    """Draws ``text`` with its cell's top-left at ``xy``; integer nearest-neighbour upscale."""
    if not text:
        return
    mask = font().getmask(text)
    m = Image.frombytes("L", mask.size, bytes(mask))
    if scale != 1:
        m = m.resize((m.width * scale, m.height * scale), Image.NEAREST)
    # The bitmap font is 1-bit; binarise so no blended pixel can appear after pasting.
    m = m.point(_BINARY)
    img.paste(Image.new("RGB", m.size, color), xy, m)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[int], color: tuple[int, int, int]) -> None:
    """Draws a filled shape that exactly spans the pixel box ``[x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    if shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=color)
    elif shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=color)
    elif shape == "triangle":
        cx = (x0 + x1 - 1) // 2
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), (cx, y0)], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def norm_box(box: Sequence[int], size: Sequence[int]) -> list[int]:
    """Pixel box ``[x0, y0, x1, y1)`` -> integers in 0..1000 (half-up rounding, integer maths)."""
    w, h = size
    x0, y0, x1, y1 = box
    return [(2000 * x0 + w) // (2 * w), (2000 * y0 + h) // (2 * h),
            (2000 * x1 + w) // (2 * w), (2000 * y1 + h) // (2 * h)]


def box_str(box: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


def place_boxes(rng: random.Random, sizes: Iterable[tuple[int, int]], area: Sequence[int], gap: int,
                tries: int = 200) -> list[list[int]] | None:
    """Rejection-samples non-overlapping boxes (``gap`` px apart) inside ``area``; None on failure."""
    ax0, ay0, ax1, ay1 = area
    placed: list[list[int]] = []
    for w, h in sizes:
        for _ in range(tries):
            if ax1 - w < ax0 or ay1 - h < ay0:
                return None
            x = rng.randint(ax0, ax1 - w)
            y = rng.randint(ay0, ay1 - h)
            b = [x, y, x + w, y + h]
            if all(b[0] >= p[2] + gap or p[0] >= b[2] + gap or b[1] >= p[3] + gap or p[1] >= b[3] + gap
                   for p in placed):
                placed.append(b)
                break
        else:
            return None
    return placed


LAYOUT_TRIES = 300


def layout_attempts(domain: str, level: int, size: Sequence[int]) -> Iterator[int]:
    """Bounded retry loop for a random layout; an image too small for the level is a user error.

    At 112 px every level lays out in a few tries (GUI level 5 needs ~3 on average); at 80 px GUI
    levels 4-5 cannot fit their fixed-size 6x11 px labels, and retrying forever would hang.
    """
    for k in range(LAYOUT_TRIES):
        yield k
    raise GlmvError(f"--image-size {size[0]}x{size[1]} is too small for {domain} level {level}: no layout "
                    f"found in {LAYOUT_TRIES} tries; use a larger size or other --levels")


def reading_order(boxes: Sequence[Sequence[int]], height: int) -> list[int]:
    """Indices sorted top-to-bottom then left-to-right by box centre, rows bucketed by height/8."""
    row = max(1, height // 8)
    return sorted(range(len(boxes)), key=lambda i: ((boxes[i][1] + boxes[i][3]) // 2 // row,
                                                    (boxes[i][0] + boxes[i][2]) // 2, i))


def png_bytes(img: Image.Image) -> bytes:
    """PNG with fixed settings and no metadata: identical bytes for identical pixels.

    zlib level 3: 0.37 ms and ~850 bytes for a 112 px chart, against 0.94 ms / ~670 bytes at 6.
    """
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def scene_hash(scene: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(scene).encode()).hexdigest()


ANSWER_INSTRUCTION = "Think step by step, then give the final answer in a box."


def response(reasoning: str, answer: str, style: str = "glm41v") -> str:
    """The response in a model family's form: reasoning in <think>, then the boxed answer inside
    <answer> (GLM-4.1V-Thinking, ``glm41v``) or on a line of its own (GLM-4.5V, ``glm45v``)."""
    if style == "glm45v":
        return f"<think>{reasoning}</think>\n{BOX_OPEN}{answer}{BOX_CLOSE}"
    return f"<think>{reasoning}</think><answer>{BOX_OPEN}{answer}{BOX_CLOSE}</answer>"


def extract_boxed(text: str) -> str | None:
    """The content of the single box in a response, or None when there is not exactly one."""
    if text.count(BOX_OPEN) != 1 or text.count(BOX_CLOSE) != 1:
        return None
    start = text.index(BOX_OPEN) + len(BOX_OPEN)
    end = text.index(BOX_CLOSE)
    return text[start:end] if end >= start else None


def a(word: str) -> str:
    """``word`` with its indefinite article ("an orange circle", "a red square")."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"
