"""Video through the chat encoder and the tiny model: token layout with timestamps, modality ids,
3D-RoPE positions (transformers' get_rope_index), and a packed video + image row giving the same
logits as the two samples run alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glmv_cli.data.chat import ChatFormatError, encode_chat, encode_pretrain_text, mm_token_type_ids, render_prompt
from glmv_cli.modeling.video_processor import split_video_grid, video_processor_for, video_prompt



@pytest.fixture(scope="module")
def tiny():
    from glmv_cli.modeling import load

    model, proc = load("tiny", seed=0)
    return model, proc


def _types(proc, ids):
    return mm_token_type_ids(ids, image_token_id=proc.image_token_id, video_start_id=proc.video_start_id,
                             video_end_id=proc.video_end_id)


VIDEO_CONV = [{"role": "user", "content": "<video>\nAt which second does the square turn red?"},
              {"role": "assistant", "content": "<think>red at 1 s</think><answer><|begin_of_box|>1<|end_of_box|></answer>"}]


def test_encode_chat_video_layout(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    layout = [(4, [0, 1, 12])]
    enc = encode_chat(tok, VIDEO_CONV, video_layouts=layout)
    text = render_prompt(VIDEO_CONV, add_generation_prompt=False, video_layouts=layout)
    assert "<|begin_of_video|>" + "".join(f"<|begin_of_image|>{'<|image|>' * 4}<|end_of_image|>{t}" for t in (0, 1, 12)) \
        + "<|end_of_video|>" in text
    # ids equal tokenising the expanded text (plus the closing <|endoftext|>)
    assert enc["input_ids"][:-1] == tok(text, add_special_tokens=False)["input_ids"]
    ids = np.array(enc["input_ids"])
    types = np.array(_types(proc, enc["input_ids"]))
    assert (types == 2).sum() == 12 and (types == 1).sum() == 0
    assert np.all(ids[types == 2] == proc.image_token_id)
    # the whole video block is unlabelled, timestamps included
    bov, eov = list(ids).index(proc.video_start_id), list(ids).index(proc.video_end_id)
    assert np.all(np.array(enc["labels"])[bov:eov + 1] == -100)
    # a 2-digit timestamp is its digits' tokens
    assert tok.decode(ids[eov - 2:eov]) == "12"


def test_template_and_placeholders(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    parts = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "When?"}, {"type": "image"}]}]
    text = render_prompt(parts)
    assert text == ("[gMASK]<sop><|user|>\n<|begin_of_video|><|video|><|end_of_video|>When?"
                    "<|begin_of_image|><|image|><|end_of_image|><|assistant|>\n")
    assert tok.apply_chat_template(parts, tokenize=False, add_generation_prompt=True) == text
    as_string = [{"role": "user", "content": "<video>When?<image>"}]
    assert render_prompt(as_string) == text
    assert tok.apply_chat_template(as_string, tokenize=False, add_generation_prompt=True) == text
    # image before video in the text: images expand first, the video's own <|image|> tokens after
    enc = encode_chat(tok, parts, image_token_counts=[3], video_layouts=[(2, [0, 1])], add_generation_prompt=True)
    types = _types(proc, enc["input_ids"])
    assert types.count(2) == 4 and types.count(1) == 3


def test_video_errors(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    with pytest.raises(ChatFormatError, match=r"^messages\[0\]: video parts are not supported without video_layouts"):
        encode_chat(tok, VIDEO_CONV)
    with pytest.raises(ChatFormatError, match=r"^1 video placeholder\(s\) in the text but 2 video\(s\) given$"):
        encode_chat(tok, VIDEO_CONV, video_layouts=[(1, [0]), (1, [0])])
    with pytest.raises(ChatFormatError, match=r"tokens_per_pair must be a positive integer, got 0"):
        encode_chat(tok, VIDEO_CONV, video_layouts=[(0, [0])])
    with pytest.raises(ChatFormatError, match=r"a video needs at least one frame pair"):
        encode_chat(tok, VIDEO_CONV, video_layouts=[(1, [])])


def test_pretrain_text_with_video(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    enc = encode_pretrain_text(tok, "<video> a square turns red at second 1.", video_layouts=[(2, [0, 1])])
    ids, labels = np.array(enc["input_ids"]), np.array(enc["labels"])
    bov, eov = list(ids).index(proc.video_start_id), list(ids).index(proc.video_end_id)
    assert np.all(labels[bov:eov + 1] == -100) and labels[eov + 1] == ids[eov + 1]


def _video_sample(proc, vp, frames, stamps):
    pv, grid = vp.preprocess(frames)
    enc = encode_chat(proc.tokenizer, VIDEO_CONV, video_layouts=[(vp.tokens_per_pair(grid), stamps)])
    return enc["input_ids"], pv, grid


def _image_sample(proc, img):
    from glmv_cli.modeling import image_to_patches

    pv, grid = image_to_patches(img, proc)
    conv = [{"role": "user", "content": "<image>\nWhat colour?"}, {"role": "assistant", "content": "<think>r</think><answer>red</answer>"}]
    enc = encode_chat(proc.tokenizer, conv, image_token_counts=[grid[1] * grid[2] // 4])
    return enc["input_ids"], pv, grid


def _rope(model, ids, types, image_grid=None, video_grid=None):
    pos, _ = model.model.get_rope_index(torch.tensor([ids]), torch.tensor([types]),
                                        image_grid_thw=None if image_grid is None else torch.tensor(image_grid),
                                        video_grid_thw=None if video_grid is None else torch.tensor(video_grid))
    return pos[:, 0]


def test_rope_of_a_video_is_its_frame_pairs_as_images(tiny):
    """get_rope_index splits a (t, h, w) video grid into t (1, h, w) blocks; glmv's packer computes
    positions from types with 2 -> 1 and the split grids, so it needs no video code path."""
    from glmv_cli.data.positions import rope_positions

    model, proc = tiny
    vp = video_processor_for(proc)
    frames = np.random.default_rng(1).integers(0, 256, (6, 112, 112, 3), dtype=np.uint8)
    ids, _, grid = _video_sample(proc, vp, frames, [0, 1, 2])
    types = _types(proc, ids)
    ref = _rope(model, ids, types, video_grid=[grid])
    assert split_video_grid(grid) == [(1, 8, 8)] * 3
    ours = rope_positions(np.array([1 if t else 0 for t in types]), split_video_grid(grid), 2)
    assert np.array_equal(ours, ref.numpy())
    # a pair advances every row by max(h, w)/2 = 4, then <|end_of_image|>, the digit and the next
    # <|begin_of_image|> are text (+1 each)
    first = [i for i, t in enumerate(types) if t == 2]
    assert ref[0, first[0]].item() + 4 + 3 == ref[0, first[16]].item()


def test_packed_video_and_image_equal_separate_runs(tiny):
    model, proc = tiny
    vp = video_processor_for(proc)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (6, 112, 112, 3), dtype=np.uint8)
    v_ids, v_pv, v_grid = _video_sample(proc, vp, frames, [0, 1, 2])
    i_ids, i_pv, i_grid = _image_sample(proc, Image.fromarray(rng.integers(0, 256, (84, 112, 3), dtype=np.uint8)))
    v_types, i_types = _types(proc, v_ids), _types(proc, i_ids)
    with torch.no_grad():
        alone_v = model(input_ids=torch.tensor([v_ids]), mm_token_type_ids=torch.tensor([v_types]),
                        pixel_values_videos=torch.from_numpy(v_pv), video_grid_thw=torch.tensor([v_grid])).logits[0]
        alone_i = model(input_ids=torch.tensor([i_ids]), mm_token_type_ids=torch.tensor([i_types]),
                        pixel_values=torch.from_numpy(i_pv), image_grid_thw=torch.tensor([i_grid])).logits[0]
        # one row: video sample then image sample. Row 0 restarts per sample; rows 1-3 from get_rope_index.
        pos = torch.cat([
            torch.cat([torch.arange(len(v_ids))[None], _rope(model, v_ids, v_types, video_grid=[v_grid])]),
            torch.cat([torch.arange(len(i_ids))[None], _rope(model, i_ids, i_types, image_grid=[i_grid])]),
        ], dim=1)[:, None]
        # transformers 5.23 cannot take pixel_values and pixel_values_videos together (both scatter
        # into every <|image|> token), so the video's frame pairs travel as images: same rows, one
        # (1, h, w) grid per pair, in token order -- the vision tower sees exactly what it did above.
        packed = model(input_ids=torch.tensor([v_ids + i_ids]), mm_token_type_ids=torch.tensor([v_types + i_types]),
                       position_ids=pos, attention_mask=None,
                       pixel_values=torch.from_numpy(np.concatenate([v_pv, i_pv])),
                       image_grid_thw=torch.tensor(split_video_grid(v_grid) + [tuple(i_grid)]),
                       use_cache=False).logits[0]   # with a KV cache transformers skips packed masks
    n = len(v_ids)
    dv = (packed[:n] - alone_v).abs().max().item()
    di = (packed[n:] - alone_i).abs().max().item()
    assert dv < 1e-5 and di < 1e-5, (dv, di)
    # and the video alone, fed through the image path the same way, equals the video path
    with torch.no_grad():
        as_images = model(input_ids=torch.tensor([v_ids]), mm_token_type_ids=torch.tensor([v_types]),
                          position_ids=pos[:, :, :n], pixel_values=torch.from_numpy(v_pv),
                          image_grid_thw=torch.tensor(split_video_grid(v_grid))).logits[0]
    assert (as_images - alone_v).abs().max().item() < 1e-5


def test_video_prompt_matches_encoder(tiny):
    _, proc = tiny
    tok = proc.tokenizer
    text = video_prompt([0, 1], 3)
    enc = encode_pretrain_text(tok, "<video> x", video_layouts=[(3, [0, 1])])
    assert tok.decode(enc["input_ids"]).startswith("[gMASK]<sop>" + text)


def test_prepare_video_end_to_end(tiny, tmp_path):
    from glmv_cli.modeling.video_processor import prepare_video
    from glmv_cli.synth.video import encode_mp4

    model, proc = tiny
    frames = [np.full((112, 112, 3), 20 * k, dtype=np.uint8) for k in range(12)]   # 3 s at 4 fps
    (tmp_path / "c.mp4").write_bytes(encode_mp4(frames, 4))
    v = prepare_video(tmp_path / "c.mp4", proc)
    # 6 frames sampled (2 fps): 6*112*112 = 75264 <= 100352, so 112 px: grid (3, 8, 8), 16 tokens a pair
    assert v.grid == (3, 8, 8) and v.layout == (16, [0, 1, 2]) and v.pixel_values_videos.shape == (192, 1176)
    enc = encode_chat(proc.tokenizer, VIDEO_CONV, video_layouts=[v.layout])
    with torch.no_grad():
        out = model(input_ids=torch.tensor([enc["input_ids"]]), mm_token_type_ids=torch.tensor([_types(proc, enc["input_ids"])]),
                    pixel_values_videos=torch.from_numpy(v.pixel_values_videos), video_grid_thw=torch.tensor([v.grid]))
    assert out.logits.shape == (1, len(enc["input_ids"]), 2048) and torch.isfinite(out.logits).all()
