"""Scoring rules of glmv eval on hand-computed cases (no lm-eval, no model)."""

import pytest

from glmv_cli.evaluation import scoring as S


def test_pred_letter_forms_and_option_text():
    opts = ["red", "green", "blue"]
    assert S.pred_letter("B", opts) == "B"
    assert S.pred_letter("(C)", opts) == "C"
    assert S.pred_letter("A. red", opts) == "A"
    assert S.pred_letter("Option B", opts) == "B"
    assert S.pred_letter("green", opts) == "B"
    assert S.pred_letter("Green.", opts) == "B"
    assert S.pred_letter("D", opts) is None          # beyond the options
    assert S.pred_letter("purple", opts) is None
    assert S.pred_letter(None, opts) is None


def test_gold_letter_kinds():
    assert S.gold_letter("(B)") == "B"
    assert S.gold_letter("c") == "C"
    assert S.gold_letter("2", kind="index") == "C"
    assert S.gold_letter("leaf", ["root", "leaf"], kind="text") == "B"
    with pytest.raises(ValueError, match="not one of the options"):
        S.gold_letter("stem", ["root", "leaf"], kind="text")


def test_parse_options_never_evaluates_code():
    assert S.parse_options("['a', 'b']") == ["a", "b"]
    assert S.parse_options('["x"]') == ["x"]
    assert S.parse_options({"B": "two", "A": "one"}) == ["one", "two"]
    assert S.parse_options("[__import__('os').getcwd()]") == ["[__import__('os').getcwd()]"]
    assert S.parse_options(None) == []


def test_yesno_and_exact():
    assert S.score_yesno("Yes, it is.", "1") == 1.0
    assert S.score_yesno("No", "0") == 1.0
    assert S.score_yesno("no", "1") == 0.0
    assert S.score_yesno("maybe", "0") == 0.0
    assert S.score_exact(" Paris. ", "paris") == 1.0
    assert S.score_exact("Lyon", "paris") == 0.0


def test_ocrbench_substring_and_hme_spaces():
    assert S.score_ocrbench("hello world", ["HELLO"]) == 1.0
    assert S.score_ocrbench("x^2+1", ["x^2 + 1"], "HME100k") == 1.0
    assert S.score_ocrbench("x^2+1", ["x^2 + 1"], "IIIT5K") == 0.0   # spaces only dropped for HME100k
    assert S.score_ocrbench("GO", ["STOP"]) == 0.0


def test_relaxed_accuracy():
    assert S.score_relaxed("43", "42") == 1.0          # 2.4 % off
    assert S.score_relaxed("45", "42") == 0.0          # 7.1 % off
    assert S.score_relaxed("2020", "2019") == 0.0      # years exact
    assert S.score_relaxed("France", "france") == 1.0
    assert S.score_relaxed("[1, 5]", "[1, 2]") == 0.5  # list golds item by item


def test_mathvista_rules():
    assert S.score_mathvista("B", "4", "multi_choice", "text", ["3", "4", "5"]) == 1.0
    assert S.score_mathvista("5", "4", "multi_choice", "text", ["3", "4", "5"]) == 0.0
    assert S.score_mathvista("7", "7", "free_form", "integer") == 1.0
    assert S.score_mathvista("7.5", "7", "free_form", "integer") == 0.0
    assert S.score_mathvista("1.54", "1.5", "free_form", "float", precision=1.0) == 1.0
    assert S.score_mathvista("2.3", "2.35", "free_form", "float", precision=2.0) == 0.0


def test_math_equivalence_through_reward_verifier():
    assert S.score_math("\\frac{3}{4}", "0.75") == 1.0
    assert S.score_math("0.7", "0.75") == 0.0
    assert S.score_math(None, "1") == 0.0


def test_iou_acc_at_half_with_normalised_prediction():
    # gold xywh (20, 10, 80, 40) in a 200x100 image == 0-1000 box (100, 100, 500, 500)
    assert S.score_iou("[100, 100, 500, 500]", [20, 10, 80, 40], 200, 100) == 1.0
    # (22,10)-(100,52) px: intersection 78*40 = 3120, union 3276 + 3200 - 3120 = 3356 -> 0.93
    assert S.score_iou("[110, 100, 500, 520]", [20, 10, 80, 40], 200, 100) == 1.0
    # (20,10)-(50,50) px: intersection 1200, union 3200 -> 0.375
    assert S.score_iou("[100, 100, 250, 500]", [20, 10, 80, 40], 200, 100) == 0.0
    assert S.score_iou("the cat", [20, 10, 80, 40], 200, 100) == 0.0
    assert S.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)


def test_exact_compares_numbers_by_value_and_letter_sets():
    assert S.score_exact("12.0", "12") == 1.0
    assert S.score_exact("1,200", "1200") == 1.0
    assert S.score_exact("12.5", "12") == 0.0
    assert S.score_letters("C, A", "A, C") == 1.0
    assert S.score_letters("(A)(C)", "AC") == 1.0
    assert S.score_letters("B and C", "B") == 0.0
    assert S.score_letters("the cat", "A") == 0.0


def test_headline_aggregates():
    from glmv_cli.evaluation.taskdata import aggregate_score

    circ = [{"rule": "circular", "acc": a, "group": g, "source": None}
            for g, a in [(0, 1.0), (0, 1.0), (1, 1.0), (1, 0.0), (2, 0.0)]]
    assert aggregate_score(circ) == pytest.approx(1 / 3)
    cv = [{"rule": "cvbench", "acc": a, "group": None, "source": s}
          for s, a in [("ADE20K", 1.0), ("ADE20K", 0.0), ("COCO", 1.0), ("Omni3D", 0.0), ("Omni3D", 1.0)]]
    # ((0.5 + 1.0) / 2 + 0.5) / 2 = 0.625
    assert aggregate_score(cv) == pytest.approx(0.625)


def test_rotation_moves_the_gold_with_its_option():
    from glmv_cli.evaluation.taskdata import rotate_options

    spec = {"benchmark": "mmbench_en", "columns": {"options": ["A", "B", "C", "D"], "answer": "answer"}}
    r = {"A": "red", "B": "green", "C": "blue", "D": None, "answer": "C"}
    r1 = rotate_options(spec, r, 1)
    assert (r1["A"], r1["B"], r1["C"], r1["answer"]) == ("green", "blue", "red", "B")
    r2 = rotate_options(spec, r, 2)
    assert (r2["A"], r2["B"], r2["C"], r2["answer"]) == ("blue", "red", "green", "A")
