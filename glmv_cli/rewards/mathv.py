"""Math/STEM answer equivalence: a fast path in front of math-verify, with a hard timeout.

math-verify (LaTeX -> sympy, then string / numeric / symbolic comparison) parses and verifies
~300 mixed symbolic pairs/s and ~2,700 integer pairs/s on one core. Most RL answers are plain
numbers, so :func:`fast_equal` decides what it can *with math-verify's own verdict* and returns
``None`` for the rest:

* exact numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, ``1,234`` thousands, ``x%``) are
  exact ``Fraction`` s. Equal -> True. Apart by more than 1e-5 (math-verify rounds floats to 6
  decimals, so nothing farther apart can match) under every reading of a percentage -> False.
  Percentages follow math-verify: ``50%`` equals ``0.5`` and ``50``; ``0.5%`` does not equal ``0.5``.
* identical strings after whitespace/``\\dfrac``/``\\left`` normalisation -> True.
* a small LaTeX arithmetic evaluator (numbers, ``+ - * / ^``, ``\\frac``, ``\\sqrt``, ``\\pi``,
  parentheses) that never executes anything: two values that differ by > 1e-6 relative -> False.
  Equal values are not decided here (sympy may still disagree on form), so they fall through.
* anything else (symbols, sets, intervals, units, close-but-unequal numbers, > 1e12) -> ``None``.

The benchmark (benchmarks/reward_bench.py) runs both paths on the same mix and counts verdict
agreement. Values at or above 1e12 always fall through: sympy's 15-digit numeric precision makes
its verdict there depend on representation.

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
import math
import re
import threading
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable

_MINUS = str.maketrans({"\u2212": "-", "\uff0d": "-", "\ufe63": "-", "\u2013": "-"})
_SPACES = re.compile(r"\\[,!;: ]|\\quad|\\qquad|\s+")
_NUM = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(%?)$")
_THOUSANDS = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?)$")
_FRAC = re.compile(r"^([+-]?)(\d+)/(\d+)$")
_LFRAC = re.compile(r"^([+-]?)\\frac(?:\{([+-]?\d+)\}\{(\d+)\}|(\d)(\d))$")
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
    """Canonical spelling for comparisons: unicode minus, no spaces, one \\frac spelling."""
    s = s.translate(_MINUS).strip().strip("$").strip()
    s = _SPACES.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\%", "%")
    s = s.replace("\\left", "").replace("\\right", "")
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


# --- a tiny LaTeX arithmetic evaluator (recursive descent, floats, no eval) -----------------
_TOK = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|\S")


class _Unsupported(Exception):
    pass


class _Eval:
    def __init__(self, s: str):
        self.t = _TOK.findall(s)
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise _Unsupported(tok)
        self.i += 1
        return tok

    def run(self) -> float:
        v = self.expr()
        if self.peek() is not None:
            raise _Unsupported(self.peek())
        return v

    def expr(self) -> float:
        v = self.term()
        while self.peek() in ("+", "-"):
            v = v + self.term() if self.take() == "+" else v - self.term()
        return v

    def term(self) -> float:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                v *= self.unary()
            elif tok in ("/", "\\div"):
                self.take()
                d = self.unary()
                if d == 0:
                    raise _Unsupported("division by zero")
                v /= d
            elif tok in ("\\pi", "\\sqrt", "("):  # implicit product: 2\pi, 3\sqrt{2} (not 2\frac: a mixed number)
                v *= self.power()
            else:
                return v

    def unary(self) -> float:
        if self.peek() in ("+", "-"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            if self.peek() == "{":
                e = self.group()
            else:
                tok = self.take()
                if not tok.isdigit() or len(tok) != 1:
                    raise _Unsupported(tok)
                e = float(tok)
            if self.peek() == "^" or abs(e) > 64 or abs(base) > 1e6 or (base < 0 and e != int(e)):
                raise _Unsupported("power")
            if base == 0 and e < 0:
                raise _Unsupported("division by zero")
            base = base ** e
        return base

    def group(self) -> float:
        self.take("{")
        v = self.expr()
        self.take("}")
        return v

    def digit_or_group(self) -> float:
        if self.peek() == "{":
            return self.group()
        tok = self.take()
        if not tok.isdigit():
            raise _Unsupported(tok)
        if len(tok) > 1:  # \frac12 reads as \frac{1}{2}: split the digits
            self.t[self.i - 1: self.i] = [tok[0], tok[1:]]
            return float(tok[0])
        return float(tok)

    def atom(self) -> float:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("end")
        if tok[0].isdigit() or tok[0] == ".":
            return float(self.take())
        if tok == "\\pi":
            self.take()
            return math.pi
        if tok == "(":
            self.take()
            v = self.expr()
            self.take(")")
            return v
        if tok == "{":
            return self.group()
        if tok == "\\frac":
            self.take()
            num = self.digit_or_group()
            den = self.digit_or_group()
            if den == 0:
                raise _Unsupported("division by zero")
            return num / den
        if tok == "\\sqrt":
            self.take()
            if self.peek() == "[":
                raise _Unsupported("root index")
            v = self.digit_or_group()
            if v < 0:
                raise _Unsupported("sqrt of negative")
            return math.sqrt(v)
        raise _Unsupported(tok)


def eval_latex(s: str) -> float | None:
    """Value of a pure arithmetic LaTeX expression, or None when it is anything more."""
    if len(s) > 200:
        return None
    try:
        v = _Eval(s).run()
    except (_Unsupported, OverflowError, ZeroDivisionError, ValueError, IndexError):
        return None
    if not math.isfinite(v) or abs(v) >= BIG:
        return None
    return v


def fast_equal(gold: str, pred: str) -> bool | None:
    """math-verify's verdict when it can be had without sympy, else None (see the docstring)."""
    g, p = normalize(gold), normalize(pred)
    if not g or not p:
        return None
    gn, pn = parse_number(g), parse_number(p)
    if gn is not None and pn is not None:
        return _numbers_equal(gn, pn)
    if g == p:
        return True
    if "%" in g or "%" in p:
        return None
    gv = float(gn[0]) if gn is not None else eval_latex(g)
    pv = float(pn[0]) if pn is not None else eval_latex(p)
    if gv is not None and pv is not None and abs(gv - pv) > 1e-6 * max(1.0, abs(gv), abs(pv)):
        return False
    return None


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


