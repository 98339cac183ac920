"""Document-masked (packed) causal attention from row-0 position ids, and the backend choice.

A packed row holds several samples; text position row 0 restarts at 0 at each sample (see
docs/design.md §5). Token i may attend to token j iff both lie in the same sample and j <= i. Three
implementations of that one mask:

- ``flash_varlen`` (GPU, flash-attn installed, sm80+): the row is cut at the restarts into
  ``cu_seqlens`` and each sample is attended on its own by ``flash_attn_varlen_func`` -- no mask
  tensor at all and no FLOPs on cross-sample blocks. For a row of k equal samples this is k times
  fewer attention FLOPs than a dense causal mask over the whole row.
- ``flex`` (GPU, torch's flex_attention): a ``BlockMask`` from the per-token document ids
  (``create_block_mask`` keeps only 128x128 blocks that touch the diagonal band of a sample, so the
  skipped work matches varlen up to block granularity), run by the compiled flex kernel.
- ``sdpa`` (CPU, and GPU without the above): ``scaled_dot_product_attention`` with a dense boolean
  block-diagonal causal mask [B, 1, L, L] -- O(L^2) memory (64 MiB of bools at L = 8192), fine on
  CPU and for tests.

``select_attention_backend(device)`` picks the first available of flash_varlen > flex > sdpa;
``hf_attn_implementation`` maps the choice onto transformers' ``attn_implementation`` names. GLM-4V
in transformers 5.23 refuses "flex_attention" (``_supports_flex_attn = False``), so flex reaches it
through ``register_hf_packed_attention`` ("glmv_packed"): a registered attention function that
reads the sample boundaries from the position ids and builds one BlockMask per batch, shared by
all layers (without flex or flash-attn it attends each sample on its own, ``document_sdpa``); the
vision tower and padded batches fall through to transformers' sdpa.
transformers itself finds the sample boundaries from position ids when ``attention_mask`` is None
(``find_packed_sequence_indices``: a new sample wherever the position does not grow by 1), which
for glmv's packs gives the same documents as the restarts used here (tested).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch

BACKENDS = ("flash_varlen", "flex", "sdpa")
_HF_NAMES = {"flash_varlen": "flash_attention_2", "flex": "glmv_packed", "sdpa": "sdpa"}


def text_positions(position_ids: torch.Tensor) -> torch.Tensor:
    """(L,), (B, L) or (R, B, L) position ids (row 0 = text positions) -> (B, L) long."""
    if position_ids.dim() == 1:
        return position_ids.long().unsqueeze(0)
    if position_ids.dim() == 2:
        return position_ids.long()
    if position_ids.dim() == 3:
        return position_ids[0].long()
    raise ValueError(f"position_ids must be (L,), (B, L) or (R, B, L), got shape {tuple(position_ids.shape)}")


def _starts(pos: torch.Tensor) -> torch.Tensor:
    starts = pos == 0
    starts[:, 0] = True  # a row always begins a sample, even if its first position is not 0
    return starts


def document_ids_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) sample index of each token within its row: [[0,1,2,0,1,0]] -> [[0,0,0,1,1,2]]."""
    return _starts(text_positions(position_ids)).long().cumsum(-1) - 1


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cumulative sample boundaries over the flattened B*L tokens (int32, starts with 0, ends with
    B*L) and the longest sample, as flash-attn's varlen functions take them."""
    pos = text_positions(position_ids)
    flat = _starts(pos).reshape(-1)
    idx = torch.nonzero(flat).reshape(-1)
    cu = torch.cat([idx, torch.tensor([flat.numel()], device=idx.device)]).to(torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max()) if cu.numel() > 1 else 0
    return cu, max_len


def flash_varlen_kwargs(position_ids: torch.Tensor) -> dict[str, Any]:
    """The boundary arguments of ``flash_attn_varlen_func`` for a packed batch."""
    cu, max_len = cu_seqlens_from_position_ids(position_ids)
    return {"cu_seqlens_q": cu, "cu_seqlens_k": cu, "max_seqlen_q": max_len, "max_seqlen_k": max_len}


