"""Activation memory for long context: checkpointing at a chosen granularity, vision tower in chunks.

Checkpointing (``--activation-checkpointing MODE``, parsed by ``config.parse_checkpointing``).
A wrapped module's ``forward`` runs under ``torch.utils.checkpoint`` (``use_reentrant=False``):
only its inputs are kept for the backward pass, which runs the forward a second time. Modes:

  off       nothing wrapped
  full      every LM decoder layer and every vision block
  llm       decoder layers only (the long-context case: text activations grow with seq_len)
  vision    vision blocks only (many / large images, short text)
  every-N   decoder layers 0, N, 2N, ... plus every vision block: keeps (N-1)/N of the decoder
            layers' activations in exchange for 1/N of their recompute

A checkpointed layer keeps only its input [tokens x hidden] instead of every intermediate (norms,
q/k/v, attention output and probabilities where the kernel saves them, the MLP's [tokens x
intermediate] tensors), and its forward runs twice: ~1/3 more compute for the wrapped layers.
benchmarks/activation_memory_bench.py (CPU fp32, GLM-4V-shaped 14 M-parameter model, LM 6 x 384,
vision 4 x 192, one packed micro batch of 2048 tokens with 8 images / 2328 patches; peak memory a
step adds over weights + gradients, CPU time, both vs ``off``): llm 0.41x memory at 1.34x time,
every-2 0.48x at 1.26x, full 0.24x at 1.32x, full + 2-image chunks 0.21x at 1.50x. With 16 images
(4656 patches): vision 0.71x, vision + chunks 0.66x, full 0.22x, full + chunks 0.17x. (On CPU the
``off`` peak is dominated by the attention probabilities that sdpa's masked path saves; with flash
attention on GPU the LM part is smaller and the vision share larger.)

The wrapper checkpoints ``forward`` (not ``__call__``), exactly as transformers' own
``GradientCheckpointingLayer`` does, so module hooks stay outside the checkpoint and run once:
DeepSpeed ZeRO-3 gathers each submodule's parameters through its own hooks, which fire again
during the recompute, so ZeRO 0-3 work unchanged. The wrapper is inactive (a plain call) in eval
mode or under ``torch.no_grad`` -- generation, rollouts and evaluation see the original forward
and keep their KV cache -- and ``uninstall`` removes it before a model is exported.

Vision tower in chunks (``--vision-chunk-images N``). GLM-4V's vision tower is per image: the
attention is block-diagonal by ``cu_seqlens``, the learned position table is interpolated per
image, the rotary ids, norms, the 2x2 downsample and the merger are per patch. Running it over
images [0, N), [N, 2N), ... and concatenating is therefore exact (tests: equal outputs and
gradients). With vision checkpointing on, each chunk's whole tower runs under one checkpoint, so
the backward pass keeps only the chunk inputs (pixels) and outputs of the micro batch and rebuilds
one chunk at a time; the vision blocks stay checkpointed inside the chunk (nested), so the rebuild
of a chunk itself keeps one tensor per block. Cost: the vision blocks run forward three times
instead of two (the blocks are 0.68 B of GLM-4.1V-9B's 10.3 B parameters). Measured alternatives: chunks
with only the blocks checkpointed (no chunk-level checkpoint) saved nothing over ``vision``
(0.71x -> 0.71x above, the block inputs of every chunk stay alive); a chunk-level checkpoint with
un-checkpointed blocks inside rebuilds a whole chunk's activations at once, which for a 24-block
tower exceeds what block checkpointing keeps. Without vision checkpointing the chunks only bound
the forward's transient buffers (and the inference peak under no_grad).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from glmv_cli.errors import GlmvError
from glmv_cli.training.config import parse_checkpointing

_CKPT = "_glmv_checkpointed"
_CHUNK = "_glmv_vision_chunk"


def checkpoint_plan(mode: str, n_layers: int) -> tuple[list[int], bool]:
    """(indices of the decoder layers to checkpoint, whether the vision blocks are) for ``mode``."""
    mode = parse_checkpointing(mode)
    if mode == "off":
        return [], False
    if mode == "full":
        return list(range(n_layers)), True
    if mode == "llm":
        return list(range(n_layers)), False
    if mode == "vision":
        return [], True
    n = int(mode.split("-", 1)[1])
    return list(range(0, n_layers, n)), True


def find_parts(model: torch.nn.Module) -> tuple[torch.nn.ModuleList | None, torch.nn.Module | None]:
    """(the LM's decoder layers, the vision tower) of a GLM-4V model, its inner model or a wrapper.

    Glm4v(Moe)ForConditionalGeneration keeps them at ``model.language_model.layers`` and
    ``model.visual``; a text-only causal LM at ``model.layers``.
    """
    root = getattr(model, "module", model)  # a DeepSpeed engine
    for base in (root, getattr(root, "model", None)):
        if base is None:
            continue
        lm = getattr(base, "language_model", None)
        if lm is not None and isinstance(getattr(lm, "layers", None), torch.nn.ModuleList):
            return lm.layers, getattr(base, "visual", None)
        if isinstance(getattr(base, "layers", None), torch.nn.ModuleList):
            return base.layers, getattr(base, "visual", None)
    return None, getattr(root, "visual", None)


# ---------------------------------------------------------------------------- checkpointed forward


def _checkpointed_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    fwd = type(self).forward
    if not (self.training and torch.is_grad_enabled()):
        return fwd(self, *args, **kwargs)
    # The recompute must not write a KV cache a second time (transformers does the same).
    if kwargs.get("use_cache"):
        kwargs["use_cache"] = False
    if kwargs.get("past_key_values") is not None:
        kwargs["past_key_values"] = None
    return checkpoint(fwd, self, *args, use_reentrant=False, **kwargs)


def _wrap(module: torch.nn.Module) -> None:
    # A bound method in the instance dict: deepcopy rebinds it to the copy; uninstall deletes it.
    module.forward = types.MethodType(_checkpointed_forward, module)
    setattr(module, _CKPT, True)


def _unwrap(module: torch.nn.Module) -> None:
    if getattr(module, _CKPT, False):
        module.__dict__.pop("forward", None)
        delattr(module, _CKPT)


# ---------------------------------------------------------------------------- vision tower in chunks


def image_chunks(grid_thw: torch.Tensor, max_images: int) -> list[tuple[int, int, int, int]]:
    """(first image, end image, first patch row, end patch row) of each chunk of <= max_images."""
    sizes = [int(x) for x in grid_thw.prod(-1).tolist()]
    out, row = [], 0
    for i in range(0, len(sizes), max_images):
        n = sum(sizes[i:i + max_images])
        out.append((i, min(i + max_images, len(sizes)), row, row + n))
        row += n
    return out


def _tower(self: torch.nn.Module, pixels: torch.Tensor, grid: torch.Tensor, kwargs: dict[str, Any]):
    out = type(self).forward(self, pixels, grid, **kwargs)
    return out.last_hidden_state, out.pooler_output


def _chunked_forward(self: torch.nn.Module, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any):
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    n_max, ckpt = getattr(self, _CHUNK)
    ckpt = ckpt and self.training and torch.is_grad_enabled()
    extra = any(kwargs.get(k) for k in ("output_hidden_states", "output_attentions")) or \
        kwargs.get("return_dict") is False
    chunks = image_chunks(grid_thw, n_max)
    # per-layer outputs, or rows that do not match the grids (transformers' own error): one pass
    if extra or (len(chunks) == 1 and not ckpt) or chunks[-1][3] != hidden_states.shape[0]:
        return type(self).forward(self, hidden_states, grid_thw, **kwargs)
    kwargs = {**kwargs, "return_dict": True}
    last, pooled = [], []
    for i0, i1, r0, r1 in chunks:
        args = (self, hidden_states[r0:r1], grid_thw[i0:i1], kwargs)
        a, b = checkpoint(_tower, *args, use_reentrant=False) if ckpt else _tower(*args)
        last.append(a)
        pooled.append(b)
    return BaseModelOutputWithPooling(last_hidden_state=torch.cat(last), pooler_output=torch.cat(pooled))


# ---------------------------------------------------------------------------- install / inspect


def install(model: torch.nn.Module, mode: str = "off", vision_chunk_images: int = 0) -> dict[str, Any]:
    """Applies ``mode`` and vision chunking to ``model`` in place (replacing an earlier install).

    Returns what was done: ``{"mode", "llm_layers": [indices], "vision_blocks": n, "vision_chunk_images"}``.
    """
    mode = parse_checkpointing(mode)
    if vision_chunk_images < 0:
        raise GlmvError(f"--vision-chunk-images must be >= 0 (0: off), got {vision_chunk_images}")
    uninstall(model)
    layers, visual = find_parts(model)
    n_layers = len(layers) if layers is not None else 0
    llm_idx, vision = checkpoint_plan(mode, n_layers)
    if llm_idx and layers is None:
        raise GlmvError(f"--activation-checkpointing {mode}: {type(model).__name__} has no decoder layers "
                        "where glmv looks for them (model.language_model.layers or model.layers)")
    for i in llm_idx:
        _wrap(layers[i])
    blocks = getattr(visual, "blocks", None) if vision else None
    for blk in blocks or []:
        _wrap(blk)
    if vision_chunk_images and visual is not None:
        visual.forward = types.MethodType(_chunked_forward, visual)
        setattr(visual, _CHUNK, (int(vision_chunk_images), vision))
    return {"mode": mode, "llm_layers": llm_idx, "vision_blocks": len(blocks or []),
            "vision_chunk_images": int(vision_chunk_images) if visual is not None else 0}


def uninstall(model: torch.nn.Module) -> None:
    """Restores every original forward (before export, or to change the mode)."""
    root = getattr(model, "module", model)
    for m in root.modules():
        _unwrap(m)
        if getattr(m, _CHUNK, None) is not None:
            m.__dict__.pop("forward", None)
            delattr(m, _CHUNK)


def wrapped(model: torch.nn.Module) -> list[str]:
    """Names of the modules whose forward is checkpointed, in module order."""
    root = getattr(model, "module", model)
    return [n for n, m in root.named_modules() if getattr(m, _CKPT, False)]


def chunked(model: torch.nn.Module) -> dict[str, int]:
    """{module name: max images per chunk} of the vision towers running in chunks."""
    root = getattr(model, "module", model)
    return {n: getattr(m, _CHUNK)[0] for n, m in root.named_modules() if getattr(m, _CHUNK, None) is not None}
