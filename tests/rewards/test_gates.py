"""Format gate, language-mix gate and answer extraction."""

import time

import pytest

from glmv_cli.rewards import GateConfig, extract_answer, format_gate, gate, language_mix, score_detailed

B, E = "<|begin_of_box|>", "<|end_of_box|>"


def r41(ans: str, think: str = "reasoning", pre: str = "The answer is ", post: str = "") -> str:
    return f"<think>{think}</think><answer>{pre}{B}{ans}{E}{post}</answer>"


def r45(ans: str, think: str = "reasoning") -> str:
    return f"<think>{think}</think>The answer is {B}{ans}{E}"


G41 = GateConfig(style="glm41v")
G45 = GateConfig(style="glm45v")

FORMAT_CASES = [
    # (response, cfg, expected answer, expected reason)
    (r41("42"), G41, "42", None),
    ("  \n" + r41("42") + "\n", G41, "42", None),
    (r41("$\\frac{1}{2}$"), G41, "\\frac{1}{2}", None),
    (r41(" 7 "), G41, "7", None),
    (r41("42", think=""), G41, "42", None),
    (r41("42", post=" cm."), G41, "42", None),
    ("<think>a</think>\n<answer>\n" + B + "x" + E + "\n</answer>", G41, "x", None),
    (r45("42"), G45, "42", None),
    ("<think></think>" + B + "42" + E, G45, "42", None),
    # missing pieces
    ("The answer is " + B + "42" + E, G41, None, "missing_think"),
    ("<answer>" + B + "42" + E + "</answer>", G41, None, "missing_think"),
    ("<think>r</think>" + B + "42" + E, G41, None, "missing_answer"),
    ("<think>r</think><answer>42</answer>", G41, None, "missing_box"),
    ("<think>r</think>42", G45, None, "missing_box"),
    # the answer only inside <think>
    ("<think>so " + B + "42" + E + "</think><answer>42</answer>", G41, None, "box_in_think"),
    ("<think>so " + B + "42" + E + "</think><answer></answer>", G41, None, "box_in_think"),
    ("<think>r " + B + "42" + E + "</think>", G45, None, "box_in_think"),
    # nested / repeated tags
    ("<think><think>r</think></think><answer>" + B + "1" + E + "</answer>", G41, None, "think_tags"),
    ("<think>r</think><think>s</think><answer>" + B + "1" + E + "</answer>", G41, None, "think_tags"),
    ("</think>r<think><answer>" + B + "1" + E + "</answer>", G41, None, "think_tags"),
    ("<think>r</think><answer><answer>" + B + "1" + E + "</answer></answer>", G41, None, "answer_tags"),
    ("<think>r</think><answer>" + B + "1" + E + "</answer><answer>" + B + "2" + E + "</answer>", G41, None, "answer_tags"),
    ("<think>r <answer>x</answer></think><answer>" + B + "1" + E + "</answer>", G41, None, "answer_tags"),
    ("<think>r</think><answer>" + B + "1" + E + "</answer> trailing", G41, None, "answer_tags"),
    ("<think>r</think>text<answer>" + B + "1" + E + "</answer>", G41, None, "answer_tags"),
    ("<think>r</think><answer>" + B + "1" + E + "</answer>", G45, None, "answer_tags"),
    ("preamble <think>r</think><answer>" + B + "1" + E + "</answer>", G41, None, "text_before_think"),
    # boxes
    (r41("1" + E + " or " + B + "2"), G41, None, "box_count"),
    ("<think>r</think><answer>" + B + "1" + E + B + "2" + E + "</answer>", G41, None, "box_count"),
    ("<think>r</think><answer>" + B + B + "1" + E + E + "</answer>", G41, None, "box_count"),
    ("<think>r</think><answer>" + E + "1" + B + "</answer>", G41, None, "box_count"),
    ("<think>r</think><answer>" + B + "1</answer>", G41, None, "box_count"),
    (r41(""), G41, None, "empty_box"),
    (r41("   "), G41, None, "empty_box"),
    (r41("$ $"), G41, None, "empty_box"),
    (r41("\\boxed{42}"), G41, None, "boxed"),
    ("<think>r</think><answer>\\boxed{42}</answer>", G41, None, "boxed"),
    ("<think>r</think><answer>" + B + "4" + E + " \\boxed{2}</answer>", G41, None, "boxed"),
    (r45("\\boxed{42}"), G45, None, "boxed"),
]


@pytest.mark.parametrize("resp,cfg,ans,why", FORMAT_CASES)
def test_format_gate(resp, cfg, ans, why):
    assert format_gate(resp, cfg) == (ans, why)


