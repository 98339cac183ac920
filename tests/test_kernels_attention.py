"""Document masks from row-0 position ids: boundaries, dense mask, flex BlockMask, backend choice."""


import pytest
import torch

from glmv_kernels import attention as A  # noqa: E402


# one packed row: samples of 3, 2, 1 and 4 tokens
POS = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]])


def _block_diagonal(lengths, causal=True):
    """The expected mask, written from the sample lengths by hand."""
    L = sum(lengths)
    m = torch.zeros(L, L, dtype=torch.bool)
    s = 0
    for n in lengths:
        m[s:s + n, s:s + n] = torch.ones(n, n, dtype=torch.bool).tril() if causal else True
        s += n
    return m


def test_document_ids_and_cu_seqlens():
    assert A.document_ids_from_position_ids(POS).tolist() == [[0, 0, 0, 1, 1, 2, 3, 3, 3, 3]]
    cu, mx = A.cu_seqlens_from_position_ids(POS)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 5, 6, 10] and mx == 4
    # 4-row glmv position ids (R, B, L): row 0 is used; two rows are cut at the row boundary too
    pos4 = torch.stack([torch.tensor([[0, 1, 0, 1, 2], [5, 6, 0, 1, 2]])] * 4)
    cu2, mx2 = A.cu_seqlens_from_position_ids(pos4)
    assert cu2.tolist() == [0, 2, 5, 7, 10] and mx2 == 3
    kw = A.flash_varlen_kwargs(POS)
    assert kw["cu_seqlens_q"].tolist() == kw["cu_seqlens_k"].tolist() == [0, 3, 5, 6, 10]
    assert kw["max_seqlen_q"] == kw["max_seqlen_k"] == 4


@pytest.mark.parametrize("causal", [True, False])
def test_mask_from_position_ids_is_block_diagonal(causal):
    m = A.attention_mask_from_position_ids(POS, causal=causal)
    assert m.shape == (1, 1, 10, 10)
    assert torch.equal(m[0, 0], _block_diagonal([3, 2, 1, 4], causal))


def test_same_documents_as_transformers_packed_detection():
    from transformers.masking_utils import find_packed_sequence_indices

    assert torch.equal(find_packed_sequence_indices(POS), A.document_ids_from_position_ids(POS))


def test_flex_block_mask_equals_block_diagonal():
    pos = torch.cat([torch.arange(n) for n in (5, 1, 7, 3)]).unsqueeze(0)  # 16 tokens
    bm = A.flex_block_mask(pos, block_size=4)
    q = torch.arange(16)
    dense = bm.mask_mod(torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.long),
                        q[:, None], q[None, :])
    assert torch.equal(dense, _block_diagonal([5, 1, 7, 3]))
    # block sparsity: 4x4 blocks entirely above the diagonal or between samples are skipped
    blocks = bm.to_dense()[0, 0]
    assert blocks.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["sdpa", "flex", "documents"])
def test_packed_attention_equals_per_sample_attention(backend):
    g = torch.Generator().manual_seed(0)
    pos = torch.cat([torch.arange(n) for n in (9, 4, 1, 18)]).unsqueeze(0)  # 32 tokens
    q = torch.randn(1, 4, 32, 16, generator=g)
    k = torch.randn(1, 2, 32, 16, generator=g)  # GQA: 2 kv heads for 4 query heads
    v = torch.randn(1, 2, 32, 16, generator=g)
    ref = A.reference_packed_attention(q, k, v, pos)
    if backend == "documents":
        out = A.document_sdpa(q, k, v, pos)
    else:
        out = A.packed_attention(q, k, v, pos, backend=backend) if backend == "sdpa" else _flex_cpu(q, k, v, pos)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # and it is not plain causal attention over the whole row
    whole = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert (whole - ref).abs().max() > 0.1


