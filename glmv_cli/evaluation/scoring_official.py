"""Benchmark-specific answer rules, as the benchmarks' own evaluation code defines them.

Each function takes the answer glmv extracted from the response (``rewards.extract_answer``: the
``<answer>`` / box content) and the gold fields of the row. Sources, per rule:

- MMMU (``score_mmmu_open``): MMMU's ``eval_open``: golds are one string or a list (the Hub stores
  ``"['24/7', '3.429']"``); a gold that reads as a number becomes ``round(float, 2)``, others lower
  case (one-character golds padded with a space on one side so "a" does not match "cat"); the
  prediction yields its text plus every number in it; right when a predicted number equals a gold
  number or a gold string occurs in the predicted text.
- MathVista (``score_mathvista``): extraction (an exact choice text; ``int()``/``float()`` of the
  whole answer; ``The answer is "X"``), then MathVista's normalisation: multiple choice maps a
  letter ("(C)" too) to its choice text and anything else to the most similar choice by edit
  distance; integers compare as ``str(int(float(x)))`` (so "3.7" answers an integer 3); floats as
  ``str(round(float(x), precision))``; then string equality. Where MathVista asks an LLM to extract
  (free text around the answer), glmv's rule-based default takes the letter after "answer is" /
  "option" or the first number in the text ("12 cm" -> 12); ``--judge-url`` replaces that step.
- ChartQAPro (``score_chartqapro``): the benchmark's ``evaluate_predictions.py``: the last gold of
  ``Answer``; list answers compared item by item (extra or missing items score 0, mean over the
  longer list); a ``Year`` flag of YES means exact case-insensitive match; otherwise numbers within
  5 % relative error (0 only by 0), and text by ANLS with threshold 0.5 (``anls`` package: 1 - the
  normalised edit distance, 0 below 0.5). The script computes an exact-match switch for Fact
  Checking / Multi Choice but does not pass it on; glmv follows the script.
- DynaMath (``score_dynamath``): ``answer_type`` float: the first token as a number ("π" multiplies)
  within 0.001 of the gold; multiple choice: a one-letter answer, or the only one of A-E it
  contains; free form: the answer is a substring of the gold (both lower case).
- ChartMuseum (``score_chartmuseum``, rule-based default; the official protocol asks an LLM judge):
  numbers equal within 0.5 % relative (also as a percentage: 0.6 == 60 %), units and "$"/"%"
  ignored, years exact, text case-insensitive.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any, Sequence

from glmv_cli.evaluation.scoring import LETTERS, norm_text, pred_letter

# -------------------------------------------------------------------------------------- MMMU

_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCI = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_PLAIN = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def gold_list(gold: Any) -> list[str]:
    """MMMU golds: a list, the string form of a list, or one string."""
    if isinstance(gold, (list, tuple)):
        return [str(g) for g in gold]
    s = str(gold).strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            v = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            return [s]
        if isinstance(v, (list, tuple)):
            return [str(g) for g in v]
    return [s]


def _mmmu_norm(s: str) -> list[Any]:
    s = s.strip()
    try:
        return [round(float(s.replace(",", "")), 2)]
    except ValueError:
        low = s.lower()
        return [" " + low, low + " "] if len(low) == 1 else [low]


def score_mmmu_open(pred: str | None, gold: Any) -> float:
    if pred is None:
        return 0.0
    golds = [g for gold_i in gold_list(gold) for g in _mmmu_norm(gold_i)]
    text = pred.strip().strip(".").lower()
    items = [text] + _NUM_COMMAS.findall(text) + _NUM_SCI.findall(text) + _NUM_PLAIN.findall(text)
    preds = [p for it in items for p in _mmmu_norm(it)]
    for p in preds:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in golds):
                return 1.0
        elif p in golds:
            return 1.0
    return 0.0


# --------------------------------------------------------------------------------- MathVista

_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\"?(.*?)\"?\s*\.?\s*$", re.I | re.S)
_FIRST_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


def _edit_distance(a: str, b: str) -> int:
    from anls.metrics.dist import levenshtein_distance

    return levenshtein_distance(a, b)


def mathvista_extract(pred: str, question_type: str, answer_type: str, choices: Sequence[str]) -> str:
    """The extraction step without an LLM (see the module docstring)."""
    p = pred.strip()
    if question_type == "multi_choice" and p in choices:
        return p
    for cast in ((int,) if answer_type == "integer" else (float,) if answer_type == "float" else ()):
        try:
            return str(cast(p))
        except ValueError:
            pass
    m = _ANSWER_IS.search(p)
    if m:
        p = m.group(1).strip()
    if question_type == "multi_choice":
        letter = pred_letter(p, choices)
        return letter if letter is not None else p
    if answer_type in ("integer", "float"):
        m = _FIRST_NUMBER.search(p)
        return m.group(0).replace(",", "") if m else p
    return p


def mathvista_normalize(extraction: str, choices: Sequence[str], question_type: str, answer_type: str,
                        precision: Any) -> str | None:
    if question_type == "multi_choice":
        x = extraction.strip()
        m = re.findall(r"\(([a-zA-Z])\)", x)
        if m:
            x = m[0].upper()
        letters = [LETTERS[i] for i in range(len(choices))]
        if x in letters:
            return str(choices[letters.index(x)])
        if not choices:
            return x
        dists = [_edit_distance(x, str(c)) for c in choices]
        return str(choices[dists.index(min(dists))])
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            digits = int(float(precision)) if precision not in (None, "") and not _isnan(precision) else 2
            return str(round(float(extraction), digits))
    except (ValueError, OverflowError):
        return None
    return str(extraction)


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def score_mathvista(pred: str | None, gold: Any, question_type: str, answer_type: str,
                    choices: Sequence[str] = (), precision: Any = None) -> float:
    if pred is None:
        return 0.0
    ext = mathvista_extract(pred, question_type, answer_type, choices)
    norm = mathvista_normalize(ext, choices, question_type, answer_type, precision)
    return float(norm is not None and norm.strip() == str(gold).strip())


# -------------------------------------------------------------------------------- ChartQAPro


def _as_list(text: str) -> list[str] | None:
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return [str(x).strip(" '") for x in v] if isinstance(v, list) else None


def _quote_items(text: str) -> str:
    """"[a, b]" -> "['a', 'b']" (golds written without quotes), else the text."""
    m = re.match(r"^\[(.*)\]$", text.strip())
    if not m:
        return text
    fixed = re.sub(r"(?<!['\w])(\w[^,]*?)(?!['\w])", r"'\1'", m.group(1))
    return f"[{fixed}]" if _as_list(f"[{fixed}]") is not None else text


def _float(s: str) -> float | None:
    try:
        return float(s.strip().strip("%"))
    except ValueError:
        return None


def _chartqapro_item(t: str, p: str, year: bool) -> float:
    if year:
        return float(t.strip().lower() == p.strip().lower())
    tt, pp = t.strip().strip("%").strip(), p.strip().strip("%").strip()
    tf, pf = _float(tt), _float(pp)
    if tf is not None and pf is not None:
        return float(pf == 0.0) if tf == 0.0 else float(abs(pf - tf) / abs(tf) <= 0.05)
    from anls import anls_score

    return float(anls_score(prediction=pp.lower(), gold_labels=[tt.lower()], threshold=0.5))


def score_chartqapro(pred: str | None, answers: Any, question_type: str, years: Any) -> float:
    if pred is None:
        return 0.0
    golds = answers if isinstance(answers, (list, tuple)) else gold_list(answers)
    gold = str(golds[-1]).strip(".").strip("\n")
    p = pred.strip(".").strip("\n")
    flags = [str(y) for y in (years if isinstance(years, (list, tuple)) else gold_list(years))] or ["NO"]
    if question_type == "Conversational":
        flags = flags[-1:]
    t_list = _as_list(_quote_items(gold)) or [gold]
    p_list = _as_list(p) or [p]
    if len(flags) < len(t_list):
        flags = flags * len(t_list)
    scores = []
    for i in range(max(len(t_list), len(p_list))):
        if i >= len(t_list) or i >= len(p_list):
            scores.append(0.0)
        else:
            scores.append(_chartqapro_item(t_list[i], p_list[i], flags[i].upper() == "YES"))
    return sum(scores) / len(scores) if scores else 0.0


# ---------------------------------------------------------------------------------- DynaMath


def _dynamath_float(s: str) -> float | None:
    tok = s.strip().split(" ")[0]
    try:
        if "π" in tok:
            head = tok.split("π")[0]
            return (float(head) if head else 1.0) * math.pi
        return float(tok)
    except ValueError:
        return None


def score_dynamath(pred: str | None, gold: Any, answer_type: str) -> float:
    if pred is None:
        return 0.0
    p, g = pred.strip(), str(gold).strip()
    if answer_type == "float":
        v, gv = _dynamath_float(p), _dynamath_float(g)
        return float(v is not None and gv is not None and abs(v - gv) <= 1e-3)
    if answer_type == "multiple choice":
        if len(p) == 1:
            return float(p.upper() == g.upper())
        hits = [c for c in "ABCDE" if c in p.upper()]
        return float(len(hits) == 1 and hits[0] == g.upper())
    return float(p.lower() in g.lower())


# ------------------------------------------------------------------------------- ChartMuseum

_UNIT = re.compile(r"^[\s$€£]*(-?[\d,]*\.?\d+)\s*(%|[a-zA-Z ]*)?\s*$")


def _museum_number(s: str) -> tuple[float, bool] | None:
    m = _UNIT.match(s.strip())
    if not m:
        return None
    try:
        return float(m.group(1).replace(",", "")), (m.group(2) or "").strip() == "%"
    except ValueError:
        return None


def score_chartmuseum(pred: str | None, gold: Any) -> float:
    if pred is None:
        return 0.0
    p, g = _museum_number(pred), _museum_number(str(gold))
    if p is not None and g is not None:
        pv, gv = p[0], g[0]
        if re.fullmatch(r"(1[5-9]|20)\d\d", str(gold).strip()):
            return float(pv == gv)
        cands = [pv, pv / 100, pv * 100] if p[1] != g[1] else [pv]
        return float(any((c == gv) if gv == 0 else abs(c - gv) <= 0.005 * abs(gv) for c in cands))
    return float(norm_text(pred) == norm_text(gold))
