"""Domain verifiers on hand-computed cases, and score()'s error containment."""

import json
import random

import pytest

from glmv_cli.rewards import RewardConfig, score, score_detailed
from glmv_cli.rewards.verifiers import (
    edit_similarity,
    iou,
    levenshtein,
    match_boxes,
    mc_letters,
    parse_boxes,
    verify_chart,
    verify_counting,
    verify_grounding,
    verify_gui,
    verify_mcq,
    verify_ocr,
    verify_yesno,
)

B, E = "<|begin_of_box|>", "<|end_of_box|>"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


OPTS = {"options": ["a dog", "a cat", "a cow", "a bird"]}
MCQ = [
    ("B", "B", None, 1.0), ("b", "B", None, 1.0), ("(B)", "B", None, 1.0), ("[B]", "B", None, 1.0),
    ("B.", "B", None, 1.0), ("B)", "B", None, 1.0), ("B. a cat", "B", OPTS, 1.0), ("B: a cat", "B", OPTS, 1.0),
    ("(B) a cat", "B", OPTS, 1.0), ("option B", "B", None, 1.0), ("Answer: B", "B", None, 1.0),
    ("a cat", "B", OPTS, 1.0), ("A Cat.", "B", OPTS, 1.0), ("B", "(B)", None, 1.0), ("B", "B. a cat", OPTS, 1.0),
    ("C", "B", None, 0.0), ("B, C", "B", None, 0.0), ("B or C", "B", None, 0.0), ("BC", "B", None, 0.0),
    ("B. a cow", "B", OPTS, 0.0),  # letter and text disagree
    ("a cow", "B", OPTS, 0.0), ("A cat sat on the mat", "B", None, 0.0), ("", "B", None, 0.0),
    ("B and D", "BD", None, 1.0), ("D, B", "BD", None, 1.0), ("B", "BD", None, 0.0), ("BB", "B", None, 0.0),
]


@pytest.mark.parametrize("pred,ref,extra,want", MCQ)
def test_mcq(pred, ref, extra, want):
    assert verify_mcq(pred, ref, extra) == want


def test_mcq_bad_reference_raises():
    with pytest.raises(ValueError, match="names no option letter"):
        verify_mcq("B", "the second one")
    assert mc_letters("(B)(C)") == frozenset("BC")


COUNTING = [
    ("5", "5", 1.0), ("five", "5", 1.0), ("5 apples", "5", 1.0), ("There are 5.", "5", 1.0), ("05", "5", 1.0),
    ("6", "5", 0.0), ("5 or 6", "5", 0.0), ("5, 6", "5", 0.0), ("about 5", "5", 0.0), ("between 4 and 6", "5", 0.0),
    ("5.5", "5", 0.0), ("", "5", 0.0), ("0", "0", 1.0), ("zero", "0", 1.0), ("1,200", "1200", 1.0),
    ("twelve", "12", 1.0), ("-5", "5", 0.0), ("~5", "5", 0.0),
]


@pytest.mark.parametrize("pred,ref,want", COUNTING)
def test_counting(pred, ref, want):
    assert verify_counting(pred, ref) == want


def test_counting_bad_reference_raises():
    with pytest.raises(ValueError, match="counting reference 'three' is not a non-negative integer in digits"):
        verify_counting("3", "three")


CHART = [
    ("100", "100", None, 1.0), ("102.4", "100", None, 1.0), ("102.6", "100", None, 0.0), ("97.6", "100", None, 1.0),
    ("97.4", "100", None, 0.0), ("1,020", "1000", None, 1.0), ("$1,020", "1000", None, 1.0),
    ("45%", "45", None, 1.0), ("45", "45%", None, 1.0), ("0.45", "45%", None, 1.0), ("46", "45%", None, 1.0),
    ("47", "45%", None, 0.0), ("2020", "2020", None, 1.0), ("2021", "2020", None, 0.0), ("2020.0", "2020", None, 0.0),
    ("1999", "2000", None, 0.0), ("1999", "2000", {"kind": "number"}, 1.0), ("1210", "1200", {"kind": "year"}, 0.0),
    ("1210", "1200", None, 1.0), ("12 million", "12", None, 1.0), ("between 90 and 110", "100", None, 0.0),
    ("~100", "100", None, 0.0), ("100 or 101", "100", None, 0.0), ("0", "0", None, 1.0), ("0.1", "0", None, 0.0),
    ("\u22125", "-5", None, 1.0), ("Germany", "germany", None, 1.0), ("Germany.", "Germany", None, 1.0),
    ("France", "Germany", None, 0.0), ("", "Germany", None, 0.0), ("New  York", "new york", None, 1.0),
]


