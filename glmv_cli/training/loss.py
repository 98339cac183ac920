"""Token losses over packed rows, micro-batch assembly, and the FLOPs estimate behind ``mfu``.

Loss normalisation: the loss of an optimizer step is sum(token CE) / (label tokens in the global
batch). Each micro step backpropagates ``sum_ce * world / N_global`` (data-parallel averaging
divides by ``world`` again), so gradient accumulation and data parallelism give the same gradient
as one big batch -- unlike a mean per micro batch, which over-weights short micro batches.

Packed rows: labels are aligned with ``input_ids`` (Hugging Face convention) and shifted here. A
target whose text position (row 0 of ``position_ids``) is 0 starts a new sample, so it is never
predicted from the previous sample's last token, whatever the labels say.

FLOPs per token (forward + backward) = 6 * N_params + 12 * layers * hidden * ctx, where ``ctx`` is
the mean attended length per token: for causal attention inside samples of length s_i it is
sum(s_i^2) / (2 * sum(s_i)). The vision tower's FLOPs (6 * N_vision per patch) are added per patch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

IGNORE = -100
MODEL_KEYS = ("input_ids", "position_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw")


def shifted_targets(labels: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    """(1, L) labels -> (1, L-1) targets for logits[:, :-1], -100 where no loss."""
    tgt = labels[:, 1:].clone()
    if position_ids is not None:
        text_pos = position_ids[0] if position_ids.dim() == 3 else position_ids
        tgt[text_pos[:, 1:] == 0] = IGNORE
    return tgt


def count_label_tokens(batch: dict[str, Any]) -> int:
    return int((shifted_targets(batch["labels"], batch.get("position_ids")) != IGNORE).sum())


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the model call; empty image tensors are dropped."""
    kw: dict[str, Any] = {"attention_mask": None}
    for k in MODEL_KEYS:
        v = batch.get(k)
        if v is None or (k in ("pixel_values", "image_grid_thw") and v.numel() == 0):
            continue
        kw[k] = v
    return kw


def lm_loss_sum(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Sum of next-token cross-entropy over the label tokens of one (packed) micro batch, fp32."""
    out = model(**model_inputs(batch), use_cache=False)
    logits = out.logits[:, :-1].float()
    tgt = shifted_targets(batch["labels"], batch.get("position_ids")).to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def chunked_lm_loss_sum(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """``lm_loss_sum`` through glmv_kernels' chunked LM head: same value (fp32 summation order
    aside) and gradients, without materialising the [tokens x vocab] logits."""
    from glmv_kernels.model_loss import causal_lm_loss

    return causal_lm_loss(model, model_inputs(batch), batch["labels"])


def concat_packs(packs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Joins packs along the sequence into one row (a valid pack: positions restart per sample)."""
    if len(packs) == 1:
        return dict(packs[0])
    out: dict[str, Any] = {}
    for k in ("input_ids", "labels", "mm_token_type_ids"):
        if all(k in p for p in packs):
            out[k] = torch.cat([p[k] for p in packs], dim=-1)
    if all("position_ids" in p for p in packs):
        out["position_ids"] = torch.cat([p["position_ids"] for p in packs], dim=-1)
    pv = [p["pixel_values"] for p in packs if p.get("pixel_values") is not None and p["pixel_values"].numel()]
    if pv:
        out["pixel_values"] = torch.cat(pv, dim=0)
        out["image_grid_thw"] = torch.cat([p["image_grid_thw"] for p in packs
                                           if p.get("image_grid_thw") is not None and p["image_grid_thw"].numel()])
    return out


