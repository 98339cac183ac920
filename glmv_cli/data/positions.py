"""4-row position ids of one sample, computed with numpy in the packer.

Row 0 is the plain text position 0..n-1; it restarts at 0 for every sample of a pack, and
transformers (5.23) turns those restarts into a block-diagonal causal mask when the model gets
``position_ids`` of shape (4, 1, L) and ``attention_mask=None``. Rows 1-3 are the 3D-RoPE
temporal / height / width ids, the same numbers ``Glm4vModel.get_rope_index`` gives for the sample
alone (tests check equality):

- a run of text tokens of length k gets ``cur .. cur+k-1`` on all three rows, then ``cur += k``;
- a run of image tokens with grid (t, h, w) and merge size m covers t * (h/m) * (w/m) tokens in
  (t, h, w) raster order; its rows are ``cur + t_i``, ``cur + h_i``, ``cur + w_i``, and then
  ``cur += max(h, w) // m`` -- an image advances the position by its longer side, not its area.

Runs are found on ``mm_token_type_ids`` (0 text, 1 image), as transformers does. Computing them
here rather than in the model keeps each sample's ids independent of its neighbours in the pack.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _runs(types: np.ndarray) -> list[tuple[int, int, int]]:
    """(type, start, end) for each maximal run of equal values."""
    n = types.size
    if n == 0:
        return []
    cut = (np.flatnonzero(types[1:] != types[:-1]) + 1).tolist()
    bounds = [0, *cut, n]
    kinds = types[bounds[:-1]].tolist()
    return [(kinds[k], bounds[k], bounds[k + 1]) for k in range(len(kinds))]


_TEMPLATES: dict[tuple[int, int, int], np.ndarray] = {}


def _image_template(t: int, hh: int, ww: int) -> np.ndarray:
    """(3, t*hh*ww) offsets of an image's tokens in raster order; cached (grids repeat a lot)."""
    key = (t, hh, ww)
    tpl = _TEMPLATES.get(key)
    if tpl is None:
        n = t * hh * ww
        tpl = np.empty((3, n), dtype=np.int64)
        tpl[0] = np.repeat(np.arange(t), hh * ww)
        tpl[1] = np.tile(np.repeat(np.arange(hh), ww), t)
        tpl[2] = np.tile(np.arange(ww), t * hh)
        tpl.setflags(write=False)
        if len(_TEMPLATES) < 4096:
            _TEMPLATES[key] = tpl
    return tpl


def rope_positions(mm_token_type_ids: np.ndarray, grids: Sequence[Sequence[int]], merge_size: int,
                   out: np.ndarray | None = None) -> np.ndarray:
    """The (3, n) t/h/w position ids of one sample (int64, or written into ``out``)."""
    types = np.asarray(mm_token_type_ids)
    if out is None:
        out = np.empty((3, types.size), dtype=np.int64)
    cur = 0
    gi = 0
    for kind, s, e in _runs(types):
        if kind == 0:
            out[:, s:e] = np.arange(cur, cur + e - s)
            cur += e - s
            continue
        if kind != 1:
            raise ValueError(f"token type {kind} at {s}: only text (0) and image (1) are packed")
        if gi >= len(grids):
            raise ValueError(f"image run at token {s} has no grid ({len(grids)} grids given)")
        t, h, w = (int(x) for x in grids[gi])
        gi += 1
        hh, ww = h // merge_size, w // merge_size
        if t * hh * ww != e - s:
            raise ValueError(f"image run at token {s} has {e - s} tokens, grid {t}x{h}x{w} needs {t * hh * ww}")
        np.add(_image_template(t, hh, ww), cur, out=out[:, s:e], casting="unsafe")
        cur += max(h, w) // merge_size
    if gi != len(grids):
        raise ValueError(f"{len(grids)} grids given but {gi} image runs found")
    return out


def sample_positions(mm_token_type_ids: np.ndarray, grids: Sequence[Sequence[int]], merge_size: int,
                     dtype: type = np.int64) -> np.ndarray:
    """The (4, n) position ids of one sample: text row 0..n-1, then the 3 rope rows."""
    n = len(mm_token_type_ids)
    out = np.empty((4, n), dtype=dtype)
    out[0] = np.arange(n)
    rope_positions(mm_token_type_ids, grids, merge_size, out=out[1:])
    return out
