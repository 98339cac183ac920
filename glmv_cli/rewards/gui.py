"""GUI actions: JSON objects and GLM's text action grammar, scored by location, text and arguments.

Two input forms are read into one canonical action (:class:`Action`):

* JSON, as glmv's synth data and GLM's mobile (AndroidWorld) prompts write it:
  ``{"action": "click", "box_2d": [[x1, y1, x2, y2]]}`` or ``{"action_type": "input_text",
  "text": "hi", "box_2d": [[...]], "override": true}``;
* GLM's call grammar, which the released models emit for desktop and web tasks:
  ``left_click(start_box='[x,y]', element_info='OK button')``, ``left_drag(start_box='[x1,y1]',
  end_box='[x2,y2]')``, ``type(content='hello')``, ``key(keys='ctrl+c')``, ``scroll(start_box=
  '[x,y]', direction='down', step=5)``, ``WAIT()``, ``DONE()``, ``FAIL()``, and the web forms
  ``CLICK(point=(x,y))``, ``TYPE(point=(x,y), text='...')``, ``KEY_PRESS(key='enter')``,
  ``SCROLL_DOWN(point=(x,y))``, ``ANSWER(content='...')``.

The grammar is read by a small hand-written scanner: one call ``name(key=value, ...)``, values
quoted strings (backslash escapes), numbers, ``True``/``False``, or bracketed coordinate lists;
positional arguments, two calls, or trailing text make the answer unreadable (reward 0). Nothing
is evaluated. An optional ``Action:`` prefix is dropped; ``<|box_start|>``/``<|box_end|>`` markers
around coordinates are ignored.

Canonical fields: ``name`` (lower-cased, spaces and dashes as ``_``: ``WAIT`` is ``wait``); the
location from ``start_box``/``box_2d``/``point_2d``/``point``/``box``, the drag end from
``end_box``, each a point ``[x, y]`` or a box ``[x1, y1, x2, y2]`` in 0-1000 coordinates; the typed
text from ``text``/``content``/``value``; every other argument as a lower-cased string (``element_info``
is a free description and ignored). ``scroll`` without ``step`` has the grammar's default 5.

Scoring (:func:`score_actions`): action names must match, else 0. Each location the reference
gives must be hit: a predicted point inside the reference box, a predicted box with IoU >=
``iou_threshold`` (0.5), a predicted box containing the reference point, or two points within
``point_tol`` (20) on both axes. The reward is the edit similarity of the typed text (1 without
text) when every other reference argument matches exactly (case-insensitive), else 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from glmv_cli.rewards.similarity import Box, edit_similarity, iou

Point = tuple[float, float]
LOC_KEYS = ("start_box", "box_2d", "point_2d", "point", "box", "coordinate", "start_point")
END_KEYS = ("end_box", "end_point", "end_coordinate")
TEXT_KEYS = ("text", "content", "value")
IGNORED = ("element_info",)
DEFAULTS = {"scroll": {"step": "5"}}
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)$", re.DOTALL)
_COORDS = re.compile(r"^[\[(\s]*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)*[\])\s]*$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PREFIX = re.compile(r"^action\s*[:：]\s*", re.IGNORECASE)
_MARKERS = re.compile(r"<\|box_start\|>|<\|box_end\|>|<\|begin_of_box\|>|<\|end_of_box\|>")


class ActionError(ValueError):
    """An action that cannot be read (the message says why)."""


@dataclass(frozen=True)
class Location:
    point: Point | None = None
    box: Box | None = None


@dataclass
class Action:
    name: str
    loc: Location | None = None
    end: Location | None = None
    text: str | None = None
    args: dict[str, str] = field(default_factory=dict)


def _norm_name(v: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(v).strip().lower())


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    s = str(v).strip()
    if s in ("True", "False"):
        return s.lower()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", s):
        return _scalar(float(s))
    return re.sub(r"\s+", " ", s).casefold()


def location(v: Any) -> Location:
    """A point or a box from a JSON list (``[x, y]``, ``[[x1, y1, x2, y2]]``) or a coordinate
    string (``'[x,y]'``, ``'(x,y)'``). Raises ActionError when it is neither or leaves 0-1000."""
    if isinstance(v, str):
        s = _MARKERS.sub("", v).strip()
        if not _COORDS.match(s):
            raise ActionError(f"'{v[:40]}' is not a coordinate list")
        nums = [float(x) for x in _NUMBER.findall(s)]
    else:
        while isinstance(v, list) and len(v) == 1 and isinstance(v[0], list):
            v = v[0]
        if not (isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise ActionError(f"{json.dumps(v)[:40]} is not a coordinate list")
        nums = [float(x) for x in v]
    if not all(0 <= x <= 1000 for x in nums):
        raise ActionError("coordinates must lie in 0-1000")
    if len(nums) == 2:
        return Location(point=(nums[0], nums[1]))
    if len(nums) == 4:
        x1, y1, x2, y2 = nums
        if not (x1 < x2 and y1 < y2):
            raise ActionError("a box needs x1 < x2 and y1 < y2")
        return Location(box=(x1, y1, x2, y2))
    raise ActionError(f"{len(nums)} coordinates (expected a point [x, y] or a box [x1, y1, x2, y2])")


def _merge(a: Location | None, b: Location) -> Location:
    """Web actions may give both ``point`` and ``box``: keep the point and the box."""
    if a is None:
        return b
    return Location(a.point or b.point, a.box or b.box)


def _action(name: str, fields_: dict[str, Any]) -> Action:
    act = Action(_norm_name(name))
    for key, v in fields_.items():
        k = key.strip().lower()
        if k in LOC_KEYS:
            act.loc = _merge(act.loc, location(v))
        elif k in END_KEYS:
            act.end = _merge(act.end, location(v))
        elif k in TEXT_KEYS:
            act.text = "" if v is None else str(v)
        elif k not in IGNORED and k not in ("action", "action_type"):
            act.args[k] = _scalar(v)
    for k, v in DEFAULTS.get(act.name, {}).items():
        act.args.setdefault(k, v)
    return act


# --- the call grammar ----------------------------------------------------------------------------
def _read_quoted(s: str, i: int) -> tuple[str, int]:
    q, out, i = s[i], [], i + 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t"}.get(s[i + 1], s[i + 1]))
            i += 2
            continue
        if c == q:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ActionError("unterminated string")


def _read_bracketed(s: str, i: int) -> tuple[str, int]:
    depth, j = 0, i
    while j < len(s):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(s[j], 0)
        j += 1
        if depth == 0:
            return s[i:j], j
    raise ActionError("unbalanced brackets")


def parse_call(text: str) -> Action:
    """``name(key=value, ...)`` -> Action (see the module docstring)."""
    m = _CALL.match(text.strip())
    if not m:
        raise ActionError("not a call name(key=value, ...)")
    name, body = m.group(1), m.group(2)
    fields_: dict[str, Any] = {}
    i = 0
    while True:
        while i < len(body) and body[i].isspace():
            i += 1
        if i >= len(body):
            break
        km = re.match(r"([A-Za-z_]\w*)\s*=\s*", body[i:])
        if not km:
            raise ActionError("positional or malformed argument")
        key, i = km.group(1), i + km.end()
        if i < len(body) and body[i] in "'\"":
            value, i = _read_quoted(body, i)
        elif i < len(body) and body[i] in "[(":
            value, i = _read_bracketed(body, i)
        else:
            vm = re.match(r"[^,\s)]+", body[i:])
            if not vm:
                raise ActionError(f"argument '{key}' has no value")
            value, i = vm.group(0), i + vm.end()
        if key in fields_:
            raise ActionError(f"argument '{key}' given twice")
        fields_[key] = value
        while i < len(body) and body[i].isspace():
            i += 1
        if i < len(body):
            if body[i] != ",":
                raise ActionError("expected ',' between arguments")
            i += 1
    return _action(name, fields_)


def parse_action(text: str) -> Action:
    """A JSON action object or one call of GLM's grammar; raises ActionError."""
    s = text.strip()
    s = _PREFIX.sub("", s)
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except (ValueError, RecursionError):
            raise ActionError("invalid JSON") from None
        if not isinstance(obj, dict):
            raise ActionError("expected a JSON object")
        name = obj.get("action", obj.get("action_type"))
        if not isinstance(name, str) or not name.strip():
            raise ActionError("a JSON action needs an 'action' (or 'action_type') string")
        return _action(name, obj)
    return parse_call(s)


