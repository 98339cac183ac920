"""Chunked linear log-probs / cross-entropy vs the plain-torch references (CPU, fp32 and fp64).

Tolerances (fp32): values |chunked - reference| <= 2e-5 + 1e-5 * |reference|; gradients
<= 2e-5 + 1e-4 * |reference| (the chunked backward sums over vocab slices / token chunks in a
different order). fp64: gradcheck against finite differences and 1e-10 against the reference.
"""


import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from glmv_kernels import (  # noqa: E402
    default_chunk_size,
    linear_cross_entropy,
    linear_logprobs,
    reference_linear_cross_entropy,
    reference_linear_logprobs,
)

VAL = dict(atol=2e-5, rtol=1e-5)
GRAD = dict(atol=2e-5, rtol=1e-4)


def _inputs(n=37, v=1009, h=24, dtype=torch.float32, seed=0, bias=False, ignore=()):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype) * 2.0
    weight = torch.randn(v, h, generator=g, dtype=dtype) * 0.5
    b = torch.randn(v, generator=g, dtype=dtype) if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    for i in ignore:
        targets[i] = -100
    return hidden, weight, b, targets


def _grads(fn, hidden, weight, bias, upstream):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (hidden, weight, bias)]
    out = fn(*leaves)
    (out * upstream).sum().backward() if out.dim() else out.backward()
    return out.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("chunk", [1, 5, 37, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_bias", [False, True])
def test_logprobs_values_and_grads_match_reference(chunk, temperature, with_bias):
    hidden, weight, bias, targets = _inputs(bias=with_bias, ignore=(0, 11, 36))
    up = torch.randn(targets.shape, generator=torch.Generator().manual_seed(1))

    def fused(h, w, b):
        return linear_logprobs(h, w, targets, bias=b, chunk_size=chunk, temperature=temperature)

    def ref(h, w, b):
        return reference_linear_logprobs(h, w, targets, bias=b, temperature=temperature)

    out, grads = _grads(fused, hidden, weight, bias, up)
    ref_out, ref_grads = _grads(ref, hidden, weight, bias, up)
    assert out.dtype == torch.float32 and out.shape == (37,)
    torch.testing.assert_close(out, ref_out, **VAL)
    for gr, rr in zip(grads, ref_grads):
        if rr is None:
            assert gr is None
        else:
            torch.testing.assert_close(gr, rr, **GRAD)
    # ignored positions: log-prob 0 and no gradient into their hidden rows
    assert out[[0, 11, 36]].tolist() == [0.0, 0.0, 0.0]
    assert grads[0][[0, 11, 36]].abs().max().item() == 0.0


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_cross_entropy_matches_torch(reduction):
    hidden, weight, bias, targets = _inputs(n=53, v=517, h=16, bias=True, ignore=(3, 4, 50))
    up = torch.rand(53, generator=torch.Generator().manual_seed(2))

    def fused(h, w, b):
        return linear_cross_entropy(h, w, targets, bias=b, reduction=reduction, chunk_size=8)

    def ref(h, w, b):
        return reference_linear_cross_entropy(h, w, targets, bias=b, reduction=reduction)

    out, grads = _grads(fused, hidden, weight, bias, up)
    ref_out, ref_grads = _grads(ref, hidden, weight, bias, up)
    torch.testing.assert_close(out, ref_out, **VAL)
    for gr, rr in zip(grads, ref_grads):
        torch.testing.assert_close(gr, rr, **GRAD)
    # the reference itself is F.cross_entropy over full logits
    z = hidden @ weight.T + bias
    torch.testing.assert_close(ref_out, torch.nn.functional.cross_entropy(z, targets, reduction=reduction))


def test_fp64_gradcheck_and_exact_parity():
    hidden, weight, bias, targets = _inputs(n=7, v=13, h=5, dtype=torch.float64, bias=True, ignore=(2,))
    h, w, b = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))

    # chunk 3 over 7 tokens; the backward's vocab slice is 3 * 13 // 7 = 5 -> slices 5, 5, 3
    def f(h_, w_, b_):
        return linear_logprobs(h_, w_, targets, bias=b_, chunk_size=3, temperature=1.3)

    assert f(h, w, b).dtype == torch.float64
    assert torch.autograd.gradcheck(f, (h, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(f(h, w, b), reference_linear_logprobs(h, w, targets, bias=b, temperature=1.3),
                               atol=1e-10, rtol=0)


def test_leading_dims_and_partial_requires_grad():
    hidden, weight, _, targets = _inputs(n=24, v=101, h=8)
    h3, t2 = hidden.reshape(4, 6, 8), targets.reshape(4, 6)
    w = weight.clone().requires_grad_(True)
    out = linear_logprobs(h3, w, t2, chunk_size=5)  # hidden needs no grad: only the weight's
    assert out.shape == (4, 6)
    out.sum().backward()
    w_ref = weight.clone().requires_grad_(True)
    ref = reference_linear_logprobs(h3, w_ref, t2)
    ref.sum().backward()
    torch.testing.assert_close(out, ref, **VAL)
    torch.testing.assert_close(w.grad, w_ref.grad, **GRAD)


def test_all_ignored():
    hidden, weight, _, targets = _inputs(n=5, v=11, h=4)
    targets[:] = -100
    h = hidden.clone().requires_grad_(True)
    s = linear_cross_entropy(h, weight, targets, reduction="sum")
    assert s.item() == 0.0
    s.backward()
    assert h.grad.abs().max().item() == 0.0
    assert torch.isnan(linear_cross_entropy(hidden, weight, targets, reduction="mean"))
    assert torch.isnan(torch.nn.functional.cross_entropy(hidden @ weight.T, targets))  # same as torch


def test_bf16_runs_close_to_reference():
    hidden, weight, _, targets = _inputs(n=40, v=300, h=32, dtype=torch.bfloat16)
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    out = linear_cross_entropy(h, w, targets, reduction="sum", chunk_size=16)
    out.backward()
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ref = reference_linear_cross_entropy(h2, w2, targets, reduction="sum")
    ref.backward()
    assert out.dtype == torch.float32 and h.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-4)  # same bf16 logits, fp32 softmax
    torch.testing.assert_close(h.grad.float(), h2.grad.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(w.grad.float(), w2.grad.float(), atol=2e-2, rtol=2e-2)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("fused", [True, False])
def test_never_materialises_full_logits(fused):
    n, v, h = 256, 4000, 16
    hidden, weight, _, targets = _inputs(n=n, v=v, h=h)
    hd, wd = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    with _LargestTensor() as mode:
        linear_cross_entropy(hd, wd, targets, reduction="mean", chunk_size=32, fused=fused).backward()
    # biggest: one chunk of logits (32 x 4000) or the weight gradient (4000 x 16); never N x V
    assert mode.largest == 32 * v
    with _LargestTensor() as naive:
        reference_linear_cross_entropy(hidden.clone().requires_grad_(True), weight, targets).backward()
    assert naive.largest == n * v


def test_default_chunk_size():
    assert default_chunk_size(151552) == 442  # 2^26 fp32 logits = 256 MiB per chunk
    assert default_chunk_size(1000) == 67108
    assert default_chunk_size(1 << 27) == 1


@pytest.mark.parametrize("call,msg", [
    (lambda h, w, t: linear_logprobs(h, w, t + 1000), "target ids must be in [0, 11) or == ignore_index (-100); got min"),
    (lambda h, w, t: linear_logprobs(h.double(), w, t), "hidden and weight dtypes differ: torch.float64 vs torch.float32"),
    (lambda h, w, t: linear_logprobs(h, w, t[:3]), "targets shape (3,) must equal hidden's leading shape (5,)"),
    (lambda h, w, t: linear_logprobs(h, w, t, temperature=0.0), "temperature must be > 0, got 0.0"),
    (lambda h, w, t: linear_logprobs(h, w, t, chunk_size=-2), "chunk_size must be > 0, got -2"),
    (lambda h, w, t: linear_cross_entropy(h, w, t, reduction="avg"), "reduction must be one of none, sum, mean, got 'avg'"),
])
def test_errors(call, msg):
    hidden, weight, _, targets = _inputs(n=5, v=11, h=4)
    with pytest.raises(ValueError) as e:
        call(hidden, weight, targets)
    assert str(e.value).startswith(msg)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunk", [4, 100])
def test_fused_cross_entropy_matches_reference_and_recompute(reduction, chunk):
    hidden, weight, bias, targets = _inputs(n=45, v=389, h=12, bias=True, ignore=(1, 30))
    outs = []
    for fn in (lambda h, w, b: linear_cross_entropy(h, w, targets, bias=b, reduction=reduction, chunk_size=chunk,
                                                    temperature=1.4, fused=True),
               lambda h, w, b: linear_cross_entropy(h, w, targets, bias=b, reduction=reduction, chunk_size=chunk,
                                                    temperature=1.4, fused=False),
               lambda h, w, b: reference_linear_cross_entropy(h, w, targets, bias=b, reduction=reduction,
                                                              temperature=1.4)):
        leaves = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
        loss = fn(*leaves)
        (loss * 2.5).backward()  # a non-unit upstream gradient, as the engine's loss scale
        outs.append([loss.detach()] + [t.grad for t in leaves])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            torch.testing.assert_close(a, b, **GRAD)


def test_fused_is_the_default_for_scalar_losses_and_refuses_a_second_backward():
    hidden, weight, _, targets = _inputs(n=10, v=50, h=4)
    w = weight.clone().requires_grad_(True)
    loss = linear_cross_entropy(hidden, w, targets, reduction="sum")
    assert type(loss.grad_fn).__name__ == "_LinearCEFusedBackward"
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot be backpropagated twice; pass fused=False"):
        loss.backward()
    per = linear_cross_entropy(hidden, w, targets, reduction="none")
    assert type(per.grad_fn).__name__ != "_LinearCEFusedBackward"
    with torch.no_grad():  # no gradient wanted: the plain chunked forward
        assert linear_cross_entropy(hidden, w, targets).grad_fn is None
    with pytest.raises(ValueError, match="fused=True needs reduction 'sum' or 'mean'"):
        linear_cross_entropy(hidden, w, targets, reduction="none", fused=True)


@pytest.mark.parametrize("fused", [True, False])
def test_non_contiguous_inputs(fused):
    hidden, weight, _, targets = _inputs(n=20, v=60, h=8)
    wt = weight.t().contiguous().requires_grad_(True)  # [H, V] storage: weight = wt.t() is a strided view
    h_big = torch.cat([hidden, hidden], 1).requires_grad_(True)  # hidden = every other column block
    loss = linear_cross_entropy(h_big[:, :8], wt.t(), targets, reduction="sum", chunk_size=6, fused=fused)
    loss.backward()
    wt2, h2 = weight.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    ref = reference_linear_cross_entropy(h2, wt2, targets, reduction="sum")
    ref.backward()
    torch.testing.assert_close(loss, ref, **VAL)
    torch.testing.assert_close(wt.grad.t(), wt2.grad, **GRAD)
    torch.testing.assert_close(h_big.grad[:, :8], h2.grad, **GRAD)
    assert h_big.grad[:, 8:].abs().max().item() == 0.0
