"""Chemistry as species with coefficients, the STEM router, and the guard in front of math-verify."""

import pytest

from glmv_cli.rewards import config_from_dict, score_detailed
from glmv_cli.rewards.chemistry import flatten, looks_chemical, parse_chem
from glmv_cli.rewards.verifiers import verify_chemistry, verify_math, verify_stem

B, E = "<|begin_of_box|>", "<|end_of_box|>"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


EQ = "N2 + 3H2 ⇌ 2NH3"
CHEM = [
    ("N2 + 3H2 ⇌ 2NH3", EQ, 1.0), ("3H2 + N2 -> 2NH3", EQ, 1.0),  # order and arrow kind do not matter
    ("N_2 + 3H_2 \\rightleftharpoons 2NH_3", EQ, 1.0), ("\\ce{N2 + 3H2 <=> 2NH3}", EQ, 1.0),
    ("N2 + 3H2 ⇌ 2NH2", EQ, 0.0), ("N2 + 3H2 ⇌ 3NH3", EQ, 0.0), ("2NH3 ⇌ N2 + 3H2", EQ, 0.0),  # sides matter
    ("N2 + 3H2", EQ, 0.0), ("2", EQ, 0.0), ("N2 + 3H2 ⇌ 2NH3 or NH4", EQ, 0.0),
    ("H2O", "H2O", 1.0), ("H_2O", "H2O", 1.0), ("H₂O", "H2O", 1.0), ("H2O2", "H2O", 0.0),
    ("Fe^{3+}", "Fe3+", 1.0), ("Fe^{2+}", "Fe3+", 0.0), ("Fe_2(SO_4)_3", "Fe2(SO4)3", 1.0),
    ("CuSO4 \\cdot 5H2O", "CuSO4·5H2O", 1.0), ("Na+ + Cl- -> NaCl", "Na^+ + Cl^- \\rightarrow NaCl", 1.0),
    ("Cu^{2+} + 2e^- \\to Cu", "Cu2+ + 2e- -> Cu", 1.0), ("\\frac{1}{2}O2 + H2 -> H2O", "1/2 O2 + H2 -> H2O", 1.0),
    ("H2O(g)", "H2O(l)", 0.0), ("H2O", "H2O(l)", 1.0), ("CH3OCH3", "C2H5OH", 0.0),  # an isomer is wrong
]


@pytest.mark.parametrize("pred,ref,want", CHEM)
def test_chemistry(pred, ref, want):
    assert verify_chemistry(pred, ref) == want


@pytest.mark.parametrize("text,chem,strict", [
    (EQ, True, True), ("H2O", True, True), ("NaCl", True, False), ("Fe^{3+}", True, True), ("5 Pa", True, False),
    ("BC", False, False), ("C", False, False), ("2x+1", False, False), ("x^2", False, False), ("Ab2", False, False),
    ("2 +", False, False), ("mitochondria", False, False),
])
def test_looks_chemical(text, chem, strict):
    assert looks_chemical(text) is chem and looks_chemical(text, strict=True) is strict


def test_flatten_and_parse():
    assert flatten("\\mathrm{Fe}_{2}(\\mathrm{SO}_4)_3") == "Fe2(SO4)3"
    c = parse_chem("2H2 + O2 → 2H2O")
    assert [[(str(t.coef), t.species) for t in side] for side in c.sides] == [[("2", "H2"), ("1", "O2")], [("2", "H2O")]]
    assert parse_chem("Xy2 + O2 -> XyO") is None and parse_chem("A -> B -> C") is None


def test_math_never_collapses_chemistry_to_a_number():
    assert verify_math("N2 + 3H2 ⇌ 2NH2", EQ) == 0.0  # math-verify alone reads both as 2
    assert verify_math("2H2O", "2") == 0.0 and verify_math("2", "2") == 1.0
    assert verify_math("2 +", "2") == 0.0


STEM = [("12", "12", 1.0), ("\\frac{1}{2}", "0.5", 1.0), ("9.8 m/s^2", "9.8 m/s^2", 1.0), ("H2O", "H2O", 1.0),
        ("N2 + 3H2 ⇌ 2NH2", EQ, 0.0), ("2 +", "2", 0.0), ("Mitochondria.", "mitochondria", 1.0)]


@pytest.mark.parametrize("pred,ref,want", STEM)
def test_stem_router(pred, ref, want):
    assert verify_stem(pred, ref, None, {"timeout_s": 20.0}) == want


def test_prose_without_a_judge_is_zero_with_a_counted_reason():
    res = score_detailed(None, resp("the nucleus"), "mitochondria", "stem")
    assert (res.reward, res.error) == (0.0, "unverifiable: no verifier reads this reference and the domain has no judge")


def test_prose_goes_to_the_configured_judge(monkeypatch):
    from glmv_cli.rewards.judge import Judge

    seen = []
    monkeypatch.setattr(Judge, "score", lambda self, q, ref, ans: seen.append((q, ref, ans)) or 1.0)
    cfg = config_from_dict({"domains": {"stem": {"verifier": "stem", "judge": {
        "endpoints": [{"url": "http://127.0.0.1:9/v1/chat/completions", "model": "m"}]}}}})
    res = score_detailed("Which organelle?", resp("the powerhouse organelle"), "mitochondria", "stem", config=cfg)
    assert res.reward == 1.0 and seen == [("Which organelle?", "mitochondria", "the powerhouse organelle")]
    assert score_detailed(None, resp("3"), "4", "stem", config=cfg).reward == 0.0 and len(seen) == 1  # math: no judge
