"""Domain verifiers: each reads its reference once (``prepare``) and scores answers (``check``).

``prepare(reference, extra, opts) -> Ref`` validates and normalises a reference and parses it into
what ``check`` reads; it raises ``ValueError`` naming what is wrong (``glmv_cli.rewards.
check_reference`` turns that into an error naming the record, at load time). ``check(pred, ref,
extra, opts, prompt) -> reward in [0, 1]``; a malformed *prediction* earns 0. The reward registry
keeps one prepared reference per (domain, reference, extra), so a GRPO group parses its reference
once. ``verify_<name>(pred, reference, extra, opts)`` runs both for one answer.

* math: an answer outside the policy (``glmv_cli.rewards.policy``: a hedge the reference lacks,
  a dangling operator, unbalanced brackets) earns 0; intervals and one-variable inequalities are
  compared as sets (``5 \\geq x`` is ``x \\leq 5``, ``(-\\infty, 3)`` is ``x < 3``); then
  :func:`glmv_cli.rewards.mathv.compare_math` (fast path, then math-verify under a timeout).
  Chemistry never reaches math-verify: a chemical reference is compared as chemistry, a chemical
  answer to a non-chemical reference earns 0.
* chemistry: formulas and equations as species with coefficients (``glmv_cli.rewards.chemistry``).
* stem: a router. A chemical reference goes to chemistry, a reference math can read to math, any
  other (prose such as ``mitochondria``) scores 1 for the same text, else goes to the domain's
  ``judge`` when one is configured, else 0 counted as ``unverifiable``.
* mcq: letters, "(B)", "B.", "B. text", "option B", or the option's text when ``extra.options`` is
  given; several letters are compared as a set (so "B, C" never matches "B").
* counting: exactly one integer (digits or an English number word up to twenty), no hedge. The
  reference is a non-negative integer in digits (``1.0`` and ``1,200`` are normalised).
* chart: numeric references within 2.5 % relative (``rel_tol``); years exactly (a 4-digit integer
  reference in ``year_range`` 1900-2100, or ``extra.kind == "year"``; ``kind: number`` opts out);
  percentages read either way ("45%" vs "45"); labels compare case- and space-insensitively.
  ``\\text{}``, ``\\%``, ``\\$`` are read as plain text.
* ocr: continuous edit similarity 1 - lev(p, r) / max(|p|, |r|) after whitespace collapsing.
* grounding: boxes [x1, y1, x2, y2] in 0-1000 coordinates. A degenerate (x1 >= x2 or y1 >= y2),
  swapped or out-of-range box makes the whole answer 0. Boxes are matched one-to-one to maximise the
  summed pair score (exhaustive up to 6 boxes, greedy beyond) and the total is divided by
  max(#predicted, #reference), so extra boxes dilute the reward instead of hacking it. Pair score
  (``shape``): ``step`` (default) 1 if IoU >= ``iou_threshold`` (0.5) else 0 — a binary reward keeps
  pass rates meaningful for the curriculum; ``linear`` = IoU; ``thresholded`` = IoU if >= threshold.
* gui: JSON actions or GLM's action grammar (``glmv_cli.rewards.gui``).
* yesno: the answer must hold exactly one polarity (yes/true/是/对 vs no/false/否/不).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from glmv_cli.rewards.chemistry import Chem, chem_equal, looks_chemical, parse_chem
from glmv_cli.rewards.exact import parse_set, sets_equal
from glmv_cli.rewards.extract import strip_math_delimiters
from glmv_cli.rewards.gui import ActionError, parse_action, score_actions
from glmv_cli.rewards.mathv import MathRef, compare_math, normalize, parse_number
from glmv_cli.rewards.policy import hedges, is_hedged, malformed
from glmv_cli.rewards.similarity import Box, edit_similarity, iou, levenshtein

__all__ = ["VERIFIERS", "VERIFIER_OPTIONS", "SPECS", "Ref", "Unverifiable", "Verifier", "edit_similarity", "iou",
           "levenshtein"]


class Ref(NamedTuple):
    """A prepared reference: its normalised text and what ``check`` reads."""

    text: str
    value: Any


class Unverifiable(ValueError):
    """No verifier reads this reference and no judge is configured (reward 0, counted)."""


@dataclass(frozen=True)
class Verifier:
    prepare: Callable[[str, dict | None, dict], Ref]
    check: Callable[[str, Ref, dict | None, dict, str | None], float]
    options: tuple[str, ...] = ()


def _bad(verifier: str, ref: str, what: str) -> ValueError:
    return ValueError(f"{verifier} reference '{ref[:60]}' {what}")


# --- math ---------------------------------------------------------------------------------------
def prepare_math(ref: str, extra: dict | None, o: dict) -> Ref:
    text = strip_math_delimiters(ref)
    if not text:
        raise _bad("math", ref, "is empty")
    if looks_chemical(text):
        return Ref(text, parse_chem(text))
    m = MathRef.of(text, int(o.get("max_chars", 512)))
    if m.refused is not None:
        raise _bad("math", ref, m.refused)
    return Ref(text, m)


def _check_chem(pred: str, ref: Chem) -> float:
    p = parse_chem(pred)
    return 1.0 if p is not None and chem_equal(ref, p) else 0.0


def check_math(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    v = ref.value
    if isinstance(v, Chem):
        return _check_chem(pred, v)
    np = normalize(pred)
    if parse_number(np) is None:  # a plain number is complete, unhedged and no chemistry
        if looks_chemical(pred, strict=True) or malformed(pred):
            return 0.0
        if v.setform is not None:  # intervals and inequalities by meaning
            ps = parse_set(np)
            if ps is not None:
                same = sets_equal(v.setform, ps)
                if same is not None:
                    return float(same)
                return _compare(v, pred, np, o)  # too close to call: relation markers are no hedge here
        if is_hedged(pred, v.hedges):
            return 0.0
    return _compare(v, pred, np, o)


def _compare(v: MathRef, pred: str, np: str, o: dict) -> float:
    ok, _ = compare_math(v, pred, timeout_s=float(o.get("timeout_s", 1.0)), max_chars=int(o.get("max_chars", 512)),
                         fast=bool(o.get("fast_path", True)), cache=bool(o.get("cache", True)), norm_pred=np)
    return 1.0 if ok else 0.0


# --- chemistry and the STEM router --------------------------------------------------------------
def prepare_chemistry(ref: str, extra: dict | None, o: dict) -> Ref:
    c = parse_chem(ref)
    if c is None:
        raise _bad("chemistry", ref, "is not a chemical formula or equation (species of element symbols with "
                   "coefficients, e.g. 'N2 + 3H2 -> 2NH3')")
    return Ref(ref.strip(), c)


def check_chemistry(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    return _check_chem(pred, ref.value)


_FUNCTIONS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lim", "max", "min", "sqrt", "det",
              "mod", "gcd", "lcm", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "pi"}


def reads_as_math(text: str, m: MathRef) -> bool:
    """Can math-verify's reading be trusted? Numbers, closed forms, sets, expressions in
    one-letter variables and functions, a number with up to two unit words ("9.8 m/s"): yes.
    Prose ("mitochondria", "Newton's third law"): no."""
    if m.number is not None or m.value is not None or m.setform is not None:
        return True
    words = [w for w in re.findall(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", " ", text)) if w.lower() not in _FUNCTIONS]
    if not words:
        return True
    return bool(re.match(r"^\s*[+\-−]?\d", text)) and len(words) <= 2


def prepare_stem(ref: str, extra: dict | None, o: dict) -> Ref:
    r = prepare_math(ref, extra, o)
    if isinstance(r.value, Chem) or reads_as_math(r.text, r.value):
        return r
    return Ref(r.text, _norm_text(r.text))


def check_stem(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    if not isinstance(ref.value, str):
        return check_math(pred, ref, extra, o, prompt)
    if _norm_text(pred) == ref.value:
        return 1.0
    judge = o.get("_judge")
    if judge is None:
        raise Unverifiable("no verifier reads this reference and the domain has no judge")
    return judge.score(prompt or "", ref.text, pred)


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


def prepare_mcq(ref: str, extra: dict | None, o: dict) -> Ref:
    want = mc_letters(ref, extra)
    if want is None:
        raise _bad("mcq", ref, "names no option letter (expected e.g. 'B', '(B)', 'B, D' or an option's text)")
    return Ref("".join(sorted(want)), want)


def check_mcq(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    return 1.0 if mc_letters(pred, extra) == ref.value else 0.0


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


def prepare_counting(ref: str, extra: dict | None, o: dict) -> Ref:
    r = ref.strip().translate(str.maketrans({"\u2212": "-"}))
    m = re.fullmatch(r"\+?(\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?", r)
    if not m:
        raise _bad("counting", ref, "is not a non-negative integer in digits (e.g. '3'; '1.0' and '1,200' "
                   "are normalised)")
    n = int(m.group(1).replace(",", ""))
    return Ref(str(n), n)


def check_counting(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    if hedges(pred):
        return 0.0
    nums = _numbers_in(pred)
    if len(nums) != 1 or nums[0] != int(nums[0]):
        return 0.0
    return 1.0 if int(nums[0]) == ref.value else 0.0


# --- chart ------------------------------------------------------------------------------------
_CHART_LATEX = [(re.compile(r"\\(?:text|mathrm)\s*\{([^{}]*)\}"), r"\1"), (re.compile(r"\\([%$])"), r"\1"),
                (re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[,;: !]"), "")]


def _chart_clean(s: str) -> str:
    if "\\" not in s:
        return s.strip()
    for pat, rep in _CHART_LATEX:
        s = pat.sub(rep, s)
    return s.strip()
_CHART_NUM = re.compile(r"^[$€£¥]?\s*([+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+)\s*(%?)\s*"
                        r"(?:[A-Za-z°µ/$€£¥]+\.?)?$")


def _chart_number(s: str) -> tuple[float, bool, str] | None:
    m = _CHART_NUM.match(s.strip().translate(str.maketrans({"\u2212": "-"})))
    if not m:
        return None
    digits = m.group(1).replace(",", "")
    return float(digits), bool(m.group(2)), digits


def prepare_chart(ref: str, extra: dict | None, o: dict) -> Ref:
    r = _chart_clean(ref)
    if not r:
        raise _bad("chart", ref, "is empty")
    return Ref(r, (_chart_number(r), frozenset(hedges(r))))


def check_chart(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    tol = float(o.get("rel_tol", 0.025))
    r, ref_hedges = ref.value
    pred = _chart_clean(pred)
    if r is None:
        return 1.0 if _norm_text(pred) == _norm_text(ref.text) and pred else 0.0
    if is_hedged(pred, ref_hedges):
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
def prepare_ocr(ref: str, extra: dict | None, o: dict) -> Ref:
    return Ref(ref, ref)


def check_ocr(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    p, r = pred, ref.value
    if o.get("collapse_whitespace", True):
        p, r = " ".join(p.split()), " ".join(r.split())
    if o.get("ignore_case", False):
        p, r = p.casefold(), r.casefold()
    return edit_similarity(p, r)


# --- boxes --------------------------------------------------------------------------------------
_BOX = re.compile(r"[\[(]\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,"
                  r"\s*(-?\d+(?:\.\d+)?)\s*[\])]")


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


def prepare_grounding(ref: str, extra: dict | None, o: dict) -> Ref:
    rb = parse_boxes(ref)
    if rb is None:
        raise _bad("grounding", ref, "is not a list of valid 0-1000 boxes [x1, y1, x2, y2] with x1 < x2, y1 < y2")
    return Ref(ref.strip(), rb)


def check_grounding(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    pb = parse_boxes(pred)
    if pb is None:
        return 0.0
    return match_boxes(pb, ref.value, str(o.get("shape", "step")), float(o.get("iou_threshold", 0.5)))


# --- GUI actions -------------------------------------------------------------------------------
def prepare_gui(ref: str, extra: dict | None, o: dict) -> Ref:
    try:
        return Ref(ref.strip(), parse_action(ref))
    except ActionError as e:
        raise _bad("gui", ref, f"is not a GUI action (a JSON object with an 'action', or a call such as "
                   f"left_click(start_box='[x,y]')): {e}") from None


def check_gui(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    try:
        p = parse_action(pred)
    except ActionError:
        return 0.0
    return score_actions(p, ref.value, float(o.get("iou_threshold", 0.5)), float(o.get("point_tol", 20)))


# --- yes / no -----------------------------------------------------------------------------------
_YES = re.compile(r"\b(yes|true|correct)\b|是|对|正确", re.IGNORECASE)
_NO = re.compile(r"\b(no|not|false|incorrect)\b|否|不|错", re.IGNORECASE)


def yes_no(text: str) -> str | None:
    """'yes', 'no', or None when the text holds neither or both."""
    y, n = bool(_YES.search(text)), bool(_NO.search(text))
    if y == n:
        return None
    return "yes" if y else "no"


def prepare_yesno(ref: str, extra: dict | None, o: dict) -> Ref:
    want = yes_no(ref)
    if want is None:
        raise _bad("yes/no", ref, "is neither yes nor no")
    return Ref(want, want)


def check_yesno(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    return 1.0 if yes_no(pred) == ref.value else 0.0


def prepare_exact(ref: str, extra: dict | None, o: dict) -> Ref:
    return Ref(ref.strip(), _norm_text(ref))


def check_exact(pred: str, ref: Ref, extra: dict | None, o: dict, prompt: str | None = None) -> float:
    return 1.0 if _norm_text(pred) == ref.value else 0.0


_MATH_OPTIONS = ("timeout_s", "max_chars", "fast_path", "cache")
SPECS: dict[str, Verifier] = {
    "math": Verifier(prepare_math, check_math, _MATH_OPTIONS),
    "stem": Verifier(prepare_stem, check_stem, _MATH_OPTIONS + ("judge",)),
    "chemistry": Verifier(prepare_chemistry, check_chemistry),
    "mcq": Verifier(prepare_mcq, check_mcq),
    "counting": Verifier(prepare_counting, check_counting),
    "chart": Verifier(prepare_chart, check_chart, ("rel_tol", "year_range")),
    "ocr": Verifier(prepare_ocr, check_ocr, ("collapse_whitespace", "ignore_case")),
    "grounding": Verifier(prepare_grounding, check_grounding, ("iou_threshold", "shape")),
    "gui": Verifier(prepare_gui, check_gui, ("iou_threshold", "point_tol")),
    "yesno": Verifier(prepare_yesno, check_yesno),
    "exact": Verifier(prepare_exact, check_exact),
}
# Options each verifier accepts in rewards.yaml (anything else is a config error).
VERIFIER_OPTIONS: dict[str, tuple[str, ...]] = {k: v.options for k, v in SPECS.items()}


def _one(name: str, pred: str, ref: str, extra: dict | None, opts: dict | None) -> float:
    spec, o = SPECS[name], opts or {}
    return spec.check(pred, spec.prepare(ref, extra, o), extra, o, None)


def verify_math(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("math", pred, ref, extra, opts)


def verify_stem(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("stem", pred, ref, extra, opts)


def verify_chemistry(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("chemistry", pred, ref, extra, opts)


def verify_mcq(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("mcq", pred, ref, extra, opts)


def verify_counting(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("counting", pred, ref, extra, opts)


def verify_chart(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("chart", pred, ref, extra, opts)


def verify_ocr(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("ocr", pred, ref, extra, opts)


def verify_grounding(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("grounding", pred, ref, extra, opts)


def verify_gui(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("gui", pred, ref, extra, opts)


def verify_yesno(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("yesno", pred, ref, extra, opts)


def verify_exact(pred: str, ref: str, extra: dict | None = None, opts: dict | None = None) -> float:
    return _one("exact", pred, ref, extra, opts)


VERIFIERS: dict[str, Callable[..., float]] = {
    "math": verify_math, "stem": verify_stem, "chemistry": verify_chemistry, "mcq": verify_mcq,
    "counting": verify_counting, "chart": verify_chart, "ocr": verify_ocr, "grounding": verify_grounding,
    "gui": verify_gui, "yesno": verify_yesno, "exact": verify_exact,
}
