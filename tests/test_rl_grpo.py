"""GRPO core on hand-computed tensors: advantages, clipped loss, aggregation, masks, KL/entropy."""

from __future__ import annotations

import math

import pytest
import torch

from glmv_cli.rl import config as rlconfig
from glmv_cli.rl.grpo import (
    AGG_MODES,
    KL_ESTIMATORS,
    entropy_from_logits,
    group_advantages,
    kl_penalty,
    loss_mask_from_flags,
    masked_aggregate,
    policy_loss,
    rlcs_loss,
    token_logprobs,
)



def f(t: torch.Tensor) -> float:
    return float(t.detach())


def approx(x, rel=1e-5, abs=1e-6):
    return pytest.approx(x, rel=rel, abs=abs)


# ---------------------------------------------------------------- advantages


def test_group_advantages_mean_baseline_2d_and_flat():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(r)
    assert adv.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [0.75, -0.25, -0.25, -0.25]]
    flat = group_advantages(r.flatten(), group_size=4)
    assert flat.shape == (12,)
    assert torch.equal(flat, adv.flatten())


def test_group_advantages_std_normalisation():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.3, 0.3, 0.3]])
    adv = group_advantages(r, std_normalize=True, eps=1e-6)
    # sample std of [1, 0, 0, 1] = sqrt(4 * 0.25 / 3) = 0.57735; 0.5 / 0.57735 = 0.866025
    assert adv[0].tolist() == approx([0.866025, -0.866025, -0.866025, 0.866025])
    # an all-equal group stays exactly zero (0 / (0 + eps))
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    # the module doc's figure: 1 of 8 correct → std 0.354, the success scaled by 2.83×
    one = group_advantages(torch.tensor([[1.0] + [0.0] * 7]), std_normalize=True)
    assert float(one[0, 0]) == approx(0.875 / math.sqrt(0.125), rel=1e-4)


def test_group_advantages_singleton_groups_and_bad_shapes():
    assert group_advantages(torch.tensor([[0.7], [0.2]]), std_normalize=True).tolist() == [[0.0], [0.0]]
    with pytest.raises(ValueError, match="7 rewards do not split into groups of 4"):
        group_advantages(torch.zeros(7), group_size=4)
    with pytest.raises(ValueError, match="flat rewards need group_size > 0"):
        group_advantages(torch.zeros(8))
    with pytest.raises(ValueError, match=r"group_size=3 but rewards have shape \(2, 4\)"):
        group_advantages(torch.zeros(2, 4), group_size=3)


# ---------------------------------------------------------------- policy loss


def _case():
    """Row 0 has A = +1, row 1 has A = −1; ratios chosen to hit every clip branch."""
    ratios = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.5, 2.0]])
    old = torch.log(torch.tensor([[0.5, 0.2, 0.4], [0.3, 0.6, 0.1]]))
    logp = (old + torch.log(ratios)).clone().requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 3)
    return logp, old, adv, mask


def test_policy_loss_asymmetric_clip_hand_values():
    logp, old, adv, mask = _case()
    loss, m = policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, agg="token-mean")
    # per token: row0 = max(-ρ, -clip(ρ, .8, 1.28)) = [-1, -1.28, -0.5]
    #            row1 = max(ρ, clip(ρ, .8, 1.28))   = [1.1, 0.8, 2.0]
    assert f(loss) == approx((-1 - 1.28 - 0.5 + 1.1 + 0.8 + 2.0) / 6)
    assert m["clip_frac_high"] == approx(1 / 6)  # row 0, ρ = 1.5 > 1.28 with A > 0
    assert m["clip_frac_low"] == approx(1 / 6)  # row 1, ρ = 0.5 < 0.8 with A < 0
    assert m["dual_clip_frac"] == 0.0
    assert m["ratio_max"] == approx(2.0) and m["ratio_min"] == approx(0.5)
    assert m["ratio_mean"] == approx((1 + 1.5 + 0.5 + 1.1 + 0.5 + 2.0) / 6)
    assert m["approx_kl"] == approx(-sum(map(math.log, [1, 1.5, 0.5, 1.1, 0.5, 2.0])) / 6)
    assert m["tokens"] == 6.0
    loss.backward()
    # clipped tokens carry no gradient; unclipped ones get -A·ρ / N
    assert logp.grad.tolist() == [
        approx([-1 / 6, 0.0, -0.5 / 6]),
        approx([1.1 / 6, 0.0, 2.0 / 6]),
    ]


