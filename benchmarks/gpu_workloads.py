"""The workloads of the GPU check (benchmarks/gpu_check.py): one GLM-4V-shaped model, its data.

Sizes: ``FULL`` is what the H200 runs (a ~1.2 B GLM-4V-shaped model: GLM-4 text stack of 12
layers, hidden 2048, GQA 16/2, vocab 151,552, and a 4-block 512-wide vision tower; packs of
8,192 tokens); ``DRY`` the toy sizes of ``--dry-run``, which run the same code on a CPU in seconds.

Samples (``sft_samples``): half carry one image of 64, 144 or 256 merged tokens (16x16, 24x24
or 32x32 patches), text lengths are log-normal around seq_len / 16 (512 at 8K; clipped to
[32, seq_len / 2]), the image/text mix of a vision SFT set, drawn row by row so that each row
holds exactly ``seq_len`` tokens (one shape: the compiled flex kernel is built once).
``packed_rows`` makes them ``glmv pack`` rows: 4-row positions restarting per sample. ``padded_rows`` is the usual loop's batching of the same
samples: micro batches of 4 in arrival order, right-padded to the longest, with an attention mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

FULL = dict(layers=12, hidden=2048, vocab=151_552, vision=dict(depth=4, hidden_size=512, num_heads=8,
                                                              intermediate_size=1536, image_size=336),
            grids=((1, 16, 16), (1, 24, 24), (1, 32, 32)), seq_len=8192, packs=2, warmup=1, steps=2,
            ce_tokens=8192, ce_hidden=4096, ce_vocab=151_552, prompts=4, group=8, new_tokens=1024,
            image_px=224, triton_fp32=(1024, 1024, 32000), triton_bf16=(8192, 4096, 151_552))
DRY = dict(layers=2, hidden=256, vocab=2048, vision=dict(depth=1, hidden_size=32, num_heads=2,
                                                        intermediate_size=64, image_size=56),
           grids=((1, 4, 4), (1, 4, 8)), seq_len=512, packs=2, warmup=1, steps=1,
           ce_tokens=256, ce_hidden=64, ce_vocab=4096, prompts=2, group=8, new_tokens=16,
           image_px=56, triton_fp32=(64, 32, 500), triton_bf16=(64, 32, 500))
PAD_BATCH = 4


def model_config(size: dict, attn: str):
    """The benchmark model's Glm4vConfig; token ids and stop ids of glmv's offline tokenizer, so
    the same config serves SFT, exactness and the rollout engine (which reads its special ids)."""
    import kernel_bench  # a sibling script: benchmarks/ is on sys.path when these run
    from glmv_cli.modeling.tokenizer import offline_tokenizer, stop_token_ids

    tok = offline_tokenizer()
    conv = tok.convert_tokens_to_ids
    ids = {f"{k}_token_id": conv(t) for k, t in (
        ("image", "<|image|>"), ("video", "<|video|>"), ("image_start", "<|begin_of_image|>"),
        ("image_end", "<|end_of_image|>"), ("video_start", "<|begin_of_video|>"), ("video_end", "<|end_of_video|>"))}
    return kernel_bench.glm4v_1b_config(attn, size["layers"], size["hidden"], size["vocab"], vision=size["vision"],
                                        token_ids=ids, eos=stop_token_ids(tok))


def build_model(size: dict, attn: str, device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Random weights, initialised on ``device`` (a 1.2 B init on the CPU takes seconds per run)."""
    from transformers import Glm4vForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device):
        model = Glm4vForConditionalGeneration(model_config(size, attn))
    return model.to(dtype)


