"""GUI: a synthetic screen of buttons and text fields; answer the next action as JSON.

The answer is ``{"action": "click", "box_2d": [[x1, y1, x2, y2]]}`` or
``{"action": "type", "box_2d": [[x1, y1, x2, y2]], "text": "..."}`` with the target's box in
0-1000 coordinates (a button's whole face; a field's white input box, not its caption).
Levels (sizes for 112x112 screens, scaled with the image):

1. one button, label at scale 2; "click the <label> button".
2. 2-3 buttons, scale-1 labels, wide padding; click one by name.
3. 3-4 widgets (buttons and one field); click a button or type a word into the field.
4. a title bar and 5 widgets (two fields), tighter padding; click or type.
5. a title bar and 6-7 widgets (2-3 fields), smallest padding; a button and a field may share a
   word ("Search"), so the widget type in the instruction matters.

Difficulty features (:func:`features`): ``widgets`` grows and ``target_area`` (fraction of the
screen covered by the target box; ~0.22, 0.11, 0.050, 0.041, 0.032 in mean) shrinks
strictly with the level. Widgets never overlap (>= 3 px apart). Labels keep the font's fixed
6x11 px cells at every image size, so levels 4-5 need images of at least ~88 px a side (smaller
sizes stop with an error naming the level).
"""

from __future__ import annotations

import json
import random
from typing import Any

from PIL import Image, ImageDraw

from glmv_cli.synth.common import (layout_attempts, ANSWER_INSTRUCTION, INK, WHITE, a, box_str, draw_text, norm_box, place_boxes,
                                   reading_order, text_size)

NAME = "gui"
BUTTONS = ["OK", "Save", "Open", "Next", "Back", "Send", "Help", "Exit", "Menu", "Edit", "Find", "Copy",
           "Undo", "Done", "Stop", "Play", "Apply", "Reset", "Close", "Print", "Cancel", "Search", "Submit"]
FIELDS = ["Name", "Email", "City", "Code", "User", "Phone", "Zip", "Title", "Notes", "Search"]
WORDS = ["hello", "paris", "alice", "bob", "42", "2024", "blue", "tea", "zebra", "maple", "rome", "lima",
         "cat", "red", "sun", "moon", "kiwi", "jazz", "apple", "river"]
TITLES = ["Settings", "Login", "Editor", "Mail", "Files", "Search", "Profile", "Shop"]
SCREEN = (232, 232, 236)
BUTTON = (190, 210, 240)
EDGE = (70, 70, 90)
TITLE_BAR = (40, 60, 120)
# level -> (min widgets, max widgets, fields, button padding x, y, field width) at 112 px
LEVELS = {1: (1, 1, 0, 10, 8, 0), 2: (2, 3, 0, 12, 8, 0), 3: (3, 4, 1, 8, 4, 30),
          4: (5, 5, 2, 6, 3, 26), 5: (6, 7, 2, 4, 2, 22)}


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    lo, hi, nf, padx, pady, fw = LEVELS[level]
    f = min(w, h) / 112
    padx, pady, fw = max(2, round(padx * f)), max(2, round(pady * f)), max(12, round(fw * f))
    # Text grows with the screen in whole steps (1 up to 223 px, 2 up to 335 px, ...).
    base = max(1, min(w, h) // 112)
    scale = 2 * base if level == 1 and min(w, h) >= 96 else base
    title = rng.choice(TITLES) if level >= 4 else None
    top = text_size("X", base)[1] + 4 if title else 0
    for _ in layout_attempts(NAME, level, size):
        n = rng.randint(lo, hi)
        if level == 5:
            nf = rng.randint(2, 3)
        fields = rng.sample(FIELDS, nf)
        pool = [b for b in BUTTONS if b not in fields]
        if level == 5 and "Search" in fields and rng.random() < 0.5:
            pool = ["Search"] + rng.sample([b for b in pool if b != "Search"], n - nf - 1)
        buttons = rng.sample(pool, n - nf)
        specs: list[tuple[str, str, tuple[int, int]]] = []
        for b in buttons:
            tw, th = text_size(b, scale)
            specs.append(("button", b, (tw + 2 * padx, th + 2 * pady)))
        for fl in fields:
            tw, th = text_size(fl, base)
            specs.append(("field", fl, (tw + 2 + fw, th + 2)))
        order = list(range(len(specs)))
        rng.shuffle(order)
        specs = [specs[i] for i in order]
        boxes = place_boxes(rng, [s[2] for s in specs], [2, top + 2, w - 2, h - 2], gap=3)
        if boxes is not None:
            break
    widgets = []
    for (kind, label, _), b in zip(specs, boxes):
        if kind == "button":
            widgets.append({"type": "button", "label": label, "box": b})
        else:
            lw = text_size(label, base)[0]
            widgets.append({"type": "field", "label": label, "label_xy": [b[0], b[1] + 1],
                            "box": [b[0] + lw + 2, b[1], b[2], b[3]]})
    cand = [i for i, wd in enumerate(widgets) if wd["type"] == "field"] if level >= 3 and rng.random() < 0.5 else []
    target = rng.choice(cand) if cand else rng.choice([i for i, wd in enumerate(widgets) if wd["type"] == "button"])
    task: dict[str, Any] = {"action": "click"}
    if widgets[target]["type"] == "field":
        task = {"action": "type", "text": rng.choice(WORDS)}
    return {"domain": NAME, "level": level, "size": [w, h], "title": title, "title_h": top, "scale": scale,
            "text_scale": base,
            "widgets": widgets, "target": target, "task": task}


def render(scene: dict[str, Any]) -> Image.Image:
    w, h = scene["size"]
    img = Image.new("RGB", (w, h), SCREEN)
    d = ImageDraw.Draw(img)
    if scene["title"]:
        d.rectangle([0, 0, w - 1, scene["title_h"] - 1], fill=TITLE_BAR)
        draw_text(img, (3, 2), scene["title"], scene["text_scale"], WHITE)
    for wd in scene["widgets"]:
        x0, y0, x1, y1 = wd["box"]
        if wd["type"] == "button":
            d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=BUTTON, outline=EDGE)
            tw, th = text_size(wd["label"], scene["scale"])
            draw_text(img, (x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 - th) // 2), wd["label"], scene["scale"], INK)
        else:
            draw_text(img, tuple(wd["label_xy"]), wd["label"], scene["text_scale"], INK)
            d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=WHITE, outline=EDGE)
    return img


