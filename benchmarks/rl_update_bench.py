"""The RL update and scoring, before -> after, measured in one run on the same rows.

1. Update. ``--groups`` groups of ``--group-size`` rows (one image prompt each, long-tailed
   response lengths: log-normal, median ``--median-len``, capped at ``--max-len``) through a
   GLM-4V-shaped model scaled to CPU size.
   - before: the former layout -- rows right-padded in group order, ``--micro-batch`` rows per
     forward, every row runs the vision tower on its prompt's image, old log-probs recomputed;
   - after: ``rl.rows.plan_update`` packs (``micro-batch x longest row`` tokens, groups kept
     together, each distinct image through the tower once per pack) and ``rl.update.forward_logp``
     under ``packed_text_attention`` (one sdpa per sample on CPU), with the old-log-prob pass
     recomputed, and with it reused from the rollout (one mini-batch); and once more with
     transformers' dense block-diagonal mask, to show what per-sample attention is worth.
   Reported: padding ratio (token slots the forwards process / real row tokens), forwards, and the
   process CPU time of old-log-prob pass + forward/backward of the loss (one thread; the optimizer
   step is the same in both and left out).
2. Gather payload. Rollouts of ``--gather-tokens`` tokens encoded as JSON text (the former
   exchange) vs int32/float32/uint8 tensors (``training.dist.all_gather_tensors``): bytes per token
   and CPU seconds per million tokens to encode and decode (the collective itself moves the bytes).

Judge-bound scoring (serial vs the trainer's pooled ``RewardPool.score_many`` call against a local
judge with a fixed latency) is measured by ``benchmarks/judge_pool_bench.py``.

    python benchmarks/rl_update_bench.py            # CPU, ~1 min
    python benchmarks/rl_update_bench.py --groups 8  # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))

IMG, IMG_START, IMG_END = 2000, 2002, 2003


def build_model(scale: int, seed: int):
    import torch
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    h = 128 * scale
    text = dict(vocab_size=2048, hidden_size=h, intermediate_size=int(h * 2.75), num_hidden_layers=4,
                num_attention_heads=h // 64, num_key_value_heads=2, head_dim=64, max_position_embeddings=65536,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                 "mrope_section": [4, 6, 6]})
    vision = dict(depth=4, hidden_size=64 * scale, num_heads=scale, image_size=224, patch_size=14,
                  out_hidden_size=h, intermediate_size=int(64 * scale * 2.75), spatial_merge_size=2,
                  temporal_patch_size=2)
    cfg = Glm4vConfig(text_config=text, vision_config=vision, image_token_id=IMG, video_token_id=2001,
                      image_start_token_id=IMG_START, image_end_token_id=IMG_END, video_start_token_id=2004,
                      video_end_token_id=2005, tie_word_embeddings=False)
    torch.manual_seed(seed)
    return Glm4vForConditionalGeneration(cfg).float().train()


def build_rows(groups: int, n: int, median: int, max_len: int, grid: tuple[int, int, int], seed: int):
    import torch

    from glmv_cli.rl.rows import Row

    g = torch.Generator().manual_seed(seed)
    t, hh, ww = grid
    n_img = t * hh * ww // 4
    rows = []
    for k in range(groups):
        prompt = [IMG_START] + [IMG] * n_img + [IMG_END] + torch.randint(0, 1900, (24,), generator=g).tolist()
        pv = torch.randn(t * hh * ww, 3 * 2 * 14 * 14, generator=g)
        for j in range(n):
            L = int(min(max_len, max(4, math.exp(math.log(median) + 0.6 * float(torch.randn((), generator=g))))))
            resp = torch.randint(0, 1900, (L,), generator=g).tolist()
            rows.append(Row(prompt + resp, len(prompt), [False] * L, [-1.0] * L, float(j % 3) - 1.0, pv,
                            torch.tensor([list(grid)]), "bench", f"p{k}"))
    return rows


# ----------------------------------------------------------------------------- the former layout


def padded_batch(model, rows):
    """The former collate: right-padded rows, attention mask, the model's own 3D positions."""
    import torch

    b, L = len(rows), max(len(r.ids) for r in rows)
    ids = torch.zeros((b, L), dtype=torch.long)
    mask = torch.zeros((b, L), dtype=torch.long)
    tgt = torch.zeros((b, L - 1), dtype=torch.long)
    lmask = torch.zeros((b, L - 1))
    for i, r in enumerate(rows):
        ids[i, :len(r.ids)] = torch.tensor(r.ids)
        mask[i, :len(r.ids)] = 1
        tgt[i, :len(r.ids) - 1] = torch.tensor(r.ids[1:])
        lmask[i, r.prompt_len - 1:len(r.ids) - 1] = 1.0
    types = ((ids == IMG) & mask.bool()).long()
    grid = torch.cat([torch.as_tensor(r.grid) for r in rows])
    with torch.no_grad():
        pos, _ = model.model.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "mm_token_type_ids": types,
            "pixel_values": torch.cat([torch.as_tensor(r.pixel_values) for r in rows]), "image_grid_thw": grid,
            "targets": tgt, "loss_mask": lmask, "advantages": torch.tensor([r.advantage for r in rows]),
            "slots": b * L}


