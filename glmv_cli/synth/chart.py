"""Charts: bar and line charts; ask a value, a maximum, or a difference. Answers are integers,
years or category labels (the chart verifier: numbers within 2.5 %, years and labels exact).

All geometry (bar boxes, point positions, label positions, gridlines) is computed once in
:func:`make_scene` and stored in the scene, so rendering is a plain drawing pass and a checker can
recompute the answer from ``items``. Bar heights are ``round(value * plot_h / y_max)`` px.
Levels (default 112x112):

1. bar chart, 2-3 bars (A, B, C), values 1-9 printed above the bars; "value of B?".
2. bar chart, 3-4 bars, printed values 1-20; "which category is largest?" (unique maximum).
3. bar chart, 4-5 bars, printed values 1-50; "largest minus smallest?".
4. line chart over 5-6 consecutive years, only the first and last year labelled (ticks at every
   year), printed values 1-60; "which year is highest?" or "value in year Y?" - the year must be
   found by counting ticks.
5. bar chart (6-7 bars) or line chart (6 years) with no printed values: gridlines every 10 from
   0 to 50 and values in multiples of 5 (on or halfway between gridlines); "how much larger is
   X than Y?".

Difficulty feature (:func:`features`): ``items`` (bars or points to scan: 2.5, 3.5, 4.5, 5.5,
6.3 in mean) grows strictly; from level 4 labels must be inferred, and level 5 has no printed
values. Images must be >= 64 px: below that the printed values of adjacent bars would overlap.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from glmv_cli.synth.common import ANSWER_INSTRUCTION, INK, PALETTE, TINTS, draw_text, text_size

NAME = "chart"
LETTERS = "ABCDEFG"
AXIS = (90, 90, 90)
GRID = (205, 205, 205)
SERIES = ["blue", "red", "green", "purple", "orange"]


def _values(rng: random.Random, n: int, lo: int, hi: int, step: int, unique_max: bool) -> list[int]:
    while True:
        vals = [rng.randrange(lo, hi + 1, step) for _ in range(n)]
        if not unique_max or vals.count(max(vals)) == 1:
            return vals


def _chart_data(rng: random.Random, level: int) -> tuple[str, list[str], list[int], dict[str, Any]]:
    """(kind, labels, values, query) of a level: what the chart shows and what is asked."""
    if level <= 3:
        kind = "bar"
        n = rng.randint(level + 1, level + 2)
        hi = {1: 9, 2: 20, 3: 50}[level]
        vals = _values(rng, n, 1, hi, 1, unique_max=(level == 2))
        labels = list(LETTERS[:n])
        if level == 1:
            query = {"type": "value", "label": rng.choice(labels)}
        elif level == 2:
            query = {"type": "argmax"}
        else:
            query = {"type": "range"}
    elif level == 4:
        kind = "line"
        n = rng.randint(5, 6)
        start = rng.randint(2000, 2020)
        labels = [str(start + i) for i in range(n)]
        want_max = rng.random() < 0.5
        vals = _values(rng, n, 1, 60, 1, unique_max=want_max)
        query = {"type": "argmax"} if want_max else {"type": "value", "label": rng.choice(labels[1:-1])}
    else:
        kind = rng.choice(["bar", "line"])
        if kind == "bar":
            n = rng.randint(6, 7)
            labels = list(LETTERS[:n])
        else:
            n, start = 6, rng.randint(2000, 2020)
            labels = [str(start + i) for i in range(n)]
        while True:
            vals = _values(rng, n, 5, 50, 5, unique_max=False)
            a, b = rng.sample(range(n), 2)
            if vals[a] != vals[b]:
                break
        if vals[a] < vals[b]:
            a, b = b, a
        query = {"type": "diff", "a": labels[a], "b": labels[b]}
    return kind, labels, vals, query


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    kind, labels, vals, query = _chart_data(rng, level)
    n = len(labels)
    printed = level <= 4
    grid = level == 5
    y_max = 50 if grid else max(vals)
    color = rng.choice(SERIES)
    bg = TINTS[0] if level <= 2 else rng.choice(TINTS)
    # Margins: room for y tick labels (grid), printed values above the top item, x labels below.
    ts = max(1, min(w, h) // 112)  # text scale: 1 up to 223 px, then grows in whole steps
    gh = text_size("0", ts)[1]
    tick_w = text_size("50", ts)[0] + 3 if grid else 0
    x0, x1 = 3 + tick_w, w - 3
    y0, y1 = 3 + (gh + 1 if printed else 6), h - gh - 4
    plot_h, plot_w = y1 - y0, x1 - x0
    items = []
    for i, (lab, v) in enumerate(zip(labels, vals)):
        cx = x0 + ((2 * i + 1) * plot_w) // (2 * n)
        top = y1 - round(v * plot_h / y_max)
        item: dict[str, Any] = {"label": lab, "value": v, "x": cx, "y": top}
        if kind == "bar":
            bw = max(3, (plot_w * 3) // (5 * n))
            item["box"] = [cx - bw // 2, top, cx - bw // 2 + bw, y1]
        items.append(item)
    texts = []
    if kind == "bar":
        for it in items:
            tw, _ = text_size(it["label"], ts)
            texts.append({"text": it["label"], "xy": [it["x"] - tw // 2, y1 + 3]})
    else:
        shown = items if level < 4 else [items[0], items[-1]]
        for it in shown:
            tw, _ = text_size(it["label"], ts)
            texts.append({"text": it["label"], "xy": [min(max(0, it["x"] - tw // 2), w - tw), y1 + 3]})
    if printed:
        for it in items:
            tw, _ = text_size(str(it["value"]), ts)
            texts.append({"text": str(it["value"]), "xy": [it["x"] - tw // 2, it["y"] - gh - 1]})
    gridlines = []
    if grid:
        for t in range(0, 51, 10):
            gy = y1 - round(t * plot_h / 50)
            tw, _ = text_size(str(t), ts)
            gridlines.append({"value": t, "y": gy})
            texts.append({"text": str(t), "xy": [x0 - 2 - tw, gy - gh // 2]})
    return {"domain": NAME, "level": level, "size": [w, h], "bg": list(bg), "kind": kind, "color": color,
            "plot": [x0, y0, x1, y1], "text_scale": ts, "y_max": y_max, "printed_values": printed, "grid": gridlines,
            "items": items, "texts": texts, "query": query}


def render(scene: dict[str, Any]) -> Image.Image:
    img = Image.new("RGB", tuple(scene["size"]), tuple(scene["bg"]))
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = scene["plot"]
    for g in scene["grid"]:
        d.line([x0, g["y"], x1, g["y"]], fill=GRID)
    col = PALETTE[scene["color"]]
    items = scene["items"]
    if scene["kind"] == "bar":
        for it in items:
            bx0, by0, bx1, by1 = it["box"]
            if by1 > by0:
                d.rectangle([bx0, by0, bx1 - 1, by1 - 1], fill=col)
    else:
        r = scene["text_scale"]  # line width and marker radius follow the text scale
        for it in items:
            d.line([it["x"], y1, it["x"], y1 + 2 * r], fill=AXIS, width=r)
        d.line([(it["x"], it["y"]) for it in items], fill=col, width=r)
        for it in items:
            d.rectangle([it["x"] - r, it["y"] - r, it["x"] + r, it["y"] + r], fill=col)
    d.line([x0, y0, x0, y1], fill=AXIS)
    d.line([x0, y1, x1, y1], fill=AXIS)
    for t in scene["texts"]:
        draw_text(img, tuple(t["xy"]), t["text"], scene["text_scale"], INK)
    return img


def solve(scene: dict[str, Any]) -> str:
    q, items = scene["query"], scene["items"]
    by = {it["label"]: it["value"] for it in items}
    if q["type"] == "value":
        return str(by[q["label"]])
    if q["type"] == "argmax":
        return max(items, key=lambda it: it["value"])["label"]
    if q["type"] == "range":
        return str(max(by.values()) - min(by.values()))
    return str(by[q["a"]] - by[q["b"]])


def question(scene: dict[str, Any]) -> str:
    q, line = scene["query"], scene["kind"] == "line"
    if q["type"] == "value":
        s = f"According to the chart, what is the value in {q['label']}?" if line else \
            f"According to the bar chart, what is the value of {q['label']}?"
    elif q["type"] == "argmax":
        s = "In which year is the value highest?" if line else "Which category has the largest value?"
    elif q["type"] == "range":
        s = "What is the difference between the largest and the smallest value in the chart?"
    else:
        s = f"How much larger is the value of {q['a']} than the value of {q['b']} in the chart?"
    return f"{s} {ANSWER_INSTRUCTION}"


def _read(scene: dict[str, Any]) -> str:
    items = scene["items"]
    if scene["kind"] == "line" and scene["level"] >= 4:
        first, last = items[0]["label"], items[-1]["label"]
        s = (f"The x axis has {len(items)} ticks labelled only {first} and {last}, so the years "
             f"run {first}-{last} one per tick. ")
    else:
        s = f"The chart has {len(items)} {'bars' if scene['kind'] == 'bar' else 'points'}. "
    if scene["printed_values"]:
        return s + "The printed values are: " + ", ".join(f"{it['label']} = {it['value']}" for it in items) + "."
    reads = []
    for it in items:
        v = it["value"]
        where = f"on the {v} gridline" if v % 10 == 0 else f"halfway between {v - 5} and {v + 5}"
        reads.append(f"{it['label']} is {where}, so {v}")
    return s + "Reading each against the gridlines (every 10): " + "; ".join(reads) + "."


def reasoning(scene: dict[str, Any]) -> str:
    q, items = scene["query"], scene["items"]
    by = {it["label"]: it["value"] for it in items}
    s = _read(scene) + " "
    if q["type"] == "value":
        return s + f"The value of {q['label']} is {by[q['label']]}."
    if q["type"] == "argmax":
        best = max(items, key=lambda it: it["value"])
        others = ", ".join(str(it["value"]) for it in items if it is not best)
        return s + f"The largest is {best['value']} (the others are {others}), at {best['label']}."
    if q["type"] == "range":
        hi, lo = max(by.values()), min(by.values())
        return s + f"The largest value is {hi} and the smallest is {lo}; {hi} - {lo} = {hi - lo}."
    a, b = by[q["a"]], by[q["b"]]
    return s + f"{q['a']} = {a} and {q['b']} = {b}; {a} - {b} = {a - b}."


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    items = scene["items"]
    vals = ", ".join(f"{it['label']}: {it['value']}" for it in items)
    kind = f"{scene['color']} bar chart with {len(items)} bars" if scene["kind"] == "bar" else \
        f"{scene['color']} line chart with {len(items)} yearly points"
    extra = " The values are printed above the data." if scene["printed_values"] else \
        " No values are printed; horizontal gridlines mark 0, 10, 20, 30, 40 and 50."
    if scene["kind"] == "line" and scene["level"] >= 4:
        extra += f" Only the first and last years ({items[0]['label']}, {items[-1]['label']}) are labelled."
    return f"A {w}x{h} image of a {kind}. Values - {vals}.{extra}"


def features(scene: dict[str, Any]) -> dict[str, float]:
    return {"items": float(len(scene["items"])), "printed": float(scene["printed_values"])}