def sample_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the samples in a packed row from the restarts of text position row 0."""
    row = (position_ids[0] if position_ids.dim() == 3 else position_ids).reshape(-1)
    starts = torch.nonzero(row == 0).reshape(-1).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    ends = starts[1:] + [row.numel()]
    return [e - s for s, e in zip(starts, ends) if e > s]


def step_flops(n_params: int, n_layers: int, hidden: int, batch_lengths: Sequence[Sequence[int]],
               n_vision_params: int = 0, n_patches: int = 0) -> float:
    """Training FLOPs (fwd + bwd) of one step over rows with the given per-sample lengths."""
    tokens = sum(sum(r) for r in batch_lengths)
    sq = sum(s * s for r in batch_lengths for s in r)
    attn = 12.0 * n_layers * hidden * (sq / 2.0)  # = 12 * L * h * ctx * tokens
    return 6.0 * n_params * tokens + attn + 6.0 * n_vision_params * n_patches


def default_peak_tflops(device: torch.device) -> float:
    """bf16 dense peak of the device; a nominal 1 TFLOP/s per CPU process."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, peak in (("h200", 989.0), ("h100", 989.0), ("a100", 312.0), ("l40", 181.0),
                          ("a10", 125.0), ("4090", 165.0), ("v100", 125.0)):
            if key in name:
                return peak
        return 100.0
    return 1.0


def is_packed_lm_batch(batch: dict[str, Any]) -> bool:
    """A ``glmv pack`` style micro batch: one row, aligned labels, 4-row position ids."""
    ids, pos = batch.get("input_ids"), batch.get("position_ids")
    return (isinstance(ids, torch.Tensor) and ids.dim() == 2 and ids.shape[0] == 1 and "labels" in batch
            and isinstance(pos, torch.Tensor) and pos.dim() == 3 and pos.shape[0] == 4)


def with_vision_probe(batch: dict[str, Any], *, image_token_id: int, patch_dim: int, merge: int) -> dict[str, Any]:
    """Appends a one-token dummy image (``merge x merge`` zero patches) as its own sample.

    Under data parallelism every rank must run the same modules in the same order: ZeRO-2 reduces
    gradients in hook order and ZeRO-3 all-gathers parameters per module call, so a rank whose micro
    batch has no image (vision tower unused) would desynchronise the collectives. With the probe the
    vision tower runs exactly once per micro batch on every rank, inside the one model call. The
    token starts a new sample (text position 0) at the end of the row, so causal + block-diagonal
    attention keeps it invisible to the real tokens; its label is -100, so it adds nothing to the
    loss or the gradient. Other per-token tensors (last dim L) are extended with 0 (labels: -100).
    It is applied in one process too: a text-only micro batch with only the vision side trainable
    still has a loss connected to the trained weights (zero gradient, like an unused DDP parameter),
    and 1 and N processes run the very same computation. Cost: 4 patches through the tower.
    """
    ids = batch["input_ids"]
    L = ids.shape[-1]
    out = dict(batch)
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor) or k in ("pixel_values", "image_grid_thw") or v.shape[-1] != L:
            continue
        if k == "input_ids":
            pad = torch.full((*v.shape[:-1], 1), image_token_id, dtype=v.dtype)
        elif k == "labels":
            pad = torch.full((*v.shape[:-1], 1), IGNORE, dtype=v.dtype)
        elif k == "mm_token_type_ids":
            pad = torch.ones((*v.shape[:-1], 1), dtype=v.dtype)
        else:
            pad = torch.zeros((*v.shape[:-1], 1), dtype=v.dtype)
        out[k] = torch.cat([v, pad.to(v.device)], dim=-1)
    probe = torch.zeros(merge * merge, patch_dim)
    grid = torch.tensor([[1, merge, merge]])
    pv = batch.get("pixel_values")
    if pv is not None and pv.numel():
        out["pixel_values"] = torch.cat([pv, probe.to(pv.dtype)], dim=0)
        out["image_grid_thw"] = torch.cat([batch["image_grid_thw"], grid.to(batch["image_grid_thw"].dtype)], dim=0)
    else:
        out["pixel_values"] = probe
        out["image_grid_thw"] = grid
    return out
