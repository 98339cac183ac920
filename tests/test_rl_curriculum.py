"""Curriculum sampler: tiers, weights, pass-rate updates, domain mixture, exact resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from glmv_cli import options as O

from glmv_cli.errors import GlmvError
from glmv_cli.rl.config import CurriculumOptions
from glmv_cli.rl.curriculum import (
    TIER_NAMES,
    UNSEEN,
    CurriculumSampler,
    assign_tier,
    estimate_pass_rate,
    tier_weights,
)


@pytest.mark.parametrize(
    "p,tier",
    [
        (0.0, "impossible"),
        (0.049, "impossible"),
        (0.05, "hard"),
        (1 / 8, "hard"),
        (0.25, "hard"),
        (0.3, "medium"),
        (0.5, "medium"),
        (5 / 8, "medium"),
        (0.7, "easy"),
        (7 / 8, "easy"),
        (0.95, "trivial"),
        (1.0, "trivial"),
        (None, "unseen"),
        (float("nan"), "unseen"),
    ],
)
def test_assign_tier(p, tier):
    assert TIER_NAMES[assign_tier(p)] == tier


def test_assign_tier_custom_boundaries():
    assert assign_tier(0.5, (0.5, 0.6, 0.8, 0.9)) == 1
    assert assign_tier(0.59, (0.5, 0.6, 0.8, 0.9)) == 1
    assert assign_tier(None, (0.5, 0.6, 0.8, 0.9)) == UNSEEN


def test_tier_weights_shares():
    w = [0.1, 1.0, 1.0, 0.5, 0.1, 1.0]
    assert tier_weights([10, 0, 10, 0, 0, 0], w) == pytest.approx([1 / 11, 0, 10 / 11, 0, 0, 0])
    # every tier present: the middle dominates but the ends keep a share
    shares = tier_weights([100, 100, 100, 100, 100, 0], w)
    assert shares == pytest.approx([0.1 / 2.7, 1 / 2.7, 1 / 2.7, 0.5 / 2.7, 0.1 / 2.7, 0.0])
    assert min(shares[:5]) > 0.03
    assert tier_weights([0, 0, 0, 0, 0, 0], w) == [0.0] * 6
    with pytest.raises(ValueError, match="6 tier counts but 5 weights"):
        tier_weights([1] * 6, [1] * 5)


def test_estimate_pass_rate():
    assert estimate_pass_rate(0, 0) is None
    assert estimate_pass_rate(3, 8) == 3 / 8
    assert estimate_pass_rate(6, 8, 2, 4) == pytest.approx(8 / 12)


def test_update_with_prior_and_decay_hand_values():
    s = CurriculumSampler(["a", "b"], offline_pass_rates={"a": 0.5, "zzz": 0.9}, prior_strength=4, decay=0.5)
    assert s.offline_matched == 1
    assert s.pass_rate("a") == 0.5 and s.tier_of("a") == "medium"
    assert s.pass_rate("b") is None and s.tier_of("b") == "unseen"
    # (6 + 4·0.5) / (8 + 4)
    assert s.update("a", [1, 1, 1, 1, 1, 1, 0, 0]) == pytest.approx(8 / 12)
    assert s.tier_of("a") == "medium"
    # old counts halve: successes 3 + 8, attempts 4 + 8 → (11 + 2) / (12 + 4)
    assert s.update("a", [1] * 8) == pytest.approx(13 / 16)
    assert s.tier_of("a") == "easy"
    assert s.update("b", [0.0] * 8) == 0.0 and s.tier_of("b") == "impossible"
    assert s.update("b", [0.5, 1.0]) == pytest.approx((0 * 0.5 + 1.5) / (8 * 0.5 + 2))  # graded rewards
    assert s.visits.tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"rewards for 'a' must be in \[0, 1\]"):
        s.update("a", [1.5])
    with pytest.raises(KeyError, match="unknown record id 'q'"):
        s.update("q", [1])


def _four(**kw):
    s = CurriculumSampler(["a", "b", "c", "d"], ["stem", "stem", "ocr", "ocr"], seed=3, **kw)
    s.update("a", [1] * 8)  # trivial: weight 0.1; b, c, d unseen: weight 1
    return s


def test_probabilities_tiers_and_domain_mixture():
    assert _four().probabilities().tolist() == pytest.approx([0.1 / 3.1, 1 / 3.1, 1 / 3.1, 1 / 3.1])
    # each domain gets half the mass whatever its tiers; tiers act within the domain
    mixed = _four(domain_weights={"stem": 1, "ocr": 1}).probabilities()
    assert mixed.tolist() == pytest.approx([0.5 * 0.1 / 1.1, 0.5 * 1 / 1.1, 0.25, 0.25])
    assert _four(mode="uniform").probabilities().tolist() == pytest.approx([0.25] * 4)
    skew = _four(mode="uniform", domain_weights={"stem": 3, "ocr": 1}).probabilities()
    assert skew.tolist() == pytest.approx([0.375, 0.375, 0.125, 0.125])
    # excluding b leaves a alone carrying the stem domain's share
    assert mixed_excl(_four(domain_weights={"stem": 1, "ocr": 1})) == pytest.approx([0.5, 0.0, 0.25, 0.25])
    off = _four(domain_weights={"stem": 0, "ocr": 1}).probabilities()
    assert off.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5])


def mixed_excl(s):
    return s.probabilities(exclude={"b"}).tolist()


def test_domain_weight_errors():
    with pytest.raises(GlmvError, match=r"^--domain-weights names domain 'stme', which no record has \(domains in the data: ocr, stem\)$"):
        _four(domain_weights={"stme": 1, "stem": 1, "ocr": 1})
    with pytest.raises(GlmvError, match=r"^--domain-weights has no weight for domain 'ocr'; give one for every domain \(ocr, stem\)$"):
        _four(domain_weights={"stem": 1})
    with pytest.raises(GlmvError, match="record id 'x' appears more than once"):
        CurriculumSampler(["x", "y", "x"])


def test_sample_distinct_deterministic_and_exclusion():
    ids = [f"s{i}" for i in range(50)]
    a = CurriculumSampler(ids, seed=11)
    b = CurriculumSampler(ids, seed=11)
    c = CurriculumSampler(ids, seed=12)
    first = a.sample(20)
    assert len(first) == 20 and len(set(first)) == 20
    assert b.sample(20) == first
    assert c.sample(20) != first
    more = a.sample(30, exclude=first)
    assert set(more).isdisjoint(first) and len(set(more)) == 30
    assert a.sample(5, exclude=ids) == []  # nothing eligible
    small = CurriculumSampler(["p", "q", "r", "s"], seed=0)
    many = small.sample(10)  # more than the dataset: full without-replacement rounds
    assert sorted(many[:4]) == ["p", "q", "r", "s"] and sorted(many[4:8]) == ["p", "q", "r", "s"]
    assert len(many) == 10 and len(set(many[8:])) == 2


def test_sampling_frequencies_follow_tier_weights():
    # 10 trivial samples (weight 0.1) and 10 medium ones (weight 1): medium gets 10/11 of draws
    ids = [f"t{i}" for i in range(10)] + [f"m{i}" for i in range(10)]
    s = CurriculumSampler(ids, seed=5)
    for i in range(10):
        s.update(f"t{i}", [1] * 8)
        s.update(f"m{i}", [1] * 4 + [0] * 4)
    assert s.tier_histogram() == {"impossible": 0, "hard": 0, "medium": 10, "easy": 0, "trivial": 10, "unseen": 0}
    draws = [s.sample(1)[0] for _ in range(4000)]
    medium = sum(d.startswith("m") for d in draws) / len(draws)
    assert medium == pytest.approx(10 / 11, abs=0.02)
    assert min(draws.count(f"t{i}") for i in range(10)) > 0  # trivial samples are not starved
    assert s.metrics()["tier_share_medium"] == pytest.approx(10 / 11)
    uni = CurriculumSampler(ids, seed=5, mode="uniform")
    for i in range(10):
        uni.update(f"t{i}", [1] * 8)
    draws = [uni.sample(1)[0] for _ in range(4000)]
    assert sum(d.startswith("m") for d in draws) / len(draws) == pytest.approx(0.5, abs=0.03)


def test_tier_histogram_and_metrics():
    s = _four(domain_weights={"stem": 1, "ocr": 1})
    s.update("c", [0] * 8)
    assert s.tier_histogram() == {"impossible": 1, "hard": 0, "medium": 0, "easy": 0, "trivial": 1, "unseen": 2}
    assert s.tier_histogram("ocr") == {"impossible": 1, "hard": 0, "medium": 0, "easy": 0, "trivial": 0, "unseen": 1}
    m = s.metrics()
    assert m["tier_trivial"] == 1.0 and m["coverage"] == 0.5
    assert m["pass_rate_mean"] == 0.5  # a at 1.0, c at 0.0
    assert sum(m[f"tier_share_{t}"] for t in TIER_NAMES) == pytest.approx(1.0)
    with pytest.raises(KeyError):
        s.tier_histogram("video")
    dm = s.domain_metrics()
    assert sorted(dm) == ["ocr", "stem"]
    assert dm["stem"]["draw_share"] == pytest.approx(0.5) and dm["ocr"]["draw_share"] == pytest.approx(0.5)
    assert dm["ocr"]["tier_impossible"] == 1.0 and dm["ocr"]["pass_rate_mean"] == 0.0
    assert dm["stem"]["pass_rate_mean"] == 1.0 and dm["stem"]["coverage"] == 0.5


def _true_rate(rid: str) -> float:
    return (int(rid[1:]) % 11) / 10  # 0.0 … 1.0: all tiers occur


def _run(sampler: CurriculumSampler, steps: range, log: list[list[str]]) -> None:
    for step in steps:
        batch = sampler.sample(6)
        extra = sampler.sample(3, exclude=batch)  # a top-up round
        log.append(batch + extra)
        for rid in batch + extra:
            rng = random.Random(f"{rid}:{step}")
            sampler.update(rid, [1.0 if rng.random() < _true_rate(rid) else 0.0 for _ in range(8)])


def test_resume_reproduces_uninterrupted_run():
    ids = [f"r{i}" for i in range(60)]
    domains = ["stem" if i % 3 else "ocr" for i in range(60)]
    grades = {f"r{i}": _true_rate(f"r{i}") for i in range(0, 60, 2)}

    def make() -> CurriculumSampler:
        return CurriculumSampler(
            ids, domains, seed=1234, offline_pass_rates=grades, domain_weights={"stem": 2, "ocr": 1}
        )

    straight: list[list[str]] = []
    full = make()
    _run(full, range(30), straight)

    resumed_log: list[list[str]] = []
    first = make()
    _run(first, range(12), resumed_log)
    blob = json.dumps(first.state_dict())  # what a checkpoint writes
    del first
    second = make()
    second.load_state_dict(json.loads(blob))
    _run(second, range(12, 30), resumed_log)

    assert resumed_log == straight
    assert second.state_dict() == full.state_dict()
    assert np.array_equal(second.pass_rates(), full.pass_rates(), equal_nan=True)
    # the curriculum did move: several tiers are populated
    assert sum(1 for v in full.tier_histogram().values() if v) >= 4


def test_state_dict_is_json_and_sparse():
    s = _four()
    st = s.state_dict()
    assert json.loads(json.dumps(st)) == st
    assert st["index"] == [0] and st["successes"] == [8.0] and st["attempts"] == [8.0]
    assert st["rng"]["bit_generator"] == "PCG64" and st["rng"]["state"].startswith("0x")


def test_load_state_rejects_other_dataset():
    st = _four().state_dict()
    other = CurriculumSampler(["a", "b", "c", "e"], ["stem", "stem", "ocr", "ocr"])
    with pytest.raises(GlmvError, match=r"^curriculum sampler state was saved for a different dataset \(4 records"):
        other.load_state_dict(st)
    with pytest.raises(GlmvError, match="has version 9, expected 1"):
        other.load_state_dict({**st, "version": 9})


def test_options_build_sampler():
    opts = CurriculumOptions(curriculum="tiered", tier_weight_trivial=0.2, domain_weights={"stem": 1.0, "ocr": 3.0})
    O.validate(opts)
    s = CurriculumSampler(["a", "b", "c", "d"], ["stem", "stem", "ocr", "ocr"], seed=0, **opts.sampler_kwargs())
    s.update("a", [1] * 8)
    assert s.weights["trivial"] == 0.2
    assert s.probabilities().tolist() == pytest.approx([0.25 * 0.2 / 1.2, 0.25 / 1.2, 0.375, 0.375])
