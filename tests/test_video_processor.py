"""glmv's video processor against transformers' GLM-4V video code: resize rule, patch order,
normalisation, frame pairing, prompt text with timestamps (CPU, hand-checked and via
transformers' own functions), plus full parity with Glm4vVideoProcessor where torchvision imports."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest
import torch

from glmv_cli.modeling.video_processor import (GlmvVideoProcessor, VideoSizeError, smart_resize_video,
                                               video_processor_for, video_prompt)

TINY = {"shortest_edge": 12544, "longest_edge": 100352}
CKPT = {"shortest_edge": 112 * 112, "longest_edge": 28 * 28 * 2 * 30000}


def _rand_video(t, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_resize_rule_equals_transformers():
    from transformers.models.glm4v.video_processing_glm4v import smart_resize

    n = 0
    for t, h, w, size in itertools.product([2, 4, 8, 16, 30, 64, 600], [20, 28, 57, 112, 360, 481, 1080],
                                           [14, 100, 640, 1920], [TINY, CKPT]):
        lo, hi = size["shortest_edge"], size["longest_edge"]
        try:
            ref = smart_resize(t, h, w, temporal_factor=2, factor=28, min_pixels=lo, max_pixels=hi)
        except ValueError:
            with pytest.raises(VideoSizeError):
                smart_resize_video(t, h, w, min_pixels=lo, max_pixels=hi)
            continue
        assert smart_resize_video(t, h, w, min_pixels=lo, max_pixels=hi) == ref, (t, h, w, size)
        n += 1
    assert n > 300


def test_grid_and_token_counts_hand_checked():
    vp = GlmvVideoProcessor(size=TINY)
    # 2 frames of 112x112: 2*112*112 = 25088 within [12544, 100352]: kept; 8x8 patches, 16 tokens
    assert vp.grid(2, 112, 112) == (1, 8, 8) and vp.tokens_per_pair((1, 8, 8)) == 16
    # 16 frames: beta = sqrt(16*112*112/100352) = sqrt(2); floor(112/1.414/28)*28 = 56 -> 4x4, 4 tokens/pair
    assert vp.grid(16, 112, 112) == (8, 4, 4) and vp.video_token_count((8, 4, 4)) == 32
    # 8 frames: 8*112*112 = 100352 = max: kept at 112 px
    assert vp.grid(8, 112, 112) == (4, 8, 8)
    ck = GlmvVideoProcessor(size=CKPT)
    # 640x360: round(360/28)=13 -> 364, round(640/28)=23 -> 644; 26x46 patches, 299 tokens a pair
    assert ck.grid(2, 360, 640) == (1, 26, 46) and ck.tokens_per_pair((1, 26, 46)) == 299
    # 600 frames of 1920x1080: beta = sqrt(600*1080*1920/47040000) = 5.143; 1080/5.143 = 210 -> 196; 1920 -> 364
    assert ck.grid(600, 1080, 1920) == (300, 14, 26)
    # 20x40 -> 28x56 (28 px minimum side), then 2*28*56 = 3136 < 12544: beta = sqrt(12544/3136) = 2 -> 56x112
    assert vp.resized_size(2, 20, 40) == (56, 112)
    # 2 frames of 56x56 = 6272 < 12544: beta = sqrt(2), ceil(56*1.414/28) = 3 -> 84x84
    assert vp.grid(2, 56, 56) == (1, 6, 6)


def test_settings_come_from_the_image_processor():
    from glmv_cli.modeling import load_processor

    proc = load_processor("tiny")
    vp = video_processor_for(proc)
    assert vp.size == {"shortest_edge": 12544, "longest_edge": 100352}
    assert (vp.patch_size, vp.temporal_patch_size, vp.merge_size) == (14, 2, 2)
    assert vp.image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert video_processor_for(proc, fps=1.0).fps == 1.0


def test_patch_layout_equals_transformers_patchify():
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor

    vp = GlmvVideoProcessor(size=TINY)
    frames = _rand_video(4, 56, 84)                 # 4*56*84 = 18816: no resize
    patches, grid = vp.preprocess(frames)
    assert grid == (2, 4, 6) and patches.shape == (2 * 4 * 6, 3 * 2 * 14 * 14)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    mean = torch.tensor(vp.image_mean).view(-1, 1, 1)
    std = torch.tensor(vp.image_std).view(-1, 1, 1)
    norm = (x / 255 - mean) / std
    # transformers' patchify does not use ``self``
    ref, gt, gh, gw = Glm4vVideoProcessor.patchify(None, norm[None], patch_size=14, merge_size=2, temporal_patch_size=2)
    assert (gt, gh, gw) == grid
    np.testing.assert_allclose(patches, ref[0].numpy(), atol=2e-6, rtol=0)
    # row 0 = patch (t0, y0, x0): channel 0 of frame 0 then frame 1, 14x14 each
    np.testing.assert_allclose(patches[0, :196].reshape(14, 14), norm[0, 0, :14, :14].numpy(), atol=2e-6)
    np.testing.assert_allclose(patches[0, 196:392].reshape(14, 14), norm[1, 0, :14, :14].numpy(), atol=2e-6)
    # row 1 is the next patch to the right (2x2 merge groups are contiguous), row 2 the one below
    np.testing.assert_allclose(patches[1, :196].reshape(14, 14), norm[0, 0, :14, 14:28].numpy(), atol=2e-6)
    np.testing.assert_allclose(patches[2, :196].reshape(14, 14), norm[0, 0, 14:28, :14].numpy(), atol=2e-6)


def test_normalisation_is_the_fused_float32_expression():
    vp = GlmvVideoProcessor(size=TINY)
    frames = _rand_video(4, 56, 56, seed=3)         # 4*56*56 = 12544 = min_pixels: no resize
    patches, grid = vp.preprocess(frames)
    assert grid == (2, 4, 4)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32)
    # transformers: mean/std tensors times 1/rescale_factor, then tvF.normalize = sub then div
    m = (torch.tensor(vp.image_mean) * (1.0 / (1 / 255))).view(-1, 1, 1)
    s = (torch.tensor(vp.image_std) * (1.0 / (1 / 255))).view(-1, 1, 1)
    ref = (x - m) / s
    assert np.array_equal(patches[0, :196].reshape(14, 14), ref[0, 0, :14, :14].numpy())   # bitwise


def test_resize_is_torch_uint8_bicubic_antialias():
    vp = GlmvVideoProcessor(size=TINY)
    frames = _rand_video(16, 112, 112, seed=1)      # resized to 56x56 (see the hand-checked grid)
    patches, grid = vp.preprocess(frames)
    assert grid == (8, 4, 4)
    x = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), size=[56, 56],
                                        mode="bicubic", align_corners=False, antialias=True)
    assert x.dtype == torch.uint8
    ref = Glm4vLike.patches(x, vp)
    assert np.array_equal(patches, ref)


class Glm4vLike:
    @staticmethod
    def patches(x_uint8: torch.Tensor, vp: GlmvVideoProcessor) -> np.ndarray:
        from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor

        m = (torch.tensor(vp.image_mean) * (1.0 / vp.rescale_factor)).view(-1, 1, 1)
        s = (torch.tensor(vp.image_std) * (1.0 / vp.rescale_factor)).view(-1, 1, 1)
        norm = (x_uint8.to(torch.float32) - m) / s
        out, *_ = Glm4vVideoProcessor.patchify(None, norm[None], patch_size=14, merge_size=2, temporal_patch_size=2)
        return out[0].numpy()


def test_odd_frame_count_repeats_the_last_frame():
    vp = GlmvVideoProcessor(size=TINY)
    frames = _rand_video(3, 56, 56, seed=2)
    p3, g3 = vp.preprocess(frames)
    p4, g4 = vp.preprocess(np.concatenate([frames, frames[-1:]]))
    assert g3 == g4 == (2, 4, 4) and np.array_equal(p3, p4)


def test_bad_frames():
    vp = GlmvVideoProcessor(size=TINY)
    with pytest.raises(ValueError, match="frames must be uint8 RGB, got float32"):
        vp.preprocess(np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match=r"frames must be a 4-D array \(T, H, W, 3\), got shape \(28, 28, 3\)"):
        vp.preprocess(np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(VideoSizeError, match="aspect ratio must be at most 200"):
        vp.grid(2, 28, 28 * 201)


def test_batch_call_concatenates():
    vp = GlmvVideoProcessor(size=TINY)
    a, b = _rand_video(2, 56, 56, 4), _rand_video(4, 56, 84, 5)
    out = vp([a, b])
    assert out["video_grid_thw"].tolist() == [[1, 6, 6], [2, 4, 6]]
    assert out["pixel_values_videos"].shape == (36 + 48, 1176)
    assert np.array_equal(out["pixel_values_videos"][:36], vp.preprocess(a)[0])


def test_prompt_text_equals_glm4v_processor_replacement():
    from transformers.models.glm4v.processing_glm4v import Glm4vProcessor
    from transformers.video_utils import VideoMetadata

    # transformers' own replacement code on a stand-in processor (it only reads these attributes)
    stub = object.__new__(Glm4vProcessor)
    stub.image_token = "<|image|>"
    stub.video_processor = types.SimpleNamespace(merge_size=2)
    meta = VideoMetadata(total_num_frames=90, fps=30.0, duration=3.0, frames_indices=[0, 15, 30, 45, 60, 75])
    ref = Glm4vProcessor.replace_video_token(stub, {"video_grid_thw": torch.tensor([[3, 4, 6]]),
                                                    "video_metadata": [meta]}, 0)
    ours = video_prompt([0, 1, 2], 6)
    # the chat template puts <|begin_of_video|> / <|end_of_video|> around the replaced <|video|>
    assert ours == "<|begin_of_video|>" + ref + "<|end_of_video|>"
    assert ours.count("<|image|>") == 18 and ours.count("<|begin_of_image|>") == 3
    assert "<|end_of_image|>1<|begin_of_image|>" in ours
    # timestamps are truncated, not rounded: 2.9 s shows as 2
    assert video_prompt([0.0, 1.5, 2.9], 1).endswith("<|end_of_image|>2<|end_of_video|>")


def test_parity_with_transformers_video_processor():
    """Where torchvision imports: the same frames through Glm4vVideoProcessor (on CPU, where
    torchvision resizes uint8 natively -- the path glmv reproduces) and through glmv."""
    pytest.importorskip("torchvision", reason="transformers' Glm4vVideoProcessor needs torchvision")
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor
    from transformers.video_utils import VideoMetadata

    from glmv_cli.data.video import VideoMeta, plan_sampling

    for size, (t, h, w) in [(TINY, (24, 112, 112)), (TINY, (9, 97, 131)), (CKPT, (31, 360, 640)), (CKPT, (5, 20, 300))]:
        video = _rand_video(t, h, w, seed=t)
        ref_vp = Glm4vVideoProcessor(size=size)
        meta = VideoMetadata(total_num_frames=t, fps=4.0, duration=t / 4.0)
        ref = ref_vp(videos=[video], video_metadata=[meta], do_sample_frames=True, return_metadata=True,
                     return_tensors="pt")
        plan = plan_sampling(VideoMeta("v.mp4", t, 4.0, w, h))
        assert list(plan.indices) == list(ref["video_metadata"][0].frames_indices)
        ours = GlmvVideoProcessor(size=size)([video[list(plan.indices)]])
        assert ours["video_grid_thw"].tolist() == ref["video_grid_thw"].tolist()
        diff = np.abs(ours["pixel_values_videos"] - ref["pixel_values_videos"].numpy()).max()
        assert diff <= 1e-6, diff