def _flex_cpu(q, k, v, pos):
    """flex_attention eagerly on CPU (the GPU path compiles it); the backend selector never picks
    flex on CPU, so it is called directly here to test the BlockMask + mask_mod."""
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q, k, v, block_mask=A.flex_block_mask(pos, block_size=8), enable_gqa=True)


def test_backend_selection_on_cpu(monkeypatch):
    assert A.select_attention_backend("cpu") == "sdpa"
    assert A.select_attention_backend("cpu", "auto") == "sdpa"
    assert A.available_backends("cpu") == ["sdpa"]
    with pytest.raises(ValueError, match="attention backend 'flex' is not usable on cpu; available: sdpa"):
        A.select_attention_backend("cpu", "flex")
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'; expected auto or one of"):
        A.select_attention_backend("cpu", "xformers")
    assert [A.hf_attn_implementation(b) for b in A.BACKENDS] == ["flash_attention_2", "glmv_packed", "sdpa"]


def test_backend_selection_on_a_gpu(monkeypatch):
    """The choice on an (emulated) sm90 GPU with and without flash-attn installed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(A, "_flash_installed", lambda: True)
    assert A.select_attention_backend("cuda") == "flash_varlen"
    assert A.available_backends("cuda:0") == ["flash_varlen", "flex", "sdpa"]
    monkeypatch.setattr(A, "_flash_installed", lambda: False)
    assert A.select_attention_backend("cuda") == "flex"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (6, 1))
    assert A.select_attention_backend("cuda") == "sdpa"


def test_bad_position_ids_shape():
    with pytest.raises(ValueError, match=r"position_ids must be \(L,\), \(B, L\) or \(R, B, L\), got shape \(1, 1, 1, 4\)"):
        A.document_ids_from_position_ids(torch.zeros(1, 1, 1, 4, dtype=torch.long))


@pytest.mark.parametrize("image_every", [0, 1])
def test_hf_packed_attention_in_glm4v_equals_per_sample_runs(image_every):
    """Registered as a transformers attention function, the packed path gives the logits of the
    samples run one by one (and those of transformers' own sdpa packing with use_cache=False)."""
    from glmv_cli.testing.tiny import synthetic_packs, tiny_glm4v

    b = synthetic_packs(1, seq_len=48, samples_per_pack=3, image_every=image_every, seed=3)[0]
    model = tiny_glm4v(seed=1)
    kw = {k: b[k] for k in ("input_ids", "position_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw")
          if k in b}
    with torch.no_grad():
        sdpa = model(**kw, attention_mask=None, use_cache=False).logits
        model.set_attn_implementation(A.register_hf_packed_attention())
        assert model.config._attn_implementation == "glmv_packed"
        out = model(**kw, attention_mask=None, use_cache=False).logits
        # the cache-enabled call disables transformers' own packing detection; ours still holds
        out_cache = model(**kw, attention_mask=None).logits
        if image_every == 0:
            singles = torch.cat([model(input_ids=b["input_ids"][:, s:s + 16],
                                       position_ids=b["position_ids"][:, :, s:s + 16],
                                       attention_mask=None, use_cache=False).logits for s in (0, 16, 32)], 1)
            torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, sdpa, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_cache, sdpa, atol=1e-5, rtol=1e-5)


def test_glm4v_refuses_flex_attention_name():
    """Why the registered function exists: transformers refuses flex_attention for GLM-4V."""
    from glmv_cli.testing.tiny import tiny_glm4v

    with pytest.raises(ValueError, match="does not support an attention implementation through torch's flex_attention"):
        tiny_glm4v().set_attn_implementation("flex_attention")


def test_hf_packed_attention_leaves_padded_batches_to_sdpa():
    from glmv_cli.testing.tiny import tiny_glm4v

    model = tiny_glm4v(seed=4)
    ids = torch.randint(0, 280, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        model.set_attn_implementation(A.hf_attn_implementation("flex"))
        out = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(out[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :6], ref[1, :6], atol=1e-5, rtol=1e-5)
