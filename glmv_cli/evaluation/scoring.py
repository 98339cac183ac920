"""Benchmark scoring rules: pure functions from (extracted answer, gold fields) to a score.

Every rule receives the answer as GLM's eval reads it (``glmv_cli.rewards.extract_answer``: drop
``<think>``, take ``<answer>``, take the box) and the gold value(s) in the benchmark's own schema,
so the rule is the benchmark's, not a generic string match:

- ``mcq``        letter accuracy (MMStar, MMBench, AI2D, CV-Bench, MMMU-Pro, ...). The prediction is
                 read as a letter ("B", "(B)", "B. cat", "Option B") or, failing that, as the exact
                 text of one option. Gold may be a letter, "(B)", a 0-based index (AI2D) or the
                 option text (MVBench); :func:`gold_letter` normalises it.
- ``yesno``      HallusionBench's per-question accuracy: yes/no (also "1"/"0", "true"/"false").
- ``exact``      case/space/final-period-insensitive string equality, numbers by value (ZeroBench).
- ``letters``    multi-answer multiple choice: the predicted letter set equals the gold set (LogicVista).
- ``ocrbench``   OCRBench: 1 when any gold string occurs in the prediction (lower-cased; for the
                 HME100k formula subset all spaces are removed first, as the official script does).
- ``math``       symbolic/numeric equivalence through the reward system's math verifier, then
                 normalised text equality for non-math answers (MathVerse, MathVision free-form,
                 MMVU open-ended).
- ``iou``        grounding Acc@0.5 (RefCOCO/+/g): the predicted box is in GLM's 0-1000 normalised
                 coordinates, the gold box is COCO ``[x, y, w, h]`` pixels of an image of size WxH.
- benchmark-specific rules (MMMU open questions, MathVista, ChartQAPro, DynaMath, ChartMuseum) are
  in :mod:`glmv_cli.evaluation.scoring_official`.
- ``reward``     the glmv reward system (``rewards.score_detailed``) with the row's domain: the synth
                 eval split, so ``glmv eval`` and ``glmv reward`` agree by construction.

A missing answer (``None``: no ``</think>``, an empty box) scores 0 under every rule.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_LETTER_PATTERNS = (
    re.compile(r"^\(?([A-Z])\)?[.:)]?$"),                    # B  (B)  B.  B)
    re.compile(r"^\(?([A-Z])\)?[.:)]\s+\S"),                 # B. cat   (B) cat
    re.compile(r"^(?:option|answer|choice)\s*:?\s*\(?([A-Z])\)?\b", re.I),  # Option B
)


def norm_text(s: Any) -> str:
    """Lower-case, collapse whitespace, drop a final period and surrounding quotes."""
    t = re.sub(r"\s+", " ", str(s)).strip().lower()
    t = t.strip("\"'`")
    return t[:-1].rstrip() if t.endswith(".") else t


def parse_options(value: Any) -> list[str]:
    """Options as a list of strings from a list, a dict (letter -> text), or a string repr of a
    list (MMMU stores ``"['a', 'b']"``; parsed with ``ast.literal_eval``, never ``eval``)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    s = str(value).strip()
    if not s:
        return []
    if s[0] in "[(":
        try:
            parsed = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            try:
                parsed = json.loads(s)
            except json.JSONDecodeError:
                return [s]
        if isinstance(parsed, (list, tuple)):
            return [str(v) for v in parsed]
    return [s]


def strip_option_prefix(opt: str) -> str:
    """'A. cat' -> 'cat' (Video-MME stores options with their letters)."""
    m = re.match(r"^\(?[A-Z][.):]\s*(.*)$", opt.strip(), re.S)
    return m.group(1) if m else opt.strip()


def pred_letter(pred: str | None, options: Sequence[str] = ()) -> str | None:
    """The option letter a prediction names, or None."""
    if pred is None:
        return None
    p = pred.strip()
    if not p:
        return None
    for pat in _LETTER_PATTERNS:
        m = pat.match(p)
        if m and (not options or LETTERS.index(m.group(1).upper()) < len(options)):
            return m.group(1).upper()
    if options:
        np_ = norm_text(p)
        hits = [i for i, o in enumerate(options) if norm_text(strip_option_prefix(o)) == np_]
        if len(hits) == 1:
            return LETTERS[hits[0]]
    return None


def gold_letter(gold: Any, options: Sequence[str] = (), kind: str = "letter") -> str:
    """The gold letter from ``kind``: ``letter`` ("B", "(B)"), ``index`` (0-based) or ``text``."""
    if kind == "index":
        return LETTERS[int(str(gold).strip())]
    if kind == "text":
        g = norm_text(gold)
        for i, o in enumerate(options):
            if norm_text(strip_option_prefix(o)) == g:
                return LETTERS[i]
        raise ValueError(f"gold answer {gold!r} is not one of the options {list(options)!r}")
    m = re.match(r"^\(?([A-Za-z])\)?", str(gold).strip())
    if not m:
        raise ValueError(f"gold answer {gold!r} is not an option letter")
    return m.group(1).upper()