def padded_logp(model, b):
    from glmv_kernels.logprobs import linear_logprobs

    kw = {k: b[k] for k in ("input_ids", "attention_mask", "position_ids", "mm_token_type_ids", "pixel_values",
                            "image_grid_thw")}
    model.model.rope_deltas = None
    hidden = model.model(**kw, use_cache=False)[0][:, :-1]
    return linear_logprobs(hidden, model.lm_head.weight, b["targets"])


def run_before(model, rows, micro: int) -> dict:
    import torch

    from glmv_cli.rl import grpo

    t0 = time.process_time()
    batches = [padded_batch(model, rows[i:i + micro]) for i in range(0, len(rows), micro)]
    with torch.no_grad():
        for b in batches:
            b["old"] = padded_logp(model, b)
    for b in batches:
        loss, _ = grpo.rlcs_loss(padded_logp(model, b), b["old"], b["advantages"], b["loss_mask"], denominator=1.0)
        loss.backward()
    cpu = time.process_time() - t0
    model.zero_grad(set_to_none=True)
    real = sum(len(r.ids) for r in rows)
    return {"padding_ratio": sum(b["slots"] for b in batches) / real, "forwards": len(batches), "cpu_s": cpu}


# ----------------------------------------------------------------------------- the packed update


def run_after(model, rows, micro: int, recompute: bool, document_attention: bool = True) -> dict:
    import contextlib

    from glmv_cli.rl.update import packed_text_attention

    with packed_text_attention(model) if document_attention else contextlib.nullcontext():
        return _after(model, rows, micro, recompute)


def _after(model, rows, micro: int, recompute: bool) -> dict:
    import torch

    from glmv_cli.rl import grpo
    from glmv_cli.rl.rows import PackSpec, collate_pack, plan_stats, plan_update
    from glmv_cli.rl.update import forward_logp

    spec = PackSpec(0, IMG, 2, 3 * 2 * 14 * 14)
    t0 = time.process_time()
    lengths = [len(r.ids) for r in rows]
    plan = plan_update(lengths, [r.rid for r in rows], world=1, mini_batches=1, micro_batch=micro)
    packs = [collate_pack([rows[i] for i in p], spec) for p in plan[0][0]]
    with torch.no_grad():
        for b in packs:
            b["old"] = forward_logp(model, b)[0] if recompute else b["behaviour_logp"]
    for b in packs:
        loss, _ = grpo.rlcs_loss(forward_logp(model, b)[0], b["old"], b["advantages"], b["loss_mask"],
                                 denominator=1.0)
        loss.backward()
    cpu = time.process_time() - t0
    model.zero_grad(set_to_none=True)
    st = plan_stats(plan, lengths)
    return {"padding_ratio": st.padding_ratio, "forwards": st.forwards, "cpu_s": cpu}


