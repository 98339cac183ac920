"""The Triton forward (online log-sum-exp over vocab tiles) vs the references.

On CPU it runs under TRITON_INTERPRET=1 (Triton's numpy interpreter) when triton is installed;
natively on a GPU. Without triton only the error path is tested. fp32 tolerance as the torch path:
values 2e-5 + 1e-5 * |ref|, gradients 2e-5 + 1e-4 * |ref|.
"""

import os
import sys

import pytest
import torch

# Triton decides at decoration time whether its own library functions (tl.sum, tl.max, ...) are
# interpretable, so TRITON_INTERPRET must be set before triton is first imported in this process
# (torch imports it lazily, e.g. from TorchDispatchMode / dynamo). Set it at collection time.
_CPU_INTERPRET_OK = torch.cuda.is_available() or "triton" not in sys.modules
if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

from glmv_kernels import linear_cross_entropy, linear_logprobs, reference_linear_logprobs  # noqa: E402
from glmv_kernels.triton_logprobs import triton_available  # noqa: E402

needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


@pytest.fixture
def device():
    if torch.cuda.is_available():
        return "cuda"
    if not _CPU_INTERPRET_OK:
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set; run this file on its own")
    return "cpu"


@needs_triton
@pytest.mark.parametrize("with_bias", [False, True])
def test_triton_forward_matches_reference(device, with_bias):
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    n, v, h = 37, 301, 40  # no dimension a multiple of the tiles (64 tokens, 128 vocab, 64 hidden)
    hidden = (torch.randn(n, h, generator=g) * 2).to(device)
    weight = (torch.randn(v, h, generator=g) * 0.5).to(device)
    bias = torch.randn(v, generator=g).to(device) if with_bias else None
    targets = torch.randint(0, v, (n,), generator=g).to(device)
    targets[[0, 20]] = -100
    up = torch.randn(n, generator=g).to(device)
    res = []
    for fn in (lambda a, b, c: linear_logprobs(a, b, targets, bias=c, temperature=0.8, impl="triton", chunk_size=8),
               lambda a, b, c: reference_linear_logprobs(a, b, targets, bias=c, temperature=0.8)):
        leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (hidden, weight, bias)]
        out = fn(*leaves)
        (out * up).sum().backward()
        res.append([out.detach()] + [t.grad for t in leaves if t is not None])
    torch.testing.assert_close(res[0][0], res[1][0], atol=2e-5, rtol=1e-5)
    assert res[0][0][[0, 20]].tolist() == [0.0, 0.0]
    for a, b in zip(res[0][1:], res[1][1:]):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@needs_triton
def test_triton_cross_entropy_equals_torch_impl(device):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(70, 16, generator=g).to(device)
    weight = torch.randn(200, 16, generator=g).to(device)
    targets = torch.randint(0, 200, (70,), generator=g).to(device)
    a = linear_cross_entropy(hidden, weight, targets, impl="triton")
    b = linear_cross_entropy(hidden, weight, targets, impl="torch")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-6)


def test_triton_errors(monkeypatch):
    hidden, weight = torch.randn(3, 4), torch.randn(5, 4)
    targets = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="impl must be one of torch, triton, got 'cuda'"):
        linear_logprobs(hidden, weight, targets, impl="cuda")
    if not triton_available():
        with pytest.raises(ValueError, match=r"impl='triton' needs the triton package \(pip install triton\)"):
            linear_logprobs(hidden, weight, targets, impl="triton")
        return
    with pytest.raises(ValueError, match="impl='triton' supports float32, bfloat16 and float16, got torch.float64"):
        linear_logprobs(hidden.double(), weight.double(), targets, impl="triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"the Triton kernel needs CUDA tensors \(or TRITON_INTERPRET=1"):
        linear_logprobs(hidden, weight, targets, impl="triton")