@pytest.mark.parametrize("pred,ref,extra,want", CHART)
def test_chart(pred, ref, extra, want):
    assert verify_chart(pred, ref, extra) == want


def test_chart_tolerance_is_configurable():
    assert verify_chart("105", "100", None, {"rel_tol": 0.05}) == 1.0
    assert verify_chart("105", "100", None, {"rel_tol": 0.01}) == 0.0


def dp_lev(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


LEV = [("", "", 0), ("a", "", 1), ("", "abc", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
       ("abc", "abc", 0), ("abc", "cba", 2), ("中文字", "中字", 1), ("a" * 70, "a" * 69 + "b", 1),
       ("a" * 130, "b" * 130, 130)]


@pytest.mark.parametrize("a,b,d", LEV)
def test_levenshtein_known(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


def test_levenshtein_matches_dp_on_random_strings():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 90)))
        b = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 90)))
        assert levenshtein(a, b) == dp_lev(a, b)


OCR = [
    ("hello world", "hello world", 1.0), ("helo world", "hello world", 1 - 1 / 11), ("hello  world ", "hello world", 1.0),
    ("", "abcd", 0.0), ("abcd", "", 0.0), ("wxyz", "abcd", 0.0), ("ab", "abcd", 0.5), ("HELLO", "hello", 0.0),
]


@pytest.mark.parametrize("pred,ref,want", OCR)
def test_ocr_edit_similarity(pred, ref, want):
    assert verify_ocr(pred, ref) == pytest.approx(want)


def test_ocr_options():
    assert verify_ocr("HELLO", "hello", None, {"ignore_case": True}) == 1.0
    assert verify_ocr("a  b", "a b", None, {"collapse_whitespace": False}) == pytest.approx(0.75)
    assert edit_similarity("", "") == 1.0


def test_ocr_long_text_is_fast():
    import time

    a = "The quick brown fox jumps over the lazy dog. " * 90
    b = a.replace("o", "0", 50)
    t0 = time.perf_counter()
    s = verify_ocr(b, a)
    assert time.perf_counter() - t0 < 0.5
    assert s == pytest.approx(1 - 50 / len(a.strip()))  # the trailing space is collapsed away


IOU = [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0), ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0), ((0, 0, 10, 10), (2, 2, 8, 8), 36 / 100),
]


@pytest.mark.parametrize("a,b,want", IOU)
def test_iou(a, b, want):
    assert iou(a, b) == pytest.approx(want)


GROUNDING = [
    ("[100, 100, 200, 200]", "[100, 100, 200, 200]", 1.0),
    ("[100,100,200,200]", "[100, 100, 200, 210]", 1.0),  # IoU 0.91
    ("[150, 100, 250, 200]", "[100, 100, 200, 200]", 0.0),  # IoU 1/3 < 0.5
    ("[120, 100, 220, 200]", "[100, 100, 200, 200]", 1.0),  # IoU 0.667
    ("(100, 100, 200, 200)", "[100, 100, 200, 200]", 1.0),
    ("[[100, 100, 200, 200]]", "[100, 100, 200, 200]", 1.0),
    ("[200, 200, 100, 100]", "[100, 100, 200, 200]", 0.0),  # swapped corners
    ("[100, 100, 100, 200]", "[100, 100, 200, 200]", 0.0),  # degenerate
    ("[100, 100, 200, 1200]", "[100, 100, 200, 200]", 0.0),  # out of range
    ("[-5, 100, 200, 200]", "[0, 100, 200, 200]", 0.0),
    ("[100, 100, 200]", "[100, 100, 200, 200]", 0.0),
    ("no box", "[100, 100, 200, 200]", 0.0),
    ("[100, 100, 200, 200], [500, 500, 600, 600]", "[100, 100, 200, 200]", 0.5),  # extra box dilutes
    ("[100, 100, 200, 200], [100, 100, 200, 200]", "[100, 100, 200, 200]", 0.5),
    ("[[500, 500, 600, 600], [100, 100, 200, 200]]", "[[100, 100, 200, 200], [500, 500, 600, 600]]", 1.0),
    ("[100, 100, 200, 200]", "[[100, 100, 200, 200], [500, 500, 600, 600]]", 0.5),  # one missing
    ("[100, 100, 200, 200], [0, 0, 10, 10]", "[[100, 100, 200, 200], [500, 500, 600, 600]]", 0.5),
]


