"""Per-sample 4-row position ids against transformers' get_rope_index; grids against smart_resize."""

import functools
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize
from transformers.models.glm4v.modeling_glm4v import Glm4vModel

from glmv_cli.data.images import (AspectRatioError, ImageSettings, grid_for_size, header_size, resized_size,
                                  tokens_for_grid)
from glmv_cli.data.positions import rope_positions, sample_positions


def _hf_rope(types, grids, merge=2):
    fake = SimpleNamespace(config=SimpleNamespace(vision_config=SimpleNamespace(spatial_merge_size=merge)),
                           get_vision_position_ids=functools.partial(Glm4vModel.get_vision_position_ids, None))
    ids = torch.zeros(1, len(types), dtype=torch.long)
    pos, _ = Glm4vModel.get_rope_index(fake, ids, torch.tensor([types]),
                                       image_grid_thw=torch.tensor(grids) if grids else None)
    return pos[:, 0].numpy()


def _types(layout, merge=2):
    """layout: ints = text run lengths, tuples = image grids."""
    types, grids = [], []
    for item in layout:
        if isinstance(item, tuple):
            types += [1] * (item[0] * item[1] * item[2] // merge ** 2)
            grids.append(list(item))
        else:
            types += [0] * item
    return types, grids


def test_hand_computed_small_image():
    # 2 text tokens, a 1x4x6 grid (2x3 merged tokens), 1 text token
    types, grids = _types([2, (1, 4, 6), 1])
    pos = rope_positions(np.array(types), grids, 2)
    assert pos.tolist() == [
        [0, 1, 2, 2, 2, 2, 2, 2, 5],
        [0, 1, 2, 2, 2, 3, 3, 3, 5],
        [0, 1, 2, 3, 4, 2, 3, 4, 5],
    ]
    full = sample_positions(np.array(types), grids, 2)
    assert full.shape == (4, 9) and full[0].tolist() == list(range(9))


@pytest.mark.parametrize("layout", [
    [5],
    [3, (1, 4, 6), 4],
    [1, (1, 8, 4), 2, (1, 2, 2), 7, (1, 6, 10), 1],
    [4, (1, 28, 2), 3],
    [2, (2, 4, 6), 1],
])
def test_equals_transformers_get_rope_index(layout):
    types, grids = _types(layout)
    ours = rope_positions(np.array(types), grids, 2)
    assert np.array_equal(ours, _hf_rope(types, grids))


def test_grid_mismatch_is_an_error():
    with pytest.raises(ValueError, match="image run at token 1 has 4 tokens, grid 1x4x6 needs 6"):
        rope_positions(np.array([0, 1, 1, 1, 1, 0]), [(1, 4, 6)], 2)
    with pytest.raises(ValueError, match="2 grids given but 1 image runs found"):
        rope_positions(np.array([0, 1, 0]), [(1, 2, 2), (1, 2, 2)], 2)


SIZES = [(1, 1), (10, 500), (27, 27), (28, 28), (100, 37), (640, 480), (1920, 1080), (4000, 3000),
         (13000, 70), (33, 6000), (56, 11200), (224, 224), (300, 1), (1001, 999)]


@pytest.mark.parametrize("w,h", SIZES)
def test_resized_size_equals_smart_resize(w, h):
    s = ImageSettings()
    try:
        ref = smart_resize(num_frames=2, height=h, width=w, temporal_factor=2, factor=28,
                           min_pixels=s.min_pixels, max_pixels=s.max_pixels)
    except ValueError:
        with pytest.raises(AspectRatioError):
            resized_size(w, h, s)
        return
    assert resized_size(w, h, s) == ref
    t, gh, gw = grid_for_size(w, h, s)
    assert (t, gh * 14, gw * 14) == (1, *ref)
    assert tokens_for_grid((t, gh, gw), s) == gh * gw // 4


def test_small_settings_and_aspect_message():
    s = ImageSettings(min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    assert grid_for_size(640, 480, s) == (1, 2, 2)
    with pytest.raises(AspectRatioError) as e:
        resized_size(8040, 40, ImageSettings())
    assert str(e.value) == "aspect ratio 201.0:1 (8040x40) is over 200:1"


def test_header_size_does_not_need_pixels():
    buf = io.BytesIO()
    Image.new("RGB", (37, 21), (1, 2, 3)).save(buf, format="PNG")
    data = buf.getvalue()
    assert header_size(data) == (37, 21)
    # a truncated file still has a readable header: size comes without decoding
    assert header_size(data[:64]) == (37, 21)
    with pytest.raises(ValueError) as e:
        header_size(b"not an image at all")
    assert str(e.value) == "not a readable image (unknown or damaged format)"


@pytest.mark.parametrize("fmt,mode,extra", [
    ("PNG", "RGB", {}), ("PNG", "L", {}), ("JPEG", "RGB", {}), ("JPEG", "RGB", {"progressive": True}),
    ("GIF", "P", {}), ("BMP", "RGB", {}), ("WEBP", "RGB", {}),
])
def test_header_fast_path_agrees_with_pil(fmt, mode, extra):
    from glmv_cli.data.images import fast_size

    for size in [(1, 1), (37, 21), (1000, 3)]:
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, format=fmt, **extra)
        data = buf.getvalue()
        assert header_size(data) == size
        assert fast_size(data) == (None if fmt == "WEBP" else size)  # WebP goes through PIL


def test_jpeg_with_large_exif_block(tmp_path):
    from glmv_cli.data.encode import HEADER_BYTES, image_size
    from glmv_cli.data.images import fast_size

    exif = Image.Exif()
    exif[0x010E] = "x" * 20000  # ImageDescription: pushes the frame header past the first read
    p = tmp_path / "e.jpg"
    Image.new("RGB", (123, 45)).save(p, format="JPEG", exif=exif.tobytes())
    data = p.read_bytes()
    assert fast_size(data[:HEADER_BYTES]) is None and fast_size(data) == (123, 45)
    assert image_size(str(p)) == (123, 45)
