"""GRPO: group-relative advantages and the clipped policy-gradient loss.

Shapes (every function here follows them):

- ``rewards``: ``[G, n]`` (G prompts, n rollouts each) or flat ``[G*n]`` in group-major order
  (rollouts of prompt 0 first). One scalar reward per response, in [0, 1] from the verifiers.
- ``logp``, ``old_logp``, ``ref_logp``: ``[B, T]`` per-token log-probabilities of the *response*
  tokens (prompt tokens are not in these tensors), ``B = G*n`` responses, right-padded to T.
- ``mask``: ``[B, T]``, 1 where a token counts in the loss (a real, policy-sampled token), else 0.
- ``advantages``: ``[B]`` (one per response, broadcast over its tokens) or ``[B, T]``.

Advantage. For a group with rewards r_1..r_n, A_i = r_i − mean(r) (the group mean is the
baseline; no value network). Dividing by the group std (original GRPO) is optional and off by
default: with 0/1 rewards and n = 8, a group with one success has std 0.354 (sample std) and its
advantages get scaled by 2.8×, while a 4/8 group (std 0.535) by 1.9×, so std normalisation
up-weights nearly-solved and nearly-failed prompts — the Dr. GRPO argument for leaving it out.
A group whose rewards are all equal gets A = 0 for every member and contributes no gradient;
``expansion`` exists to keep B such informative groups per step.

Policy loss (per token, ρ = exp(logp − old_logp)):
    L = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))
and with dual clipping (c > 1) for A < 0 additionally L = min(L, −A·c), which bounds the loss of
a token whose ratio exploded under a negative advantage. ε_high > ε_low ("clip-higher", DAPO)
lets low-probability tokens with positive advantage grow further before the clip stops them:
with ε = 0.2 a token at p_old = 0.01 may reach only 0.012 in one update; with ε_high = 0.28,
0.0128 — which counters entropy collapse.

Aggregation (``masked_aggregate``) turns the [B, T] loss into a scalar:
- ``token-mean``: Σ L·m / Σ m over the whole batch — every token weighs the same, so long
  responses are not diluted (DAPO's token-level loss; the default);
- ``seq-mean-token-mean``: mean over responses of each response's token mean — each response
  weighs the same, its tokens weigh 1/len;
- ``seq-mean-token-sum``: mean over responses of each response's token sum — longer responses
  weigh more.
Responses with no loss tokens (e.g. fully masked) are left out of the sequence means. For
gradient accumulation over micro-batches, pass the global token / sequence count as
``denominator`` so the sum over micro-batches equals the loss of the whole batch.

Old log-probs come from the trainer (``rl.update``): recomputed with the current weights before
the first update of a batch, or the rollout engine's own when they are the same numbers (one
optimizer step, same weights and temperature), so ρ = 1 on the first mini-batch of an on-policy
step; nothing here depends on where they came from. KL to a reference model and an entropy bonus
are separate terms with coefficients (both 0 by default, as in the paper's RL recipe).
"""

from __future__ import annotations

from typing import Any

import torch

from glmv_cli.names import AGG_MODES

KL_ESTIMATORS = ("k1", "k2", "k3")

# exp() of a log-ratio beyond ±20 is 4.9e8: far past any clip, and clamping keeps it finite
_MAX_LOG_RATIO = 20.0


