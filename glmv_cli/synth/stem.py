"""STEM: arithmetic and algebra rendered as an image; the answer is a number.

The problem exists only in the pixels (the user text says "the expression in the image"), so a
model must read the digits before it can compute. Levels (default 112x112):

1. ``a + b`` with single digits (0-9): 100 distinct problems drawn as "3+4=?" at scale 2
   (12x22 px glyphs); one addition (3 steps: read, add, conclude). Learnable by a
   few-M-parameter model from a few thousand images.
2. two-digit ``a + b`` or ``a - b`` (non-negative result): column arithmetic with carries or
   borrows, 4-5 steps.
3. three terms ``a + b - c`` (two-digit) or ``a × b`` (two-digit × one-digit): 5 steps.
4. a linear equation ``a x + b = c`` (a 2-9, integer x 1-15): isolate x by two inverse
   operations, then check; 6 steps, text at scale 1 when it does not fit at scale 2.
5. fractions ``a/b ± c/d`` with unlike denominators: common denominator, rescale, add or
   subtract, reduce, check; 7 steps; the answer is a reduced fraction "p/q" (or an integer).

Difficulty features (see :func:`features`): ``steps`` (solution steps: 3, 4.4, 5, 6, 7 in mean,
strictly growing with the level) and ``chars`` (glyphs to read: 5, 7, 8, 7.6, 9). Trade-off:
levels 1-2 have small problem spaces (100 and ~8,000 problems), so a train and an eval scene can pose the same sum with a
different layout and colour; the eval split is disjoint on scenes and images, not on arithmetic.
"""

from __future__ import annotations

import random
from fractions import Fraction
from math import gcd
from typing import Any

from PIL import Image

from glmv_cli.synth.common import ANSWER_INSTRUCTION, INK, PALETTE, TINTS, draw_text, fit_scale, text_size

NAME = "stem"


def _problem(rng: random.Random, level: int) -> dict[str, Any]:
    if level == 1:
        return {"kind": "expr", "terms": [rng.randint(0, 9), rng.randint(0, 9)], "ops": ["+"]}
    if level == 2:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if rng.random() < 0.5:
            return {"kind": "expr", "terms": [a, b], "ops": ["+"]}
        return {"kind": "expr", "terms": [max(a, b), min(a, b)], "ops": ["-"]}
    if level == 3:
        if rng.random() < 0.5:
            return {"kind": "expr", "terms": [rng.randint(10, 99), rng.randint(2, 9)], "ops": ["×"]}
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return {"kind": "expr", "terms": [a, b, rng.randint(10, a + b)], "ops": ["+", "-"]}
    if level == 4:
        a, x = rng.randint(2, 9), rng.randint(1, 15)
        b = rng.choice([v for v in range(-20, 31) if v != 0])
        return {"kind": "linear", "a": a, "b": b, "c": a * x + b}
    b, d = rng.sample(range(2, 10), 2)
    a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
    op = rng.choice(["+", "-"])
    if op == "-" and Fraction(a, b) < Fraction(c, d):
        a, b, c, d = c, d, a, b
    return {"kind": "frac", "a": a, "b": b, "c": c, "d": d, "op": op}


