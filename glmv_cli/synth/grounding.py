"""Grounding: the box of a described object, as "[x1, y1, x2, y2]" in 0-1000 coordinates.

Objects are flat-coloured circles (ellipses), rectangles and triangles whose drawn pixels span
exactly their stored box ``[x0, y0, x1, y1)``; the reference is that box normalised to 0-1000
(integer half-up rounding). The description (shape, or colour + shape) matches exactly one object.
Levels (sizes for 112 px, scaled with the image):

1. one object, 36-52 px per side; "the <shape>".
2. two objects of different shapes, 26-40 px; "the <shape>".
3. 3-4 objects, 18-30 px; "the <colour> <shape>", a distractor shares the colour or shape.
4. 5-6 objects, 12-20 px; colour + shape, several distractors.
5. 7-9 objects, 8-14 px; colour + shape on a tinted page.

Difficulty features (:func:`features`): ``objects`` grows and ``target_area`` (fraction of the
image covered by the target's box; about 0.16, 0.085, 0.045, 0.020, 0.010 in mean) shrinks
strictly with the level. One pixel of box error at 112 px is ~9 units in 0-1000 coordinates,
so an exact answer needs a pixel-accurate reading; the IoU-based verifier tolerates a few pixels.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from glmv_cli.synth.common import (layout_attempts, ANSWER_INSTRUCTION, PALETTE, TINTS, box_str, draw_shape, norm_box, place_boxes,
                                   reading_order, a)

NAME = "grounding"
SHAPES = ["circle", "rectangle", "triangle"]
COLORS = ["red", "blue", "green", "orange", "purple"]
# level -> (min objects, max objects, min side, max side) at 112 px
LEVELS = {1: (1, 1, 36, 52), 2: (2, 2, 26, 40), 3: (3, 4, 18, 30), 4: (5, 6, 12, 20), 5: (7, 9, 8, 14)}
_DRAW = {"circle": "circle", "rectangle": "square", "triangle": "triangle"}


def _unique(objs: list[dict[str, Any]], i: int, keys: tuple[str, ...]) -> bool:
    return sum(all(o[k] == objs[i][k] for k in keys) for o in objs) == 1


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    lo, hi, smin, smax = LEVELS[level]
    f = min(w, h) / 112
    smin, smax = max(4, round(smin * f)), max(5, round(smax * f))
    keys = ("shape",) if level <= 2 else ("color", "shape")
    for _ in layout_attempts(NAME, level, size):
        n = rng.randint(lo, hi)
        dims = [(rng.randint(smin, smax), rng.randint(smin, smax)) for _ in range(n)]
        boxes = place_boxes(rng, dims, [1, 1, w - 1, h - 1], gap=2)
        if boxes is None:
            continue
        if level == 2:
            shapes = rng.sample(SHAPES, 2)
        else:
            shapes = [rng.choice(SHAPES) for _ in range(n)]
        if level <= 2:
            colors = [rng.choice(COLORS)] * n
        else:
            colors = [rng.choice(COLORS[: 2 + level // 2]) for _ in range(n)]
        objs = [{"shape": s, "color": c, "box": b} for s, c, b in zip(shapes, colors, boxes)]
        candidates = [i for i in range(n) if _unique(objs, i, keys)]
        if level >= 3:
            # A distractor must share the target's colour or shape, or the task degenerates into
            # finding a unique colour.
            candidates = [i for i in candidates
                          if any(j != i and (objs[j]["color"] == objs[i]["color"] or objs[j]["shape"] == objs[i]["shape"])
                                 for j in range(n))]
        if candidates:
            break
    target = rng.choice(candidates)
    bg = TINTS[0] if level < 5 else rng.choice(TINTS[1:])
    return {"domain": NAME, "level": level, "size": [w, h], "bg": list(bg), "objects": objs,
            "target": target, "query": {k: objs[target][k] for k in keys}}


def render(scene: dict[str, Any]) -> Image.Image:
    img = Image.new("RGB", tuple(scene["size"]), tuple(scene["bg"]))
    d = ImageDraw.Draw(img)
    for o in scene["objects"]:
        draw_shape(d, _DRAW[o["shape"]], o["box"], PALETTE[o["color"]])
    return img


def describe(scene: dict[str, Any]) -> str:
    q = scene["query"]
    return f"the {q['color']} {q['shape']}" if "color" in q else f"the {q['shape']}"


def _find(scene: dict[str, Any]) -> int:
    """The index of the one object matching the query (recomputed from the objects)."""
    hits = [i for i, o in enumerate(scene["objects"]) if all(o[k] == v for k, v in scene["query"].items())]
    if len(hits) != 1:
        raise ValueError(f"query {scene['query']} matches {len(hits)} objects")
    return hits[0]


def solve(scene: dict[str, Any]) -> str:
    return box_str(norm_box(scene["objects"][_find(scene)]["box"], scene["size"]))


def question(scene: dict[str, Any]) -> str:
    return (f"Locate {describe(scene)} in the image. Give its bounding box as [x1, y1, x2, y2] in "
            f"0-1000 normalized coordinates. {ANSWER_INSTRUCTION}")


def reasoning(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    objs = scene["objects"]
    i = _find(scene)
    x0, y0, x1, y1 = objs[i]["box"]
    nb = norm_box(objs[i]["box"], (w, h))
    if len(objs) == 1:
        s = f"There is one object, {a(objs[0]['color'])} {objs[0]['shape']}. "
    else:
        order = reading_order([o["box"] for o in objs], h)
        listed = ", ".join(f"{a(objs[j]['color'])} {objs[j]['shape']}" for j in order)
        s = f"The image has {len(objs)} objects: {listed}. Only one of them is {describe(scene)}. "
    return (s + f"It spans x from {x0} to {x1} and y from {y0} to {y1} pixels in a {w}x{h} image. "
            f"Scaling to 0-1000: x1 = {x0}*1000/{w} = {nb[0]}, y1 = {y0}*1000/{h} = {nb[1]}, "
            f"x2 = {x1}*1000/{w} = {nb[2]}, y2 = {y1}*1000/{h} = {nb[3]}.")


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    objs = scene["objects"]
    order = reading_order([o["box"] for o in objs], h)
    parts = [f"{a(objs[j]['color'])} {objs[j]['shape']} with box {box_str(norm_box(objs[j]['box'], (w, h)))}"
             for j in order]
    return f"A {w}x{h} image with {len(objs)} {'object' if len(objs) == 1 else 'objects'}: {'; '.join(parts)}."


def features(scene: dict[str, Any]) -> dict[str, float]:
    w, h = scene["size"]
    x0, y0, x1, y1 = scene["objects"][scene["target"]]["box"]
    return {"objects": float(len(scene["objects"])), "target_area": (x1 - x0) * (y1 - y0) / (w * h)}
