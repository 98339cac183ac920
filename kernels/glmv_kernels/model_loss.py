"""LM losses and token log-probs of a transformers GLM-4V model through the chunked LM head.

The head (``model.lm_head``, an ``nn.Linear`` [V, H]) is applied to the last hidden states
[B, L, H] by ``linear_cross_entropy`` / ``linear_logprobs`` chunk by chunk, so the [B, L, V]
logits never exist. Values equal
``F.cross_entropy(model(...).logits[:, :-1].float(), shifted labels)`` up to fp32 summation order.

Targets follow glmv's packed convention (the same as ``glmv_cli.training.loss.shifted_targets``):
labels are aligned with input_ids and shifted here, and a target whose text position (row 0 of
position_ids) is 0 starts a new sample, so it is never predicted across a sample boundary. Instead
of slicing hidden[:, :-1] (a copy of B*L*H), the last position gets the ignore target.

How the head runs: ``model(**inputs)`` is called as usual, with ``lm_head``'s forward replaced for
that one call (``head_forward``) by the chunked kernel. So every module runs inside its own module
call, which is what DeepSpeed ZeRO-3 needs: its hooks gather a module's partitioned parameters
around that module's forward and again before its backward, and the root module's pre-forward hook
resets the parameter-fetch trace. The head weight is therefore gathered in the head's own scope
(forward, then again for the backward), exactly as for a plain ``nn.Linear``, and ZeRO 0-3 all take
the chunked path; a DeepSpeed engine or a plain module may be passed.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

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


@contextmanager
def head_forward(model: torch.nn.Module, fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, ``model``'s ``lm_head`` computes ``fn(lm_head, hidden)`` instead of its logits.

    ``fn`` runs inside the head module's call, so ``lm_head.weight`` is the full (ZeRO-3: gathered)
    weight there and autograd saves it as it would for ``F.linear``. The replacement is an instance
    attribute, removed on exit (also after an exception)."""
    head = unwrap(model).lm_head
    if "forward" in head.__dict__:
        raise RuntimeError("lm_head's forward is already replaced (nested head_forward)")
    head.forward = types.MethodType(fn, head)
    try:
        yield
    finally:
        head.__dict__.pop("forward", None)


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
    """Next-token CE from last hidden states [B, L, H] and the LM head, fp32, never forming logits
    (the head's weight must be whole here: call inside its module call under ZeRO-3)."""
    tgt = next_token_targets(labels, position_ids, ignore_index).to(hidden.device)
    return linear_cross_entropy(hidden, lm_head.weight, tgt, bias=lm_head.bias, ignore_index=ignore_index,
                                reduction=reduction, chunk_size=chunk_size)


def _call(model: torch.nn.Module, inputs: Mapping[str, Any]) -> Any:
    kw = {k: v for k, v in inputs.items() if k not in _DROP}
    return model(**kw, use_cache=False)


def causal_lm_loss(model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor, *,
                   reduction: str = "sum", ignore_index: int = IGNORE_INDEX,
                   chunk_size: int | None = None) -> torch.Tensor:
    """``model(**inputs)`` + next-token CE over ``labels`` (sum by default, as glmv's engine wants)."""
    pos = inputs.get("position_ids")

    def head(lm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss_from_hidden(hidden, lm, labels, pos, reduction=reduction, ignore_index=ignore_index,
                                          chunk_size=chunk_size)

    with head_forward(model, head):
        return _call(model, inputs).logits


def causal_token_logprobs(model: torch.nn.Module, inputs: Mapping[str, Any], *, temperature: float = 1.0,
                          chunk_size: int | None = None) -> torch.Tensor:
    """[B, L-1] fp32 log-probs of input_ids[:, 1:] (position t predicts token t + 1), as
    ``grpo.token_logprobs(model(**inputs).logits[:, :-1] / T, input_ids[:, 1:])``."""
    ids = inputs["input_ids"]
    tgt = torch.zeros_like(ids)
    tgt[:, :-1] = ids[:, 1:]  # the last position's target is a dummy 0, dropped below

    def head(lm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return linear_logprobs(hidden, lm.weight, tgt.to(hidden.device), bias=lm.bias, chunk_size=chunk_size,
                               temperature=temperature)

    with head_forward(model, head):
        return _call(model, inputs).logits[:, :-1]