@lru_cache(maxsize=8192)
def _mv_parse_cached(s: str) -> tuple:
    from math_verify import parse

    return tuple(parse("$" + s + "$", parsing_timeout=None))


def _mv_parse(s: str, cache: bool) -> list:
    from math_verify import parse

    return list(_mv_parse_cached(s)) if cache else parse("$" + s + "$", parsing_timeout=None)


def _mv_verify(gold: str, pred: str, cache_gold: bool) -> bool:
    from math_verify import verify

    g = _mv_parse(gold, cache_gold)
    p = _mv_parse(pred, False)
    return bool(verify(g, p, timeout_seconds=None))


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


def symbolic_equal(gold: str, pred: str, timeout_s: float = 1.0, max_chars: int = 512,
                   cache_gold: bool = True) -> bool:
    """math-verify's verdict on ``$gold$`` vs ``$pred$`` (gold first: verify is asymmetric).

    Raises ValueError for inputs :func:`too_expensive` refuses, VerifierTimeout after ``timeout_s``."""
    if len(gold) > max_chars or len(pred) > max_chars:
        raise ValueError(f"answer longer than {max_chars} characters: not parsed")
    for x in (gold, pred):
        why = too_expensive(x)
        if why is not None:
            raise ValueError(f"refused to evaluate ({why})")
    return call_with_timeout(_mv_verify, timeout_s, gold.strip(), pred.strip(), cache_gold)


def math_equal(gold: str, pred: str, timeout_s: float = 1.0, max_chars: int = 512,
               fast: bool = True, cache: bool = True) -> tuple[bool, bool]:
    """``(equal, decided_by_fast_path)``. May raise VerifierTimeout or ValueError (refused).

    With ``cache`` verdicts are memoised per (gold, pred): the rollouts of one GRPO group share the
    reference and often repeat an answer. Timeouts and refusals are exceptions and never cached."""
    if cache:
        return _math_equal_cached(gold, pred, timeout_s, max_chars, fast)
    return _math_equal(gold, pred, timeout_s, max_chars, fast)


def _math_equal(gold: str, pred: str, timeout_s: float, max_chars: int, fast: bool) -> tuple[bool, bool]:
    if fast:
        v = fast_equal(gold, pred)
        if v is not None:
            return v, True
    return symbolic_equal(gold, pred, timeout_s, max_chars), False


_math_equal_cached = lru_cache(maxsize=65536)(_math_equal)


def clear_caches() -> None:
    """Forgets memoised verdicts and parsed references (benchmarks call this between runs)."""
    _math_equal_cached.cache_clear()
    _mv_parse_cached.cache_clear()


_HEDGE_WORDS = re.compile(
    r"\b(between|or|and|to|about|approx(?:imately)?|around|roughly|nearly|almost|maybe|perhaps|"
    r"either|least|most|range|from|probably|possibly|likely|unknown|cannot)\b|"
    r"(≈|~|±|∓|≤|≥|<|>|\\pm|\\mp|\\approx|\\sim|\\leq?|\\geq?|\\lt|\\gt|\\neq|\\ldots|\\cdots|\.\.\.|…)",
    re.IGNORECASE,
)


def hedges(text: str) -> set[str]:
    """The hedging markers in ``text`` ("between", "or", "\\approx", "<", …), lower-cased."""
    return {m.group(0).lower() for m in _HEDGE_WORDS.finditer(text)}


def is_hedged(pred: str, gold: str) -> bool:
    """A prediction hedges when it uses a range/alternative/approximation marker the reference
    does not ("between 0 and 10", "3 or 4", "≈ 5"): such answers earn nothing."""
    extra = hedges(pred) - hedges(gold)
    return bool(extra)
