"""Hedge markers as tokens, relation spellings, malformed answers, and sets compared by meaning."""

import pytest
from math_verify import parse, verify

from glmv_cli.rewards.exact import evaluate, parse_interval, parse_relation, sets_equal
from glmv_cli.rewards.mathv import fast_equal, normalize
from glmv_cli.rewards.policy import canonical_relations, hedges, is_hedged, malformed
from glmv_cli.rewards.verifiers import verify_math

MARKERS = [
    ("\\left( \\frac{1}{3} \\right)", set()), ("\\lim_{x \\to 0} f(x)", set()), ("x \\leftarrow 3", set()),
    ("\\text{3 or 4}", {"or"}), ("3 to 4", {"to"}), ("\\le 3", {"le"}), ("\\leq 3", {"le"}), ("\\geqslant 3", {"le"}),
    ("x >= 5", {"le"}), ("5 \\geq x", {"le"}), ("x ≤ 5", {"le"}), ("x < 5", {"lt"}), ("x \\gt 5", {"lt"}),
    ("x \\neq 2", {"ne"}), ("x \\approx 11", {"approx"}), ("~5", {"approx"}), ("5~\\text{cm}", set()),
    ("5 \\pm 1", {"pm"}), ("1, 2, \\ldots", {"ellipsis"}), ("Between 3 and 4", {"between", "and"}),
    ("\\operatorname{atop}", set()), ("\\sqrt{2}", set()),
]


@pytest.mark.parametrize("text,want", MARKERS)
def test_hedge_markers_are_tokens(text, want):
    assert hedges(text) == want


def test_relations_are_one_marker_family_whatever_the_spelling_and_side():
    assert not is_hedged("5 \\geq x", "x \\leq 5") and not is_hedged("x \\geq 5", "x >= 5")
    assert is_hedged("x \\leq 3", "3") and is_hedged("x < 3", "x \\leq 3")
    assert canonical_relations("1 \\lt x \\leqslant 3 \\geq y ≥ z") == "1 < x <= 3 >= y >= z"


@pytest.mark.parametrize("text,why", [
    ("2 +", "ends with an operator"), ("3 \\cdot", "ends with an operator"), ("x =", "ends with an operator"),
    ("* 3", "starts with an operator"), ("\\frac{1}{2", "unbalanced braces"), ("(1, 2", "unbalanced brackets"),
    ("2", None), ("-2", None), ("(0, 1]", None), ("\\mathbb{Z}^+", None), ("\\{1, 2\\}", None), ("5!", None),
])
def test_malformed(text, why):
    assert malformed(text) == why


EXACT = [  # (expression, exact terms {(radicand, pi power): coefficient} as floats)
    ("\\frac{\\sqrt{2}}{2}", {(2, 0): 0.5}), ("\\frac{1}{\\sqrt{2}}", {(2, 0): 0.5}), ("\\sqrt{8}", {(2, 0): 2.0}),
    ("\\frac{3\\pi}{4}", {(1, 1): 0.75}), ("0.75\\pi", {(1, 1): 0.75}), ("(1+\\sqrt{5})/2", {(1, 0): 0.5, (5, 0): 0.5}),
    ("\\sqrt{\\frac{1}{2}}", {(2, 0): 0.5}), ("2^{-2}", {(1, 0): 0.25}), ("\\pi^2/\\pi", {(1, 1): 1.0}),
    ("(\\sqrt{3}-1)(\\sqrt{3}+1)", {(1, 0): 2.0}), ("\\sqrt{2}\\sqrt{3}", {(6, 0): 1.0}),
]


@pytest.mark.parametrize("text,terms", EXACT)
def test_exact_values(text, terms):
    v = evaluate(normalize(text))
    assert v is not None and v.exact
    assert {k: float(c) for k, c in v.terms} == terms


@pytest.mark.parametrize("text", ["\\sqrt{1+\\sqrt{2}}", "1/(1+\\sqrt{2})", "2^{\\sqrt{2}}"])
def test_forms_outside_the_exact_field_keep_only_their_float(text):
    v = evaluate(normalize(text))
    assert v is not None and not v.exact


@pytest.mark.parametrize("text", ["x+1", "\\sqrt[3]{8}", "2\\frac{1}{2}", "\\frac{1}{0}", "2^{100}", "(1,2)", "e^{2}"])
def test_unsupported_forms(text):
    assert evaluate(normalize(text)) is None


def _mv(g, p):
    return bool(verify(parse("$" + g + "$"), parse("$" + p + "$")))


