"""Math/STEM answer equivalence: a fast path in front of math-verify, with a hard timeout.

math-verify (LaTeX -> sympy, then string / numeric / symbolic comparison) parses and verifies
~300 mixed symbolic pairs/s and ~2,700 integer pairs/s on one core. Most RL answers are plain
numbers or short closed forms, so :func:`fast_equal` decides what it can *with math-verify's own
verdict* and returns ``None`` for the rest:

* exact numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, ``1,234`` thousands, ``x%``) are
  exact ``Fraction`` s. Equal -> True. Apart by more than 1e-5 (math-verify rounds floats to 6
  decimals, so nothing farther apart can match) under every reading of a percentage -> False.
  Percentages follow math-verify: ``50%`` equals ``0.5`` and ``50``; ``0.5%`` does not equal ``0.5``.
* identical strings after whitespace/``\\dfrac``/``\\left`` normalisation -> True.
* closed forms in ``\\frac``, ``\\sqrt``, ``\\pi`` and powers (:mod:`glmv_cli.rewards.exact`): both
  exact and equal (``\\frac{\\sqrt{2}}{2}`` vs ``\\frac{1}{\\sqrt{2}}``, ``\\frac{3\\pi}{4}`` vs
  ``0.75\\pi``) -> True; floats apart by > 1e-6 relative -> False; closer but not exactly equal
  (``\\pi`` vs ``3.14159``: math-verify's rounding decides) -> None.
* two simple intervals (``(0,1]``, ``[-1,\\infty)``): same brackets and ends -> True, else False.
* anything else (symbols, unions, units, > 1e12) -> ``None``.

Tests check every fast verdict against math-verify on hand-written and random pairs; the
benchmarks (benchmarks/reward_bench.py, benchmarks/reward_agreement.py) count agreement on mixes.
Values at or above 1e12 always fall through: sympy's 15-digit numeric precision makes its verdict
there depend on representation.

A reference is read once into a :class:`MathRef` (normalised text, number, exact value, set form,
hedge markers, and math-verify's parse after the first symbolic comparison); the reward registry
keeps one per (domain, reference), so the rollouts of a GRPO group share it.

The symbolic path runs math-verify with its signal timeouts off (``signal.alarm`` only works in the
main thread) inside a worker thread; on timeout the caller returns at once with
:class:`VerifierTimeout` and an exception is injected into the worker (``PyThreadState_SetAsyncExc``)
so pure-Python sympy work stops at its next bytecode. This works from any thread. It cannot stop C
code (a big-integer power holds the GIL), so :func:`too_expensive` refuses numeric power towers,
6-digit exponents and big factorials before sympy sees them, and inputs longer than ``max_chars``
(default 512) are not parsed at all. Both count as verifier errors (reward 0).
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from fractions import Fraction
from typing import Any, Callable

from glmv_cli.rewards.exact import SetForm, Value, evaluate, parse_interval, parse_set, sets_equal, values_equal
from glmv_cli.rewards.policy import canonical_relations, hedges

_MINUS = str.maketrans({"\u2212": "-", "\uff0d": "-", "\ufe63": "-", "\u2013": "-"})
_SPACES = re.compile(r"\\[,!;: ]|\\quad|\\qquad|\s+")
_NUM = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(%?)$")
_THOUSANDS = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?)$")
_FRAC = re.compile(r"^([+-]?)(\d+)/(\d+)$")
_LFRAC = re.compile(r"^([+-]?)\\frac(?:\{([+-]?\d+)\}\{(\d+)\}|(\d)(\d))$")
_PLAIN = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
BIG = 1e12
GAP = 1e-5


class VerifierTimeout(TimeoutError):
    """A verification that exceeded its time budget (the reward is 0 and it is counted)."""


class _Abort(BaseException):
    """Injected into a runaway worker; BaseException so sympy's `except Exception` lets it pass."""


class _QuietTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_QuietTimeoutWarning())


def normalize(s: str) -> str:
    """Canonical spelling for comparisons: unicode minus, no spaces, one \\frac spelling, ``<=``/``>=``
    for every spelling of ≤/≥, no ``\\left``/``\\right``, ``\\pi`` for π."""
    s = s.translate(_MINUS).strip().strip("$").strip()
    if not _PLAIN.match(s):  # the common plain number needs none of this
        s = _SPACES.sub("", canonical_relations(s))  # relations first: "\\geq x" must not become "\\geqx"
        s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\%", "%")
        s = _LEFT_RIGHT.sub("", s).replace("π", "\\pi")
    return s.rstrip(".") if re.fullmatch(r"[+-]?\d+\.", s) else s