# ----------------------------------------------------------------------------- gather payload


def run_gather(tokens: int, seed: int) -> dict:
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    per = 500
    rolls = [{"token_ids": rng.integers(0, 151552, per).tolist(),
              "logprobs": (rng.random(per, dtype=np.float32) * -5).tolist(),  # float32 values, as sampled
              "forced": [False] * per} for _ in range(max(1, tokens // per))]
    n = sum(len(r["token_ids"]) for r in rolls)
    t0 = time.process_time()
    blob = json.dumps(rolls, separators=(",", ":")).encode()
    back = json.loads(blob)
    t_json = time.process_time() - t0
    t0 = time.process_time()
    tens = {"tokens": torch.tensor([t for r in rolls for t in r["token_ids"]], dtype=torch.int32),
            "logprobs": torch.tensor([x for r in rolls for x in r["logprobs"]], dtype=torch.float32),
            "forced": torch.tensor([f for r in rolls for f in r["forced"]], dtype=torch.uint8)}
    got = (tens["tokens"].tolist(), tens["logprobs"].tolist(), tens["forced"].tolist())
    t_tens = time.process_time() - t0
    assert got[1][:per] == back[0]["logprobs"] and got[0][:per] == back[0]["token_ids"]  # lossless both ways
    nbytes = sum(t.numel() * t.element_size() for t in tens.values())
    return {"tokens": n, "json_bytes_per_token": len(blob) / n, "tensor_bytes_per_token": nbytes / n,
            "json_cpu_s_per_million": t_json / n * 1e6, "tensor_cpu_s_per_million": t_tens / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--median-len", type=int, default=120)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--grid", default="1,16,16", help="image patch grid t,h,w (merge 2: t*h*w/4 tokens)")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--gather-tokens", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    grid = tuple(int(x) for x in a.grid.split(","))
    model = build_model(a.scale, a.seed)
    rows = build_rows(a.groups, a.group_size, a.median_len, a.max_len, grid, a.seed)
    run_after(model, rows[: a.group_size], a.micro_batch, True)  # warm-up (allocator, kernels)
    before = run_before(model, rows, a.micro_batch)
    after = run_after(model, rows, a.micro_batch, True)
    reuse = run_after(model, rows, a.micro_batch, False)
    dense = run_after(model, rows, a.micro_batch, True, document_attention=False)
    res = {"update": {"rows": len(rows), "real_tokens": sum(len(r.ids) for r in rows), "before": before,
                      "after": after, "after_reused_old_logp": reuse, "after_dense_mask_attention": dense,
                      "time_ratio": after["cpu_s"] / before["cpu_s"],
                      "time_ratio_reused": reuse["cpu_s"] / before["cpu_s"],
                      "time_ratio_dense_mask": dense["cpu_s"] / before["cpu_s"]},
           "gather": run_gather(a.gather_tokens, a.seed)}
    u, g = res["update"], res["gather"]
    print(f"update: {u['rows']} rows, {u['real_tokens']} tokens, micro-batch {a.micro_batch}")
    print(f"  padding ratio  before {before['padding_ratio']:.3f}  after {after['padding_ratio']:.3f}")
    print(f"  forwards       before {before['forwards']}  after {after['forwards']}")
    print(f"  CPU s          before {before['cpu_s']:.2f}  after {after['cpu_s']:.2f} ({u['time_ratio']:.2f}x)  "
          f"after, old log-probs reused {reuse['cpu_s']:.2f} ({u['time_ratio_reused']:.2f}x)")
    print(f"  (packs with transformers' dense block-diagonal mask instead of per-sample attention: "
          f"{dense['cpu_s']:.2f} s, {u['time_ratio_dense_mask']:.2f}x)")
    print(f"gather: JSON {g['json_bytes_per_token']:.1f} B/token, "
          f"{g['json_cpu_s_per_million']:.2f} CPU s per M tokens; "
          f"tensors {g['tensor_bytes_per_token']:.1f} B/token, {g['tensor_cpu_s_per_million']:.2f} CPU s per M tokens")
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
