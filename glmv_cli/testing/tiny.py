"""Tiny models and in-memory packs in the packed-reader format, for tests and benchmarks.

A pack here has exactly the fields ``glmv pack``'s reader yields: input_ids / labels /
mm_token_type_ids (1, L), position_ids (4, 1, L) with row 0 restarting per sample, and for packs
with images pixel_values (patches, C*T*P*P) and image_grid_thw (images, 3). Text samples are drawn
from a fixed random "grammar" (a sparse Markov chain) so that a model can actually learn them;
images are random pixels behind ``<|begin_of_image|> <|image|>*n <|end_of_image|>``.
"""

from __future__ import annotations

from typing import Any

import torch

TINY_IDS = {"image_token_id": 290, "video_token_id": 291, "image_start_token_id": 292,
            "image_end_token_id": 293, "video_start_token_id": 294, "video_end_token_id": 295}


def full_forward_logprobs(model: Any, prompt: Any, rollout: Any, banned: Any = ()) -> torch.Tensor:
    """The learner's view of a rollout: one full forward over prompt + response, banned tokens
    masked, log-probs of the response tokens (what rollout engines' log-probs must equal)."""
    from glmv_cli.generation import mask_banned

    ids = torch.tensor([prompt.input_ids + rollout.token_ids])
    kw = {}
    if prompt.pixel_values is not None:
        kw = dict(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                  mm_token_type_ids=(ids == model.config.image_token_id).long())
    model.model.rope_deltas = None
    with torch.no_grad():
        lg = mask_banned(model(input_ids=ids, **kw).logits[0], list(banned)).log_softmax(-1)
    n = len(prompt.input_ids)
    return lg[n - 1:n - 1 + len(rollout.token_ids)].gather(1, torch.tensor(rollout.token_ids)[:, None])[:, 0]


def tiny_glm4v_config(vocab: int = 300, layers: int = 2, hidden: int = 128, max_pos: int = 4096):
    """A ~0.4 M-parameter Glm4vConfig (head_dim 32, partial rotary 0.5, mrope [2, 3, 3])."""
    from transformers import Glm4vConfig

    return Glm4vConfig(
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=hidden // 32, num_key_value_heads=max(1, hidden // 64),
                         max_position_embeddings=max_pos,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3], "partial_rotary_factor": 0.5}),
        vision_config=dict(depth=1, hidden_size=32, num_heads=2, image_size=28, patch_size=14,
                           out_hidden_size=hidden, intermediate_size=64, spatial_merge_size=2,
                           temporal_patch_size=2),
        **TINY_IDS,
    )


def tiny_glm4v(seed: int = 0, **kw):
    from transformers import Glm4vForConditionalGeneration

    torch.manual_seed(seed)
    m = Glm4vForConditionalGeneration(tiny_glm4v_config(**kw))
    m.eval()
    return m


def _sample(gen: torch.Generator, n: int, vocab: int, table: torch.Tensor) -> list[int]:
    ids = [int(torch.randint(0, vocab, (1,), generator=gen))]
    for _ in range(n - 1):
        nxt = table[ids[-1]]
        ids.append(int(nxt[int(torch.randint(0, nxt.numel(), (1,), generator=gen))]))
    return ids


def synthetic_packs(n_packs: int, seq_len: int = 64, *, samples_per_pack: int = 2, vocab: int = 280,
                    image_every: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """``n_packs`` full packs of ``samples_per_pack`` samples each; every ``image_every``-th pack
    starts with a 2x2-patch image (one merged image token). Labels: all tokens (pretraining)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(0, vocab, (vocab, 2), generator=gen)  # 2 successors per token: learnable
    packs = []
    for k in range(n_packs):
        with_image = image_every > 0 and k % image_every == 0
        ids: list[int] = []
        pos: list[list[int]] = [[], [], [], []]
        mm: list[int] = []
        lens = [seq_len // samples_per_pack] * samples_per_pack
        lens[-1] += seq_len - sum(lens)
        for j, n in enumerate(lens):
            if with_image and j == 0:
                toks = [TINY_IDS["image_start_token_id"], TINY_IDS["image_token_id"], TINY_IDS["image_end_token_id"]]
                toks += _sample(gen, n - 3, vocab, table)
                types = [0, 1, 0] + [0] * (n - 3)
                # one merged image token (grid 1x2x2 / merge 2x2): its t/h/w ids all equal its index
                rows = [list(range(n)) for _ in range(3)]
                text_row = list(range(n))
            else:
                toks = _sample(gen, n, vocab, table)
                types = [0] * n
                rows = [list(range(n)) for _ in range(3)]
                text_row = list(range(n))
            ids += toks
            mm += types
            pos[0] += text_row
            for r in range(3):
                pos[r + 1] += rows[r]
        t = torch.tensor([ids])
        labels = t.clone()
        labels[t == TINY_IDS["image_token_id"]] = -100
        pack: dict[str, Any] = {
            "input_ids": t,
            "labels": labels,
            "position_ids": torch.tensor(pos).view(4, 1, -1),
            "mm_token_type_ids": torch.tensor([mm]),
        }
        if with_image:
            pack["pixel_values"] = torch.randn(4, 3 * 2 * 14 * 14, generator=gen)
            pack["image_grid_thw"] = torch.tensor([[1, 2, 2]])
        packs.append(pack)
    return packs


def multimodal_pack(cfg: Any, samples: list[tuple[list[tuple[int, int, int]], int]], *, seed: int = 0,
                    vocab: int = 200) -> dict[str, Any]:
    """One packed row of real-sized images for ``cfg`` (a Glm4vConfig): per sample ``(grids, n_text)``,
    each image ``<|begin_of_image|> <|image|>*(t*h*w/merge²) <|end_of_image|>`` followed by
    ``n_text`` random text tokens; 4-row positions per sample as ``glmv pack`` writes them, labels on
    every non-image token, random pixels (empty pixel tensors when no sample has an image)."""
    import numpy as np

    from glmv_cli.data.positions import sample_positions

    g = torch.Generator().manual_seed(seed)
    vc = cfg.vision_config
    merge = vc.spatial_merge_size
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2
    ids: list[int] = []
    types: list[int] = []
    pos, pix, thw = [], [], []
    for grids, n_text in samples:
        s_types: list[int] = []
        for t, h, w in grids:
            n = t * h * w // merge ** 2
            ids += [cfg.image_start_token_id] + [cfg.image_token_id] * n + [cfg.image_end_token_id]
            s_types += [0] + [1] * n + [0]
            pix.append(torch.randn(t * h * w, patch_dim, generator=g))
            thw.append([t, h, w])
        ids += torch.randint(0, vocab, (n_text,), generator=g).tolist()
        s_types += [0] * n_text
        pos.append(sample_positions(np.array(s_types), grids, merge))
        types += s_types
    t = torch.tensor([ids])
    labels = t.clone()
    labels[t == cfg.image_token_id] = -100
    return {"input_ids": t, "labels": labels, "mm_token_type_ids": torch.tensor([types]),
            "position_ids": torch.from_numpy(np.concatenate(pos, 1)).view(4, 1, -1),
            "pixel_values": torch.cat(pix) if pix else torch.zeros(0, patch_dim),
            "image_grid_thw": torch.tensor(thw, dtype=torch.long).reshape(-1, 3)}