def test_symmetric_clip_differs_from_clip_higher():
    logp, old, adv, mask = _case()
    sym, m = policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    # the only difference: row 0's ρ = 1.5 is now clipped at 1.2 instead of 1.28
    assert f(sym) == approx((-1 - 1.2 - 0.5 + 1.1 + 0.8 + 2.0) / 6)
    # ρ = 1.1 under A < 0 stays inside both clips; a token at ρ = 1.25, A > 0 is clipped only by
    # the symmetric range
    old2 = torch.zeros(1, 1)
    lp = torch.log(torch.tensor([[1.25]]))
    _, m_sym = policy_loss(lp, old2, torch.tensor([1.0]), torch.ones(1, 1), eps_low=0.2, eps_high=0.2)
    _, m_hi = policy_loss(lp, old2, torch.tensor([1.0]), torch.ones(1, 1), eps_low=0.2, eps_high=0.28)
    assert (m_sym["clip_frac_high"], m_hi["clip_frac_high"]) == (1.0, 0.0)


def test_dual_clip_bounds_negative_advantage_loss():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[5.0, 2.0]])).requires_grad_(True)
    adv = torch.tensor([-1.0])
    plain, _ = policy_loss(logp, old, adv, torch.ones(1, 2))
    assert f(plain) == approx((5.0 + 2.0) / 2)
    dual, m = policy_loss(logp, old, adv, torch.ones(1, 2), clip_ratio_c=3.0)
    assert f(dual) == approx((3.0 + 2.0) / 2)
    assert m["dual_clip_frac"] == approx(0.5)
    dual.backward()
    assert logp.grad.tolist() == [approx([0.0, 2.0 / 2])]
    with pytest.raises(ValueError, match="clip_ratio_c must be > 1"):
        policy_loss(logp, old, adv, torch.ones(1, 2), clip_ratio_c=0.5)


def test_on_policy_first_step_is_reinforce_with_group_baseline():
    old = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.25]]))
    logp = old.clone().requires_grad_(True)
    adv = group_advantages(torch.tensor([1.0, 0.0]), group_size=2)  # [0.5, -0.5]
    loss, m = policy_loss(logp, old, adv, torch.ones(2, 2))
    assert f(loss) == approx(0.0)
    assert m["approx_kl"] == 0.0 and m["clip_frac_high"] == 0.0 and m["clip_frac_low"] == 0.0
    loss.backward()
    assert logp.grad.tolist() == [approx([-0.125, -0.125]), approx([0.125, 0.125])]


def test_per_token_advantages_accepted_and_shape_errors():
    logp, old, _, mask = _case()
    adv_tok = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    a, _ = policy_loss(logp, old, adv_tok, mask)
    b, _ = policy_loss(logp, old, torch.tensor([1.0, -1.0]), mask)
    assert f(a) == approx(f(b))
    with pytest.raises(ValueError, match="does not fit logp"):
        policy_loss(logp, old, torch.ones(3), mask)
    with pytest.raises(ValueError, match="must match"):
        policy_loss(logp, old, torch.ones(2), torch.ones(2, 4))


# ---------------------------------------------------------------- aggregation


X = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
M = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("token-mean", 15 / 5),  # (1+2+3+4+5) / 5
        ("seq-mean-token-mean", (2.0 + 4.5) / 2),  # the empty third row is left out
        ("seq-mean-token-sum", (6.0 + 9.0) / 2),
    ],
)
def test_masked_aggregate_modes(mode, expected):
    assert float(masked_aggregate(X, M, mode)) == approx(expected)


def test_masked_aggregate_denominator_and_edge_cases():
    # two micro-batches normalised by the global token count sum to the full batch's token-mean
    top = masked_aggregate(X[:1], M[:1], "token-mean", denominator=5)
    rest = masked_aggregate(X[1:], M[1:], "token-mean", denominator=5)
    assert f(top + rest) == approx(3.0)
    assert float(masked_aggregate(X, M, "seq-mean-token-sum", denominator=4)) == approx(15 / 4)
    x = torch.ones(2, 2, requires_grad=True)
    zero = masked_aggregate(x, torch.zeros(2, 2), "token-mean")
    assert f(zero) == 0.0 and zero.requires_grad
    assert f(masked_aggregate(x, torch.zeros(2, 2), "seq-mean-token-mean")) == 0.0
    with pytest.raises(ValueError, match="unknown aggregation mode 'sum'; expected one of token-mean, "):
        masked_aggregate(X, M, "sum")