def parse_number(s: str) -> tuple[Fraction, bool, bool] | None:
    """``(value, is_percent, is_integer_literal)`` for a plain number, else None.

    ``value`` is the number as written (a percentage's ``50`` for ``50%``)."""
    m = _NUM.match(s)
    if m:
        sign, digits, pct = m.groups()
        v = Fraction(digits)
        return (-v if sign == "-" else v), bool(pct), "." not in digits
    m = _THOUSANDS.match(s)
    if m:
        sign, digits = m.groups()
        v = Fraction(digits.replace(",", ""))
        return (-v if sign == "-" else v), False, "." not in digits
    m = _FRAC.match(s)
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return (-v if m.group(1) == "-" else v), False, False
    m = _LFRAC.match(s)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        if int(den) != 0:
            v = Fraction(int(num), int(den))
            return (-v if m.group(1) == "-" else v), False, False
    return None


def _readings(n: tuple[Fraction, bool, bool]) -> list[Fraction]:
    v, pct, _ = n
    return [v / 100, v] if pct else [v]


def _numbers_equal(g: tuple[Fraction, bool, bool], p: tuple[Fraction, bool, bool]) -> bool | None:
    if max(abs(x) for x in (g[0], p[0])) >= BIG:
        return None
    gv = g[0] / 100 if g[1] else g[0]
    pv = p[0] / 100 if p[1] else p[0]
    if gv == pv:
        return True
    if (g[1] or p[1]) and g[2] and p[2] and g[0] == p[0]:
        return True  # math-verify compares integer percentages by their digits: 50% == 50
    if all(abs(a - b) > GAP for a in _readings(g) for b in _readings(p)):
        return False
    return None


def eval_latex(s: str) -> float | None:
    """Float value of a pure arithmetic LaTeX expression, or None (see :mod:`glmv_cli.rewards.exact`)."""
    v = evaluate(s)
    return None if v is None else v.approx


def _number_value(n: tuple[Fraction, bool, bool], text: str) -> Value | None:
    if n[1] or abs(n[0]) >= BIG:
        return None
    return Value(float(n[0]), (((1, 0), n[0]),) if n[0] != 0 else (), "." in text)


@dataclass
class MathRef:
    """A reference answer read once: what the fast path, the relation layer and math-verify need.
    ``parsed`` is math-verify's parse, filled by the first symbolic comparison (under its timeout);
    the set form and hedge markers are read on first use (a plain number never needs them)."""

    text: str
    norm: str
    number: tuple[Fraction, bool, bool] | None
    value: Value | None
    refused: str | None = None
    parsed: list | None = field(default=None, repr=False)

    @cached_property
    def setform(self) -> SetForm | None:
        return None if self.number is not None else parse_set(self.norm)

    @cached_property
    def hedges(self) -> frozenset[str]:
        return frozenset(hedges(self.text))

    @classmethod
    def of(cls, gold: str, max_chars: int = 512) -> "MathRef":
        text = gold.strip()
        norm = normalize(text)
        number = parse_number(norm)
        value = _number_value(number, norm) if number is not None else evaluate(norm)
        refused = None
        if len(text) > max_chars:
            refused = f"answer longer than {max_chars} characters: not parsed"
        elif number is None and too_expensive(text) is not None:
            refused = f"refused to evaluate ({too_expensive(text)})"
        return cls(text, norm, number, value, refused)


def _fast(ref: MathRef, p: str) -> bool | None:
    g = ref.norm
    if not g or not p:
        return None
    pn = parse_number(p)
    if ref.number is not None and pn is not None:
        return _numbers_equal(ref.number, pn)
    if g == p:
        return True
    if "%" in g or "%" in p:
        return None
    if ref.setform is not None and ref.setform.var is None:
        ps = parse_interval(p)
        if ps is not None:
            return sets_equal(ref.setform, ps)
    pv = _number_value(pn, p) if pn is not None else evaluate(p)
    if ref.value is not None and pv is not None:
        return values_equal(ref.value, pv)
    return None


def fast_equal(gold: str | MathRef, pred: str) -> bool | None:
    """math-verify's verdict when it can be had without sympy, else None (see the docstring)."""
    ref = gold if isinstance(gold, MathRef) else MathRef.of(gold)
    return _fast(ref, normalize(pred))


