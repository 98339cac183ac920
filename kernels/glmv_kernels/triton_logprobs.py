"""Triton forward of the fused linear + log-softmax: log-sum-exp and target logit in one kernel.

Optional: only when ``triton`` is installed. One program takes BLOCK_N tokens and walks the whole
vocabulary in BLOCK_V tiles; each tile's logits are a ``tl.dot`` over the hidden dim (fp32
accumulator) that stays in registers, folded into an online log-sum-exp (running max m and
rescaled sum s: s <- s * exp(m - m') + sum exp(z - m')) and into the chosen token's logit. Memory:
O(N) -- not even the chunk of logits the torch path allocates (256 MiB); the work is the same
2NVH FLOPs. Only the forward is here: the backward needs the gradient w.r.t. hidden, a reduction
over the whole vocabulary of [BLOCK_N, H] tiles (H = 4096 does not fit in registers), and stays
the torch vocab-sliced backward of ``logprobs._LinearLogProbs``, which needs only lse from here.

Differences from the torch path: the logits are never rounded to bf16 before the softmax (the
torch/naive paths round the bf16 matmul output first), so in bf16 the values differ by bf16
rounding of the logits; fp32 inputs use IEEE fp32 dots (no TF32), giving fp32 parity.

Status: correct under ``TRITON_INTERPRET=1`` on CPU (tests/test_kernels_triton.py); not yet timed
on a GPU, so ``linear_logprobs`` uses it only when asked (``impl="triton"``).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool):
    import triton
    import triton.language as tl

    @triton.jit
    def lse_target_fwd(H, W, Bias, T, LSE, TL, N, V, K, s_hn, s_hk, s_wv, s_wk, inv_temp,
                       HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        tgt = tl.load(T + rows, mask=rmask, other=0)
        m = tl.full([BLOCK_N], float("-inf"), tl.float32)
        s = tl.zeros([BLOCK_N], tl.float32)
        zt = tl.zeros([BLOCK_N], tl.float32)
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            cmask = cols < V
            acc = tl.zeros([BLOCK_N, BLOCK_V], tl.float32)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < K
                h = tl.load(H + rows[:, None] * s_hn + ks[None, :] * s_hk,
                            mask=rmask[:, None] & kmask[None, :], other=0.0)
                w = tl.load(W + cols[None, :] * s_wv + ks[:, None] * s_wk,
                            mask=cmask[None, :] & kmask[:, None], other=0.0)
                if IEEE:
                    acc = tl.dot(h, w, acc, input_precision="ieee")
                else:
                    acc = tl.dot(h, w, acc)
            if HAS_BIAS:
                acc += tl.load(Bias + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
            z = tl.where(cmask[None, :], acc * inv_temp, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, 1))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new[:, None]), 1)
            m = m_new
            zt += tl.sum(tl.where(cols[None, :] == tgt[:, None], z, 0.0), 1)
        tl.store(LSE + rows, m + tl.log(s), mask=rmask)
        tl.store(TL + rows, zt, mask=rmask)

    return lse_target_fwd


def lse_and_target_logit(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, temperature: float = 1.0, *, block_n: int = 64,
                         block_v: int = 128, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(lse [N], target logit [N]) of z = (hidden W^T + b) / T, fp32; targets must be in [0, V)."""
    import triton

    if not (hidden.is_cuda or _interpret()):
        raise ValueError("the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)")
    n, k = hidden.shape
    v = weight.shape[0]
    lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
    zt = torch.empty(n, dtype=torch.float32, device=hidden.device)
    b = bias if bias is not None else lse  # an unused pointer when HAS_BIAS is False
    kern = _kernel(_interpret())
    kern[(triton.cdiv(n, block_n),)](
        hidden, weight, b, targets, lse, zt, n, v, k, hidden.stride(0), hidden.stride(1),
        weight.stride(0), weight.stride(1), 1.0 / temperature, HAS_BIAS=bias is not None,
        IEEE=hidden.dtype == torch.float32, BLOCK_N=block_n, BLOCK_V=block_v, BLOCK_K=block_k)
    return lse, zt
