"""GLM's GUI action grammar beside the JSON form: parsing, the location rules, bad input."""

import pytest

from glmv_cli.rewards import score_detailed
from glmv_cli.rewards.gui import ActionError, parse_action
from glmv_cli.rewards.verifiers import verify_gui

JBOX = '{"action": "click", "box_2d": [[100, 100, 200, 200]]}'
CALL = [
    ("left_click(start_box='[150,150]', element_info='OK button')", "left_click(start_box='[155,145]')", 1.0),
    ("left_click(start_box='[190,150]')", "left_click(start_box='[150,150]')", 0.0),  # 40 > point_tol 20
    ("right_click(start_box='[150,150]')", "left_click(start_box='[150,150]')", 0.0),
    ("left_click(start_box='[150, 150]')", "left_click(start_box='[100,100,200,200]')", 1.0),  # point in box
    ("left_click(start_box='[300,150]')", "left_click(start_box='[100,100,200,200]')", 0.0),
    ("left_double_click(start_box='[110,100,210,200]')", "left_double_click(start_box='[100,100,200,200]')", 1.0),
    ("left_drag(start_box='[10,10]', end_box='[500,500]')", "left_drag(start_box='[12,15]', end_box='[505,490]')", 1.0),
    ("left_drag(start_box='[10,10]', end_box='[700,500]')", "left_drag(start_box='[12,15]', end_box='[505,490]')", 0.0),
    ("type(content='hello world')", "type(content='hello world')", 1.0),
    ("type(content='hello wrld')", "type(content='hello world')", 1 - 1 / 11),
    ("type(content='it\\'s')", "type(content=\"it's\")", 1.0),
    ("key(keys='ctrl+c')", "key(keys='Ctrl+C')", 1.0), ("key(keys='ctrl+v')", "key(keys='ctrl+c')", 0.0),
    ("scroll(start_box='[500,500]', direction='down')", "scroll(start_box='[505,495]', direction='down', step=5)", 1.0),
    ("scroll(start_box='[500,500]', direction='down', step=3)", "scroll(start_box='[500,500]', direction='down')", 0.0),
    ("scroll(start_box='[500,500]', direction='up')", "scroll(start_box='[500,500]', direction='down')", 0.0),
    ("WAIT()", "WAIT()", 1.0), ("DONE()", "wait()", 0.0), ("FAIL()", "FAIL()", 1.0),
    ("CLICK(point=(150,150), element_info='Search')", "CLICK(point=(150,150), box=[[100,100,200,200]])", 1.0),
    ("CLICK(point=(250,150))", "CLICK(point=(150,150), box=[[100,100,200,200]])", 0.0),
    ("TYPE(point=(150,150), text='cats')", "TYPE(point=(150,150), text='cats')", 1.0),
    ("KEY_PRESS(key='enter')", "KEY_PRESS(key='Enter')", 1.0), ("ANSWER(content='42')", "ANSWER(content='42')", 1.0),
    # the JSON and call forms meet: the same canonical action
    ("click(start_box='[[150,150]]')", JBOX, 1.0),
    ("Action: click(start_box='<|box_start|>(150,150)<|box_end|>')", JBOX, 1.0),
    ('{"action_type": "click", "box_2d": [[110,100,210,200]]}', JBOX, 1.0),
    ('{"action_type": "input_text", "text": "hi", "box_2d": [[100,100,200,200]], "override": true}',
     '{"action_type": "input_text", "text": "hi", "box_2d": [[100,100,200,200]], "override": true}', 1.0),
    ('{"action_type": "input_text", "text": "hi", "box_2d": [[100,100,200,200]], "override": false}',
     '{"action_type": "input_text", "text": "hi", "box_2d": [[100,100,200,200]], "override": true}', 0.0),
    # unreadable predictions earn nothing
    ("left_click(start_box='[150,150]')\nDONE()", "left_click(start_box='[150,150]')", 0.0),  # two actions
    ("left_click('[150,150]')", "left_click(start_box='[150,150]')", 0.0),  # positional
    ("left_click(start_box='[150,1500]')", "left_click(start_box='[150,150]')", 0.0),  # outside 0-1000
    ("left_click(start_box='[200,200,100,100]')", "left_click(start_box='[100,100,200,200]')", 0.0),  # swapped
    ("left_click(start_box='[150,150]'", "left_click(start_box='[150,150]')", 0.0),
    ("left_click(start_box=__import__('os'))", "left_click(start_box='[150,150]')", 0.0),  # never evaluated
    ("I would click the OK button", "left_click(start_box='[150,150]')", 0.0),
]


@pytest.mark.parametrize("pred,ref,want", CALL)
def test_gui_forms(pred, ref, want):
    assert verify_gui(pred, ref) == pytest.approx(want)


def test_canonical_action():
    a = parse_action("scroll(start_box='[500, 400]', direction='Down', element_info='list')")
    assert (a.name, a.loc.point, a.args) == ("scroll", (500.0, 400.0), {"direction": "down", "step": "5"})
    with pytest.raises(ActionError, match="argument 'x' given twice"):
        parse_action("left_click(x=1, x=2)")


def test_bad_grammar_reference_is_an_error_naming_it():
    res = score_detailed(None, "<think>w</think><answer><|begin_of_box|>WAIT()<|end_of_box|></answer>",
                         "left_click(start_box='[5,5,1,1]')", "gui")
    assert res.reward == 0.0 and "gui reference 'left_click(start_box='[5,5,1,1]')' is not a GUI action" in res.error
    assert "a box needs x1 < x2 and y1 < y2" in res.error