# --- the symbolic path ------------------------------------------------------------------------
def call_with_timeout(fn: Callable[..., Any], timeout_s: float, *args: Any) -> Any:
    """Runs ``fn(*args)`` in a worker thread; raises VerifierTimeout after ``timeout_s``."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except _Abort:
            pass
        except BaseException as e:  # handed to the caller
            box["error"] = e
        finally:
            done.set()

    t = threading.Thread(target=run, name="glmv-verify", daemon=True)
    t.start()
    if not done.wait(timeout_s) and not done.is_set():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(_Abort))
        raise VerifierTimeout(f"verification exceeded {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _exponents(s: str) -> list[str]:
    out = []
    for m in re.finditer(r"\^", s):
        i = m.end()
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] == "{":
            depth, j = 0, i
            while j < len(s):
                depth += {"{": 1, "}": -1}.get(s[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(s[i + 1: j])
        else:
            t = re.match(r"\d+|\\[A-Za-z]+|.", s[i:])
            out.append(t.group(0) if t else "")
    return out


def too_expensive(s: str) -> str | None:
    """Why sympy could spend unbounded time *in C* (where no timeout can interrupt it and the GIL
    stays held) on ``s``: numeric power towers, exponents >= 10^5, factorials of big or computed
    numbers. None when it is safe to hand to math-verify."""
    for e in _exponents(s):
        if re.search(r"\d{6,}", e):
            return "exponent of 6+ digits"
        if ("^" in e or "!" in e) and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", e)):
            return "numeric power tower"
    for m in re.finditer(r"(\d+)\s*!", s):
        if len(m.group(1)) > 4:
            return "factorial of a 5+ digit number"
    if re.search(r"[)\]}]\s*!", s) and ("^" in s or re.search(r"\d{5,}", s)):
        return "factorial of a computed number"
    if "\\binom" in s and re.search(r"\d{5,}", s):
        return "binomial of big numbers"
    return None


def _mv_verify(ref: MathRef, pred: str) -> bool:
    from math_verify import parse, verify

    g = ref.parsed
    if g is None:
        g = parse("$" + ref.text + "$", parsing_timeout=None)
        ref.parsed = g  # kept when the MathRef is (the per-group reference cache)
    p = parse("$" + pred + "$", parsing_timeout=None)
    return bool(verify(g, p, timeout_seconds=None))


def symbolic_equal(gold: str | MathRef, pred: str, timeout_s: float = 1.0, max_chars: int = 512) -> bool:
    """math-verify's verdict on ``$gold$`` vs ``$pred$`` (gold first: verify is asymmetric).

    Raises ValueError for inputs :func:`too_expensive` refuses, VerifierTimeout after ``timeout_s``."""
    ref = gold if isinstance(gold, MathRef) else MathRef.of(gold, max_chars)
    if len(ref.text) > max_chars or len(pred) > max_chars:
        raise ValueError(f"answer longer than {max_chars} characters: not parsed")
    for why in (ref.refused, too_expensive(pred)):
        if why is not None:
            raise ValueError(why if why.startswith(("refused", "answer")) else f"refused to evaluate ({why})")
    return call_with_timeout(_mv_verify, timeout_s, ref, pred.strip())


class LRU:
    """A bounded, thread-safe memo (least recently used entries go first) with hit counts."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
            self.misses += 1
            return default

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)


_VERDICTS = LRU(65536)
_MISS = object()


def compare_math(ref: MathRef, pred: str, timeout_s: float = 1.0, max_chars: int = 512,
                 fast: bool = True, cache: bool = True, norm_pred: str | None = None) -> tuple[bool, bool]:
    """``(equal, decided_by_fast_path)`` of a prepared reference and a prediction. May raise
    VerifierTimeout or ValueError (refused). With ``cache`` verdicts are memoised per (reference,
    prediction): the rollouts of one GRPO group often repeat an answer. Timeouts and refusals are
    exceptions and never cached. ``norm_pred`` is ``normalize(pred)`` when the caller has it."""
    key = (ref.text, pred, timeout_s, max_chars, fast)
    if cache:
        hit = _VERDICTS.get(key, _MISS)
        if hit is not _MISS:
            return hit
    out = None
    if fast:
        v = _fast(ref, normalize(pred) if norm_pred is None else norm_pred)
        if v is not None:
            out = (v, True)
    if out is None:
        out = (symbolic_equal(ref, pred, timeout_s, max_chars), False)
    if cache:
        _VERDICTS.put(key, out)
    return out


def math_equal(gold: str, pred: str, timeout_s: float = 1.0, max_chars: int = 512,
               fast: bool = True, cache: bool = True) -> tuple[bool, bool]:
    """:func:`compare_math` for a reference given as text."""
    return compare_math(MathRef.of(gold, max_chars), pred, timeout_s, max_chars, fast, cache)


def clear_caches() -> None:
    """Forgets memoised verdicts (benchmarks call this between runs)."""
    _VERDICTS.clear()


def verdict_cache_info() -> dict[str, int]:
    return {"hits": _VERDICTS.hits, "misses": _VERDICTS.misses, "size": len(_VERDICTS)}
