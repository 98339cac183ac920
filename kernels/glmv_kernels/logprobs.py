"""Fused linear + log-softmax without the [tokens x vocab] logits: chosen-token log-probs and CE.

Why: the LM head of GLM-4.1V maps hidden 4096 to a vocabulary of 151,552. At 8K tokens the fp32
logits alone are 8192 * 151552 * 4 B = 4.6 GiB; the naive path (``lm_head`` -> ``.float()`` ->
``log_softmax`` -> gather / ``cross_entropy``, then autograd) holds one to three such tensors at its
peak (bf16 logits, their fp32 copy, the log-softmax, the logits' gradient), and at 32K tokens each
is 18 GiB. Only two numbers per token are needed: the chosen token's logit and the log-sum-exp.

Two exact algorithms (no approximation), both with a peak of O(chunk_size * V + N * H):

1. ``_LinearLogProbs`` (log-probs for RL, CE with reduction "none"; re-entrant backward):
   - forward: tokens in chunks of ``chunk_size``; per chunk z = (h_c W^T + b).float() / T, the
     target logit, then lse computed in place over z (no second [chunk, V] buffer). Saved for
     backward: hidden, weight, bias, targets and lse (N floats).
   - backward: the vocabulary in slices of ``v_chunk = chunk_size * V / N`` (the same number of
     logit elements as a forward chunk). Per slice the logits of ALL tokens are recomputed,
     p = exp(z - lse) (lse from the forward, no second pass), dz = g * (onehot(target) - p) / T;
     grad_W[slice] = dz^T h is written once (one rounding even in bf16, no fp32 [V, H]
     accumulator), grad_b[slice] = sum_tokens dz, and grad_h += dz W[slice] accumulates in an fp32
     [N, H] buffer (128 MiB at 8K x 4096). Slicing the backward by vocabulary is what lets the big
     gradient (V x H) be produced slice by slice while only the small one (N x H) accumulates.
   - cost: 4 matmuls of 2NVH FLOPs instead of the naive 3 (the logits are recomputed once).
2. ``_LinearCEFused`` (CE with reduction "sum"/"mean", the default there): a scalar loss has a
   scalar upstream gradient, so the gradients are computed in the forward, chunk by chunk, and the
   backward only scales them: 3 matmuls, as the naive path.

The head is ~7 % of a 9B model's training FLOPs at 8K, so the recompute path's extra matmul costs
~2 % of a step. Default chunk: 2^26 logit elements (256 MiB fp32) -> 442 tokens at V = 151,552.

Ignored targets (``== ignore_index``) give log-prob 0 and no gradient. ``temperature`` divides the
fp32 logits (RL scores rollouts sampled at temperature T with log_softmax(z / T)).
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
#: logit elements per chunk (forward: chunk_size * V; backward: N * v_chunk); 256 MiB in fp32.
DEFAULT_LOGITS_BUDGET = 1 << 26
REDUCTIONS = ("none", "sum", "mean")
IMPLS = ("torch", "triton")


def default_chunk_size(vocab: int, budget: int = DEFAULT_LOGITS_BUDGET) -> int:
    """Tokens per forward chunk so that one chunk's fp32 logits hold ``budget`` elements."""
    return max(1, budget // max(1, vocab))


def _check(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
           ignore_index: int, temperature: float) -> None:
    if weight.dim() != 2:
        raise ValueError(f"weight must be [vocab, hidden], got shape {tuple(weight.shape)}")
    if hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden size mismatch: hidden [..., {hidden.shape[-1]}] vs weight "
                         f"[{weight.shape[0]}, {weight.shape[1]}]")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} must equal hidden's leading shape "
                         f"{tuple(hidden.shape[:-1])}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden and weight dtypes differ: {hidden.dtype} vs {weight.dtype}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [{weight.shape[0]}], got shape {tuple(bias.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if targets.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"targets must be integer token ids, got {targets.dtype}")
    valid = targets[targets != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= weight.shape[0]):
        raise ValueError(f"target ids must be in [0, {weight.shape[0]}) or == ignore_index ({ignore_index}); "
                         f"got min {int(valid.min())}, max {int(valid.max())}")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax / output precision: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, temperature: float) -> torch.Tensor:
    z = (h @ w.t() if b is None else torch.addmm(b, h, w.t())).to(acc_dtype(h.dtype))
    if temperature != 1.0:
        z.div_(temperature)
    return z


