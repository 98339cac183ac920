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


def test_chartqapro_official_rules():
    from glmv_cli.evaluation.scoring_official import score_chartqapro as cq

    assert cq("43", ["42"], "Factoid", ["NO"]) == 1.0                 # 2.4 % off
    assert cq("45", ["42"], "Factoid", ["NO"]) == 0.0                 # 7.1 % off
    assert cq("2020", ["2019"], "Factoid", ["YES"]) == 0.0            # Year column: exact
    assert cq("2019", ["10", "2019"], "Conversational", ["NO", "YES"]) == 1.0   # the last turn's flag
    # text by ANLS (threshold 0.5): "united state" vs "united states" is 1 edit in 13 characters
    assert cq("United State", ["United States"], "Factoid", ["NO"]) == pytest.approx(12 / 13)
    assert cq("Canada", ["United States"], "Factoid", ["NO"]) == 0.0  # similarity under 0.5 scores 0
    assert cq("['North', 'South']", ["[North, South]"], "Factoid", ["NO"]) == 1.0   # unquoted list gold
    assert cq("['North']", ["[North, South]"], "Factoid", ["NO"]) == 0.5            # a missing item scores 0


def test_mathvista_official_rules():
    from glmv_cli.evaluation.scoring_official import score_mathvista as mv

    assert mv("B", "4", "multi_choice", "text", ["3", "4", "5"]) == 1.0
    assert mv("(C) 5", "5", "multi_choice", "text", ["3", "4", "5"]) == 1.0
    assert mv("The answer is C", "square", "multi_choice", "text", ["circle", "triangle", "square"]) == 1.0
    assert mv("the square", "square", "multi_choice", "text", ["circle", "triangle", "square"]) == 1.0  # nearest
    assert mv("12 cm", "12", "free_form", "integer") == 1.0
    assert mv("3.7", "3", "free_form", "integer") == 1.0                 # int(float("3.7")) == 3
    assert mv("7.5", "7", "free_form", "integer") == 1.0 and mv("8", "7", "free_form", "integer") == 0.0
    assert mv("1.54", "1.5", "free_form", "float", precision=1.0) == 1.0
    assert mv("2.3", "2.35", "free_form", "float", precision=2.0) == 0.0


def test_mmmu_open_questions_with_list_golds():
    from glmv_cli.evaluation.scoring_official import score_mmmu_open as mo

    assert mo("3.429", "['24/7', '3.429']") == 1.0
    assert mo("24/7", "['24/7', '3.429']") == 1.0                       # string gold inside the answer
    assert mo("3.43", "3.429") == 1.0                                    # numbers rounded to 2 decimals
    assert mo("3.44", "3.429") == 0.0
    assert mo("about 12 m/s", "12") == 1.0
    assert mo("cat", "a") == 0.0                                         # one-letter golds are padded


def test_dynamath_and_chartmuseum_rules():
    from glmv_cli.evaluation.scoring_official import score_chartmuseum as cm
    from glmv_cli.evaluation.scoring_official import score_dynamath as dm

    assert dm("2.5004", "2.5", "float") == 1.0 and dm("2.502", "2.5", "float") == 0.0   # within 0.001
    assert dm("2π", str(2 * 3.141592653589793), "float") == 1.0
    assert dm("(B) g", "B", "multiple choice") == 1.0 and dm("A or B", "B", "multiple choice") == 0.0
    assert dm("blue", "Blue circle", "free form") == 1.0
    assert cm("0.6", "60%") == 1.0 and cm("83.2%", "83.3%") == 1.0 and cm("91.05", "90.05") == 0.0
    assert cm("2016", "2015") == 0.0 and cm("France", "france") == 1.0


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


def test_aggregates_by_hand():
    from glmv_cli.evaluation.protocols import a_circular, a_cvbench, a_settings

    circ = [{"score": a, "facts": {"id": i}} for i, a in [(0, 1.0), (1_000_000, 1.0), (1, 1.0), (1_000_001, 0.0), (2, 0.0)]]
    assert a_circular(circ)["score"] == pytest.approx(1 / 3)             # questions 0 | 1 | 2
    cv = [{"score": a, "facts": {"source": s}}
          for s, a in [("ADE20K", 1.0), ("ADE20K", 0.0), ("COCO", 1.0), ("Omni3D", 0.0), ("Omni3D", 1.0)]]
    assert a_cvbench(cv)["score"] == pytest.approx(0.625)               # ((0.5 + 1.0) / 2 + 0.5) / 2
    st = [{"score": a, "facts": {"config": c}} for c, a in [("standard", 1.0), ("standard", 0.0), ("vision", 1.0)]]
    assert a_settings(st)["score"] == pytest.approx(0.75)               # (0.5 + 1.0) / 2, not 2 / 3