SYMBOLIC = [  # pairs the extended fast path decides; each verdict equals math-verify's
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("\\frac{3\\pi}{4}", "0.75\\pi"), ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\frac{1+\\sqrt{5}}{2}", "\\dfrac{1+\\sqrt5}{2}"), ("\\frac{\\pi}{6}", "\\frac{\\pi}{3}"), ("\\sqrt{2}", "2"),
    ("2^{10}", "1024"), ("[-1,\\infty)", "\\left[-1, \\infty\\right)"), ("(0,1]", "(0,1)"), ("(0, 1]", "[0,1]"),
    ("(-\\infty, \\frac{1}{2})", "(-\\infty, 0.5)"), ("[1, 2]", "[1, 3]"), ("\\frac{2}{\\sqrt{3}}", "\\frac{2\\sqrt{3}}{3}"),
]


@pytest.mark.parametrize("gold,pred", SYMBOLIC)
def test_extended_fast_path_decides_with_math_verifys_verdict(gold, pred):
    f = fast_equal(gold, pred)
    assert f is not None and f is _mv(gold, pred)


@pytest.mark.parametrize("gold,pred", [("\\pi", "3.14159"), ("2\\pi", "6.283185"), ("\\sqrt{2}", "1.41421356"),
                                       ("1/3", "0.333333"), ("(1,2)", "(2,1)"), ("[1,\\infty]", "[1,\\infty)")])
def test_close_calls_and_pairs_fall_through_to_math_verify(gold, pred):
    assert fast_equal(gold, pred) is None


def _random_symbolic(rng) -> str:
    atoms = ["2", "3", "\\pi", "\\sqrt{2}", "\\sqrt{8}", "\\frac{1}{2}", "\\dfrac{\\pi}{4}", "(1+\\sqrt{5})", "0.75\\pi",
             "\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", "\\pi^2", "\\sqrt{\\frac{1}{2}}", "1.5", "4^{-1}", "(\\sqrt{3}-1)"]
    s = rng.choice(atoms)
    for _ in range(rng.randint(0, 2)):
        s += rng.choice(["+", "-", "\\cdot ", "/", ""]) + rng.choice(atoms)
    return s


def _random_interval(rng) -> str:
    a = rng.choice(["-\\infty", "-1", "0", "\\frac{1}{2}", "1", "\\sqrt{2}", "0.5"])
    b = rng.choice(["\\infty", "1", "2", "\\pi", "3", "\\frac{3}{2}", "1.0"])
    return rng.choice("([") + a + ", " + b + rng.choice(")]")


@pytest.mark.parametrize("maker,n,floor", [(_random_symbolic, 120, 0.6), (_random_interval, 60, 0.6)])
def test_extended_fast_path_never_disagrees_on_random_pairs(maker, n, floor):
    import random

    rng = random.Random(11)
    decided, disagree = 0, []
    for _ in range(n):
        g = maker(rng)
        p = g if rng.random() < 0.2 else maker(rng)
        f = fast_equal(g, p)
        if f is None:
            continue
        decided += 1
        if f is not _mv(g, p):
            disagree.append((g, p, f))
    assert disagree == []
    assert decided >= floor * n


SETS = [  # (reference, answer, glmv's verdict by meaning)
    ("x \\leq 5", "5 \\geq x", True), ("x >= 5", "x \\geq 5", True), ("x \\leq 5", "x < 5", False),
    ("x > 3", "3 < x", True), ("x \\geq 1", "[1, \\infty)", True), ("[1,\\infty)", "x \\geq 1", True),
    ("1 < x \\leq 3", "3 \\geq x > 1", True), ("1 < x \\leq 3", "(1, 3]", True), ("x < 3", "y < 3", False),
    ("x \\ge \\frac{1}{2}", "x \\geq 0.5", True), ("(-\\infty, 3)", "x < 3", True),
]


@pytest.mark.parametrize("ref,pred,want", SETS)
def test_inequalities_and_intervals_by_meaning(ref, pred, want):
    assert verify_math(pred, ref, None, {"timeout_s": 20.0}) == float(want)


def test_where_meaning_differs_from_math_verify():
    """math-verify compares a flipped chain part by part and an interval reference against an
    inequality by type; glmv compares the sets (documented in docs/rewards.md)."""
    assert not _mv("1 < x \\leq 3", "3 \\geq x > 1") and not _mv("[1,\\infty)", "x \\geq 1")
    assert _mv("x \\leq 5", "5 \\geq x")  # single relations: the same verdict either way


def test_set_forms():
    s = parse_relation(normalize("3 \\geq x > 1"))
    assert (s.var, s.lo.approx, s.lo_closed, s.hi.approx, s.hi_closed) == ("x", 1.0, False, 3.0, True)
    assert parse_interval("(2,1)") is None and parse_relation("1<x>3") is None
    assert sets_equal(parse_interval("(0,1]"), parse_relation("0<x<=1")) is True