# --- scoring -----------------------------------------------------------------------------------
def _inside(p: Point, b: Box) -> bool:
    return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]


def hit(pred: Location | None, ref: Location, iou_threshold: float, point_tol: float) -> bool:
    """Does the predicted location hit the reference one (rules in the module docstring)?"""
    if pred is None:
        return False
    if ref.box is not None and pred.point is not None:
        return _inside(pred.point, ref.box)
    if ref.box is not None and pred.box is not None:
        return iou(pred.box, ref.box) >= iou_threshold
    if ref.point is not None and pred.box is not None:
        return _inside(ref.point, pred.box)
    if ref.point is not None and pred.point is not None:
        return abs(pred.point[0] - ref.point[0]) <= point_tol and abs(pred.point[1] - ref.point[1]) <= point_tol
    return False


def score_actions(pred: Action, ref: Action, iou_threshold: float = 0.5, point_tol: float = 20.0) -> float:
    if pred.name != ref.name:
        return 0.0
    for want, got in ((ref.loc, pred.loc), (ref.end, pred.end)):
        if want is not None and not hit(got, want, iou_threshold, point_tol):
            return 0.0
    for k, v in ref.args.items():
        if pred.args.get(k) != v:
            return 0.0
    if ref.text is None:
        return 1.0
    return edit_similarity(pred.text or "", ref.text)
