"""OCR: read a rendered string exactly; the answer is the string.

Strings use Pillow's bitmap font (6x11 px cells, scaled by integers) and an alphabet without
the glyphs that font draws alike (I/l/1, O/o/0), so every answer is readable in principle.
Levels (default 112x112):

1. 3 capital letters at scale 2 (12x22 px glyphs), black on white.
2. 4-5 capitals and digits at scale 2.
3. 6-7 mixed-case letters and digits, scale 2 where it fits, anywhere on the page.
4. 7-9 mixed-case characters at scale 1 (6x11 px), coloured ink on a tinted page, with
   3 noise strokes away from the text.
5. two strings of 5-7 characters at scale 1 in two colours; the question names the colour to
   read, so the other string is a distractor.

Difficulty features (:func:`features`): ``chars`` (characters drawn, strictly growing in mean)
and ``glyph_px`` (glyph height, non-increasing). Trade-off: level 1 has 24^3 = 13,824 strings,
enough that train and eval rarely share a string; the split check is on scenes and pixels.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from glmv_cli.synth.common import (layout_attempts, ANSWER_INSTRUCTION, GLYPH_H, INK, PALETTE, TINTS, draw_text, fit_scale,
                                   text_size)

NAME = "ocr"
UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LOWER = "abcdefghjkmnpqrstuvwxyz"
DIGITS = "23456789"
INKS = ["blue", "red", "green", "purple"]


def _string(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _place(rng: random.Random, text: str, scale: int, size: tuple[int, int],
           avoid: list[list[int]]) -> list[int] | None:
    w, h = size
    tw, th = text_size(text, scale)
    for _ in range(100):
        x, y = rng.randint(2, max(2, w - 2 - tw)), rng.randint(2, max(2, h - 2 - th))
        b = [x, y, x + tw, y + th]
        if all(b[0] >= a[2] + 3 or a[0] >= b[2] + 3 or b[1] >= a[3] + 3 or a[1] >= b[3] + 3 for a in avoid):
            return b
    return None


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    big = max(1, min(w, h) // 56)
    small = max(1, min(w, h) // 112)
    for _ in layout_attempts(NAME, level, size):
        bg, strokes = list(TINTS[0]), []
        if level == 1:
            texts = [(_string(rng, 3, UPPER), "black")]
        elif level == 2:
            texts = [(_string(rng, rng.randint(4, 5), UPPER + DIGITS), "black")]
        elif level == 3:
            texts = [(_string(rng, rng.randint(6, 7), UPPER + LOWER + DIGITS), "black")]
        elif level == 4:
            texts = [(_string(rng, rng.randint(7, 9), UPPER + LOWER + DIGITS), rng.choice(INKS))]
            bg = list(rng.choice(TINTS[1:]))
        else:
            c1, c2 = rng.sample(INKS, 2)
            texts = [(_string(rng, rng.randint(5, 7), UPPER + LOWER + DIGITS), c1),
                     (_string(rng, rng.randint(5, 7), UPPER + LOWER + DIGITS), c2)]
            bg = list(rng.choice(TINTS[1:]))
        items: list[dict[str, Any]] = []
        boxes: list[list[int]] = []
        for text, color in texts:
            scale = fit_scale(text, w - 4, h - 4, big) if level <= 3 else small
            b = _place(rng, text, scale, (w, h), boxes)
            if b is None:
                break
            boxes.append(b)
            items.append({"text": text, "color": color, "xy": b[:2], "scale": scale})
        if len(items) != len(texts):
            continue
        if level == 4:
            for _ in range(3):
                for _ in range(100):
                    x0, y0 = rng.randint(0, w - 10), rng.randint(0, h - 10)
                    x1, y1 = x0 + rng.randint(4, 10), y0 + rng.randint(-6, 6)
                    sb = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
                    if all(sb[0] >= a[2] + 3 or a[0] >= sb[2] + 3 or sb[1] >= a[3] + 3 or a[1] >= sb[3] + 3
                           for a in boxes):
                        strokes.append([x0, y0, x1, max(0, y1)])
                        break
        target = 0 if level < 5 else rng.randrange(2)
        return {"domain": NAME, "level": level, "size": [w, h], "bg": bg, "texts": items,
                "strokes": strokes, "target": target}


def _rgb(color: str) -> tuple[int, int, int]:
    return INK if color == "black" else PALETTE[color]


def render(scene: dict[str, Any]) -> Image.Image:
    img = Image.new("RGB", tuple(scene["size"]), tuple(scene["bg"]))
    d = ImageDraw.Draw(img)
    for x0, y0, x1, y1 in scene["strokes"]:
        d.line([x0, y0, x1, y1], fill=(150, 150, 150), width=1)
    for t in scene["texts"]:
        draw_text(img, tuple(t["xy"]), t["text"], t["scale"], _rgb(t["color"]))
    return img


def solve(scene: dict[str, Any]) -> str:
    return scene["texts"][scene["target"]]["text"]


def question(scene: dict[str, Any]) -> str:
    if len(scene["texts"]) > 1:
        color = scene["texts"][scene["target"]]["color"]
        return f"What does the {color} text in the image say? Answer with the exact text. {ANSWER_INSTRUCTION}"
    return f"What text is written in the image? Answer with the exact text. {ANSWER_INSTRUCTION}"


def _spell(text: str) -> str:
    kinds = []
    for ch in text:
        kind = "digit" if ch.isdigit() else ("capital" if ch.isupper() else "small")
        kinds.append(f"{ch} ({kind})")
    return ", ".join(kinds)


def reasoning(scene: dict[str, Any]) -> str:
    texts, t = scene["texts"], scene["texts"][scene["target"]]
    s = ""
    if len(texts) > 1:
        other = texts[1 - scene["target"]]
        s = (f"There are two strings, one in {texts[0]['color']} and one in {texts[1]['color']}. "
             f"The question asks for the {t['color']} one, so I ignore the {other['color']} one. ")
    return (s + f"Reading the {t['color']} text left to right, character by character: {_spell(t['text'])}. "
            f"That is {len(t['text'])} characters: {t['text']}.")


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    parts = [f"the {t['color']} text \"{t['text']}\" at pixel ({t['xy'][0]}, {t['xy'][1]}) in "
             f"{GLYPH_H * t['scale']}-pixel glyphs" for t in scene["texts"]]
    noise = f", with {len(scene['strokes'])} grey noise strokes" if scene["strokes"] else ""
    return f"A {w}x{h} image showing {' and '.join(parts)}{noise}."


def features(scene: dict[str, Any]) -> dict[str, float]:
    return {"chars": float(sum(len(t["text"]) for t in scene["texts"])),
            "glyph_px": float(min(GLYPH_H * t["scale"] for t in scene["texts"]))}
