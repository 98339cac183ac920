"""Math/STEM: fast path (checked against math-verify's own verdicts), hedges, timeouts, refusals."""

import threading
import time
from fractions import Fraction

import pytest
from math_verify import parse, verify

from glmv_cli.rewards import score, score_detailed
from glmv_cli.rewards.policy import is_hedged
from glmv_cli.rewards.mathv import (
    VerifierTimeout,
    call_with_timeout,
    eval_latex,
    fast_equal,
    math_equal,
    normalize,
    parse_number,
    too_expensive,
)

B, E = "<|begin_of_box|>", "<|end_of_box|>"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


def mv(gold: str, pred: str) -> bool:
    return bool(verify(parse("$" + gold + "$"), parse("$" + pred + "$")))


# (gold, pred, the right verdict)
PAIRS = [
    ("42", "42", True), ("42", "42.0", True), ("42", "+42", True), ("42", "042", True), ("42", "42.", True),
    ("42", "43", False), ("42", "-42", False), ("-3", "\u22123", True), ("-3", "3", False),
    ("0", "-0", True), ("1000", "1,000", True), ("1234567", "1,234,567", True), ("1000", "1,001", False),
    ("0.5", "\\frac{1}{2}", True), ("\\frac{1}{2}", "0.5", True), ("1/2", "0.5", True), ("0.5", ".5", True),
    ("1/2", "2/4", True), ("1/2", "\\dfrac{2}{4}", True), ("\\frac12", "0.5", True), ("\\tfrac{3}{4}", "0.75", True),
    ("-1/2", "-0.5", True), ("1/2", "-1/2", False), ("1/3", "0.33", False), ("1/3", "0.3333", False),
    ("1/3", "1/4", False), ("7", "7/1", True), ("2", "\\frac{4}{2}", True), ("3/4", "\\frac{3}{4}", True),
    ("3.14", "3.14", True), ("3.14", "3.15", False), ("2.5", "2.50", True), ("2.5", "5/2", True),
    ("0.1", "\\frac{1}{10}", True), ("12.5", "12.4", False), ("100", "101", False), ("1e3", "1000", False),
    ("50\\%", "0.5", True), ("50%", "50", True), ("50", "50\\%", True), ("3", "3\\%", True),
    ("0.03", "3\\%", True), ("50\\%", "60\\%", False), ("50\\%", "0.6", False), ("0.5\\%", "0.5", False),
    ("25\\%", "25\\%", True), ("25%", "1/4", True),
    ("5", "5 cm", True), ("5", "5\\text{ cm}", True), ("5", "6\\text{ cm}", False),
    ("x", "x", True), ("\\text{east}", "\\text{east}", True), ("\\text{east}", "\\text{west}", False),
    ("2x+1", "1+2x", True), ("2x+1", "2x-1", False), ("x^2-1", "(x-1)(x+1)", True),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", True), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}", False), ("2\\pi", "2\\pi", True), ("2\\pi", "4\\pi", False),
    ("\\sqrt{5}", "\\sqrt5", True), ("3\\sqrt{3}", "\\sqrt{27}", True), ("3\\sqrt{3}", "3\\sqrt{2}", False),
    ("\\pi/3", "\\frac{\\pi}{3}", True), ("\\pi/3", "\\frac{\\pi}{6}", False), ("2^{10}", "1024", True),
    ("2^{10}", "1000", False), ("\\{1,2\\}", "\\{2,1\\}", True), ("1, 2", "2, 1", True), ("\\{1,2\\}", "\\{1,3\\}", False),
    ("(0,1]", "(0,1]", True), ("(0,1]", "[0,1]", False), ("x=2", "2", True), ("4", "3, 4", False),
    ("1/3", "0.333333", True), ("\\frac{1}{3}", "0.3333333", True), ("e^{2}", "e^2", True),
]


@pytest.mark.parametrize("gold,pred,want", PAIRS)
def test_math_equal_verdicts(gold, pred, want):
    got, _ = math_equal(gold, pred, timeout_s=20.0)
    assert got is want


def test_fast_path_agrees_with_math_verify():
    """Every pair the fast path decides gets math-verify's own verdict; it decides most of them (the
    rest fall through to math-verify, so no verdict can differ there)."""
    decided = [(g, p, f) for g, p, _ in PAIRS if (f := fast_equal(g, p)) is not None]
    assert len(decided) >= 55, len(decided)
    assert [(g, p, f) for g, p, f in decided if f is not mv(g, p)] == []


