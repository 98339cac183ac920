"""glmv_kernels on a CUDA GPU (``pytest -m gpu``; skipped without one by tests/conftest.py).

Checks: fp32 parity on the GPU (same tolerances as the CPU tests), bf16 closeness, the memory
target at the paper's head size (vocab 151,552, hidden 4096, 8192 tokens, bf16: chunked peak
<= 25 % of the naive peak, both including W and its gradient), and packed attention through the
selected backend (flash varlen / compiled flex) against per-sample attention.
"""


import pytest
import torch

from glmv_kernels import attention as A  # noqa: E402
from glmv_kernels import (  # noqa: E402
    linear_cross_entropy,
    linear_logprobs,
    reference_linear_cross_entropy,
    reference_linear_logprobs,
)

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _inputs(n, v, h, dtype, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, device=DEV).to(dtype)
    weight = (torch.randn(v, h, generator=g, device=DEV) * 0.05).to(dtype)
    targets = torch.randint(0, v, (n,), generator=g, device=DEV)
    targets[::7] = -100
    return hidden, weight, targets


def test_fp32_parity_on_gpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    hidden, weight, targets = _inputs(301, 5003, 64, torch.float32)
    up = torch.randn(301, device=DEV)
    res = []
    for fn in (lambda h, w: linear_logprobs(h, w, targets, chunk_size=32, temperature=0.9),
               lambda h, w: reference_linear_logprobs(h, w, targets, temperature=0.9)):
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        out = fn(h, w)
        (out * up).sum().backward()
        res.append((out, h.grad, w.grad))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_bf16_cross_entropy_close_to_reference():
    hidden, weight, targets = _inputs(1024, 32000, 256, torch.bfloat16)
    res = []
    for fn in (linear_cross_entropy, reference_linear_cross_entropy):
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        loss = fn(h, w, targets)
        loss.backward()
        res.append((loss, h.grad.float(), w.grad.float()))
    torch.testing.assert_close(res[0][0], res[1][0], atol=1e-3, rtol=1e-3)
    for a, b in zip(res[0][1:], res[1][1:]):
        assert (a - b).norm() / b.norm() < 1e-2


def _peak(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_memory_target_at_paper_head_size():
    n, v, hd = 8192, 151_552, 4096

    def step(chunked):
        h = torch.randn(n, hd, device=DEV, dtype=torch.bfloat16, requires_grad=True)
        w = (torch.randn(v, hd, device=DEV, dtype=torch.bfloat16) * 0.02).requires_grad_(True)
        t = torch.randint(0, v, (n,), device=DEV)
        if chunked:
            loss = linear_cross_entropy(h, w, t)
        else:
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w).float(), t)
        loss.backward()

    naive = _peak(lambda: step(False))
    chunked = _peak(lambda: step(True))
    assert chunked <= 0.25 * naive, (chunked / 2**30, naive / 2**30)


@pytest.mark.parametrize("backend", [b for b in A.BACKENDS if b != "sdpa"])
def test_packed_attention_backends(backend):
    if backend not in A.available_backends(DEV):
        pytest.skip(f"{backend} not installed / not supported on this GPU")
    g = torch.Generator(device=DEV).manual_seed(0)
    lens = (700, 33, 1, 1290)
    pos = torch.cat([torch.arange(n) for n in lens]).unsqueeze(0).to(DEV)
    L = sum(lens)
    q = torch.randn(1, 8, L, 64, generator=g, device=DEV, dtype=torch.bfloat16)
    k = torch.randn(1, 2, L, 64, generator=g, device=DEV, dtype=torch.bfloat16)
    v = torch.randn(1, 2, L, 64, generator=g, device=DEV, dtype=torch.bfloat16)
    out = A.packed_attention(q, k, v, pos, backend=backend)
    ref = A.reference_packed_attention(q.float(), k.float(), v.float(), pos)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_selection_on_gpu_prefers_a_packed_kernel():
    assert A.select_attention_backend(DEV) in ("flash_varlen", "flex")


def test_glm4v_with_packed_attention_on_gpu():
    """The tiny GLM-4V in bf16: the selected packed backend gives transformers' sdpa logits."""
    from glmv_cli.testing.tiny import synthetic_packs, tiny_glm4v

    b = synthetic_packs(1, seq_len=512, samples_per_pack=5, image_every=1, seed=0)[0]
    kw = {k: v.to(DEV) for k, v in b.items() if k != "labels"}
    model = tiny_glm4v(seed=0).to(DEV, torch.bfloat16)
    with torch.no_grad():
        ref = model(**kw, attention_mask=None, use_cache=False).logits.float()
        model.set_attn_implementation(A.hf_attn_implementation(A.select_attention_backend(DEV)))
        out = model(**kw, attention_mask=None, use_cache=False).logits.float()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