def problem_text(p: dict[str, Any]) -> str:
    if p["kind"] == "expr":
        s = str(p["terms"][0])
        for op, t in zip(p["ops"], p["terms"][1:]):
            s += f" {op} {t}"
        return s + " = ?"
    if p["kind"] == "linear":
        sign = "+" if p["b"] > 0 else "-"
        return f"{p['a']}x {sign} {abs(p['b'])} = {p['c']}"
    return f"{p['a']}/{p['b']} {p['op']} {p['c']}/{p['d']} = ?"


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    p = _problem(rng, level)
    # Drawn without spaces: "47+38=?" fits at scale 2 (7 glyphs of 12 px) where the spaced form
    # would not; the derivation quotes the spaced form.
    text = problem_text(p).replace(" ", "")
    scale = fit_scale(text, w - 8, h - 8, max(1, min(w, h) // 56))
    tw, th = text_size(text, scale)
    x = rng.randint(4, max(4, w - 4 - tw))
    y = rng.randint(4, max(4, h - 4 - th))
    bg = TINTS[0] if level <= 2 else rng.choice(TINTS)
    ink = list(INK) if level <= 3 else list(rng.choice([INK, PALETTE["blue"], PALETTE["purple"]]))
    return {"domain": NAME, "level": level, "size": [w, h], "bg": list(bg), "ink": ink,
            "problem": p, "text": text, "xy": [x, y], "scale": scale}


def render(scene: dict[str, Any]) -> Image.Image:
    img = Image.new("RGB", tuple(scene["size"]), tuple(scene["bg"]))
    draw_text(img, tuple(scene["xy"]), scene["text"], scene["scale"], tuple(scene["ink"]))
    return img


def _add_steps(a: int, b: int) -> list[str]:
    if a < 10 and b < 10:
        return [f"{a} + {b} = {a + b}."]
    steps, carry, place = [], 0, 0
    names = ["ones", "tens", "hundreds"]
    while a or b or carry:
        da, db = a % 10, b % 10
        s = da + db + carry
        extra = f" + {carry}" if carry else ""
        steps.append(f"{names[place]}: {da} + {db}{extra} = {s}" + (f", write {s % 10} carry 1." if s >= 10 else "."))
        carry, a, b, place = s // 10, a // 10, b // 10, place + 1
    return steps


def _sub_steps(a: int, b: int) -> list[str]:
    steps, borrow, place = [], 0, 0
    names = ["ones", "tens", "hundreds"]
    while a or b:
        da, db = a % 10 - borrow, b % 10
        if da < db:
            steps.append(f"{names[place]}: {da} < {db}, borrow: {da + 10} - {db} = {da + 10 - db}.")
            borrow = 1
        else:
            steps.append(f"{names[place]}: {da} - {db} = {da - db}.")
            borrow = 0
        a, b, place = a // 10, b // 10, place + 1
    return steps


def _frac(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def solution(scene: dict[str, Any]) -> tuple[list[str], str]:
    """(steps, answer) computed from the problem stored in the scene."""
    p = scene["problem"]
    if p["kind"] == "expr":
        t, ops = p["terms"], p["ops"]
        if ops == ["+"]:
            v = t[0] + t[1]
            steps = _add_steps(t[0], t[1])
        elif ops == ["-"]:
            v = t[0] - t[1]
            steps = _sub_steps(t[0], t[1])
        elif ops == ["×"]:
            tens, ones = t[0] - t[0] % 10, t[0] % 10
            v = t[0] * t[1]
            steps = [f"{tens} × {t[1]} = {tens * t[1]}.", f"{ones} × {t[1]} = {ones * t[1]}.",
                     f"{tens * t[1]} + {ones * t[1]} = {v}."]
        else:  # a + b - c, left to right
            s = t[0] + t[1]
            v = s - t[2]
            steps = [f"First {t[0]} + {t[1]} = {s}.", f"Then {s} - {t[2]} = {v}.",
                     f"Check: {v} + {t[2]} = {s}."]
        steps.append(f"So {problem_text(p)[:-4]} = {v}.")
        return [f"The image shows {problem_text(p)}."] + steps, str(v)
    if p["kind"] == "linear":
        a, b, c = p["a"], p["b"], p["c"]
        rhs = c - b
        x = Fraction(rhs, a)
        move = f"Subtract {b} from both sides" if b > 0 else f"Add {-b} to both sides"
        steps = [f"The image shows the equation {problem_text(p)}.",
                 f"The x term has coefficient {a} and the constant is {b}.",
                 f"{move}: {a}x = {rhs}.", f"Divide both sides by {a}: x = {_frac(x)}.",
                 f"Check: {a} × {_frac(x)} {'+' if b > 0 else '-'} {abs(b)} = {c}.",
                 f"So x = {_frac(x)}."]
        return steps, _frac(x)
    a, b, c, d, op = p["a"], p["b"], p["c"], p["d"], p["op"]
    m = b * d // gcd(b, d)
    na, nc = a * (m // b), c * (m // d)
    num = na + nc if op == "+" else na - nc
    v = Fraction(num, m)
    steps = [f"The image shows {problem_text(p)}.", f"Common denominator: lcm({b}, {d}) = {m}.",
             f"{a}/{b} = {na}/{m} and {c}/{d} = {nc}/{m}.", f"{na} {op} {nc} = {num}, giving {num}/{m}.",
             f"Reduce by gcd({num}, {m}) = {gcd(num, m)}: {_frac(v)}.",
             f"Check with decimals: {a / b:.3f} {op} {c / d:.3f} = {float(v):.3f}.",
             f"So {problem_text(p)[:-4]} = {_frac(v)}."]
    return steps, _frac(v)


def solve(scene: dict[str, Any]) -> str:
    return solution(scene)[1]


def reasoning(scene: dict[str, Any]) -> str:
    return " ".join(solution(scene)[0])


def question(scene: dict[str, Any]) -> str:
    if scene["problem"]["kind"] == "linear":
        return f"Solve the equation in the image for x. {ANSWER_INSTRUCTION}"
    return f"What is the value of the expression in the image? {ANSWER_INSTRUCTION}"


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    what = "the equation" if scene["problem"]["kind"] == "linear" else "the arithmetic problem"
    return (f"A {w}x{h} image showing {what} \"{scene['text']}\" written in one line "
            f"at scale {scene['scale']}.")


def features(scene: dict[str, Any]) -> dict[str, float]:
    return {"steps": float(len(solution(scene)[0])), "chars": float(len(scene["text"]))}