def sample_tokens(sample: tuple, merge: int = 2) -> int:
    grids, n_text = sample
    return sum(2 + t * h * w // merge ** 2 for t, h, w in grids) + n_text


def sft_samples(size: dict, seed: int = 0) -> list[list[tuple[list[tuple[int, int, int]], int]]]:
    """``size["packs"]`` rows of ``(grids, n_text)`` samples, each row filling ``seq_len`` exactly
    (samples drawn as in the module docstring until the next one does not fit; a last text sample
    takes the rest, as a packer that fills rows leaves it)."""
    rng = np.random.default_rng(seed)
    L = size["seq_len"]
    rows = []
    for _ in range(size["packs"]):
        row: list[tuple[list[tuple[int, int, int]], int]] = []
        while True:
            grids = [size["grids"][int(rng.integers(len(size["grids"])))]] if rng.random() < 0.5 else []
            n_text = int(np.clip(round(rng.lognormal(np.log(L / 16), 0.8)), 32, L // 2))
            left = L - sum(map(sample_tokens, row))
            if sample_tokens((grids, n_text)) > left:
                row.append(([], left))
                break
            row.append((grids, n_text))
        rows.append(row)
    return rows


def packed_rows(cfg: Any, rows: list, seed: int = 0) -> list[dict[str, Any]]:
    """One packed row per sample group; each has ``real_lengths`` (its samples' lengths) and
    ``n_patches`` beside the model tensors."""
    from glmv_cli.testing.tiny import multimodal_pack

    out = []
    for i, group in enumerate(rows):
        pack = multimodal_pack(cfg, group, seed=seed + i, vocab=cfg.image_token_id)
        pack["real_lengths"] = [sample_tokens(s) for s in group]
        pack["n_patches"] = int(pack["pixel_values"].shape[0])
        if not pack["n_patches"]:  # a text-only row has no image inputs at all
            del pack["pixel_values"], pack["image_grid_thw"]
        out.append(pack)
    return out


def padded_rows(cfg: Any, samples: list, seed: int = 0) -> list[dict[str, Any]]:
    """Micro batches of ``PAD_BATCH`` samples, right-padded, with ``attention_mask``."""
    from glmv_cli.testing.tiny import multimodal_pack

    one = [multimodal_pack(cfg, [s], seed=seed + i, vocab=cfg.image_token_id) for i, s in enumerate(samples)]
    out = []
    for i in range(0, len(one), PAD_BATCH):
        group = one[i:i + PAD_BATCH]
        L = max(p["input_ids"].shape[1] for p in group)
        B = len(group)
        b = {"input_ids": torch.zeros(B, L, dtype=torch.long), "labels": torch.full((B, L), -100, dtype=torch.long),
             "mm_token_type_ids": torch.zeros(B, L, dtype=torch.long), "attention_mask": torch.zeros(B, L, dtype=torch.long),
             "position_ids": torch.zeros(4, B, L, dtype=torch.long)}
        for r, p in enumerate(group):
            n = p["input_ids"].shape[1]
            for k in ("input_ids", "labels", "mm_token_type_ids"):
                b[k][r, :n] = p[k][0]
            b["attention_mask"][r, :n] = 1
            b["position_ids"][:, r, :n] = p["position_ids"][:, 0]
        with_img = [p for p in group if p["pixel_values"].numel()]
        if with_img:
            b["pixel_values"] = torch.cat([p["pixel_values"] for p in with_img])
            b["image_grid_thw"] = torch.cat([p["image_grid_thw"] for p in with_img])
        b["real_lengths"] = [int(p["input_ids"].shape[1]) for p in group]
        b["n_patches"] = int(b["pixel_values"].shape[0]) if with_img else 0
        out.append(b)
    return out


def sample_slices(pack: dict[str, Any], samples: list, merge: int = 2) -> list[dict[str, Any]]:
    """Each sample of a packed row cut out as its own one-sample row (same tokens, positions,
    pixels): the per-sample reference of the packed-logits exactness check."""
    out, s, patch, img = [], 0, 0, 0
    for smp in samples:
        n = sample_tokens(smp, merge)
        npatch = sum(t * h * w for t, h, w in smp[0])
        one = {k: pack[k][..., s:s + n] for k in ("input_ids", "mm_token_type_ids", "position_ids")}
        if npatch:
            one["pixel_values"] = pack["pixel_values"][patch:patch + npatch]
            one["image_grid_thw"] = pack["image_grid_thw"][img:img + len(smp[0])]
        one["span"] = (s, s + n)
        out.append(one)
        s, patch, img = s + n, patch + npatch, img + len(smp[0])
    return out
