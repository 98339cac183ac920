"""score_many: process-pool scoring equal to serial scoring, judge calls in threads, the watchdog."""

import pytest

from glmv_cli.rewards import RewardPool, config_from_dict, score_detailed, score_many
from tests.rewards.test_judge import Server

B, E = "<|begin_of_box|>", "<|end_of_box|>"
M = "tests.rewards.userfns.geo"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


def _config(judge_url: str) -> dict:
    return {"domains": {"open": {"verifier": "judge", "retries": 0, "timeout_s": 5,
                                 "endpoints": [{"url": judge_url, "model": "m"}]},
                        "mine": {"verifier": "reward_fn", "function": f"{M}:chatty"},
                        "geo3k": {"verifier": "math", "answer_format": "boxed"},
                        # generous: the first symbolic check of a cold process pays sympy's import
                        "math": {"verifier": "math", "timeout_s": 30.0}}}


ITEMS = [
    ("q", resp("\\frac{1}{\\sqrt{2}}"), "\\frac{\\sqrt{2}}{2}", "math", None),
    ("q", resp("\\sin(x)^2 + \\cos(x)^2"), "1", "math", None),  # the symbolic path, under its timeout
    ("q", resp("x \\approx 11"), "11", "math", None),
    ("q", resp("5 \\geq x"), "x \\leq 5", "math", None),
    ("q", resp("N2 + 3H2 ⇌ 2NH2"), "N2 + 3H2 ⇌ 2NH3", "stem", None),
    ("q", resp("the nucleus"), "mitochondria", "stem", None),
    ("q", resp("click(start_box='[150,150]')"), '{"action": "click", "box_2d": [[100, 100, 200, 200]]}', "gui", None),
    ("q", resp("helo world"), "hello world", "ocr", None),
    ("q", resp("[100, 100, 200, 200], [0, 0, 9, 9]"), "[100, 100, 200, 200]", "grounding", None),
    ("q", resp("a cat"), "B", "mcq", {"options": ["a dog", "a cat"]}),
    ("q", resp("7"), "7.0", "counting", None),
    ("q", resp("seven"), "one", "counting", None),  # a bad reference: a counted verifier error
    ("q", "no tags at all", "3", "math", None),
    ("Capital?", resp("paris"), "Paris", "open", None),
    ("Capital?", resp("Lyon"), "Paris", "open", None),
    ("q", "anything", "x", "mine", None),
    ("q", "<think>w</think><answer>\\boxed{12}</answer>", "12", "geo3k", None),
] * 3


@pytest.fixture
def judge():
    s = Server("grade")
    yield s
    s.close()


def test_pooled_scoring_equals_serial_scoring(judge):
    serial_cfg, pool_cfg = config_from_dict(_config(judge.url)), config_from_dict(_config(judge.url))
    serial = [score_detailed(*it[:4], it[4], config=serial_cfg).to_dict() for it in ITEMS]
    with RewardPool(pool_cfg, workers=2, judge_threads=4) as pool:
        pooled = [r.to_dict() for r in pool.score_many(ITEMS)]
        assert pool.started == 2  # the verifier items really went through two processes
    assert pooled == serial  # every field, floats bit for bit (JSON carries their shortest repr)
    assert [r["reward"] for r in serial[:17]] == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, serial[7]["reward"], 0.5, 1.0,
                                                  1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert serial[7]["reward"] == pytest.approx(1 - 1 / 11)
    assert serial[5]["error"].startswith("unverifiable") and serial[11]["error"].startswith("ValueError: counting")


def test_a_stuck_worker_is_replaced_and_its_item_scores_zero():
    cfg = config_from_dict({"domains": {"mine": {"verifier": "reward_fn", "function": f"{M}:freeze"}}})
    items = [("q", f"r{i}", "x", "mine") for i in range(4)] + [("q", "freeze", "x", "mine")] + \
            [("q", f"s{i}", "x", "mine") for i in range(3)]
    with RewardPool(cfg, workers=2, hard_timeout_s=2.0) as pool:
        out = pool.score_many(items)
        assert pool.restarts == 1
        again = pool.score_many(items[:2])  # the replacement worker keeps serving
    assert [r.reward for r in out] == [1.0] * 4 + [0.0] + [1.0] * 3
    assert out[4].error == "timeout (worker stopped)" and [r.reward for r in again] == [1.0, 1.0]


def test_a_crashed_worker_is_replaced_and_named():
    cfg = config_from_dict({"domains": {"mine": {"verifier": "reward_fn", "function": f"{M}:crash"}}})
    items = [("q", "a", "x", "mine"), ("q", "crash", "x", "mine"), ("q", "b", "x", "mine")]
    with RewardPool(cfg, workers=2) as pool:
        out = pool.score_many(items)
        assert pool.restarts == 1
    assert [(r.reward, r.error) for r in out] == [(1.0, None), (0.0, "worker exited with code 3"), (1.0, None)]


def test_one_worker_scores_in_this_process():
    out = score_many([("q", resp("3"), "3", "math"), ("q", resp("4"), "3", "math")], workers=1)
    assert [r.reward for r in out] == [1.0, 0.0]