def test_token_vs_sequence_aggregation_weighs_long_responses_differently():
    # one long response (4 tokens, A = +1) and one short (1 token, A = −1), on-policy
    old = torch.zeros(2, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    tok, _ = policy_loss(old.clone(), old, adv, mask, agg="token-mean")
    seq, _ = policy_loss(old.clone(), old, adv, mask, agg="seq-mean-token-mean")
    ssum, _ = policy_loss(old.clone(), old, adv, mask, agg="seq-mean-token-sum")
    assert f(tok) == approx((-4 + 1) / 5)
    assert f(seq) == approx((-1 + 1) / 2)
    assert f(ssum) == approx((-4 + 1) / 2)


# ---------------------------------------------------------------- forced-token mask


def test_loss_mask_from_flags():
    resp = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    forced = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert loss_mask_from_flags(resp, forced, mask_forced=True).tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert loss_mask_from_flags(resp, forced, mask_forced=False).tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    assert loss_mask_from_flags(resp, None).dtype == torch.float32
    with pytest.raises(ValueError, match="forced_flags shape"):
        loss_mask_from_flags(resp, forced[:, :3])


def test_forced_tokens_get_no_gradient_and_do_not_count():
    resp = torch.ones(1, 4)
    forced = torch.tensor([[False, False, True, True]])
    old = torch.zeros(1, 4)
    logp = torch.tensor([[0.0, 0.0, 3.0, -3.0]], requires_grad=True)  # wild ratios on forced tokens
    mask = loss_mask_from_flags(resp, forced)
    loss, m = policy_loss(logp, old, torch.tensor([1.0]), mask)
    assert f(loss) == approx(-1.0)
    assert m["tokens"] == 2.0 and m["ratio_max"] == approx(1.0)
    loss.backward()
    assert logp.grad.tolist() == [approx([-0.5, -0.5, 0.0, 0.0])]
    unmasked, _ = policy_loss(logp, old, torch.tensor([1.0]), loss_mask_from_flags(resp, forced, mask_forced=False))
    assert f(unmasked) == approx((-1 - 1 - 1.28 - math.exp(-3.0)) / 4)


# ---------------------------------------------------------------- KL, entropy, total loss


def test_kl_estimators_hand_values():
    logp = torch.log(torch.tensor([[0.5, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.3]]))
    d = math.log(0.5)  # ref − logp for the first token
    assert kl_penalty(logp, ref, "k1").tolist() == [approx([-d, 0.0])]
    assert kl_penalty(logp, ref, "k2").tolist() == [approx([0.5 * d * d, 0.0])]
    assert kl_penalty(logp, ref, "k3").tolist() == [approx([0.5 - d - 1.0, 0.0])]
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(logp, ref, "k4")


def test_entropy_and_token_logprobs():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9]]])
    assert entropy_from_logits(logits).tolist() == [approx([math.log(4.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])]
    lp = token_logprobs(logits, torch.tensor([[2, 1]]))
    assert lp.tolist() == [approx([math.log(0.25), math.log(0.75)])]


def test_rlcs_loss_terms():
    logp, old, adv, mask = _case()
    pg, _ = policy_loss(logp, old, adv, mask)
    total, m = rlcs_loss(logp, old, adv, mask)
    assert f(total) == f(pg) and "kl" not in m and "entropy" not in m
    ref = old.clone()
    ent = torch.full((2, 3), 2.0)
    total, m = rlcs_loss(logp, old, adv, mask, kl_coef=0.5, ref_logp=ref, kl_estimator="k1", entropy_coef=0.1, entropy=ent)
    kl_k1 = sum(map(math.log, [1, 1.5, 0.5, 1.1, 0.5, 2.0])) / 6
    assert m["kl"] == approx(kl_k1)
    assert f(total) == approx(f(pg) + 0.5 * kl_k1 - 0.1 * 2.0)
    assert m["loss"] == approx(f(total)) and m["pg_loss"] == approx(f(pg))
    with pytest.raises(ValueError, match="kl_coef > 0 needs ref_logp"):
        rlcs_loss(logp, old, adv, mask, kl_coef=0.1)
    with pytest.raises(ValueError, match="entropy_coef != 0 needs per-token entropy"):
        rlcs_loss(logp, old, adv, mask, entropy_coef=0.1)


def test_config_mode_lists_match_grpo():
    assert rlconfig.AGG_MODES == AGG_MODES
    assert rlconfig.KL_ESTIMATORS == KL_ESTIMATORS