def attention_mask_from_position_ids(position_ids: torch.Tensor, *, causal: bool = True) -> torch.Tensor:
    """Dense boolean mask [B, 1, L, L] (True = may attend): same sample and, if causal, key <= query."""
    doc = document_ids_from_position_ids(position_ids)
    mask = doc[:, :, None] == doc[:, None, :]
    if causal:
        L = doc.shape[-1]
        mask &= torch.ones(L, L, dtype=torch.bool, device=doc.device).tril()
    return mask.unsqueeze(1)


def flex_block_mask(position_ids: torch.Tensor, *, causal: bool = True, block_size: int = 128,
                    device: torch.device | str | None = None, compile_mask: bool | None = None):
    """A flex_attention ``BlockMask`` for the packed rows (block-sparse; built compiled on GPU)."""
    from torch.nn.attention.flex_attention import create_block_mask

    dev = torch.device(device) if device is not None else position_ids.device
    doc = document_ids_from_position_ids(position_ids).to(dev)
    B, L = doc.shape

    def mask_mod(b, h, q_idx, kv_idx):
        same = doc[b, q_idx] == doc[b, kv_idx]
        return (same & (q_idx >= kv_idx)) if causal else same

    if compile_mask is None:
        compile_mask = dev.type == "cuda"
    return create_block_mask(mask_mod, B, None, L, L, device=dev, BLOCK_SIZE=block_size, _compile=compile_mask)


def _flash_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends(device: torch.device | str) -> list[str]:
    """The backends usable on ``device``, best first (always ends with "sdpa")."""
    dev = torch.device(device)
    out: list[str] = []
    if dev.type == "cuda" and torch.cuda.is_available():
        major = torch.cuda.get_device_capability(dev)[0]
        if _flash_installed() and major >= 8:  # flash-attn 2 needs Ampere or newer
            out.append("flash_varlen")
        if _flex_available() and major >= 7:  # the Triton flex kernel needs Volta or newer
            out.append("flex")
    out.append("sdpa")
    return out


def select_attention_backend(device: torch.device | str, prefer: str | None = None) -> str:
    """"flash_varlen" | "flex" | "sdpa" for ``device``; ``prefer`` forces one (error if unusable)."""
    avail = available_backends(device)
    if prefer is None or prefer == "auto":
        return avail[0]
    if prefer not in BACKENDS:
        raise ValueError(f"unknown attention backend '{prefer}'; expected auto or one of {', '.join(BACKENDS)}")
    if prefer not in avail:
        raise ValueError(f"attention backend '{prefer}' is not usable on {torch.device(device)}; "
                         f"available: {', '.join(avail)}")
    return prefer


