"""Chemical formulas and equations compared as species with coefficients.

math-verify reads ``N2 + 3H2 ⇌ 2NH3`` as the number 2 (it keeps the last number it can parse),
so a wrong equation would match any other ending in ``2``. This module never hands chemistry to a
math parser. An answer is read as

* an equation: sides split at one arrow (``->``, ``→``, ``⟶``, ``⇌``, ``<=>``, ``\\rightarrow``,
  ``\\rightleftharpoons``, ``\\xrightarrow{...}``, ``=``; the arrow kind is not compared), or a
  single side (a formula such as ``H2O`` or ``Fe^{3+}``);
* each side: terms separated by ``+`` (a ``+`` that starts the next species; ``Na+ + Cl-`` is two
  ions), each term an optional coefficient (``2``, ``1/2``, ``\\frac{1}{2}``, ``0.5``), a formula
  of real element symbols (with groups ``(SO4)3``, hydrates ``·5H2O``, the electron ``e``), an
  optional charge and an optional state ``(aq)``/``(s)``/``(l)``/``(g)``.

Notation is flattened before comparing: ``\\ce{}``, ``\\mathrm{}``, ``_{4}``, ``^{2+}``, unicode
sub/superscripts, so ``Fe_2(SO_4)_3`` is ``Fe2(SO4)3`` and ``Fe^{3+}`` is ``Fe3+``. Two answers
match when each side holds the same multiset of (species, coefficient); states are compared where
both give one. Species compare as written (flattened), not by element counts, so an isomer
(``CH3OCH3`` for ``C2H5OH``) is wrong. The trade-off: ``OH2`` for ``H2O`` is a false zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

ELEMENTS = frozenset("""H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn
Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd
Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf
Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og""".split())

_ARROW = re.compile(r"\\(?:xrightarrow|xrightleftharpoons|xleftrightarrow)(?:\[[^\]]*\])?\{[^{}]*\}|"
                    r"\\(?:longrightarrow|rightarrow|rightleftharpoons|leftrightharpoons|rightleftarrows|"
                    r"longleftrightarrow|leftrightarrow|Longrightarrow|Rightarrow|to)(?![A-Za-z])|"
                    r"<=>|<->|-->|->|=>|→|⟶|⇌|⇄|↔|⇋|⟷|⇒|=")
_WRAPPERS = re.compile(r"\\(?:ce|mathrm|text|rm|mathbf|textrm)\s*\{([^{}]*)\}")
_SCRIPT = re.compile(r"[_^]\{([^{}]*)\}|[_^]([0-9+\-−]+)")
_SUB = str.maketrans("₀₁₂₃₄₅₆₇₈₉⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻−", "01234567890123456789+--")
_FRAC = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}|\\[dt]?frac(\d)(\d)")
_SPACE = re.compile(r"\\[,;:! ]|~|\\quad")
_HYDRATE = re.compile(r"\s*(?:\\cdot|·|•|\*)\s*")
_STATE = re.compile(r"\((aq|s|l|g)\)$")
_COEF = re.compile(r"^(\d+/\d+|\d+(?:\.\d+)?|\.\d+)")
_FORMULA = re.compile(r"(?:[A-Z][a-z]?\d*|[(\[][A-Za-z0-9()\[\]]+[)\]]\d*)+")
_PART = re.compile(r"[A-Z][a-z]?|[()\[\]]|\d+")
_UPPER = re.compile(r"[A-Z]")
_SPECIES_START = re.compile(r"\s*(?:\d|\.\d|[A-Z(\[]|e(?![a-z]))")


@dataclass(frozen=True)
class Term:
    coef: Fraction
    species: str  # flattened formula with its charge, e.g. "Fe2(SO4)3", "Fe3+", "e-"
    state: str | None
    features: frozenset[str]  # digit, group, hydrate, charge, state, two_letter


@dataclass(frozen=True)
class Chem:
    sides: tuple[tuple[Term, ...], ...]  # one side (a formula) or two (an equation)

    @property
    def is_equation(self) -> bool:
        return len(self.sides) == 2


def flatten(s: str) -> str:
    """Chemistry notation in one plain spelling (see the module docstring)."""
    s = s.strip().strip("$").strip()
    for _ in range(3):  # nested \\ce{\\mathrm{...}}
        s = _WRAPPERS.sub(lambda m: m.group(1), s)
    s = _FRAC.sub(lambda m: f"{m.group(1) or m.group(3)}/{m.group(2) or m.group(4)}", s)
    s = _SPACE.sub(" ", s.translate(_SUB))
    s = _SCRIPT.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), s)
    return _HYDRATE.sub("·", s.replace("{", "").replace("}", ""))


def _split_terms(side: str) -> list[str] | None:
    """Splits at each ``+`` that starts the next species; other ``+`` are charges (``Na+ + Cl-``)."""
    terms, cur = [], ""
    for i, c in enumerate(side):
        if c == "+" and cur.strip() and _SPECIES_START.match(side[i + 1:]):
            terms.append(cur.strip())
            cur = ""
        else:
            cur += c
    terms.append(cur.strip())
    return terms if all(terms) else None


def _coefficient(t: str) -> tuple[Fraction, str] | None:
    m = _COEF.match(t)
    if not m or not t[m.end():].strip():
        return Fraction(1), t
    num, _, den = m.group(1).partition("/")
    if den and int(den) == 0:
        return None
    return (Fraction(int(num), int(den)) if den else Fraction(num)), t[m.end():].strip()


def _valid_formula(f: str) -> tuple[bool, set[str]]:
    feats: set[str] = set()
    depth = 0
    for part in _PART.findall(f):
        if part in "([":
            depth += 1
            feats.add("group")
        elif part in ")]":
            depth -= 1
            if depth < 0:
                return False, feats
        elif part.isdigit():
            feats.add("digit")
        elif part not in ELEMENTS:
            return False, feats
        elif len(part) == 2:
            feats.add("two_letter")
    return depth == 0 and "".join(_PART.findall(f)) == f, feats


def parse_term(t: str) -> Term | None:
    cf = _coefficient(t.strip())
    if cf is None or cf[0] <= 0:
        return None
    coef, rest = cf
    rest = rest.replace(" ", "")
    state = None
    m = _STATE.search(rest)
    if m:
        state, rest = m.group(1), rest[:m.start()]
    feats: set[str] = {"state"} if state else set()
    body, charge = re.match(r"^(.*?)(\d*[+\-]*)$", rest).groups()  # type: ignore[union-attr]
    if charge and not charge.strip("0123456789"):  # trailing digits with no sign are a subscript
        body, charge = rest, ""
    if charge:
        feats.add("charge")
    if body == "e":
        return Term(coef, "e" + charge, state, frozenset(feats)) if charge in ("-", "") else None
    pieces = body.split("·")
    for k, piece in enumerate(pieces):
        if k > 0:
            feats.add("hydrate")
            piece = re.sub(r"^\d+", "", piece)
        ok, f = _valid_formula(piece)
        if not piece or not _FORMULA.fullmatch(piece) or not ok:
            return None
        feats |= f
    return Term(coef, body + charge, state, frozenset(feats))


def parse_chem(text: str) -> Chem | None:
    """The answer as one formula/side or an equation, or None when it is not chemistry."""
    if not text or len(text) > 2000 or not _UPPER.search(text):  # every formula has an element symbol
        return None
    s = flatten(text)
    arrows = list(_ARROW.finditer(s))
    if len(arrows) > 1:
        return None
    parts = [s[:arrows[0].start()], s[arrows[0].end():]] if arrows else [s]
    sides = []
    for part in parts:
        raw = _split_terms(part.strip())
        if raw is None:
            return None
        terms = [parse_term(t) for t in raw]
        if any(t is None for t in terms):
            return None
        sides.append(tuple(terms))  # type: ignore[arg-type]
    if not any(t.species[0].isupper() or t.species[0] in "([" for side in sides for t in side):
        return None
    return Chem(tuple(sides))


def looks_chemical(text: str, *, strict: bool = False) -> bool:
    """True for an equation, or a formula with a chemistry-only feature (a subscript digit, a
    group, a hydrate, a charge, a state, a two-letter element: ``H2O``, ``NaCl``, ``Fe^{3+}``).
    ``BC`` (a segment) and ``C`` are not chemistry. ``strict`` (used to guard math answers) also
    drops two-letter-only formulas (``5 Pa`` is a pressure)."""
    c = parse_chem(text)
    if c is None:
        return False
    if c.is_equation or sum(len(s) for s in c.sides) > 1:
        return True
    feats = c.sides[0][0].features - ({"two_letter"} if strict else set())
    return bool(feats)


def _side_key(side: tuple[Term, ...]) -> list[tuple[str, Fraction]]:
    return sorted((t.species, t.coef) for t in side)


def chem_equal(ref: Chem, pred: Chem) -> bool:
    """Same sides, each the same multiset of (species, coefficient); states where both have one."""
    if len(ref.sides) != len(pred.sides):
        return False
    for rs, ps in zip(ref.sides, pred.sides):
        if _side_key(rs) != _side_key(ps):
            return False
        want = {t.species: t.state for t in rs if t.state}
        if any(t.state and want.get(t.species, t.state) != t.state for t in ps):
            return False
    return True
