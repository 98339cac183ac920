"""Every example of issue 22 with its reward before the fix (measured on main at d69b7df with the
same responses and the built-in config) and after it."""

import pytest

from glmv_cli.errors import GlmvError
from glmv_cli.rewards import check_reference, score_detailed

B, E = "<|begin_of_box|>", "<|end_of_box|>"
CLICK_BOX = '{"action": "click", "box_2d": [[100, 100, 200, 200]]}'


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


# (domain, answer, reference, reward on main, reward now)
EXAMPLES = [
    # false zeros: \left read as the hedge \le, relations compared by spelling, \to read as "to"
    ("math", "\\left( \\frac{1}{3} \\right)", "1/3", 0.0, 1.0),
    ("math", "1/3", "\\left( \\frac{1}{3} \\right)", 1.0, 1.0),  # sides swapped: was already 1
    ("math", "\\left[-1, \\infty\\right)", "[-1,\\infty)", 0.0, 1.0),
    ("math", "\\left|-2\\right|", "2", 0.0, 1.0),
    ("math", "x \\geq 5", "x >= 5", 0.0, 1.0),
    ("math", "x >= 5", "x \\geq 5", 0.0, 1.0),
    ("math", "5 \\geq x", "x \\leq 5", 0.0, 1.0),
    ("math", "x \\leq 5", "5 \\geq x", 0.0, 1.0),
    ("math", "\\lim_{x \\to 0} \\frac{\\sin x}{x} = 1", "1", 0.0, 1.0),
    ("math", "\\lim_{x \\to 0} x^2", "0", 0.0, 1.0),
    # the anti-hacking policy stays: a hedge the reference lacks earns nothing
    ("math", "x\\approx 11", "11", 0.0, 0.0),
    # false ones: math-verify reads both equations as 2, and "2 +" as 2
    ("stem", "N2 + 3H2 ⇌ 2NH2", "N2 + 3H2 ⇌ 2NH3", 1.0, 0.0),
    ("stem", "N2 + 3H2 ⇌ 2NH3", "N2 + 3H2 ⇌ 2NH3", 1.0, 1.0),
    ("stem", "2 +", "2", 1.0, 0.0),
    ("math", "2 +", "2", 1.0, 0.0),
    # a counting reference of "1.0" was a verifier error on every rollout; now it is normalised
    ("counting", "1", "1.0", 0.0, 1.0),
    # GLM's text action grammar got 0 for every correct action
    ("gui", "click(start_box='[[150,150]]')", CLICK_BOX, 0.0, 1.0),
    ("gui", "Action: click(start_box='<|box_start|>(150,150)<|box_end|>')", CLICK_BOX, 0.0, 1.0),
    ("gui", "left_click(start_box='[586, 446]', element_info='OK button')", "left_click(start_box='[590,450]')", 0.0, 1.0),
    ("gui", "left_click(start_box='[900, 446]')", "left_click(start_box='[590,450]')", 0.0, 0.0),
]


@pytest.mark.parametrize("domain,answer,ref,before,after", EXAMPLES)
def test_issue_example(domain, answer, ref, before, after):
    res = score_detailed(None, resp(answer), ref, domain)
    assert res.reward == after, (res, before)
    assert res.error is None


def test_chart_reads_latex_spellings_and_keeps_the_hedge_check():
    # on main all three scored 0.0: "\%" and "\text{}" were not read as a number
    assert score_detailed(None, resp("45\\%"), "45%", "chart").reward == 1.0
    assert score_detailed(None, resp("12\\text{ million}"), "12", "chart").reward == 1.0
    assert score_detailed(None, resp("about 45"), "45", "chart").reward == 0.0


def test_bad_counting_reference_is_a_load_error_not_a_zero():
    # on main "one" gave reward 0 with a ValueError on every rollout; now it is refused at load
    with pytest.raises(GlmvError, match="domain 'counting': counting reference 'one' is not a non-negative integer"):
        check_reference("one", "counting")
    assert check_reference("1.0", "counting") == "1"