@pytest.mark.parametrize("pred,ref,want", GROUNDING)
def test_grounding(pred, ref, want):
    assert verify_grounding(pred, ref) == pytest.approx(want)


def test_grounding_shapes():
    p, r = "[150, 100, 250, 200]", "[100, 100, 200, 200]"
    assert verify_grounding(p, r, None, {"shape": "linear"}) == pytest.approx(1 / 3)
    assert verify_grounding(p, r, None, {"shape": "thresholded"}) == 0.0
    assert verify_grounding(p, r, None, {"shape": "thresholded", "iou_threshold": 0.3}) == pytest.approx(1 / 3)
    assert verify_grounding(p, r, None, {"iou_threshold": 0.3}) == 1.0
    boxes = [(i * 100.0, 0.0, i * 100.0 + 50, 50.0) for i in range(8)]  # greedy path beyond 6 boxes
    assert match_boxes(boxes[::-1], boxes) == 1.0
    assert parse_boxes("[1, 2, 3, 4]") == [(1.0, 2.0, 3.0, 4.0)]


def test_grounding_bad_reference_is_an_error_not_a_crash():
    res = score_detailed(None, resp("[1, 2, 3, 4]"), "[5, 5, 1, 1]", "grounding")
    assert res.reward == 0.0 and res.error.startswith("ValueError: grounding reference")


CLICK = '{"action": "click", "box_2d": [[100, 100, 200, 200]]}'
TYPE = '{"action": "type", "box_2d": [[100, 100, 300, 150]], "text": "hello world"}'
SCROLL = '{"action": "scroll", "direction": "down"}'
GUI = [
    ('{"action": "click", "point_2d": [150, 150]}', CLICK, 1.0),
    ('{"action": "click", "point_2d": [[150, 150]]}', CLICK, 1.0),
    ('{"action": "click", "point_2d": [250, 150]}', CLICK, 0.0),
    ('{"action": "click", "box_2d": [[110, 100, 210, 200]]}', CLICK, 1.0),
    ('{"action": "click", "box_2d": [[180, 100, 280, 200]]}', CLICK, 0.0),
    ('{"action": "Click", "point_2d": [100, 100]}', CLICK, 1.0),  # on the edge counts
    ('{"action": "long_press", "point_2d": [150, 150]}', CLICK, 0.0),  # wrong action type
    ('{"action": "type", "point_2d": [150, 150], "text": "hello world"}', CLICK, 0.0),
    ('{"point_2d": [150, 150]}', CLICK, 0.0),
    ('{"action": "click"}', CLICK, 0.0),
    ('{"action": "click", "box_2d": [[200, 200, 100, 100]]}', CLICK, 0.0),  # swapped box
    ("click(150, 150)", CLICK, 0.0),  # not JSON: never evaluated
    ("[1, 2]", CLICK, 0.0),
    ('{"action": "type", "point_2d": [200, 120], "text": "hello world"}', TYPE, 1.0),
    ('{"action": "type", "point_2d": [200, 120], "text": "hello wrld"}', TYPE, 1 - 1 / 11),
    ('{"action": "type", "point_2d": [200, 120]}', TYPE, 0.0),
    ('{"action": "type", "point_2d": [900, 900], "text": "hello world"}', TYPE, 0.0),
    ('{"action": "scroll", "direction": "down"}', SCROLL, 1.0),
    ('{"action": "scroll", "direction": "Down"}', SCROLL, 1.0),
    ('{"action": "scroll", "direction": "up"}', SCROLL, 0.0),
    ('{"action": "scroll"}', SCROLL, 0.0),
    ('{"action": "click", "box_2d": [[140, 140, 160, 160]]}', '{"action": "click", "point_2d": [150, 150]}', 1.0),
    ('{"action": "click", "point_2d": [160, 140]}', '{"action": "click", "point_2d": [150, 150]}', 1.0),
    ('{"action": "click", "point_2d": [190, 150]}', '{"action": "click", "point_2d": [150, 150]}', 0.0),
]


