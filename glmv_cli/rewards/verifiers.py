"""Domain verifiers: pure functions ``(pred, reference, extra, opts) -> reward in [0, 1]``.

``pred`` is the answer the gates extracted (the box content). A malformed *prediction* earns 0;
a malformed *reference* raises ``ValueError`` (the caller counts it as a verifier error).

* math/stem: hedged answers (a range/alternative/approximation marker the reference lacks) earn 0,
  then :func:`glmv_cli.rewards.mathv.math_equal` (fast path, then math-verify under a timeout).
* mcq: letters, "(B)", "B.", "B. text", "option B", or the option's text when ``extra.options`` is
  given; several letters are compared as a set (so "B, C" never matches "B").
* counting: exactly one integer (digits or an English number word up to twenty), no hedge.
* chart: numeric references within 2.5 % relative (``rel_tol``); years exactly (a 4-digit integer
  reference in ``year_range`` 1900-2100, or ``extra.kind == "year"``; ``kind: number`` opts out);
  percentages read either way ("45%" vs "45"); labels compare case- and space-insensitively.
* ocr: continuous edit similarity 1 - lev(p, r) / max(|p|, |r|) after whitespace collapsing.
  Levenshtein is Hyyrö's bit-parallel algorithm on Python ints: O(|a| * |b| / 64) word ops, 2 x 4k
  characters in ~5 ms where the plain DP needs seconds.
* grounding: boxes [x1, y1, x2, y2] in 0-1000 coordinates. A degenerate (x1 >= x2 or y1 >= y2),
  swapped or out-of-range box makes the whole answer 0. Boxes are matched one-to-one to maximise the
  summed pair score (exhaustive up to 6 boxes, greedy beyond) and the total is divided by
  max(#predicted, #reference), so extra boxes dilute the reward instead of hacking it. Pair score
  (``shape``): ``step`` (default) 1 if IoU >= ``iou_threshold`` (0.5) else 0 — a binary reward keeps
  pass rates meaningful for the curriculum; ``linear`` = IoU; ``thresholded`` = IoU if >= threshold.
* gui: JSON actions. Action types must match (else 0). Reward = product of the argument scores:
  location (predicted point inside the reference box, or predicted box IoU >= ``iou_threshold``,
  or a predicted box containing a reference point), typed text (edit similarity), any other
  argument (exact, case-insensitive).
* yesno: the answer must hold exactly one polarity (yes/true/是/对 vs no/false/否/不).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from glmv_cli.rewards.mathv import hedges, is_hedged, math_equal


def _opts(opts: dict[str, Any] | None) -> dict[str, Any]:
    return opts or {}


# --- math -------------------------------------------------------------------------------------
def verify_math(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    o = _opts(opts)
    if is_hedged(pred, ref):
        return 0.0
    ok, _ = math_equal(ref, pred, timeout_s=float(o.get("timeout_s", 1.0)),
                       max_chars=int(o.get("max_chars", 512)), fast=bool(o.get("fast_path", True)),
                       cache=bool(o.get("cache", True)))
    return 1.0 if ok else 0.0


# --- multiple choice --------------------------------------------------------------------------
_MC_ONE = re.compile(r"^(?P<pre>(?:option|answer|choice)\s*[:：]?\s*)?(?:\((?P<p>[A-Za-z])\)|\[(?P<b>[A-Za-z])\]|"
                     r"(?P<l>[A-Za-z]))(?:\s*[.):：]\s*(?P<t1>.*)|\s+(?P<t2>.*))?$", re.IGNORECASE | re.DOTALL)
_MC_MANY = re.compile(r"^[(\[]?[A-Z][)\]]?(?:\s*[,;&、]?\s*[(\[]?[A-Z][)\]]?)+$")


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().strip(".。").strip().casefold()


def _options(extra: dict | None) -> dict[str, str]:
    opts = (extra or {}).get("options")
    if isinstance(opts, dict):
        return {str(k).strip().upper(): _norm_text(str(v)) for k, v in opts.items()}
    if isinstance(opts, list):
        return {chr(ord("A") + i): _norm_text(str(v)) for i, v in enumerate(opts)}
    return {}


def mc_letters(answer: str, extra: dict | None = None) -> frozenset[str] | None:
    """The set of option letters an answer picks ("B", "(B)", "B. text", "option B", "B, C", the
    option's text), or None when it picks nothing readable or contradicts itself."""
    s = answer.strip().rstrip(".。").strip()
    options = _options(extra)
    m = _MC_ONE.match(s)
    if m:
        letter = (m.group("p") or m.group("b") or m.group("l")).upper()
        wrapped = bool(m.group("p") or m.group("b") or m.group("pre"))
        text = m.group("t1") if m.group("t1") is not None else m.group("t2")
        if text is None or m.group("t1") is not None or wrapped:
            if text and options:
                owner = [k for k, v in options.items() if v == _norm_text(text)]
                if owner and letter not in owner:
                    return None  # "B. <text of option C>" contradicts itself
            if text is None or not _MC_MANY.match(s) or m.group("t1") is not None:
                return frozenset(letter)
    t = re.sub(r"\s+and\s+", ", ", s, flags=re.IGNORECASE)
    if len(t) < 40 and _MC_MANY.match(t):
        letters = re.findall(r"[A-Z]", t)
        if len(letters) == len(set(letters)):
            return frozenset(letters)
        return None
    if options:
        owner = [k for k, v in options.items() if v == _norm_text(s)]
        if len(owner) == 1:
            return frozenset(owner)
    return None


def verify_mcq(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    want = mc_letters(ref, extra)
    if want is None:
        raise ValueError(f"reference '{ref[:40]}' names no option letter")
    got = mc_letters(pred, extra)
    return 1.0 if got == want else 0.0


# --- counting ---------------------------------------------------------------------------------
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMTOK = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?|[A-Za-z]+")


def _numbers_in(text: str) -> list[float]:
    out = []
    for tok in _NUMTOK.findall(text.translate(str.maketrans({"\u2212": "-"}))):
        if tok[0].isalpha():
            if tok.lower() in _WORDS:
                out.append(float(_WORDS[tok.lower()]))
        else:
            if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", tok):
                tok = tok.replace(",", "")
            elif "," in tok:
                out.extend(float(x) for x in tok.split(",") if x)
                continue
            out.append(float(tok))
    return out


def verify_counting(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    r = ref.strip()
    if not re.fullmatch(r"\d+", r):
        raise ValueError(f"counting reference must be a non-negative integer, got '{ref[:40]}'")
    if hedges(pred):
        return 0.0
    nums = _numbers_in(pred)
    if len(nums) != 1 or nums[0] != int(nums[0]):
        return 0.0
    return 1.0 if int(nums[0]) == int(r) else 0.0


# --- chart ------------------------------------------------------------------------------------
_CHART_NUM = re.compile(r"^[$€£¥]?\s*([+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+)\s*(%?)\s*"
                        r"(?:[A-Za-z°µ/$€£¥]+\.?)?$")


def _chart_number(s: str) -> tuple[float, bool, str] | None:
    m = _CHART_NUM.match(s.strip().translate(str.maketrans({"\u2212": "-"})))
    if not m:
        return None
    digits = m.group(1).replace(",", "")
    return float(digits), bool(m.group(2)), digits


def verify_chart(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    o = _opts(opts)
    tol = float(o.get("rel_tol", 0.025))
    r = _chart_number(ref)
    if r is None:
        return 1.0 if _norm_text(pred) == _norm_text(ref) and pred.strip() else 0.0
    if is_hedged(pred, ref):
        return 0.0
    p = _chart_number(pred)
    if p is None:
        return 0.0
    lo, hi = o.get("year_range", (1900, 2100))
    kind = (extra or {}).get("kind")
    is_year = kind == "year" or (kind is None and not r[1] and re.fullmatch(r"\d{4}", r[2]) is not None
                                 and lo <= int(r[2]) <= hi)
    if is_year:  # years compare exactly: 2020 is not within 2.5 % of 2021 in any useful sense
        return 1.0 if p[2] == r[2] and not p[1] else 0.0
    rv = [r[0], r[0] / 100] if r[1] else [r[0]]
    pv = [p[0], p[0] / 100] if p[1] else [p[0]]
    for a in rv:
        for b in pv:
            if abs(a - b) <= tol * abs(a) or (a == 0 and abs(b) <= 1e-9):
                return 1.0
    return 0.0


# --- OCR --------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit insert/delete/substitute), Hyyrö's bit-parallel algorithm."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, c in enumerate(b):
        peq[c] = peq.get(c, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for c in a:
        eq = peq.get(c, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & mask) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


def edit_similarity(a: str, b: str) -> float:
    n = max(len(a), len(b))
    return 1.0 if n == 0 else 1.0 - levenshtein(a, b) / n


def verify_ocr(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    o = _opts(opts)
    p, r = pred, ref
    if o.get("collapse_whitespace", True):
        p, r = " ".join(p.split()), " ".join(r.split())
    if o.get("ignore_case", False):
        p, r = p.casefold(), r.casefold()
    return edit_similarity(p, r)


# --- boxes --------------------------------------------------------------------------------------
_BOX = re.compile(r"[\[(]\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,"
                  r"\s*(-?\d+(?:\.\d+)?)\s*[\])]")
Box = tuple[float, float, float, float]


def valid_box(b: Box, size: float = 1000.0) -> bool:
    x1, y1, x2, y2 = b
    return 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size


def parse_boxes(text: str) -> list[Box] | None:
    """All [x1, y1, x2, y2] groups in ``text``; None if there are none or any is invalid."""
    if len(text) > 20_000:
        return None
    boxes = [tuple(float(v) for v in m.groups()) for m in _BOX.finditer(text)]
    if not boxes or not all(valid_box(b) for b in boxes):  # type: ignore[arg-type]
        return None
    return boxes  # type: ignore[return-value]


def iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _pair_score(i: float, shape: str, thr: float) -> float:
    if shape == "linear":
        return i
    if shape == "thresholded":
        return i if i >= thr else 0.0
    return 1.0 if i >= thr else 0.0


def match_boxes(pred: list[Box], ref: list[Box], shape: str = "step", thr: float = 0.5) -> float:
    """Best one-to-one matching score / max(len(pred), len(ref))."""
    s = [[_pair_score(iou(p, r), shape, thr) for r in ref] for p in pred]
    if len(pred) > len(ref):  # match from the shorter side
        s = [list(col) for col in zip(*s)]
    rows, cols = len(s), len(s[0])
    if cols <= 6:
        best = max(sum(s[i][j] for i, j in enumerate(perm)) for perm in itertools.permutations(range(cols), rows))
    else:
        best = _greedy(s)
    return best / max(len(pred), len(ref))


def _greedy(s: list[list[float]]) -> float:
    pairs = sorted(((v, i, j) for i, row in enumerate(s) for j, v in enumerate(row)), reverse=True)
    used_i, used_j, total = set(), set(), 0.0
    for v, i, j in pairs:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            total += v
    return total


def verify_grounding(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    o = _opts(opts)
    rb = parse_boxes(ref)
    if rb is None:
        raise ValueError(f"grounding reference '{ref[:60]}' is not a list of valid 0-1000 boxes")
    pb = parse_boxes(pred)
    if pb is None:
        return 0.0
    return match_boxes(pb, rb, str(o.get("shape", "step")), float(o.get("iou_threshold", 0.5)))


# --- GUI actions -------------------------------------------------------------------------------
def _json_obj(s: str) -> dict | None:
    try:
        v = json.loads(s)
    except (ValueError, RecursionError):
        return None
    return v if isinstance(v, dict) else None


def _act(v: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(v).strip().lower())


def _one_box(v: Any) -> Box | None:
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list):
        v = v[0]
    if isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   for x in v):
        b = tuple(float(x) for x in v)
        return b if valid_box(b) else None  # type: ignore[return-value]
    return None


def _one_point(v: Any) -> tuple[float, float] | None:
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list):
        v = v[0]
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   for x in v):
        x, y = float(v[0]), float(v[1])
        return (x, y) if 0 <= x <= 1000 and 0 <= y <= 1000 else None
    return None


def verify_gui(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    o = _opts(opts)
    thr = float(o.get("iou_threshold", 0.5))
    r = _json_obj(ref)
    if r is None or "action" not in r:
        raise ValueError(f"gui reference '{ref[:60]}' is not a JSON object with an 'action'")
    p = _json_obj(pred)
    if p is None or _act(p.get("action", "")) != _act(r["action"]):
        return 0.0
    reward = 1.0
    rbox, rpt = _one_box(r.get("box_2d")), _one_point(r.get("point_2d"))
    if "box_2d" in r and rbox is None:
        raise ValueError("gui reference 'box_2d' is not one valid 0-1000 box")
    if rbox is not None or rpt is not None:
        pbox, ppt = _one_box(p.get("box_2d")), _one_point(p.get("point_2d"))
        if rbox is not None and ppt is not None:
            hit = rbox[0] <= ppt[0] <= rbox[2] and rbox[1] <= ppt[1] <= rbox[3]
        elif rbox is not None and pbox is not None:
            hit = iou(pbox, rbox) >= thr
        elif rpt is not None and pbox is not None:
            hit = pbox[0] <= rpt[0] <= pbox[2] and pbox[1] <= rpt[1] <= pbox[3]
        elif rpt is not None and ppt is not None:
            hit = abs(ppt[0] - rpt[0]) <= float(o.get("point_tol", 20)) and \
                abs(ppt[1] - rpt[1]) <= float(o.get("point_tol", 20))
        else:
            hit = False
        if not hit:
            return 0.0
    for key, want in r.items():
        if key in ("action", "box_2d", "point_2d"):
            continue
        got = p.get(key)
        if key in ("text", "content", "value"):
            reward *= edit_similarity(str(got) if got is not None else "", str(want))
        elif got is None or _norm_text(str(got)) != _norm_text(str(want)):
            return 0.0
    return reward


# --- yes / no -----------------------------------------------------------------------------------
_YES = re.compile(r"\b(yes|true|correct)\b|是|对|正确", re.IGNORECASE)
_NO = re.compile(r"\b(no|not|false|incorrect)\b|否|不|错", re.IGNORECASE)


def yes_no(text: str) -> str | None:
    """'yes', 'no', or None when the text holds neither or both."""
    y, n = bool(_YES.search(text)), bool(_NO.search(text))
    if y == n:
        return None
    return "yes" if y else "no"


def verify_yesno(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    want = yes_no(ref)
    if want is None:
        raise ValueError(f"yes/no reference '{ref[:40]}' is neither yes nor no")
    return 1.0 if yes_no(pred) == want else 0.0


def verify_exact(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return 1.0 if _norm_text(pred) == _norm_text(ref) else 0.0


VERIFIERS = {
    "math": verify_math,
    "mcq": verify_mcq,
    "counting": verify_counting,
    "chart": verify_chart,
    "ocr": verify_ocr,
    "grounding": verify_grounding,
    "gui": verify_gui,
    "yesno": verify_yesno,
    "exact": verify_exact,
}
# Options each verifier accepts in rewards.yaml (anything else is a config error).
VERIFIER_OPTIONS: dict[str, tuple[str, ...]] = {
    "math": ("timeout_s", "max_chars", "fast_path", "cache"),
    "mcq": (),
    "counting": (),
    "chart": ("rel_tol", "year_range"),
    "ocr": ("collapse_whitespace", "ignore_case"),
    "grounding": ("iou_threshold", "shape"),
    "gui": ("iou_threshold", "point_tol"),
    "yesno": (),
    "exact": (),
}