def test_fast_path_covers_plain_numbers():
    """Every pair of plain numbers is decided without sympy, except values closer than 1e-5
    (math-verify's 6-decimal rounding decides those, e.g. 1/3 vs 0.333333) and a non-integer
    percentage equal to the other side's digits (0.5% vs 0.5: math-verify says no, 50% vs 50 yes)."""
    plain = [(parse_number(normalize(g)), parse_number(normalize(p)), g, p) for g, p, _ in PAIRS]
    plain = [(a, b, g, p) for a, b, g, p in plain if a and b]
    undecided = [(g, p) for a, b, g, p in plain if fast_equal(g, p) is None]
    assert len(plain) >= 40
    assert undecided == [("0.5\\%", "0.5"), ("1/3", "0.333333"), ("\\frac{1}{3}", "0.3333333")]


NUMBERS = [
    ("42", (Fraction(42), False, True)), ("-0.25", (Fraction(-1, 4), False, False)),
    ("1,234.5", (Fraction(24690, 20), False, False)), ("3/4", (Fraction(3, 4), False, False)),
    ("-\\frac{3}{4}", (Fraction(-3, 4), False, False)), ("\\frac{-3}{4}", (Fraction(-3, 4), False, False)),
    ("\\frac34", (Fraction(3, 4), False, False)), ("12%", (Fraction(12), True, True)),
    ("1/0", None), ("x", None), ("1.2.3", None), ("12,34", None),
]


@pytest.mark.parametrize("text,want", NUMBERS)
def test_parse_number(text, want):
    assert parse_number(text) == want


def test_normalize():
    assert normalize(" $ \\dfrac{1}{2} $ ") == "\\frac{1}{2}"
    assert normalize("\u22125") == "-5"
    assert normalize("50\\%") == "50%"
    assert normalize("\\left( 1 \\right)") == "(1)"
    assert normalize("12.") == "12"


LATEX_VALUES = [
    ("1+2*3", 7.0), ("2^{10}", 1024.0), ("\\frac{1}{2}+\\frac{1}{3}", 5 / 6), ("2\\pi", 6.283185307179586),
    ("\\sqrt{16}", 4.0), ("3\\sqrt{4}", 6.0), ("-(2+3)", -5.0), ("\\frac12", 0.5), ("2\\cdot 3", 6.0),
    ("x+1", None), ("\\sqrt[3]{8}", None), ("2^{2^{2}}", 16.0), ("1/0", None), ("2^{100}", None),
    ("\\frac{1}{0}", None), ("(1,2)", None), ("2\\frac{1}{2}", None),
]


@pytest.mark.parametrize("text,want", LATEX_VALUES)
def test_eval_latex(text, want):
    got = eval_latex(text)
    assert got == pytest.approx(want) if want is not None else got is None


HEDGES = [
    ("between 0 and 10", "10", True), ("3 or 4", "4", True), ("about 5", "5", True), ("\\approx 5", "5", True),
    ("5 \\pm 1", "5", True), ("x \\le 3", "x \\le 3", False), ("\\geq 2", "2", True), ("~5", "5", True),
    ("0 to 10", "10", True), ("at least 3", "3", True), ("5", "5", False), ("1, 2", "1, 2", False),
    ("5...", "5", True), ("approximately 3.14", "3.14", True), ("Roughly 7", "7", True),
]


@pytest.mark.parametrize("pred,gold,hedged", HEDGES)
def test_hedges(pred, gold, hedged):
    assert is_hedged(pred, gold) is hedged


ADVERSARIAL = [
    ("between 0 and 10", "10"), ("between 0 and 10", "5"), ("a number between 0 and 10", "3"),
    ("3 or 4", "4"), ("3 or 4", "3"), ("3, 4", "4"), ("3; 4", "3"), ("\\{3, 4\\}", "4"), ("4 \\pm 1", "4"),
    ("\\approx 4", "4"), ("x \\in [0, 10]", "5"), ("", "4"), ("\\boxed{4}", "4"),
]


@pytest.mark.parametrize("pred,gold", ADVERSARIAL)
def test_hedged_and_several_answers_earn_nothing(pred, gold):
    assert score(None, resp(pred), gold, "math") == 0.0


def test_stem_domain_reads_math_answers():
    assert score(None, resp("\\frac{1}{2}"), "0.5", "stem") == 1.0
    res = score_detailed(None, resp("7"), "7", "stem")
    assert (res.domain, res.verifier, res.reward) == ("stem", "stem", 1.0)


REFUSED = ["10^{10^{10}}", "9^{9^{9^{9}}}", "2^{1000000}", "(10^{100})!", "123456!", "\\binom{100000}{50000}"]


@pytest.mark.parametrize("expr", REFUSED)
def test_runaway_expressions_are_refused_fast(expr):
    assert too_expensive(expr) is not None
    t0 = time.perf_counter()
    res = score_detailed(None, resp(expr), "1", "math")
    assert time.perf_counter() - t0 < 0.5
    assert res.reward == 0.0 and res.error.startswith("ValueError: refused to evaluate")