def _lse_inplace(z: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim, overwriting z (torch.logsumexp would allocate a z-sized temporary)."""
    mx = z.amax(dim=-1, keepdim=True)
    mx.masked_fill_(torch.isinf(mx), 0.0)  # an all -inf row (masked vocabulary) stays -inf, not nan
    return z.sub_(mx).exp_().sum(dim=-1).log_().add_(mx.squeeze(-1))


class _LinearLogProbs(torch.autograd.Function):
    """logp[i] = log_softmax((hidden[i] W^T + b) / T)[targets[i]]; 0 where targets[i] == ignore."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size: int, temperature: float, ignore_index: int,
                impl: str = "torch"):
        n = hidden.shape[0]
        valid = targets != ignore_index
        tgt = torch.where(valid, targets, torch.zeros_like(targets)).long()
        if impl == "triton":
            from glmv_kernels.triton_logprobs import lse_and_target_logit

            lse, zt = lse_and_target_logit(hidden, weight, bias, tgt, temperature)
            logp = (zt - lse).masked_fill_(~valid, 0.0)
            ctx.save_for_backward(hidden, weight, bias, tgt, valid, lse)
            ctx.chunk_size, ctx.temperature = chunk_size, temperature
            return logp
        logp = torch.empty(n, dtype=acc_dtype(hidden.dtype), device=hidden.device)
        lse = torch.empty(n, dtype=acc_dtype(hidden.dtype), device=hidden.device)
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            z = _logits(hidden[s:e], weight, bias, temperature)
            zt = z.gather(1, tgt[s:e, None]).squeeze(1)
            lse_c = _lse_inplace(z)
            logp[s:e] = zt - lse_c
            lse[s:e] = lse_c
            del z
        logp.masked_fill_(~valid, 0.0)
        ctx.save_for_backward(hidden, weight, bias, tgt, valid, lse)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        hidden, weight, bias, tgt, valid, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, v = hidden.shape[0], weight.shape[0]
        t = ctx.temperature
        acc = acc_dtype(hidden.dtype)
        g = grad_logp.to(acc) * valid / t  # d logp / d z = (onehot - p) / T
        grad_h = torch.zeros(hidden.shape, dtype=acc, device=hidden.device) if need_h else None
        grad_w = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device) if need_w else None
        grad_b = torch.empty_like(bias) if need_b else None
        v_chunk = max(1, min(v, ctx.chunk_size * v // max(1, n)))
        rows = torch.arange(n, device=hidden.device)
        for s in range(0, v, v_chunk):
            e = min(v, s + v_chunk)
            w = weight[s:e]
            z = _logits(hidden, w, None if bias is None else bias[s:e], t)
            dz = z.sub_(lse[:, None]).exp_().mul_(-g[:, None])  # -g * p, in place
            hit = (tgt >= s) & (tgt < e)
            dz[rows[hit], tgt[hit] - s] += g[hit]
            dzc = dz if dz.dtype == weight.dtype else dz.to(weight.dtype)
            if need_h:
                if dzc.dtype == acc:
                    grad_h.addmm_(dzc, w)
                else:
                    grad_h += (dzc @ w).to(acc)
            if need_w:
                torch.mm(dzc.t(), hidden, out=grad_w[s:e])
            if need_b:
                grad_b[s:e] = dz.sum(0).to(bias.dtype)
            del z, dz, dzc
        if grad_h is not None:
            grad_h = grad_h.to(hidden.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None


def linear_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                    bias: torch.Tensor | None = None, chunk_size: int | None = None,
                    temperature: float = 1.0, ignore_index: int = IGNORE_INDEX,
                    impl: str = "torch") -> torch.Tensor:
    """Log-probs (fp32; fp64 for fp64 inputs) of ``targets`` under softmax((hidden W^T + b) / T), never forming [N, V].

    hidden [..., H] and targets [...] (same leading shape), weight [V, H] (an ``nn.Linear``'s),
    bias [V] or None. Returns [...] fp32; 0 where ``targets == ignore_index``. Differentiable
    w.r.t. hidden, weight and bias. ``chunk_size`` = tokens per forward chunk (default: 2^26 / V).
    ``impl="triton"`` computes the forward with the Triton kernel of ``triton_logprobs`` (fp32 /
    bf16 / fp16; CUDA, or CPU under TRITON_INTERPRET=1); the backward is the same.
    """
    _check(hidden, weight, bias, targets, ignore_index, temperature)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got '{impl}'")
    if impl == "triton":
        from glmv_kernels.triton_logprobs import triton_available

        if not triton_available():
            raise ValueError("impl='triton' needs the triton package (pip install triton)")
        if hidden.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"impl='triton' supports float32, bfloat16 and float16, got {hidden.dtype}")
    cs = int(chunk_size) if chunk_size else default_chunk_size(weight.shape[0])
    if cs <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    lead = targets.shape
    h = hidden.reshape(-1, hidden.shape[-1])
    out = _LinearLogProbs.apply(h, weight, bias, targets.reshape(-1), cs, float(temperature), int(ignore_index),
                                impl)
    return out.reshape(lead)


def _reduce(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum()  # 0/0 = nan with no valid target, as F.cross_entropy


class _LinearCEFused(torch.autograd.Function):
    """Scalar CE (sum or mean) whose gradients are computed during the forward, chunk by chunk.

    With a scalar loss the upstream gradient is one number c, so d loss / d z = c * s * (p - onehot) / T
    (s = 1 for sum, 1 / count for mean) is known up to c while the chunk's logits are alive. Three
    matmuls per chunk -- z, grad_h = dz W, grad_W += dz^T h -- the same FLOPs as the naive path
    (the recompute path needs four); backward only scales the stored gradients by c, in place.
    grad_W accumulates in the weight's dtype with ``addmm_`` (fp32 accumulate inside the matmul,
    one rounding per chunk: ~N / chunk_size roundings in bf16 instead of one).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size: int, temperature: float, ignore_index: int,
                mean: bool):
        n = hidden.shape[0]
        acc = acc_dtype(hidden.dtype)
        valid = targets != ignore_index
        tgt = torch.where(valid, targets, torch.zeros_like(targets)).long()
        scale = 1.0 / valid.sum().to(acc) if mean else torch.ones((), dtype=acc, device=hidden.device)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=hidden.device) if need_b else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            h, t, m = hidden[s:e], tgt[s:e], valid[s:e]
            z = _logits(h, weight, bias, temperature)
            zt = z.gather(1, t[:, None]).squeeze(1)
            mx = z.amax(dim=-1, keepdim=True)
            dz = z.sub_(mx).exp_()  # unnormalised p, in place of z (no second [chunk, V] buffer)
            ssum = dz.sum(dim=-1)
            total += ((mx.squeeze(1) + ssum.log() - zt) * m).sum()
            dz.div_(ssum[:, None])  # p
            dz[torch.arange(e - s, device=z.device), t] -= 1.0
            dz.mul_((m * (scale / temperature))[:, None])
            dzc = dz if dz.dtype == weight.dtype else dz.to(weight.dtype)
            if need_h:
                torch.mm(dzc, weight, out=grad_h[s:e])
            if need_w:
                grad_w.addmm_(dzc.t(), h)
            if need_b:
                grad_b += dz.sum(0)
            del z, dz, dzc
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.used = False
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.used:
            raise RuntimeError("linear_cross_entropy (fused) cannot be backpropagated twice; "
                               "pass fused=False to keep a re-entrant backward")
        ctx.used = True
        grad_h, grad_w, grad_b = ctx.saved_tensors
        c = grad_loss.detach()
        if grad_h is not None:
            grad_h.mul_(c.to(grad_h.dtype))
        if grad_w is not None:
            grad_w.mul_(c.to(grad_w.dtype))
        if grad_b is not None:
            grad_b = (grad_b * c).to(ctx.bias_dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         bias: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX,
                         reduction: str = "mean", chunk_size: int | None = None,
                         temperature: float = 1.0, impl: str = "torch", fused: bool | None = None) -> torch.Tensor:
    """Cross-entropy of ``F.cross_entropy(hidden @ weight.T + bias, targets)`` semantics, chunked.

    ``reduction``: "mean" (over non-ignored targets; nan if there are none, as torch),
    "sum", or "none" (per-token [...] fp32, 0 at ignored positions).
    ``fused`` (default: on for "sum"/"mean" with the torch impl when a gradient is needed): compute
    the gradients during the forward (``_LinearCEFused``, 3 matmuls like the naive path, single
    backward); off: log-probs with the recompute backward (4 matmuls, re-entrant).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    wants_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    if fused is None:
        fused = reduction != "none" and impl == "torch" and wants_grad
    if fused:
        if reduction == "none":
            raise ValueError("fused=True needs reduction 'sum' or 'mean' (a scalar loss)")
        _check(hidden, weight, bias, targets, ignore_index, temperature)
        cs = int(chunk_size) if chunk_size else default_chunk_size(weight.shape[0])
        if cs <= 0:
            raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
        return _LinearCEFused.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), cs,
                                    float(temperature), int(ignore_index), reduction == "mean")
    logp = linear_logprobs(hidden, weight, targets, bias=bias, chunk_size=chunk_size,
                           temperature=temperature, ignore_index=ignore_index, impl=impl)
    return _reduce(-logp, targets != ignore_index, reduction)


# ----------------------------------------------------------------------------- plain-torch references
def reference_linear_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                              bias: torch.Tensor | None = None, temperature: float = 1.0,
                              ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The naive path: full logits -> fp32 -> log_softmax -> gather (materialises [N, V])."""
    z = torch.nn.functional.linear(hidden, weight, bias).to(acc_dtype(hidden.dtype)) / temperature
    valid = targets != ignore_index
    tgt = torch.where(valid, targets, torch.zeros_like(targets)).long()
    logp = torch.log_softmax(z, dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return logp * valid


def reference_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                                   bias: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX,
                                   reduction: str = "mean", temperature: float = 1.0) -> torch.Tensor:
    """``F.cross_entropy`` over the full fp32 logits (materialises [N, V])."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    z = torch.nn.functional.linear(hidden, weight, bias).to(acc_dtype(hidden.dtype)) / temperature
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), targets.reshape(-1).long(),
                                             ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(targets.shape) if reduction == "none" else loss
