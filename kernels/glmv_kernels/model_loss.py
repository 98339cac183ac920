"""LM losses and token log-probs of a transformers GLM-4V model through the chunked LM head.

The model is run without its head (``model.model(...)`` -> last hidden states [B, L, H]); the head
(``model.lm_head``, an ``nn.Linear`` [V, H]) is applied by ``linear_cross_entropy`` /
``linear_logprobs`` chunk by chunk, so the [B, L, V] logits never exist. Values equal
``F.cross_entropy(model(...).logits[:, :-1].float(), shifted labels)`` up to fp32 summation order.

Targets follow glmv's packed convention (the same as ``glmv_cli.training.loss.shifted_targets``):
labels are aligned with input_ids and shifted here, and a target whose text position (row 0 of
position_ids) is 0 starts a new sample, so it is never predicted across a sample boundary. Instead
of slicing hidden[:, :-1] (a copy of B*L*H), the last position gets the ignore target.

DeepSpeed: a DeepSpeed engine is unwrapped (``.module``). Under ZeRO-3 the head's weight is a
partitioned placeholder outside its own forward, so these helpers then fall back to calling
``lm_head`` (gathered by DeepSpeed's hooks) and the full-logits loss -- correct, not memory-lean.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from glmv_kernels.attention import text_positions
from glmv_kernels.logprobs import IGNORE_INDEX, linear_cross_entropy, linear_logprobs

_DROP = ("labels", "logits_to_keep", "use_cache")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model behind a DeepSpeed engine / DDP wrapper (objects with ``.module``)."""
    while not hasattr(model, "lm_head") and hasattr(model, "module"):
        model = model.module
    if not hasattr(model, "lm_head") or not hasattr(model, "model"):
        raise TypeError(f"{type(model).__name__} has no .model and .lm_head (expected a *ForConditionalGeneration)")
    return model


def _zero3_partitioned(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id") and hasattr(p, "ds_status")


def next_token_targets(labels: torch.Tensor, position_ids: torch.Tensor | None = None,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, L) labels -> (B, L) targets for hidden[:, t]: labels[:, t + 1], ignore at the last
    position and where position t + 1 starts a new sample (text position 0)."""
    tgt = torch.full_like(labels, ignore_index)
    tgt[:, :-1] = labels[:, 1:]
    if position_ids is not None:
        pos = text_positions(position_ids).to(labels.device)
        tgt[:, :-1][pos[:, 1:] == 0] = ignore_index
    return tgt


def causal_lm_loss_from_hidden(hidden: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor,
                               position_ids: torch.Tensor | None = None, *, reduction: str = "sum",
                               ignore_index: int = IGNORE_INDEX, chunk_size: int | None = None) -> torch.Tensor:
    """Next-token CE from last hidden states [B, L, H] and the LM head, fp32, never forming logits."""
    tgt = next_token_targets(labels, position_ids, ignore_index).to(hidden.device)
    if _zero3_partitioned(lm_head.weight):
        logits = lm_head(hidden).float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                 ignore_index=ignore_index, reduction=reduction).reshape(
            tgt.shape if reduction == "none" else ())
    return linear_cross_entropy(hidden, lm_head.weight, tgt, bias=lm_head.bias, ignore_index=ignore_index,
                                reduction=reduction, chunk_size=chunk_size)


def _hidden(model: torch.nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    kw = {k: v for k, v in inputs.items() if k not in _DROP}
    return model.model(**kw, use_cache=False)[0]


def causal_lm_loss(model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor, *,
                   reduction: str = "sum", ignore_index: int = IGNORE_INDEX,
                   chunk_size: int | None = None) -> torch.Tensor:
    """``model(**inputs)`` + next-token CE over ``labels`` (sum by default, as glmv's engine wants)."""
    m = unwrap(model)
    return causal_lm_loss_from_hidden(_hidden(m, inputs), m.lm_head, labels, inputs.get("position_ids"),
                                      reduction=reduction, ignore_index=ignore_index, chunk_size=chunk_size)


def causal_token_logprobs(model: torch.nn.Module, inputs: Mapping[str, Any], *, temperature: float = 1.0,
                          chunk_size: int | None = None) -> torch.Tensor:
    """[B, L-1] fp32 log-probs of input_ids[:, 1:] (position t predicts token t + 1), as
    ``grpo.token_logprobs(model(**inputs).logits[:, :-1] / T, input_ids[:, 1:])``."""
    m = unwrap(model)
    hidden = _hidden(m, inputs)
    ids = inputs["input_ids"]
    tgt = torch.zeros_like(ids)
    tgt[:, :-1] = ids[:, 1:]  # the last position's target is a dummy 0, dropped below
    w = m.lm_head.weight
    if _zero3_partitioned(w):
        z = m.lm_head(hidden).float() / temperature
        logp = torch.log_softmax(z, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    else:
        logp = linear_logprobs(hidden, w, tgt.to(hidden.device), bias=m.lm_head.bias, chunk_size=chunk_size,
                               temperature=temperature)
    return logp[:, :-1]