def score_mcq(pred: str | None, gold: Any, options: Sequence[str] = (), kind: str = "letter") -> float:
    letter = pred_letter(pred, options)
    return float(letter is not None and letter == gold_letter(gold, options, kind))


_YES = {"yes", "y", "true", "1", "是", "对"}
_NO = {"no", "n", "false", "0", "否", "不是", "不对"}


def yes_no(s: Any) -> str | None:
    t = norm_text(s).rstrip("!")
    first = re.split(r"[\s,.;:]", t, maxsplit=1)[0] if t else ""
    for cand in (t, first):
        if cand in _YES:
            return "yes"
        if cand in _NO:
            return "no"
    return None


def score_yesno(pred: str | None, gold: Any) -> float:
    p = yes_no(pred) if pred is not None else None
    return float(p is not None and p == yes_no(gold))


def score_exact(pred: str | None, gold: Any) -> float:
    """Normalised string equality; two plain numbers compare by value ("1.50" == "1.5")."""
    if pred is None:
        return 0.0
    p, g = norm_text(pred), norm_text(gold)
    num = re.compile(r"-?(?:\d+\.\d+|\d+|\.\d+)")
    pc, gc = p.replace(",", ""), g.replace(",", "")
    if num.fullmatch(pc) and num.fullmatch(gc):
        from decimal import Decimal

        return float(Decimal(pc) == Decimal(gc))
    return float(p == g)


def letter_set(s: Any) -> frozenset[str] | None:
    """{"A", "C"} from "A, C", "(A)(C)", "AC" or "A and C"; None when anything else is there."""
    t = re.sub(r"\band\b", ",", str(s).upper())
    t = re.sub(r"[\s,;/()\[\].&]+", "", t)
    if not t or not re.fullmatch(r"[A-Z]+", t) or len(t) > 10:
        return None
    return frozenset(t)


def score_letters(pred: str | None, gold: Any) -> float:
    """Multi-answer multiple choice (LogicVista): the set of letters must match exactly."""
    if pred is None:
        return 0.0
    p, g = letter_set(pred), letter_set(gold)
    return float(p is not None and p == g)


def score_ocrbench(pred: str | None, golds: Any, subset: str = "") -> float:
    if pred is None:
        return 0.0
    answers = golds if isinstance(golds, (list, tuple)) else parse_options(golds)
    if subset == "HME100k":
        p = pred.strip().replace("\n", " ").replace(" ", "")
        return float(any(str(a).strip().replace("\n", " ").replace(" ", "") in p for a in answers))
    p = pred.lower().strip().replace("\n", " ")
    return float(any(str(a).lower().strip().replace("\n", " ") in p for a in answers))


def score_math(pred: str | None, gold: Any) -> float:
    if pred is None:
        return 0.0
    from glmv_cli.rewards.verifiers import verify_math

    try:
        # 10 s, not RL's 1 s: eval scores each answer once, and the first symbolic check pays
        # for importing sympy (~1-3 s on a loaded 2-core machine)
        if float(verify_math(pred, str(gold), None, {"timeout_s": 10.0})) >= 1.0:
            return 1.0
    except Exception:  # a verifier timeout or an unparsable gold is a miss, never a crash
        pass
    return score_exact(pred, gold)  # text answers ("depth-first search") compare as text


_BOX_NUMS = re.compile(r"-?\d+(?:\.\d+)?")


def parse_box(pred: str | None) -> list[float] | None:
    """The first four numbers of a predicted box ("[x1, y1, x2, y2]", "(x1,y1),(x2,y2)", ...)."""
    if pred is None:
        return None
    nums = [float(x) for x in _BOX_NUMS.findall(pred)]
    return nums[:4] if len(nums) >= 4 else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def score_iou(pred: str | None, gold_xywh: Sequence[float], width: int, height: int,
              threshold: float = 0.5) -> float:
    """Acc@IoU: prediction in 0-1000 normalised xyxy, gold in COCO pixel xywh."""
    box = parse_box(pred)
    if box is None:
        return 0.0
    x1, y1, x2, y2 = (box[0] / 1000 * width, box[1] / 1000 * height, box[2] / 1000 * width, box[3] / 1000 * height)
    gx, gy, gw, gh = (float(v) for v in gold_xywh)
    return float(box_iou((x1, y1, x2, y2), (gx, gy, gx + gw, gy + gh)) >= threshold)
