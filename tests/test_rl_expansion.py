"""Dynamic sampling expansion: informativeness, EMA update, prompt counts, top-ups, state."""

from __future__ import annotations

import json
import random

import pytest

from glmv_cli.rl.config import ExpansionOptions
from glmv_cli.rl.expansion import (
    ExpansionController,
    ema_update,
    expanded_count,
    is_informative,
    select_groups,
)


def test_is_informative():
    assert not is_informative([1, 1, 1, 1])
    assert not is_informative([0.0, 0.0])
    assert not is_informative([0.4, 0.4, 0.4])  # equal partial scores carry no gradient either
    assert is_informative([1, 0, 1, 1])
    assert is_informative([0.5, 0.75])
    assert not is_informative([0.5, 0.5001], tol=0.001)
    assert not is_informative([])


def test_select_groups_keeps_first_informative_in_order():
    groups = [[1, 1], [0, 1], [0, 0], [1, 0], [0.2, 0.9], [1, 1]]
    assert select_groups(groups, target=2) == ([1, 3], 3)
    assert select_groups(groups, target=10) == ([1, 3, 4], 3)
    assert select_groups([], target=4) == ([], 0)


def test_ema_update_and_expanded_count_hand_values():
    assert ema_update(None, 0.4, 0.1) == 0.4  # first observation initialises
    assert ema_update(0.4, 0.9, 0.1) == pytest.approx(0.9 * 0.4 + 0.1 * 0.9)  # 0.45
    assert expanded_count(64, None, 4.0) == 64
    assert expanded_count(64, 0.5, 4.0) == 128  # exact quotient, no float round-up to 129
    assert expanded_count(64, 0.25, 4.0) == 86  # 85.33 → 86
    assert expanded_count(64, 0.9, 4.0) == 256  # 640 capped at 4 × 64
    assert expanded_count(64, 1.0, 4.0) == 256
    assert expanded_count(10, 0.0, 4.0) == 10
    assert expanded_count(0, 0.5, 4.0) == 0
    assert expanded_count(3, 0.5, 1.5) == 5  # cap ceil(4.5)


def test_controller_sequence():
    c = ExpansionController(target_groups=64, ema_alpha=0.5, max_ratio=4.0, max_topup_rounds=2)
    assert c.prompts_to_roll() == 64 and c.ratio == 1.0
    assert c.update(64, 32) == 0.5
    assert c.metrics() == {
        "expansion_ratio": 1.0,  # this step rolled 64
        "all_equal_ema": 0.5,
        "all_equal_frac": 0.5,
        "informative_frac": 0.5,
        "topup_rounds": 0.0,
        "next_prompts": 128.0,
    }
    assert c.prompts_to_roll() == 128 and c.ratio == 2.0
    assert c.update(128, 0, topup_rounds=1) == 0.25  # 0.5·0.5 + 0.5·0
    assert c.metrics()["expansion_ratio"] == 2.0 and c.metrics()["topup_rounds"] == 1.0
    assert c.prompts_to_roll() == 86
    c.update(86, 86)  # everything saturated this step: 0.625
    c.update(10, 10)  # 0.8125 → 64 / 0.1875 = 341.3, capped at 256
    assert c.ema == pytest.approx(0.8125)
    assert c.prompts_to_roll() == 256 and c.steps == 4


def test_topup_count_is_bounded():
    c = ExpansionController(target_groups=64, ema_alpha=0.5, max_ratio=4.0, max_topup_rounds=2)
    c.update(10, 5)  # ema 0.5
    assert c.topup_count(have_informative=60, rounds_done=0) == 8  # 4 short / (1 − 0.5)
    assert c.topup_count(have_informative=60, rounds_done=1) == 8
    assert c.topup_count(have_informative=60, rounds_done=2) == 0  # rounds spent
    assert c.topup_count(have_informative=64, rounds_done=0) == 0
    assert c.topup_count(have_informative=70, rounds_done=0) == 0
    assert c.topup_count(have_informative=0, rounds_done=0) == 128


def test_update_validation():
    c = ExpansionController(target_groups=8)
    with pytest.raises(ValueError, match="n_groups must be > 0, got 0"):
        c.update(0, 0)
    with pytest.raises(ValueError, match=r"n_all_equal must be in \[0, 4\], got 5"):
        c.update(4, 5)
    with pytest.raises(ValueError, match="target_groups must be > 0"):
        ExpansionController(target_groups=0)
    with pytest.raises(ValueError, match=r"ema_alpha must be in \(0, 1\]"):
        ExpansionController(target_groups=8, ema_alpha=0.0)
    with pytest.raises(ValueError, match="max_ratio must be >= 1"):
        ExpansionController(target_groups=8, max_ratio=0.5)


def test_state_roundtrip_through_json_continues_identically():
    a = ExpansionController(target_groups=32, ema_alpha=0.1, max_ratio=3.0, max_topup_rounds=1)
    b = ExpansionController(target_groups=32, ema_alpha=0.1, max_ratio=3.0, max_topup_rounds=1)
    rng = random.Random(0)
    counts = [(g, rng.randint(0, g)) for g in (rng.randint(32, 96) for _ in range(20))]
    for g, e in counts[:10]:
        a.update(g, e)
        b.update(g, e)
    restored = ExpansionController(target_groups=32, ema_alpha=0.1, max_ratio=3.0, max_topup_rounds=1)
    restored.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert restored.state_dict() == a.state_dict()
    for g, e in counts[10:]:
        assert restored.prompts_to_roll() == a.prompts_to_roll()
        a.update(g, e)
        restored.update(g, e)
        assert restored.ema == a.ema  # bit-exact
    with pytest.raises(ValueError, match="unsupported expansion state version 7"):
        restored.load_state_dict({"version": 7})


def test_simulated_run_keeps_b_informative_groups():
    """Prompts whose groups come back all-equal with probability 0.6: after warm-up, the first
    round alone yields about B informative groups, and top-ups fill the rest."""
    rng = random.Random(1)
    B = 32
    c = ExpansionController(target_groups=B, ema_alpha=0.2, max_ratio=4.0, max_topup_rounds=2)
    shortfalls = []
    for _ in range(60):
        groups, rounds = [], 0
        n = c.prompts_to_roll()
        groups += [[1, 1] if rng.random() < 0.6 else [0, 1] for _ in range(n)]
        keep, _ = select_groups(groups, B)
        while (extra := c.topup_count(len(keep), rounds)) > 0:
            groups += [[1, 1] if rng.random() < 0.6 else [0, 1] for _ in range(extra)]
            keep, _ = select_groups(groups, B)
            rounds += 1
        _, n_equal = select_groups(groups, B)
        c.update(len(groups), n_equal, topup_rounds=rounds)
        shortfalls.append(B - len(keep))
    assert c.ema == pytest.approx(0.6, abs=0.1)
    assert 2.0 <= c.ratio <= 3.2  # ≈ 1 / (1 − 0.6) = 2.5
    assert sum(shortfalls[10:]) <= 2  # top-ups close nearly every gap


def test_options_build_controllers():
    on = ExpansionOptions(batch_prompts=16, expansion_ema_alpha=0.5, max_expansion_ratio=2.0, max_topup_rounds=3).controller()
    on.update(4, 3)
    assert on.prompts_to_roll() == 32 and on.max_topup_rounds == 3
    off = ExpansionOptions(batch_prompts=16, expansion=False).controller()
    off.update(4, 3)
    assert off.prompts_to_roll() == 16 and off.topup_count(0, 0) == 0
