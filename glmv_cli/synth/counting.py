"""Counting: how many shapes (of a described kind) are in the image; the answer is an integer.

Shapes are circles, squares and triangles in flat palette colours, never touching (>= 2 px
apart), so the count is well defined and a test can recount it from connected pixel components.
Levels (object sizes are for 112 px and scale with the image):

1. 1-3 shapes of one kind and one colour, 24-32 px; "How many shapes?" (answers 1-3).
2. 1-5 shapes, two kinds, one colour, 18-26 px; count one kind.
3. 2-8 shapes, three kinds, two colours, 14-22 px; count one kind.
4. 3-10 shapes, three kinds, three colours, 11-17 px; count one colour *and* kind.
5. 5-14 shapes, three kinds, four colours, 8-13 px on a tinted page; count colour and kind.

Difficulty features (:func:`features`): ``objects`` grows and ``object_px`` (mean side) shrinks
strictly with the level in expectation; distractors sharing the colour or the kind appear from
level 3. The query always names a kind present in the image, so answers are >= 1.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from glmv_cli.synth.common import (layout_attempts, ANSWER_INSTRUCTION, PALETTE, TINTS, box_str, draw_shape, norm_box, place_boxes,
                                   plural, reading_order, a)

NAME = "counting"
SHAPES = ["circle", "square", "triangle"]
COLORS = ["red", "blue", "green", "orange"]
# level -> (min objects, max objects, kinds, colours, min side, max side) at 112 px
LEVELS = {1: (1, 3, 1, 1, 24, 32), 2: (1, 5, 2, 1, 18, 26), 3: (2, 8, 3, 2, 14, 22),
          4: (3, 10, 3, 3, 11, 17), 5: (5, 14, 3, 4, 8, 13)}


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    lo, hi, nk, nc, smin, smax = LEVELS[level]
    f = min(w, h) / 112
    smin, smax = max(4, round(smin * f)), max(5, round(smax * f))
    kinds = rng.sample(SHAPES, nk)
    colors = rng.sample(COLORS, nc)
    for _ in layout_attempts(NAME, level, size):
        n = rng.randint(lo, hi)
        sides = [rng.randint(smin, smax) for _ in range(n)]
        boxes = place_boxes(rng, [(s, s) for s in sides], [2, 2, w - 2, h - 2], gap=2)
        if boxes is not None:
            break
    objects = [{"shape": rng.choice(kinds), "color": rng.choice(colors), "box": b} for b in boxes]
    target = rng.choice(objects)
    if level == 1:
        query = {"shape": None, "color": None}
    elif level <= 3:
        query = {"shape": target["shape"], "color": None}
    else:
        query = {"shape": target["shape"], "color": target["color"]}
    bg = TINTS[0] if level < 5 else rng.choice(TINTS[1:])
    return {"domain": NAME, "level": level, "size": [w, h], "bg": list(bg), "objects": objects, "query": query}


def render(scene: dict[str, Any]) -> Image.Image:
    img = Image.new("RGB", tuple(scene["size"]), tuple(scene["bg"]))
    d = ImageDraw.Draw(img)
    for o in scene["objects"]:
        draw_shape(d, o["shape"], o["box"], PALETTE[o["color"]])
    return img


def _matches(o: dict[str, Any], q: dict[str, Any]) -> bool:
    return (q["shape"] is None or o["shape"] == q["shape"]) and (q["color"] is None or o["color"] == q["color"])


def _target_words(q: dict[str, Any], n: int = 2) -> str:
    noun = plural(q["shape"], n) if q["shape"] else plural("shape", n)
    return f"{q['color']} {noun}" if q["color"] else noun


def solve(scene: dict[str, Any]) -> str:
    return str(sum(_matches(o, scene["query"]) for o in scene["objects"]))


def question(scene: dict[str, Any]) -> str:
    return f"How many {_target_words(scene['query'])} are in the image? {ANSWER_INSTRUCTION}"


def reasoning(scene: dict[str, Any]) -> str:
    objs, q = scene["objects"], scene["query"]
    order = reading_order([o["box"] for o in objs], scene["size"][1])
    listed = ", ".join(f"{k + 1}. {objs[i]['color']} {objs[i]['shape']}" for k, i in enumerate(order))
    hits = [k + 1 for k, i in enumerate(order) if _matches(objs[i], q)]
    n = len(hits)
    s = f"Scanning the image row by row, I see {len(objs)} {plural('shape', len(objs))}: {listed}."
    if q["shape"] is None and q["color"] is None:
        return s + f" Every shape counts, so the total is {n}."
    which = ", ".join(str(k) for k in hits)
    return (s + f" The {_target_words(q)} among them are number{'s' if n != 1 else ''} {which}. "
            f"That makes {n} {_target_words(q, n)}.")


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    objs = scene["objects"]
    order = reading_order([o["box"] for o in objs], h)
    parts = [f"{a(objs[i]['color'])} {objs[i]['shape']} at {box_str(norm_box(objs[i]['box'], (w, h)))}"
             for i in order]
    tally: dict[tuple[str, str], int] = {}
    for o in objs:
        tally[(o["color"], o["shape"])] = tally.get((o["color"], o["shape"]), 0) + 1
    totals = ", ".join(f"{n} {c} {plural(s, n)}" for (c, s), n in sorted(tally.items()))
    return (f"A {w}x{h} image with {len(objs)} {plural('shape', len(objs))} that do not touch: "
            f"{'; '.join(parts)}. In total: {totals}.")


def features(scene: dict[str, Any]) -> dict[str, float]:
    objs = scene["objects"]
    return {"objects": float(len(objs)),
            "object_px": sum(o["box"][2] - o["box"][0] for o in objs) / len(objs)}
