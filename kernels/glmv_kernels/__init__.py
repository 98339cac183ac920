"""glmv's kernels: memory-lean LM-head log-probs / cross-entropy and packed-attention selection.

Installed as ``glmv_kernels`` (never ``kernels``: transformers probes for a package of that name).
Every kernel has a plain-torch reference (``reference_*``) that the tests compare against.

- ``linear_logprobs`` / ``linear_cross_entropy``: LM-head log-probs and CE from hidden states and
  the head weight, chunked, never forming [tokens, vocab] logits (``logprobs``; optional Triton
  forward in ``triton_logprobs``).
- ``model_loss``: the same for a transformers GLM-4V model (``causal_lm_loss``,
  ``causal_token_logprobs``) -- the one-line wiring for the training engine and GRPO.
- ``attention``: document masks / cu_seqlens / flex BlockMasks from row-0 position ids, the backend
  choice (flash varlen > flex > sdpa) and a transformers attention function for packed rows.
"""

from glmv_kernels.attention import (
    HF_PACKED_NAME,
    attention_mask_from_position_ids,
    cu_seqlens_from_position_ids,
    document_ids_from_position_ids,
    document_sdpa,
    flash_varlen_kwargs,
    flex_block_mask,
    hf_attn_implementation,
    packed_attention,
    reference_packed_attention,
    register_hf_packed_attention,
    select_attention_backend,
)
from glmv_kernels.logprobs import (
    DEFAULT_LOGITS_BUDGET,
    IGNORE_INDEX,
    default_chunk_size,
    linear_cross_entropy,
    linear_logprobs,
    reference_linear_cross_entropy,
    reference_linear_logprobs,
)

__all__ = [
    "DEFAULT_LOGITS_BUDGET",
    "HF_PACKED_NAME",
    "IGNORE_INDEX",
    "attention_mask_from_position_ids",
    "cu_seqlens_from_position_ids",
    "default_chunk_size",
    "document_ids_from_position_ids",
    "document_sdpa",
    "flash_varlen_kwargs",
    "flex_block_mask",
    "hf_attn_implementation",
    "linear_cross_entropy",
    "linear_logprobs",
    "packed_attention",
    "reference_linear_cross_entropy",
    "reference_linear_logprobs",
    "reference_packed_attention",
    "register_hf_packed_attention",
    "select_attention_backend",
]