def test_optional_box_and_think():
    cfg = GateConfig(style="glm41v", require_box=False)
    assert format_gate("<think>r</think><answer> $42$ </answer>", cfg) == ("42", None)
    cfg = GateConfig(style="glm45v", require_think=False)
    assert format_gate(B + "5" + E, cfg) == ("5", None)
    assert format_gate("<think>x" + B + "5" + E, cfg) == (None, "think_tags")


def test_boxed_allowed_when_configured():
    cfg = GateConfig(forbid_boxed=False)
    assert format_gate(r41("\\boxed{42}"), cfg) == ("\\boxed{42}", None)


ZH = "这是一个很长的中文段落，用来说明我们如何一步一步地计算这个图表中的数值并得到最终答案。"
EN = ("This is a long English paragraph that explains how we compute the value in this chart "
      "step by step and reach the final answer without any doubt at all.")

LANG_CASES = [
    (ZH + "\n\n" + EN, True),
    (EN + "\n" + ZH, True),
    (ZH + "\n" + ZH, False),
    (EN + "\n\n" + EN, False),
    (ZH + " GDP " + "增长", False),  # an English term inside Chinese
    (EN + " 答案", False),  # a short Chinese label inside English
    ("短句。\n" + EN, False),  # the Chinese paragraph is short
    (ZH + "\nThe answer is 4.", False),  # the English paragraph is short
    ("\\frac \\sqrt \\cdot \\times \\left \\right \\alpha \\beta \\gamma \\delta \\theta \\lambda \\sigma "
     "\\omega \\phi \\psi \\mu\n" + ZH, False),  # LaTeX commands are not English words
    ("", False),
]


@pytest.mark.parametrize("text,mixed", LANG_CASES)
def test_language_mix(text, mixed):
    assert language_mix(text) is mixed


def test_language_gate_through_score():
    resp = f"<think>{ZH}\n\n{EN}</think><answer>{B}4{E}</answer>"
    res = score_detailed(None, resp, "4", "math")
    assert (res.reward, res.gate) == (0.0, "language_mix")
    assert gate(resp, GateConfig(language_mix=False)) == ("4", None)


EXTRACT_CASES = [
    (r41("42"), "glm41v", "42"),
    (r45("42"), "glm45v", "42"),
    (r41("$x^2$"), "glm41v", "x^2"),
    ("<think>r</think><answer>no box here</answer>", "glm41v", "no box here"),
    ("<think>r</think><answer>so \\boxed{\\frac{1}{2}}</answer>", "glm41v", "\\frac{1}{2}"),
    ("<think>r</think>so \\boxed{3} then \\boxed{4}", "glm45v", "4"),
    ("<think>r</think><answer>" + B + "1" + E + " " + B + "2" + E + "</answer>", "glm41v", "2"),
    ("<think>so " + B + "42" + E, "glm41v", None),  # still thinking
    ("<think>r</think>", "glm45v", None),
    ("<think>r</think><answer>" + B + " " + E + "</answer>", "glm41v", None),
    ("plain 7", "glm41v", "plain 7"),
    ("<think>r</think><answer>" + B + "unterminated", "glm41v", "unterminated"),
    ("<think>" + B + "9" + E + "</think><answer>" + B + "8" + E + "</answer>", "glm41v", "8"),
    ("<think>r</think><answer>\\( 5 \\)</answer>", "glm41v", "5"),
]


@pytest.mark.parametrize("resp,style,want", EXTRACT_CASES)
def test_extract_answer(resp, style, want):
    assert extract_answer(resp, style) == want


def test_extract_answer_rejects_unknown_style():
    with pytest.raises(ValueError, match="style must be one of glm41v, glm45v, got 'glm4'"):
        extract_answer("x", "glm4")


def test_one_megabyte_response_is_fast():
    big = "<think>" + ("step " * 200_000) + "</think><answer>" + B + "7" + E + "</answer>"
    assert len(big) > 1_000_000
    t0 = time.perf_counter()
    res = score_detailed(None, big, "7", "math")  # default cap: rejected in O(1)
    assert time.perf_counter() - t0 < 1.0
    assert (res.reward, res.gate) == (0.0, "too_long")
    # with the cap lifted the gates themselves are linear: still well under a second
    from glmv_cli.rewards import RewardConfig
    cfg = RewardConfig(gates=GateConfig(max_response_chars=10_000_000))
    mixed = "<think>" + (ZH + "\n") * 15_000 + "</think><answer>" + B + "7" + E + "</answer>"
    assert len(mixed.encode()) > 1_000_000
    for resp in (big, mixed):
        t0 = time.perf_counter()
        res = score_detailed(None, resp, "7", "math", config=cfg)
        assert time.perf_counter() - t0 < 1.0
        assert (res.reward, res.gate) == (1.0, None)


def test_long_answer_is_capped():
    res = score_detailed(None, r41("1" * 5000), "1" * 5000, "ocr")
    assert (res.reward, res.gate) == (0.0, "answer_too_long")
