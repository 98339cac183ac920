"""Exact values of the common symbolic answer forms, and intervals and inequalities as sets.

:func:`evaluate` reads pure arithmetic LaTeX (numbers, ``+ - * / ^``, ``\\frac``, ``\\sqrt``,
``\\pi``, parentheses and braces, implicit products such as ``2\\pi`` or ``3\\sqrt{2}``) by
recursive descent; nothing is executed. Each value carries

* ``approx``: its float value, always;
* ``terms``: when it is known exactly, its canonical form as a sum of ``q * sqrt(r) * pi^k`` with
  ``q`` rational, ``r`` a square-free integer and ``k`` an integer. Square roots of distinct
  square-free integers and powers of the transcendental pi are linearly independent over the
  rationals, so two values are equal exactly when their term maps are equal:
  ``\\frac{\\sqrt{2}}{2}`` and ``\\frac{1}{\\sqrt{2}}`` both become ``{(2, 0): 1/2}``. Division by a
  sum, roots of irrational numbers and non-integer powers leave ``terms`` None (the float stays).

The trade-off: the form is closed under + - * and division by one term, which covers answers like
``\\frac{3\\pi}{4}``, ``2\\sqrt{3}``, ``\\frac{1+\\sqrt5}{2}``; anything else falls through to
math-verify. Term maps are capped at 32 terms and radicands at 10^8 so nothing grows unbounded.

:func:`parse_set` reads a simple interval ``(a, b]`` (finite or infinite ends) or an inequality in
one variable (``x \\leq 5``, ``5 \\geq x``, ``1 < x \\leq 3``) as the same :class:`SetForm`: the
variable (None for an interval), its bounds and whether each is included.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from glmv_cli.rewards.policy import canonical_relations

BIG = 1e12
MAX_TERMS = 32
MAX_RADICAND = 10 ** 8
Terms = dict[tuple[int, int], Fraction]
_TOK = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|\S")


class _Unsupported(Exception):
    pass


@dataclass(frozen=True)
class Value:
    approx: float
    terms: tuple[tuple[tuple[int, int], Fraction], ...] | None  # sorted items of a term map
    decimal: bool = False  # a decimal literal was read (0.75\pi)

    @property
    def exact(self) -> bool:
        return self.terms is not None


def _value(approx: float, terms: Terms | None, decimal: bool) -> Value:
    if not math.isfinite(approx) or abs(approx) >= BIG:
        raise _Unsupported("too large")
    if terms is not None:
        terms = {k: v for k, v in terms.items() if v != 0}
        if len(terms) > MAX_TERMS:
            terms = None
    return Value(approx, None if terms is None else tuple(sorted(terms.items())), decimal)


def _squarefree(n: int) -> tuple[int, int] | None:
    """n = s^2 * f with f square-free: (s, f); None when n is too large to factor cheaply."""
    if n > MAX_RADICAND:
        return None
    s, f, p = 1, 1, 2
    while p * p <= n:
        while n % (p * p) == 0:
            n //= p * p
            s *= p
        if n % p == 0:
            n //= p
            f *= p
        p += 1
    return s, f * n


def _mul_terms(a: Terms, b: Terms) -> Terms | None:
    out: Terms = {}
    for (r1, k1), c1 in a.items():
        for (r2, k2), c2 in b.items():
            sf = _squarefree(r1 * r2)
            if sf is None:
                return None
            s, f = sf
            key = (f, k1 + k2)
            out[key] = out.get(key, Fraction(0)) + c1 * c2 * s
    return out


class _Reader:
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

    def run(self) -> Value:
        v = self.expr()
        if self.peek() is not None:
            raise _Unsupported(self.peek())
        return v

    def expr(self) -> Value:
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            w = self.term()
            v = _add(v, w, -1 if op == "-" else 1)
        return v

    def term(self) -> Value:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                v = _mul(v, self.unary())
            elif tok in ("/", "\\div"):
                self.take()
                v = _div(v, self.unary())
            elif tok in ("\\pi", "\\sqrt", "("):  # implicit product: 2\pi, 3\sqrt{2} (2\frac{1}{2} is a mixed number)
                v = _mul(v, self.power())
            else:
                return v

    def unary(self) -> Value:
        if self.peek() in ("+", "-"):
            neg = self.take() == "-"
            v = self.unary()
            return _value(-v.approx, None if v.terms is None else {k: -c for k, c in v.terms}, v.decimal) if neg else v
        return self.power()

    def power(self) -> Value:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        if self.peek() == "{":
            e = self.group()
        else:
            tok = self.take()
            if not tok.isdigit() or len(tok) != 1:
                raise _Unsupported(tok)
            e = _number(tok)
        if self.peek() == "^":
            raise _Unsupported("power tower")
        return _pow(base, e)

    def group(self) -> Value:
        self.take("{")
        v = self.expr()
        self.take("}")
        return v

    def digit_or_group(self) -> Value:
        if self.peek() == "{":
            return self.group()
        tok = self.take()
        if not tok.isdigit():
            raise _Unsupported(tok)
        if len(tok) > 1:  # \frac12 reads as \frac{1}{2}: split the digits
            self.t[self.i - 1: self.i] = [tok[0], tok[1:]]
            tok = tok[0]
        return _number(tok)

    def atom(self) -> Value:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("end")
        if tok[0].isdigit() or tok[0] == ".":
            return _number(self.take())
        if tok == "\\pi":
            self.take()
            return _value(math.pi, {(1, 1): Fraction(1)}, False)
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
            return _div(num, self.digit_or_group())
        if tok == "\\sqrt":
            self.take()
            if self.peek() == "[":
                raise _Unsupported("root index")
            return _sqrt(self.digit_or_group())
        raise _Unsupported(tok)


def _number(tok: str) -> Value:
    q = Fraction(tok)
    return _value(float(q), {(1, 0): q}, "." in tok)


def _add(a: Value, b: Value, sign: int) -> Value:
    terms = None
    if a.terms is not None and b.terms is not None:
        terms = dict(a.terms)
        for k, c in b.terms:
            terms[k] = terms.get(k, Fraction(0)) + sign * c
    return _value(a.approx + sign * b.approx, terms, a.decimal or b.decimal)


def _mul(a: Value, b: Value) -> Value:
    terms = None
    if a.terms is not None and b.terms is not None:
        terms = _mul_terms(dict(a.terms), dict(b.terms))
    return _value(a.approx * b.approx, terms, a.decimal or b.decimal)


def _inverse(v: Value) -> Value:
    if v.approx == 0 or (v.terms is not None and not v.terms):
        raise _Unsupported("division by zero")
    terms = None
    if v.terms is not None and len(v.terms) == 1:
        (r, k), c = v.terms[0]
        terms = {(r, -k): 1 / (c * r)}  # 1 / (c sqrt(r) pi^k) = sqrt(r) pi^-k / (c r)
    return _value(1 / v.approx, terms, v.decimal)


def _div(a: Value, b: Value) -> Value:
    return _mul(a, _inverse(b))


def _pow(base: Value, e: Value) -> Value:
    n = None
    if e.terms is not None and len(e.terms) == 1 and e.terms[0][0] == (1, 0) and e.terms[0][1].denominator == 1:
        n = int(e.terms[0][1])
    elif e.terms is not None and not e.terms:
        n = 0
    if n is None:
        if e.terms is not None and len(e.terms) == 1 and e.terms[0] == ((1, 0), Fraction(1, 2)):
            return _sqrt(base)
        if base.approx <= 0 or abs(e.approx) > 64:
            raise _Unsupported("power")
        return _value(base.approx ** e.approx, None, base.decimal or e.decimal)
    if abs(n) > 64 or abs(base.approx) > 1e6 or (n <= 0 and base.approx == 0):
        raise _Unsupported("power")
    if n < 0:
        base, n = _inverse(base), -n
    out = _value(1.0, {(1, 0): Fraction(1)}, base.decimal or e.decimal)
    for _ in range(n):
        out = _mul(out, base)
    return out


def _sqrt(v: Value) -> Value:
    if v.approx < 0:
        raise _Unsupported("sqrt of a negative number")
    terms = None
    if v.terms is not None and not v.terms:
        terms = {}
    elif v.terms is not None and len(v.terms) == 1:
        (r, k), c = v.terms[0]
        if r == 1 and k % 2 == 0 and c > 0:
            sf = _squarefree(c.numerator * c.denominator)  # sqrt(a/b) = sqrt(a b) / b
            if sf is not None:
                s, f = sf
                terms = {(f, k // 2): Fraction(s, c.denominator)}
    return _value(math.sqrt(v.approx), terms, v.decimal)


def evaluate(s: str) -> Value | None:
    """The value of a pure arithmetic LaTeX expression (normalised spelling), or None."""
    if len(s) > 200 or not s:
        return None
    try:
        return _Reader(s).run()
    except (_Unsupported, OverflowError, ZeroDivisionError, ValueError, IndexError):
        return None


def values_equal(a: Value, b: Value, rel: float = 1e-6) -> bool | None:
    """True when both are exact and equal, False when their floats differ by more than ``rel``
    relative, else None (too close to call without sympy)."""
    if a.terms is not None and b.terms is not None and a.terms == b.terms:
        return True
    if abs(a.approx - b.approx) > rel * max(1.0, abs(a.approx), abs(b.approx)):
        return False
    return None


# --- intervals and one-variable inequalities ---------------------------------------------------
_INF = {"\\infty", "+\\infty", "∞", "+∞"}
_NEG_INF = {"-\\infty", "-∞"}


@dataclass(frozen=True)
class SetForm:
    """``{var : lo <(=) var <(=) hi}``; ``lo``/``hi`` None for -inf/+inf; ``var`` None for an
    interval written with brackets."""

    var: str | None
    lo: Value | None
    lo_closed: bool
    hi: Value | None
    hi_closed: bool


def _bound(s: str) -> Value | None | str:
    if s in _INF:
        return "+inf"
    if s in _NEG_INF:
        return "-inf"
    v = evaluate(s)
    return v if v is not None else "bad"


def _top_level_commas(s: str) -> list[int]:
    depth, out = 0, []
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(i)
    return out


def parse_interval(s: str) -> SetForm | None:
    """``(a,b]``-style intervals with a < b (a closed bracket at an infinite end is refused:
    sympy opens it silently, so the reading would depend on the parser)."""
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]":
        return None
    inner = s[1:-1]
    commas = _top_level_commas(inner)
    if len(commas) != 1:
        return None
    lo, hi = _bound(inner[:commas[0]]), _bound(inner[commas[0] + 1:])
    if lo in ("bad", "+inf") or hi in ("bad", "-inf"):
        return None
    lo_closed, hi_closed = s[0] == "[", s[-1] == "]"
    if (lo == "-inf" and lo_closed) or (hi == "+inf" and hi_closed):
        return None
    lo_v = None if lo == "-inf" else lo
    hi_v = None if hi == "+inf" else hi
    if lo_v is not None and hi_v is not None and not lo_v.approx < hi_v.approx:  # (2,1) is a pair
        return None
    return SetForm(None, lo_v, lo_closed, hi_v, hi_closed)  # type: ignore[arg-type]


_REL_SPLIT = re.compile(r"(<=|>=|<|>)")
_VAR = re.compile(r"^[A-Za-z]$")


def parse_relation(s: str) -> SetForm | None:
    """``x<=5``, ``5>=x``, ``1<x<=3``, ``3>=x>1`` (normalised spelling) as a SetForm."""
    parts = _REL_SPLIT.split(canonical_relations(s))
    if len(parts) not in (3, 5):
        return None
    sides, ops = parts[0::2], parts[1::2]
    if any(not x for x in sides):
        return None
    if len(ops) == 2 and (ops[0][0] != ops[1][0]):  # 1 < x > 3 says nothing one can compare
        return None
    if ops[0][0] == ">":  # read from the other side: 5 >= x is x <= 5
        sides, ops = sides[::-1], [o.replace(">", "<") for o in ops[::-1]]
    closed = [o == "<=" for o in ops]
    if len(sides) == 2:
        if _VAR.match(sides[0]) and not _VAR.match(sides[1]):
            hi = _bound(sides[1])
            return None if not isinstance(hi, Value) else SetForm(sides[0], None, False, hi, closed[0])
        if _VAR.match(sides[1]) and not _VAR.match(sides[0]):
            lo = _bound(sides[0])
            return None if not isinstance(lo, Value) else SetForm(sides[1], lo, closed[0], None, False)
        return None
    if not _VAR.match(sides[1]):
        return None
    lo, hi = _bound(sides[0]), _bound(sides[2])
    if not isinstance(lo, Value) or not isinstance(hi, Value) or not lo.approx < hi.approx:
        return None
    return SetForm(sides[1], lo, closed[0], hi, closed[1])


def parse_set(s: str) -> SetForm | None:
    """An interval or a one-variable inequality, or None."""
    return parse_interval(s) or parse_relation(s)


def _ends_equal(a: Value | None, b: Value | None) -> bool | None:
    if a is None or b is None:
        return a is None and b is None
    return values_equal(a, b)


def sets_equal(a: SetForm, b: SetForm) -> bool | None:
    """Same set (and the same variable when both name one)? None when an end is too close to
    call. An interval equals the inequality that describes it: (-inf, 3) is x < 3."""
    if a.var is not None and b.var is not None and a.var != b.var:
        return False
    verdicts = [_ends_equal(a.lo, b.lo), _ends_equal(a.hi, b.hi)]
    if a.lo is not None and b.lo is not None and a.lo_closed != b.lo_closed:
        verdicts.append(False)
    if a.hi is not None and b.hi is not None and a.hi_closed != b.hi_closed:
        verdicts.append(False)
    if False in verdicts:
        return False
    return None if None in verdicts else True