@pytest.mark.parametrize("pred,ref,want", GUI)
def test_gui(pred, ref, want):
    assert verify_gui(pred, ref) == pytest.approx(want)


def test_gui_bad_reference_raises():
    with pytest.raises(ValueError, match=r"gui reference 'click there' is not a GUI action \(a JSON object with an "
                                         r"'action', or a call such as left_click"):
        verify_gui('{"action": "click"}', "click there")
    with pytest.raises(ValueError, match="a box needs x1 < x2 and y1 < y2"):
        verify_gui('{"action": "click"}', json.dumps({"action": "click", "box_2d": [[5, 5, 1, 1]]}))


YESNO = [
    ("Yes", "yes", 1.0), ("yes.", "Yes", 1.0), ("YES, it is", "yes", 1.0), ("True", "yes", 1.0), ("是", "yes", 1.0),
    ("No", "no", 1.0), ("no.", "No", 1.0), ("否", "no", 1.0), ("No", "yes", 0.0), ("Yes", "no", 0.0),
    ("yes or no", "yes", 0.0), ("Yes and no", "no", 0.0), ("maybe", "yes", 0.0), ("", "no", 0.0),
]


@pytest.mark.parametrize("pred,ref,want", YESNO)
def test_yesno(pred, ref, want):
    assert verify_yesno(pred, ref) == want


SCORE_CASES = [
    ("math", "12", "12", None, 1.0), ("mcq", "(C)", "C", None, 1.0), ("counting", "7", "7", None, 1.0),
    ("chart", "51%", "50%", None, 1.0), ("ocr", "Total: 12", "Total: 12", None, 1.0),
    ("grounding", "[10, 10, 500, 500]", "[10, 10, 500, 500]", None, 1.0), ("gui", CLICK, CLICK, None, 1.0),
    ("yesno", "No", "no", None, 1.0), ("math", "13", "12", None, 0.0), ("mcq", "B", "C", None, 0.0),
]


@pytest.mark.parametrize("domain,pred,ref,extra,want", SCORE_CASES)
def test_score_all_domains(domain, pred, ref, extra, want):
    assert score("prompt", resp(pred), ref, domain, extra) == want


def test_unknown_domain_is_a_caller_error():
    from glmv_cli.errors import GlmvError

    with pytest.raises(GlmvError, match="unknown domain 'poetry'; known: chart, chemistry, counting, grounding, gui, math, mcq, ocr, stem, video, yesno"):
        score(None, resp("1"), "1", "poetry")


def test_a_raising_verifier_returns_zero_and_is_counted():
    cfg = RewardConfig()

    def broken(pred, ref, extra, prompt):
        raise RuntimeError("bug in verifier")

    cfg._built["math"] = broken
    res = score_detailed(None, resp("1"), "1", "math", config=cfg)
    assert (res.reward, res.error) == (0.0, "RuntimeError: bug in verifier")
    cfg._built["math"] = lambda *a: float("nan")
    assert score_detailed(None, resp("1"), "1", "math", config=cfg).error == "non-finite reward nan"
    cfg._built["math"] = lambda *a: 7.0
    assert score(None, resp("1"), "1", "math", config=cfg) == 1.0  # clamped to [0, 1]
