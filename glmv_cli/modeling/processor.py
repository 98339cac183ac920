"""Image-only GLM-4V processor, and the resize rule without decoding pixels.

transformers' ``Glm4vProcessor`` requires a video processor, and GLM-4V's video processor
needs torchvision, which no torch 2.13 CPU wheel has. ``GlmvProcessor`` is the same processor
minus video: ``Glm4vImageProcessorPil`` + the tokenizer, the same ``<|image|>`` expansion
(one token per 2x2 merged patch: t·h·w / merge²) and the same ``mm_token_type_ids``. glmv builds
it at load time (``modeling.io``) for any GLM-4V directory; a saved model's files name transformers'
own ``Glm4vProcessor`` (or ``Glm46VProcessor``), so plain transformers loads a real processor. The
class is still registered with ``AutoProcessor`` under its name for directories that older glmv
versions saved naming it. Videos go through
:mod:`glmv_cli.modeling.video_processor` (``video_processor_for(processor)``, ``prepare_video``),
glmv's torchvision-free twin of ``Glm4vVideoProcessor``, with the same pixel budget as the images.

Resize rule (GLM's ``smart_resize``): round height and width to multiples of
patch·merge = 28, then scale so that 2·h·w (two temporal frames) lies within
[min_pixels, max_pixels] = ``size["shortest_edge"]``, ``size["longest_edge"]``; aspect ratios
above 200 are rejected. ``image_grid_for_size`` applies it to a (width, height) read from the
file header, so packing never decodes an image (~2 µs per image instead of ~2 ms for a decode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import AutoProcessor, PretrainedConfig
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil, smart_resize
from transformers.models.glm4v.processing_glm4v import Glm4vProcessor
from transformers.processing_utils import ProcessorMixin


class ImageSizeError(ValueError):
    """An image the resize rule cannot handle (aspect ratio > 200, zero size)."""


class GlmvProcessor(Glm4vProcessor):
    """``Glm4vProcessor`` without the video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        if tokenizer is None or image_processor is None:
            raise ValueError("GlmvProcessor needs an image_processor and a tokenizer")
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.video_start_id = tokenizer.convert_tokens_to_ids("<|begin_of_video|>")
        self.video_end_id = tokenizer.convert_tokens_to_ids("<|end_of_video|>")


class _GlmvProcessorKey(PretrainedConfig):
    """Registration key only: AutoProcessor resolves ``processor_class`` names through its
    registered classes, and a key of our own leaves the stock GLM-4V mapping untouched."""

    model_type = "glmv_processor"


AutoProcessor.register(_GlmvProcessorKey, GlmvProcessor, exist_ok=True)


def image_processor_for(size: dict | None = None, **kwargs: Any) -> Glm4vImageProcessorPil:
    """A PIL-backend GLM-4V image processor with min/max pixels ``size``."""
    from glmv_cli.modeling.presets import CHECKPOINT_IMAGE_SIZE

    return Glm4vImageProcessorPil(size=dict(size or CHECKPOINT_IMAGE_SIZE), **kwargs)


def build_processor(tokenizer, *, size: dict | None = None, chat_template: str | None = None) -> GlmvProcessor:
    """A ``GlmvProcessor`` around ``tokenizer`` (its chat template unless one is given)."""
    template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
    return GlmvProcessor(image_processor=image_processor_for(size), tokenizer=tokenizer, chat_template=template)


def _image_processor(processor) -> Any:
    return getattr(processor, "image_processor", processor)


def _limits(ip) -> tuple[int, int, int, int, int]:
    size = ip.size
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo, hi = get("shortest_edge"), get("longest_edge")
    if not lo or not hi:
        raise ValueError(f"image processor size must have shortest_edge and longest_edge, got {size}")
    return int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size), int(lo), int(hi)


def resized_size(width: int, height: int, processor) -> tuple[int, int]:
    """(width, height) an image of that size is resized to by the GLM-4V processor."""
    return _resized(width, height, _limits(_image_processor(processor)))


def _resized(width: int, height: int, limits: tuple[int, int, int, int, int]) -> tuple[int, int]:
    patch, merge, temporal, lo, hi = limits
    if width < 1 or height < 1:
        raise ImageSizeError(f"image size {width}x{height} is empty")
    try:
        h, w = smart_resize(
            num_frames=temporal,
            height=int(height),
            width=int(width),
            temporal_factor=temporal,
            factor=patch * merge,
            min_pixels=lo,
            max_pixels=hi,
        )
    except ValueError as e:
        raise ImageSizeError(f"image size {width}x{height}: {e}") from None
    return w, h


def image_grid_for_size(width: int, height: int, processor) -> tuple[int, int, int]:
    """The patch grid (t, h, w) of a ``width`` x ``height`` image, without its pixels.

    Equal to ``processor.image_processor(images=[img]).image_grid_thw[0]``; t is 1 for an
    image (its frame is repeated over the temporal patch).
    """
    limits = _limits(_image_processor(processor))
    w, h = _resized(width, height, limits)
    return 1, h // limits[0], w // limits[0]


def image_token_count(width: int, height: int, processor) -> int:
    """Number of ``<|image|>`` tokens for a ``width`` x ``height`` image (t·h·w / merge²)."""
    t, h, w = image_grid_for_size(width, height, processor)
    merge = int(_image_processor(processor).merge_size)
    return t * h * w // (merge * merge)


def image_to_patches(image, processor) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A PIL image as flat patches ``(t·h·w, 3·2·14·14)`` float32 and its grid (t, h, w).

    The rows are ordered as the vision tower expects (2x2 merge groups contiguous); several
    images are concatenated along rows with their grids stacked as ``image_grid_thw``.
    """
    ip = _image_processor(processor)
    out = ip(images=[image], return_tensors="np")
    grid = tuple(int(x) for x in out["image_grid_thw"][0])
    return np.ascontiguousarray(out["pixel_values"], dtype=np.float32), grid  # type: ignore[return-value]