@pytest.mark.parametrize("expr", ["e^{x^2}", "2^{10}", "x^{2}+1", "5!", "\\binom{5}{2}"])
def test_ordinary_expressions_are_not_refused(expr):
    assert too_expensive(expr) is None


def test_timeout_returns_promptly_and_is_counted():
    def spin():
        while True:
            pass

    t0 = time.perf_counter()
    with pytest.raises(VerifierTimeout, match="verification exceeded 0.2 s"):
        call_with_timeout(spin, 0.2)
    assert time.perf_counter() - t0 < 1.0
    deadline = time.perf_counter() + 2.0  # the injected exception stops the runaway worker too
    while any(t.name == "glmv-verify" for t in threading.enumerate()) and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "glmv-verify" for t in threading.enumerate())


def test_timeout_works_outside_the_main_thread():
    out = {}

    def job():
        try:
            call_with_timeout(lambda: [time.sleep(0.01) for _ in range(500)], 0.1)
        except VerifierTimeout as e:
            out["err"] = str(e)

    t = threading.Thread(target=job)
    t0 = time.perf_counter()
    t.start()
    t.join(3)
    assert out["err"] == "verification exceeded 0.1 s" and time.perf_counter() - t0 < 2


def test_slow_symbolic_verification_gives_timeout_error():
    from glmv_cli.rewards import RewardConfig

    cfg = RewardConfig()
    cfg.domains["math"] = {"verifier": "math", "timeout_s": 0.001, "fast_path": False}
    res = score_detailed(None, resp("\\sin(x)^2+\\cos(x)^2" * 6), "6", "math", config=cfg)
    assert (res.reward, res.error) == (0.0, "timeout")


def test_worker_exceptions_reach_the_caller():
    def boom():
        raise KeyError("k")

    with pytest.raises(KeyError):
        call_with_timeout(boom, 1.0)


def test_overlong_math_answer_is_an_error_not_a_crash():
    res = score_detailed(None, resp("x+" * 400 + "1"), "1", "math")
    assert res.reward == 0.0 and res.error == "ValueError: answer longer than 512 characters: not parsed"


def test_verdict_cache_hits_and_never_caches_timeouts():
    from glmv_cli.rewards import mathv

    mathv.clear_caches()
    assert math_equal("2x+1", "1+2x", timeout_s=20.0) == (True, False)
    assert math_equal("2x+1", "1+2x", timeout_s=20.0) == (True, False)
    assert mathv.verdict_cache_info()["hits"] == 1
    assert math_equal("7", "7.0", cache=False) == (True, True)
    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            math_equal("1", "9^{9^{9}}")
    assert mathv.verdict_cache_info()["size"] == 1


def _random_number(rng) -> str:
    v = rng.choice([0, 1, 2, 3, 5, 7, 10, 12, 50, 99, 100, 1000, 1234, 2020])
    return rng.choice([
        str(v), f"{v / rng.choice([1, 2, 4, 8, 10, 100]):g}", f"{v}/{rng.choice([1, 2, 3, 4, 7])}",
        f"\\frac{{{v}}}{{{rng.choice([1, 2, 3, 4])}}}", f"{v}\\%", f"{v / 10:g}%", f"{v:,}", f"-{v}", f"{v}.0",
        f"{v / 3:.{rng.randint(1, 7)}f}",
    ])


_ATOMS = ["2", "3", "\\pi", "\\sqrt{2}", "\\sqrt{3}", "\\frac{1}{2}", "\\frac{\\pi}{4}", "(1+\\sqrt{5})", "2^{3}",
          "\\sqrt5", "0.5", "10", "\\frac12", "3\\sqrt{2}", "2\\pi"]


def _random_expr(rng) -> str:
    s = rng.choice(_ATOMS)
    for _ in range(rng.randint(0, 2)):
        s += rng.choice(["+", "-", "\\cdot ", "/", "", "\\times "]) + rng.choice(_ATOMS)
    return s


@pytest.mark.parametrize("maker,n", [(_random_number, 150), (_random_expr, 60)])
def test_fast_path_never_disagrees_with_math_verify_on_random_pairs(maker, n):
    import random

    rng = random.Random(7)
    decided, disagree = 0, []
    for _ in range(n):
        g = maker(rng)
        p = g if rng.random() < 0.3 else maker(rng)
        f = fast_equal(g, p)
        if f is None:
            continue
        decided += 1
        if f is not mv(g, p):
            disagree.append((g, p, f))
    assert disagree == []
    assert decided >= 0.75 * n