def group_advantages(
    rewards: torch.Tensor,
    group_size: int | None = None,
    *,
    std_normalize: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages, same shape as ``rewards``.

    ``rewards`` is ``[G, n]``, or flat ``[G*n]`` together with ``group_size=n``. Each reward minus
    its group's mean; with ``std_normalize`` also divided by (group sample std + eps). Groups of
    size 1 get advantage 0 (no baseline to compare against).
    """
    r = torch.as_tensor(rewards, dtype=torch.float32) if not torch.is_tensor(rewards) else rewards
    flat = r.dim() == 1
    if flat:
        if group_size is None or group_size <= 0:
            raise ValueError("flat rewards need group_size > 0")
        if r.numel() % group_size:
            raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
        g = r.reshape(-1, group_size)
    elif r.dim() == 2:
        if group_size is not None and group_size != r.shape[1]:
            raise ValueError(f"group_size={group_size} but rewards have shape {tuple(r.shape)}")
        g = r
    else:
        raise ValueError(f"rewards must be [G, n] or [G*n], got shape {tuple(r.shape)}")
    g = g.float()
    if g.shape[1] == 1:
        adv = torch.zeros_like(g)
    else:
        adv = g - g.mean(dim=1, keepdim=True)
        if std_normalize:
            adv = adv / (g.std(dim=1, keepdim=True, unbiased=True) + eps)
    return adv.reshape(r.shape) if flat else adv


def loss_mask_from_flags(
    response_mask: torch.Tensor, forced_flags: torch.Tensor | None, *, mask_forced: bool = True
) -> torch.Tensor:
    """The float [B, T] loss mask: response tokens, minus forced-answer tokens if ``mask_forced``.

    ``forced_flags`` [B, T] marks the tokens the rollout engine inserted by forced answering
    (``</think><answer>`` appended at the thinking budget; ``rollout.Rollout.forced``). The policy
    did not sample them, so by default they carry no gradient; the answer the policy then samples
    does. ``None`` means nothing was forced.
    """
    m = response_mask.bool()
    if forced_flags is not None and mask_forced:
        if forced_flags.shape != response_mask.shape:
            raise ValueError(
                f"forced_flags shape {tuple(forced_flags.shape)} != response_mask shape {tuple(response_mask.shape)}"
            )
        m = m & ~forced_flags.bool()
    return m.float()


def masked_aggregate(
    x: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", *, denominator: float | None = None
) -> torch.Tensor:
    """Reduces a [B, T] tensor to a scalar over the tokens where ``mask`` is 1 (see module doc).

    ``denominator`` replaces the count the mode divides by (tokens for ``token-mean``, non-empty
    sequences for the ``seq-mean-*`` modes), e.g. the global count across micro-batches and ranks.
    An all-zero mask gives 0 (still attached to the graph of ``x``).
    """
    if x.shape != mask.shape:
        raise ValueError(f"x shape {tuple(x.shape)} != mask shape {tuple(mask.shape)}")
    m = mask.to(x.dtype)
    if mode == "token-mean":
        total = (x * m).sum()
        n = float(denominator) if denominator is not None else m.sum()
    elif mode in ("seq-mean-token-mean", "seq-mean-token-sum"):
        tokens = m.sum(dim=-1)
        seq = (x * m).sum(dim=-1)
        if mode == "seq-mean-token-mean":
            seq = seq / tokens.clamp(min=1.0)
        total = seq.sum()
        n = float(denominator) if denominator is not None else (tokens > 0).sum().to(x.dtype)
    else:
        raise ValueError(f"unknown aggregation mode '{mode}'; expected one of {', '.join(AGG_MODES)}")
    if isinstance(n, torch.Tensor):
        return total / n.clamp(min=1.0)
    return total / max(n, 1e-12)


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> float:
    n = float(m.sum())
    return float((x * m).sum()) / n if n > 0 else 0.0


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    agg: str = "token-mean",
    clip_ratio_c: float | None = None,
    denominator: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip policy loss with asymmetric clipping; returns ``(loss, metrics)``.

    ``clip_ratio_c`` (> 1) turns on dual clipping for negative advantages. Metrics (floats over
    loss tokens): ``clip_frac_high`` — share of tokens with A > 0 and ρ > 1 + ε_high (their
    gradient is cut by the upper clip); ``clip_frac_low`` — A < 0 and ρ < 1 − ε_low;
    ``dual_clip_frac`` — A < 0 and ρ > c; ``approx_kl`` — mean(old_logp − logp), the k1 estimate
    of KL(old‖new); ``ratio_mean``/``ratio_min``/``ratio_max``; ``tokens``.
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask {tuple(mask.shape)} must match"
        )
    if not (0.0 <= eps_low < 1.0) or eps_high < 0.0:
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if clip_ratio_c is not None and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 for dual clipping, got {clip_ratio_c}")
    adv = advantages
    if adv.dim() == 1 and adv.shape[0] == logp.shape[0]:
        adv = adv.unsqueeze(-1).expand_as(logp)
    if adv.shape != logp.shape:
        raise ValueError(f"advantages shape {tuple(advantages.shape)} does not fit logp {tuple(logp.shape)}")
    adv = adv.to(logp.dtype).detach()
    m = mask.to(logp.dtype)

    log_ratio = (logp - old_logp.detach()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    dual = torch.zeros_like(m, dtype=torch.bool)
    if clip_ratio_c is not None:
        capped = torch.minimum(per_token, -adv * clip_ratio_c)
        per_token = torch.where(adv < 0, capped, per_token)
        dual = (adv < 0) & (ratio > clip_ratio_c)

    loss = masked_aggregate(per_token, m, agg, denominator=denominator)
    with torch.no_grad():
        r = ratio.detach()
        valid = m > 0
        metrics: dict[str, float] = {
            "clip_frac_high": _masked_mean(((adv > 0) & (r > 1.0 + eps_high)).to(m.dtype), m),
            "clip_frac_low": _masked_mean(((adv < 0) & (r < 1.0 - eps_low)).to(m.dtype), m),
            "dual_clip_frac": _masked_mean(dual.to(m.dtype), m),
            "approx_kl": _masked_mean(-log_ratio.detach(), m),
            "ratio_mean": _masked_mean(r, m),
            "ratio_min": float(r[valid].min()) if bool(valid.any()) else 1.0,
            "ratio_max": float(r[valid].max()) if bool(valid.any()) else 1.0,
            "tokens": float(m.sum()),
        }
    return loss, metrics


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from sampled tokens, [B, T].

    With δ = ref_logp − logp: ``k1`` = −δ (unbiased, high variance, can be negative); ``k2`` = δ²/2;
    ``k3`` = e^δ − δ − 1 (unbiased, always ≥ 0, low variance; Schulman's estimator, the usual
    choice for a KL loss term). δ is clamped to ±20 so e^δ stays finite.
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} must match")
    delta = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta.square()
    if estimator == "k3":
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"unknown KL estimator '{estimator}'; expected one of {', '.join(KL_ESTIMATORS)}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of softmax(logits) over the last dim: [B, T, V] → [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each chosen token: logits [B, T, V] (already aligned so that position t
    predicts ``tokens[:, t]``) and tokens [B, T] → [B, T], computed in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def rlcs_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    agg: str = "token-mean",
    clip_ratio_c: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: str = "k3",
    entropy_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    denominator: float | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Total loss = policy loss + kl_coef·agg(KL) − entropy_coef·agg(entropy), with metrics.

    ``ref_logp`` is required when ``kl_coef > 0`` and ``entropy`` ([B, T], e.g. from
    ``entropy_from_logits``) when ``entropy_coef != 0``; with both coefficients 0 (the default)
    the total is exactly the policy loss. All terms use the same mask and aggregation.
    """
    loss, metrics = policy_loss(
        logp, old_logp, advantages, mask, eps_low=eps_low, eps_high=eps_high, agg=agg,
        clip_ratio_c=clip_ratio_c, denominator=denominator,
    )
    metrics["pg_loss"] = float(loss.detach())
    if kl_coef > 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp (reference-model log-probs)")
        kl = masked_aggregate(kl_penalty(logp, ref_logp, kl_estimator), mask, agg, denominator=denominator)
        loss = loss + kl_coef * kl
        metrics["kl"] = float(kl.detach())
    if entropy_coef != 0.0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs per-token entropy")
        ent = masked_aggregate(entropy, mask, agg, denominator=denominator)
        loss = loss - entropy_coef * ent
        metrics["entropy"] = float(ent.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics
