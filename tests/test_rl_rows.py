"""The RL update's rows: the plan (exact mini-batches, equal micro batches per rank, every row once),
packed collation, the packed forward against plain per-row forwards, vision once per group, the
banned-token mask on the chunked and full-logits heads."""

from __future__ import annotations

import math
import re

import pytest
import torch

from glmv_cli.errors import GlmvError
from glmv_cli.rl.rows import PackSpec, Row, collate_pack, mini_batch_bounds, plan_stats, plan_update
from glmv_cli.rl.update import forward_logp



# ----------------------------------------------------------------------------- the plan


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("kept", range(1, 7))
@pytest.mark.parametrize("mini_batches", [1, 2, 4])
def test_plan_is_exact_and_equal_over_ranks(world, kept, mini_batches):
    group = 3
    g = torch.Generator().manual_seed(kept * 10 + world)
    lengths = [int(x) for x in torch.randint(5, 40, (kept * group,), generator=g)]
    keys = [f"r{i // group}" for i in range(kept * group)]
    plan = plan_update(lengths, keys, world=world, mini_batches=mini_batches, micro_batch=1)
    assert len(plan) == min(mini_batches, kept * group)
    cap = max(lengths)
    seen = []
    for mb in plan:
        assert len(mb) == world and len({len(packs) for packs in mb}) == 1  # same micro count per rank
        for packs in mb:
            for p in packs:
                assert sum(lengths[i] for i in p) <= cap
                seen.extend(p)
    assert sorted(seen) == list(range(kept * group))
    # mini-batches are contiguous and near-equal
    sizes = [sum(len(p) for packs in mb for p in packs) for mb in plan]
    assert max(sizes) - min(sizes) <= 1
    st = plan_stats(plan, lengths)
    assert st.real_tokens == sum(lengths) and st.slots >= st.real_tokens


def test_packing_keeps_groups_together_and_beats_padding():
    lengths = [30, 4, 6, 5, 28, 3, 7, 4]
    keys = ["a"] * 4 + ["b"] * 4
    plan = plan_update(lengths, keys, world=1, mini_batches=1, micro_batch=2)
    packs = plan[0][0]
    assert all(sum(lengths[i] for i in p) <= 60 for p in packs)
    assert len(packs) == 2  # 87 tokens in 60-token packs; padded rows in pairs: 4 forwards of 2 x 30
    # padded layout of the same rows (2 rows per micro batch): 30+30 + 28+28... slots
    padded = sum(2 * max(lengths[i:i + 2]) for i in range(0, 8, 2))
    assert plan_stats(plan, lengths).padding_ratio == pytest.approx(87 / 87)
    assert padded / 87 > 1.3
    assert mini_batch_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]


# ----------------------------------------------------------------------------- collate


@pytest.fixture(scope="module")
def tiny():
    from glmv_cli.modeling import load

    model, proc = load("tiny")
    return model.float().eval(), proc


def _spec(model, pad=0):
    v = model.config.vision_config
    return PackSpec(pad, int(model.config.image_token_id), int(v.spatial_merge_size),
                    int(v.in_channels * v.temporal_patch_size * v.patch_size ** 2))


def _rows(proc, seed=0):
    """An image prompt with two responses (one group), and a text prompt with one."""
    from glmv_cli.data.chat_tokens import encode_chat

    tok = proc.tokenizer
    g = torch.Generator().manual_seed(seed)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    p_img = encode_chat(tok, msgs, image_token_counts=[16], add_generation_prompt=True)["input_ids"]
    p_txt = encode_chat(tok, [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)["input_ids"]
    pv, grid = torch.randn(64, 1176, generator=g), torch.tensor([[1, 8, 8]])
    return [Row(list(p_img) + [11, 12, 13, 14, 15, 16], len(p_img), [False] * 5 + [True], [-1.0] * 6, 1.0, pv, grid,
                "ocr", "img"),
            Row(list(p_img) + [31, 32, 33], len(p_img), [False] * 3, [-2.0] * 3, -1.0, pv, grid, "ocr", "img"),
            Row(list(p_txt) + [21, 22, 23, 24], len(p_txt), [False] * 4, [-0.5] * 4, 0.5, None, None, "ocr", "txt")]


def test_collate_aligns_responses_and_stores_each_prompt_image_once(tiny):
    model, proc = tiny
    rows = _rows(proc)
    b = collate_pack(rows, _spec(model))
    n = sum(len(r.ids) for r in rows)
    assert b["input_ids"].shape == (1, n) and b["position_ids"].shape == (4, 1, n)
    assert b["position_ids"][0, 0].tolist() == [*range(len(rows[0].ids)), *range(len(rows[1].ids)),
                                                *range(len(rows[2].ids))]  # restarts per row
    assert b["pixel_values"].shape == (64, 1176) and b["image_runs"].tolist() == [0, 0] and b["real_images"] == 1
    # response j of row i is predicted at its position - 1; targets are the response tokens
    assert b["resp_tgt"].tolist() == [11, 12, 13, 14, 15, 16, 31, 32, 33, 21, 22, 23, 24]
    o = len(rows[0].ids)
    assert b["resp_pos"][6:9].tolist() == [o + rows[1].prompt_len - 1 + j for j in range(3)]
    assert b["layout"].tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 0, 0, 0], [9, 10, 11, 12, 0, 0]]
    # the last token of row 0 was forced: masked out of the loss, counted as forced
    assert b["loss_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    assert b["forced_mask"][0].tolist() == [0, 0, 0, 0, 0, 1]
    assert b["behaviour_logp"][1].tolist() == [-2.0, -2.0, -2.0, 0.0, 0.0, 0.0]
    # text-only and dead packs carry a one-token probe image; a dead pack has no loss token
    t = collate_pack(rows[2:], _spec(model))
    assert t["real_images"] == 0 and t["image_grid_thw"].tolist() == [[1, 2, 2]] and t["image_runs"].numel() == 0
    d = collate_pack([], _spec(model))
    assert d["input_ids"].tolist() == [[0, 0]] and d["loss_mask"].sum() == 0 and d["real_tokens"] == 0
    assert collate_pack(rows[:1], _spec(model), min_images=3)["image_grid_thw"].shape == (3, 3)


def test_a_sampled_image_placeholder_is_refused(tiny):
    from glmv_cli.rl.rows import check_response_tokens

    model, proc = tiny
    img = model.config.image_token_id
    bad = Row([5, 6, 7, 8, img, 10], 3, [False] * 3, [-1.0] * 3, -0.5, None, None, "ocr", "r7")
    with pytest.raises(GlmvError, match=re.escape(
            f"rollout of record 'r7': response token 1 is the multimodal token id {img} ('<|image|>'), "
            "which the rollout engine masks out and never samples")):
        check_response_tokens([_rows(proc)[2], bad], [img], proc.tokenizer)


def _reference_logp(model, row, temperature, banned):
    """The plain path: one row alone, the model's own positions, full logits."""
    ids = torch.tensor([row.ids])
    kw = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if row.pixel_values is not None:
        kw.update(pixel_values=row.pixel_values, image_grid_thw=row.grid,
                  mm_token_type_ids=(ids == model.config.image_token_id).long())
    model.model.rope_deltas = None
    lg = model(**kw).logits[0, row.prompt_len - 1:-1].float() / temperature
    lg[:, list(banned)] = -math.inf
    return lg.log_softmax(-1).gather(-1, torch.tensor(row.ids[row.prompt_len:])[:, None])[:, 0]


@pytest.mark.parametrize("temperature,attention", [(0.7, "sdpa"), (1.3, "per-sample")])
def test_packed_forward_equals_each_row_alone_and_runs_vision_once(tiny, temperature, attention):
    import contextlib

    from glmv_cli.rl.update import packed_text_attention

    model, proc = tiny
    rows = _rows(proc, seed=1)
    ban = (int(model.config.image_token_id), int(model.config.image_start_token_id))
    b = collate_pack(rows, _spec(model))
    calls = []
    h = model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    ctx = packed_text_attention(model) if attention == "per-sample" else contextlib.nullcontext()
    try:
        with torch.no_grad(), ctx:
            assert model.config.text_config._attn_implementation == ("glmv_packed" if attention != "sdpa" else "sdpa")
            logp, _ = forward_logp(model, b, temperature=temperature, banned=ban)
            full, ent = forward_logp(model, b, temperature=temperature, banned=ban, want_entropy=True)
    finally:
        h.remove()
    assert model.config.text_config._attn_implementation == "sdpa"  # restored
    assert len(calls) == 2  # one vision forward per pack (two rows share the image), per call
    for i, r in enumerate(rows):
        ref = _reference_logp(model, r, temperature, ban)
        k = r.response_len
        assert (logp[i, :k] - ref).abs().max().item() < 1e-5
        assert (full[i, :k] - ref).abs().max().item() < 1e-5
    assert torch.isfinite(ent).all() and (ent >= 0).all()


def test_chunked_and_full_heads_agree_under_the_mask_with_gradients(tiny):
    model, proc = tiny
    model = type(model)(model.config)  # a fresh copy whose head we may bend
    model.load_state_dict(tiny[0].state_dict())
    model = model.float()
    img = model.config.image_token_id
    b = collate_pack(_rows(proc, seed=2), _spec(model))
    ban = [img, int(model.config.video_token_id)]
    seen = []
    h = model.lm_head.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0].detach()))
    with torch.no_grad():  # <|image|> row along the mean response hidden state: it takes ~all unmasked mass
        forward_logp(model, b, chunked=False)
        h.remove()
        u = seen[0].mean(0)
        model.lm_head.weight[img] = 200.0 * u / u.norm() ** 2

    def run(chunked, banned):
        model.zero_grad()
        logp, _ = forward_logp(model, b, banned=banned, chunked=chunked)
        (logp * b["loss_mask"] * torch.linspace(0.5, 1.5, logp.shape[-1])).sum().backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()
                 if k in ("lm_head.weight", "model.language_model.layers.0.mlp.down_proj.weight",
                          "model.visual.blocks.0.mlp.down_proj.weight")}
        return logp.detach(), grads

    chunk, gc = run(True, ban)
    full, gf = run(False, ban)
    raw, _ = run(True, ())
    mask = b["loss_mask"].bool()
    assert torch.isfinite(chunk).all() and (chunk - full).abs().max().item() < 1e-5
    # the mask matters here: unmasked log-probs are far lower (the image token took the mass)
    gain = chunk[mask] - raw[mask]
    assert gain.min().item() > 0 and gain.median().item() > 20.0
    for k in gc:
        assert torch.allclose(gc[k], gf[k], atol=1e-5, rtol=1e-4), k
        assert gc[k].abs().sum() > 0  # the vision tower gets its gradient through the shared features
    assert gc["lm_head.weight"][ban].abs().max() == 0  # banned rows get no gradient


def test_probe_image_leaves_values_and_gives_zero_vision_gradient(tiny):
    model, proc = tiny
    model.zero_grad()
    b = collate_pack(_rows(proc)[2:], _spec(model))  # text only: a probe image is added
    logp, _ = forward_logp(model, b, banned=(int(model.config.image_token_id),))
    logp.sum().backward()
    g = model.model.visual.blocks[0].mlp.down_proj.weight.grad
    assert g is not None and g.abs().max() == 0  # the tower ran (its gradient exists) and changed nothing
    with torch.no_grad():
        b2 = {k: v for k, v in b.items() if k not in ("pixel_values", "image_grid_thw", "image_runs", "real_images")}
        same, _ = forward_logp(model, b2, banned=(int(model.config.image_token_id),))
    assert torch.equal(logp.detach(), same)
    model.zero_grad()