def _find(scene: dict[str, Any]) -> int:
    """The widget the instruction names (type + label), recomputed from the widgets."""
    t = scene["widgets"][scene["target"]]
    hits = [i for i, wd in enumerate(scene["widgets"]) if wd["type"] == t["type"] and wd["label"] == t["label"]]
    if len(hits) != 1:
        raise ValueError(f"instruction matches {len(hits)} widgets")
    return hits[0]


def action(scene: dict[str, Any]) -> dict[str, Any]:
    wd = scene["widgets"][_find(scene)]
    out: dict[str, Any] = {"action": scene["task"]["action"], "box_2d": [norm_box(wd["box"], scene["size"])]}
    if scene["task"]["action"] == "type":
        out["text"] = scene["task"]["text"]
    return out


def solve(scene: dict[str, Any]) -> str:
    return json.dumps(action(scene))


def instruction(scene: dict[str, Any]) -> str:
    wd = scene["widgets"][scene["target"]]
    if scene["task"]["action"] == "type":
        return f"type \"{scene['task']['text']}\" into the {wd['label']} field"
    return f"click the {wd['label']} button"


def question(scene: dict[str, Any]) -> str:
    return (f"Task: {instruction(scene)}. Give the next action as JSON, e.g. "
            f"{{\"action\": \"click\", \"box_2d\": [[x1, y1, x2, y2]]}} in 0-1000 coordinates. {ANSWER_INSTRUCTION}")


def _inventory(scene: dict[str, Any]) -> str:
    ws = scene["widgets"]
    order = reading_order([wd["box"] for wd in ws], scene["size"][1])
    names = ", ".join(f"{ws[i]['label']} {ws[i]['type']}" for i in order)
    title = f"a title bar \"{scene['title']}\" and " if scene["title"] else ""
    return f"The screen has {title}{len(ws)} {'widget' if len(ws) == 1 else 'widgets'}: {names}."


def reasoning(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    wd = scene["widgets"][_find(scene)]
    x0, y0, x1, y1 = wd["box"]
    part = "button face" if wd["type"] == "button" else "white input box"
    act = action(scene)
    verb = (f"Entering text needs the type action with text \"{act['text']}\"." if act["action"] == "type"
            else "Pressing it needs the click action.")
    return (f"{_inventory(scene)} The task asks to {instruction(scene)}. Its {part} spans x {x0}-{x1} and "
            f"y {y0}-{y1} px of the {w}x{h} screen, which is {box_str(act['box_2d'][0])} in 0-1000 coordinates. {verb}")


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    ws = scene["widgets"]
    order = reading_order([wd["box"] for wd in ws], h)
    parts = [f"{a(ws[i]['label'])} {ws[i]['type']} at {box_str(norm_box(ws[i]['box'], (w, h)))}" for i in order]
    title = f" with the title bar \"{scene['title']}\"" if scene["title"] else ""
    return f"A {w}x{h} app screen{title} showing {len(ws)} {'widget' if len(ws) == 1 else 'widgets'}: {'; '.join(parts)}."


def features(scene: dict[str, Any]) -> dict[str, float]:
    w, h = scene["size"]
    x0, y0, x1, y1 = scene["widgets"][scene["target"]]["box"]
    return {"widgets": float(len(scene["widgets"])), "target_area": (x1 - x0) * (y1 - y0) / (w * h)}
