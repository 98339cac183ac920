"""glmv's GLM-4V video processor: frames -> ``pixel_values_videos``, ``video_grid_thw``, prompt text.

transformers' ``Glm4vVideoProcessor`` subclasses the torchvision backend, and no torchvision
wheel installs beside the CPU torch 2.13 used here, so glmv carries this one. It reproduces
that processor step by step (the parity test compares them wherever torchvision imports):

1. Resize rule -- GLM's ``smart_resize`` with the *frame count* in it: sides round to multiples
   of patch·merge = 28, and when T·h·w leaves [min_pixels, max_pixels] (``size["shortest_edge"]``,
   ``size["longest_edge"]``) both sides scale by sqrt(T·H·W / max_pixels) (floored to 28) -- the
   pixel budget is per *video*, so 4x more frames give each frame half the side length.
2. Resize -- bicubic with antialiasing on the uint8 frames via ``torch.nn.functional.interpolate``,
   the call torchvision's ``resize`` makes for uint8 tensors on CPU. PIL's bicubic is *not*
   interchangeable: on random frames it differs from it by 1 grey level on ~0.7 % of pixels, and
   the float path torchvision takes on GPU differs by up to 6 (it does not clamp between the two
   separable passes); matching the CPU path makes the outputs equal bit for bit.
3. Rescale + normalise fused, in float32, exactly as transformers: ``(x - 255·mean) / (255·std)``
   with the constants built by the same torch expression (bitwise equal).
4. Frame pairing -- an odd frame count repeats the last frame; grid_t = T / 2.
5. Patch order -- rows in (t, h/2, w/2, 2, 2) order, columns (channel, frame in pair, 14, 14):
   ``3·2·14·14 = 1176`` values a row, the same layout as images, so one vision tower serves both.

Prompt text: ``<|begin_of_video|>`` then for each frame pair ``<|begin_of_image|>`` + n
``<|image|>`` + ``<|end_of_image|>`` + ``int(timestamp)`` of the pair's first frame, then
``<|end_of_video|>``; n = (h/2)·(w/2) per pair. Video frames reuse the image token; their
``mm_token_type_ids`` are 2 (inside the video markers), which is how ``get_rope_index`` gives
each pair its own (1, h, w) position block with the timestamp text between pairs.

Settings come from the model's image processor (patch 14, temporal 2, merge 2, mean/std and the
min/max pixel budget), so the tiny preset's videos get the tiny pixel budget and a checkpoint's
the checkpoint's. Cost on one loaded dev-box core: ~1-1.5 ms a 112 px frame pair (resize,
normalise, patchify); decoding is the larger cost (~47 ms a 3-8 s synth clip with PyAV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BOV, EOV, BOI, EOI, IMG = "<|begin_of_video|>", "<|end_of_video|>", "<|begin_of_image|>", "<|end_of_image|>", "<|image|>"


class VideoSizeError(ValueError):
    """Frames the resize rule cannot handle (aspect ratio > 200, empty size)."""


def smart_resize_video(num_frames: int, height: int, width: int, *, factor: int = 28, temporal_factor: int = 2,
                       min_pixels: int = 112 * 112, max_pixels: int = 28 * 28 * 2 * 30000) -> tuple[int, int]:
    """(height, width) that ``num_frames`` frames of ``height`` x ``width`` are resized to.

    The same arithmetic as transformers' GLM-4V ``smart_resize`` (tests compare them), except
    that a single frame is allowed (it is paired with itself, so it counts as two).
    """
    if height < 1 or width < 1:
        raise VideoSizeError(f"frame size {width}x{height} is empty")
    num_frames = max(num_frames, temporal_factor)
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise VideoSizeError(f"absolute aspect ratio must be at most 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(h_bar), int(w_bar)


@dataclass
class GlmvVideoProcessor:
    """PIL/numpy/torch-CPU twin of transformers' ``Glm4vVideoProcessor`` (no torchvision)."""

    size: dict
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    fps: float = 2.0
    max_duration: float = 300.0

    @classmethod
    def from_image_processor(cls, ip: Any, **overrides: Any) -> "GlmvVideoProcessor":
        """Settings of a GLM-4V image processor (or a processor holding one)."""
        ip = getattr(ip, "image_processor", ip)
        size = ip.size
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        kw = dict(size={"shortest_edge": int(get("shortest_edge")), "longest_edge": int(get("longest_edge"))},
                  patch_size=int(ip.patch_size), temporal_patch_size=int(ip.temporal_patch_size),
                  merge_size=int(ip.merge_size), image_mean=tuple(ip.image_mean), image_std=tuple(ip.image_std),
                  rescale_factor=float(ip.rescale_factor))
        kw.update(overrides)
        return cls(**kw)

    # ---- sizes without pixels ------------------------------------------------------------

    def resized_size(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """(height, width) of every frame after resizing (all frames of a video share it)."""
        return smart_resize_video(num_frames, height, width, factor=self.patch_size * self.merge_size,
                                  temporal_factor=self.temporal_patch_size,
                                  min_pixels=int(self.size["shortest_edge"]), max_pixels=int(self.size["longest_edge"]))

    def grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """``video_grid_thw`` row of ``num_frames`` frames of ``height`` x ``width``."""
        h, w = self.resized_size(num_frames, height, width)
        t = -(-max(num_frames, 1) // self.temporal_patch_size)
        return t, h // self.patch_size, w // self.patch_size

    def tokens_per_pair(self, grid: Sequence[int]) -> int:
        """``<|image|>`` tokens of one frame pair (h·w / merge²)."""
        return int(grid[1]) * int(grid[2]) // (self.merge_size * self.merge_size)

    def video_token_count(self, grid: Sequence[int]) -> int:
        """``<|image|>`` tokens of the whole video (t·h·w / merge²)."""
        return int(grid[0]) * self.tokens_per_pair(grid)

    # ---- pixels ----------------------------------------------------------------------------

    def _constants(self):
        import torch

        # the expression transformers' fused rescale+normalise uses, so the float32 bits agree
        mean = torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)
        std = torch.tensor(self.image_std) * (1.0 / self.rescale_factor)
        return mean.view(-1, 1, 1), std.view(-1, 1, 1)

    def preprocess(self, frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """RGB uint8 frames ``(T, H, W, 3)`` (or ``(T, 3, H, W)``) -> patches ``(t·h·w, 1176)``, grid."""
        import torch
        import torch.nn.functional as F

        a = np.asarray(frames)
        if a.ndim != 4:
            raise ValueError(f"frames must be a 4-D array (T, H, W, 3), got shape {a.shape}")
        if a.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB, got {a.dtype}")
        if a.shape[-1] == 3 and a.shape[1] != 3:
            a = a.transpose(0, 3, 1, 2)
        if a.shape[1] != 3:
            raise ValueError(f"frames must have 3 channels, got shape {frames.shape}")
        if a.shape[0] < 1:
            raise ValueError("a video needs at least one frame")
        x = torch.from_numpy(np.ascontiguousarray(a))
        num, _, height, width = x.shape
        h, w = self.resized_size(num, height, width)
        if (h, w) != (height, width):
            x = F.interpolate(x, size=[h, w], mode="bicubic", align_corners=False, antialias=True)
        mean, std = self._constants()
        x = (x.to(torch.float32) - mean) / std
        tp, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        if pad := -num % tp:
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)], dim=0)
        gt, gh, gw = x.shape[0] // tp, h // p, w // p
        x = x.view(gt, tp, 3, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        patches = x.reshape(gt * gh * gw, 3 * tp * p * p)
        return np.ascontiguousarray(patches.numpy(), dtype=np.float32), (gt, gh, gw)

    def __call__(self, videos: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Several videos: ``pixel_values_videos`` (rows concatenated) and ``video_grid_thw``."""
        outs = [self.preprocess(v) for v in videos]
        return {"pixel_values_videos": np.concatenate([o[0] for o in outs], axis=0),
                "video_grid_thw": np.array([o[1] for o in outs], dtype=np.int64)}


def video_prompt(pair_timestamps: Sequence[int | float], tokens_per_pair: int) -> str:
    """The expanded text of one video (what ``Glm4vProcessor`` puts in place of ``<|video|>``,
    with the begin/end video markers of the chat template around it)."""
    if tokens_per_pair < 1:
        raise ValueError(f"tokens_per_pair must be >= 1, got {tokens_per_pair}")
    body = "".join(f"{BOI}{IMG * tokens_per_pair}{EOI}{int(t)}" for t in pair_timestamps)
    return BOV + body + EOV


def video_processor_for(processor: Any, **overrides: Any) -> GlmvVideoProcessor:
    """The video processor matching a ``GlmvProcessor`` / image processor (``fps``, ``max_duration``
    and ``size`` may be overridden)."""
    return GlmvVideoProcessor.from_image_processor(processor, **overrides)


def split_video_grid(grid: Sequence[int]) -> list[tuple[int, int, int]]:
    """A video grid (t, h, w) as t frame-pair grids (1, h, w).

    This is how ``Glm4vModel`` treats a video: ``get_video_features`` runs the vision tower on
    each pair as on an image and ``get_rope_index`` gives each pair its own (1, h, w) position
    block. So a video can travel through the image inputs (its ``pixel_values_videos`` rows as
    ``pixel_values``, these grids in ``image_grid_thw``) with identical results, which is what a
    pack mixing images and videos needs: transformers 5.23 fails when one forward gets both
    ``pixel_values`` and ``pixel_values_videos`` (each scatters into every ``<|image|>`` token).
    """
    t, h, w = (int(x) for x in grid)
    return [(1, h, w)] * t


@dataclass
class VideoInputs:
    """One video ready for the model and the chat encoder."""

    pixel_values_videos: np.ndarray          # float32 (t·h·w, 1176)
    grid: tuple[int, int, int]               # its video_grid_thw row
    pair_timestamps: list[int]               # the integer second after each frame pair
    tokens_per_pair: int
    notes: list[str]

    @property
    def layout(self) -> tuple[int, list[int]]:
        """The ``video_layouts`` entry ``encode_chat`` / ``render_prompt`` take."""
        return self.tokens_per_pair, self.pair_timestamps


def prepare_video(path: Any, processor: Any, settings: Any = None) -> VideoInputs:
    """Decode, sample and preprocess one video file or frame folder for ``processor``'s model.

    ``settings`` is a :class:`glmv_cli.data.video.VideoSettings` (default: 2 fps, 300 s cap).
    Raises :class:`glmv_cli.data.video.VideoError` for unusable input."""
    from glmv_cli.data.video import VideoSettings, load_video

    vp = processor if isinstance(processor, GlmvVideoProcessor) else video_processor_for(processor)
    clip = load_video(path, settings or VideoSettings(fps=vp.fps, max_duration=vp.max_duration))
    pixels, grid = vp.preprocess(clip.frames)
    return VideoInputs(pixels, grid, clip.plan.pair_timestamps, vp.tokens_per_pair(grid), clip.notes)