def hf_attn_implementation(backend: str) -> str:
    """transformers' ``attn_implementation`` name for a backend of this module.

    flash_varlen -> "flash_attention_2" (transformers cuts packed rows at the position restarts
    itself); flex -> "glmv_packed", this module's registered function (registered here), because
    transformers refuses "flex_attention" for GLM-4V; sdpa -> "sdpa".
    """
    if backend not in _HF_NAMES:
        raise ValueError(f"unknown attention backend '{backend}'; expected one of {', '.join(BACKENDS)}")
    if backend == "flex":
        return register_hf_packed_attention()
    return _HF_NAMES[backend]


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_ids: torch.Tensor, *,
                     backend: str | None = None, causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Document-masked attention. q [B, Hq, L, D], k/v [B, Hkv, L, D] (Hq % Hkv == 0) -> [B, Hq, L, D]."""
    be = select_attention_backend(q.device, backend)
    B, Hq, L, D = q.shape
    gqa = Hq != k.shape[1]
    if be == "sdpa":
        mask = attention_mask_from_position_ids(position_ids, causal=causal).to(q.device)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                                                enable_gqa=gqa)
    if be == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        bm = flex_block_mask(position_ids, causal=causal, device=q.device)
        fn = _compiled_flex() if q.device.type == "cuda" else flex_attention
        return fn(q, k, v, block_mask=bm, scale=scale, enable_gqa=gqa)
    from flash_attn import flash_attn_varlen_func

    kw = flash_varlen_kwargs(position_ids)
    kw = {key: (val.to(q.device) if torch.is_tensor(val) else val) for key, val in kw.items()}

    def flat(x):
        return x.transpose(1, 2).reshape(B * L, x.shape[1], D)

    out = flash_attn_varlen_func(flat(q), flat(k), flat(v), causal=causal, softmax_scale=scale, **kw)
    return out.reshape(B, L, Hq, D).transpose(1, 2)


def document_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_ids: torch.Tensor, *,
                  causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Document-masked attention as one sdpa call per sample (B = 1 packed rows): no mask tensor and
    no FLOPs on cross-sample blocks, at one kernel launch per sample.

    The choice for packed rows of a few long samples without flash-attn or flex (CPU; the RL
    update's packs of 2-16 responses): a dense block-diagonal mask over a pack of k equal samples
    costs k times the attention FLOPs of the samples alone (benchmarks/rl_update_bench.py: 0.87x ->
    0.50x the padded update's CPU time). Many tiny samples favour the one dense call instead."""
    if q.shape[0] != 1:
        return reference_packed_attention(q, k, v, position_ids, causal=causal, scale=scale)
    gqa = q.shape[1] != k.shape[1]
    cu, _ = cu_seqlens_from_position_ids(position_ids)
    parts = [torch.nn.functional.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e],
                                                              is_causal=causal, scale=scale, enable_gqa=gqa)
             for s, e in zip(cu[:-1].tolist(), cu[1:].tolist())]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def reference_packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position_ids: torch.Tensor, *,
                               causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Each sample attended on its own with plain sdpa, written back in place (no mask tensor)."""
    out = torch.empty_like(q)
    gqa = q.shape[1] != k.shape[1]
    cu, _ = cu_seqlens_from_position_ids(position_ids)
    L = q.shape[2]
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        b, i, j = s // L, s % L, s % L + (e - s)
        out[b, :, i:j] = torch.nn.functional.scaled_dot_product_attention(
            q[b:b + 1, :, i:j], k[b:b + 1, :, i:j], v[b:b + 1, :, i:j], is_causal=causal, scale=scale,
            enable_gqa=gqa)[0]
    return out


# ----------------------------------------------------------------------------- transformers hook
#: the ``attn_implementation`` name under which ``register_hf_packed_attention`` installs this module.
HF_PACKED_NAME = "glmv_packed"
_mask_cache: dict[tuple, Any] = {}


def _cached_block_mask(pos: torch.Tensor, device: torch.device):
    """One BlockMask per packed batch, shared by all layers (built once per forward, not per layer)."""
    key = (pos.data_ptr(), pos._version, tuple(pos.shape), str(device))
    if key not in _mask_cache:
        _mask_cache.clear()
        _mask_cache[key] = flex_block_mask(pos, device=device)
    return _mask_cache[key]


def _hf_packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                         scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers attention function: [B, H, L, D] in, ([B, L, H, D], None) out.

    Causal text attention over packed rows (no 2-D mask, position ids given) goes through the
    selected backend; everything else (the vision tower's non-causal chunks, padded batches with a
    mask, dropout) is handed to transformers' own sdpa function unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    pos = kwargs.get("position_ids")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if pos is None or attention_mask is not None or not causal or (dropout and module.training) \
            or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    backend = select_attention_backend(query.device)
    if backend == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        fn = _compiled_flex() if query.device.type == "cuda" else flex_attention
        out = fn(query, key, value, block_mask=_cached_block_mask(pos, query.device), scale=scaling,
                 enable_gqa=query.shape[1] != key.shape[1])
    elif backend == "sdpa":
        out = document_sdpa(query, key, value, pos, scale=scaling)
    else:
        out = packed_attention(query, key, value, pos, backend=backend, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _hf_packed_mask(*args, **kwargs):
    """Mask factory for ``HF_PACKED_NAME``: none for packed rows (the attention reads the sample
    boundaries from position ids), transformers' sdpa mask when a 2-D padding mask is given."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register_hf_packed_attention() -> str:
    """Registers the packed attention with transformers; returns the ``attn_implementation`` name.

    Use: ``model.set_attn_implementation(register_hf_packed_attention())``. This is how the flex
    backend reaches GLM-4V: transformers 5.23 marks Glm4v ``_supports_flex_attn = False``, so
    ``attn_implementation="flex_attention"`` is refused, while registered functions are accepted.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(HF_PACKED_NAME, _hf_packed_attention)
    AttentionMaskInterface.register(HF_PACKED_NAME, _hf_packed_mask)
    return HF_PACKED_NAME
