"""Packing algorithm cores: BFD, FFD baseline, stats, seeded shuffling and weights."""

import numpy as np
import pytest

from glmv_cli.data.packing import (best_fit_decreasing, check_packing, first_fit_decreasing, pack_stats,
                                   repeat_counts, shuffle_packs)


def test_bfd_hand_computed():
    # sorted: 6(i1) 5(i3) 4(i0) 3(i4) 2(i2) 1(i5), capacity 10
    # 6 -> new A (room 4); 5 -> new B (room 5); 4 -> best fit A (room 0)
    # 3 -> B (room 2); 2 -> B (room 0); 1 -> new C
    assert best_fit_decreasing([4, 6, 2, 5, 3, 1], 10) == [[1, 0], [3, 4, 2], [5]]


def test_bfd_and_ffd_differ_hand_computed():
    # sorted: 9(i1) 9(i4) 8(i2) 8(i3) 5(i5) 4(i0) 1(i6), capacity 10
    # rooms after the first six: A=1 B=1 C=2 D=2 E=1 (E = 5+4, updated last)
    # BFD: 1 goes to a room-1 pack, the most recently updated one (E); FFD: to the first pack (A)
    lengths = [4, 9, 8, 8, 9, 5, 1]
    assert best_fit_decreasing(lengths, 10) == [[1], [4], [2], [3], [5, 0, 6]]
    assert first_fit_decreasing(lengths, 10) == [[1, 6], [4], [2], [3], [5, 0]]
    # 7->A (room 3), 5->B (5), 3->A (exact fit, room 0), 2->B (3)
    assert best_fit_decreasing([2, 3, 5, 7], 10) == [[3, 1], [2, 0]]


def test_exact_fill_and_full_packs_leave_index():
    assert best_fit_decreasing([10, 10, 5, 5], 10) == [[0], [1], [2, 3]]


def test_invalid_lengths():
    with pytest.raises(ValueError, match="sample 1 has length 11, outside 1..10"):
        best_fit_decreasing([3, 11], 10)
    with pytest.raises(ValueError, match="sample 0 has length 0"):
        first_fit_decreasing([0], 10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lognormal_mix_invariants_and_fill(seed):
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(300), 1.0, 5000)), 8, 2048).astype(int).tolist()
    bfd = best_fit_decreasing(lengths, 2048)
    ffd = first_fit_decreasing(lengths, 2048)
    check_packing(lengths, bfd, 2048)
    check_packing(lengths, ffd, 2048)
    s = pack_stats(lengths, bfd, 2048)
    assert s.samples == 5000 and s.tokens == sum(lengths)
    assert s.packs <= s.lower_bound * 1.0005 + 1
    assert s.fill >= 0.99
    assert best_fit_decreasing(lengths, 2048) == bfd  # a pure function


def test_check_packing_detects_errors():
    with pytest.raises(ValueError, match="pack 0 holds 12 tokens > seq_len 10"):
        check_packing([6, 6], [[0, 1]], 10)
    with pytest.raises(ValueError, match="sample 1 appears 0 times"):
        check_packing([6, 6], [[0]], 10)
    with pytest.raises(ValueError, match="sample 0 appears 2 times"):
        check_packing([6, 6], [[0], [0], [1]], 10)


def test_stats_values():
    s = pack_stats([4, 6, 2, 5, 3, 1], [[1, 0], [3, 4, 2], [5]], 10)
    assert s.as_dict() == {"samples": 6, "packs": 3, "tokens": 21, "seq_len": 10, "fill_efficiency": 0.7,
                           "packs_lower_bound": 3}


def test_shuffle_is_seeded_permutation():
    packs = [[i] for i in range(50)]
    a, b, c = shuffle_packs(packs, 1), shuffle_packs(packs, 1), shuffle_packs(packs, 2)
    assert a == b and a != c and sorted(a) == packs


def test_repeat_counts():
    assert repeat_counts(5, 2.0, 0, 0).tolist() == [2] * 5
    assert repeat_counts(4, 0.0, 0, 0).tolist() == [0] * 4
    r = repeat_counts(20000, 1.25, 7, 3)
    assert set(r.tolist()) == {1, 2} and abs(r.mean() - 1.25) < 0.01
    assert (repeat_counts(100, 0.5, 7, 3) == repeat_counts(100, 0.5, 7, 3)).all()
    assert (repeat_counts(100, 0.5, 7, 3) != repeat_counts(100, 0.5, 7, 4)).any()
    with pytest.raises(ValueError, match="weight must be a finite number >= 0, got -1"):
        repeat_counts(3, -1, 0, 0)
