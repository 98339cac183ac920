"""``PackedDataset(dir)``: the reader of a ``glmv pack`` artifact, yielding model-ready dicts.

Each item is one pack (one row of at most ``seq_len`` tokens)::

    input_ids          int64 (1, L)
    labels             int64 (1, L)     -100 where no loss (prompts, image tokens, sample starts)
    position_ids       int64 (4, 1, L)  text row restarting per sample + 3D-RoPE t/h/w rows
    mm_token_type_ids  int64 (1, L)     1 on <|image|> tokens, 2 on those inside a video, else 0
    pixel_values       float32 (patches, C*T*P*P)   only when the pack has images
    image_grid_thw     int64 (images, 3)            only when the pack has images

Call ``model(**item, use_cache=False)`` with no ``attention_mask``: transformers 5.23 builds the
block-diagonal mask from row 0 of ``position_ids`` only when there is neither an attention mask
nor a KV cache, and the model creates a cache by default (``config.use_cache``), in training
mode too. With a cache the samples of a pack silently attend to each other (tests show it). Text-only packs
carry no ``pixel_values`` / ``image_grid_thw`` keys, because the vision tower rejects empty input.

Images are stored encoded; the reader decodes them with PIL and runs the pack's saved image
processor settings (``preprocessor_config.json``, a ``Glm4vImageProcessorPil``), so ``pixel_values``
are exactly what transformers' processor gives for the same file. The grid it computes is checked
against the grid stored at pack time; a difference means the pack and its processor disagree.

Videos are decoded (PyAV, or the stored frames of a frame folder) with the sampling settings in
``packs.json`` and run through glmv's video processor. Their frame pairs travel in the image
inputs: ``pixel_values`` rows in media order, and per video t rows (1, h, w) in
``image_grid_thw`` -- exactly what ``get_video_features`` and ``get_rope_index`` do with a
(t, h, w) video (tests check equal logits), and the only way transformers 5.23 takes images and
videos in one forward (given both ``pixel_values`` and ``pixel_values_videos`` it scatters each
into every ``<|image|>`` token and fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from glmv_cli.artifacts import read_manifest
from glmv_cli.data.storage import RawPack, ShardReader
from glmv_cli.errors import GlmvError

PROCESSOR_CONFIG = "preprocessor_config.json"


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What a packed dataset records about its tokenizer: size + special-token ids + a digest."""
    import hashlib
    import json

    from glmv_cli.modeling.tokenizer import special_token_ids

    specials = special_token_ids(tokenizer)
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()
    return {"vocab_size": len(tokenizer), "special_token_ids": specials, "vocab_sha256": digest}


class PackedDataset:
    """Random access (``ds[i]``) and iteration over the packs of a ``glmv pack`` artifact."""

    def __init__(self, directory: str | Path):
        self.manifest = read_manifest(directory, expect_stage="pack", what="packed dataset")
        self.dir = self.manifest.path
        try:
            self._shards = ShardReader(self.dir)
        except (FileNotFoundError, ValueError) as e:
            raise GlmvError(f"packed dataset '{self.dir}': {e}") from None
        index = self._shards.index
        self.seq_len: int = int(index["seq_len"])
        self.mode: str = index["mode"]
        self.image_token_id: int = int(index["image_token_id"])
        self.tokenizer_info: dict[str, Any] = index["tokenizer"]
        self.video_settings: dict[str, Any] | None = index.get("video_settings")
        specials = self.tokenizer_info.get("special_token_ids", {})
        self._video_ids = (specials.get("<|begin_of_video|>"), specials.get("<|end_of_video|>"))
        self._processor = None
        self._video_processor = None

    def __len__(self) -> int:
        return len(self._shards)

    @property
    def image_processor(self):
        if self._processor is None:
            from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

            self._processor = Glm4vImageProcessorPil.from_pretrained(str(self.dir))
        return self._processor

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raises GlmvError when ``tokenizer`` is not the one the data was packed with."""
        mine = tokenizer_identity(tokenizer)
        theirs = self.tokenizer_info
        for key in ("vocab_size", "special_token_ids", "vocab_sha256"):
            if mine[key] != theirs.get(key):
                raise GlmvError(
                    f"packed dataset '{self.dir}' was tokenised with a different tokenizer: {key} "
                    f"{theirs.get(key)!r} in its packs.json, {mine[key]!r} for the model; re-run glmv pack"
                )

    @property
    def video_processor(self):
        if self._video_processor is None:
            from glmv_cli.modeling.video_processor import GlmvVideoProcessor

            self._video_processor = GlmvVideoProcessor.from_image_processor(self.image_processor)
        return self._video_processor

    def raw(self, i: int) -> RawPack:
        return self._shards.pack(i)

    def pixels(self, pack: RawPack, where: str = "") -> np.ndarray:
        """Decodes and preprocesses a pack's images; returns (patches, dim) float32."""
        if pack.kinds is not None and len(pack.kinds) and pack.kinds.any():
            return self._media_pixels(pack, where)
        from glmv_cli.data.mediacheck import PIL_BOMB_PIXELS, decode_image

        limit = int(self._shards.index.get("max_image_pixels", PIL_BOMB_PIXELS))
        images = []
        for k, data in enumerate(pack.images):
            try:  # the decoder pack's --verify-images ran: what pack accepted decodes here
                images.append(decode_image(data, limit))
            except ValueError as e:
                raise GlmvError(f"packed dataset '{self.dir}'{where}: image {k} {e}") from None
        out = self.image_processor(images=images, return_tensors="np")
        grids = np.asarray(out["image_grid_thw"]).astype(np.int64)
        if not np.array_equal(grids, pack.grids.astype(np.int64)):
            raise GlmvError(f"packed dataset '{self.dir}'{where}: decoded images give grids {grids.tolist()}, "
                            f"the pack stored {pack.grids.tolist()}")
        return np.asarray(out["pixel_values"], dtype=np.float32)

    def _media_pixels(self, pack: RawPack, where: str) -> np.ndarray:
        """Images and videos in media order; each checked against its stored grid."""
        from glmv_cli.data.video import VideoSettings, load_stored

        settings = VideoSettings(**(self.video_settings or {}))
        rows = []
        for k, (data, kind) in enumerate(zip(pack.images, pack.kinds)):
            one = RawPack(pack.input_ids[:0], pack.labels[:0], pack.position_ids[:, :0], pack.sample_lengths[:0],
                          pack.sources[:0], [data], pack.grids[k:k + 1])
            if not kind:
                rows.append(self.pixels(one, where))
                continue
            clip = load_stored(data, settings, name=f"{self.dir} video {k}")
            patches, grid = self.video_processor.preprocess(clip.frames)
            if list(grid) != pack.grids[k].tolist():
                raise GlmvError(f"packed dataset '{self.dir}'{where}: video {k} decodes to grid {list(grid)}, "
                                f"the pack stored {pack.grids[k].tolist()}")
            rows.append(patches)
        return np.concatenate(rows, axis=0)

    def grids_for_model(self, pack: RawPack) -> np.ndarray:
        """``image_grid_thw`` rows: an image's grid, or t rows (1, h, w) for a video (t, h, w)."""
        if pack.kinds is None or not len(pack.kinds) or not pack.kinds.any():
            return pack.grids.astype(np.int64)
        out = []
        for g, kind in zip(pack.grids.tolist(), pack.kinds.tolist()):
            out.extend([[1, g[1], g[2]]] * g[0] if kind else [g])
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if i < 0:
            i += len(self)
        p = self.raw(i)
        ids = torch.from_numpy(p.input_ids.astype(np.int64))[None]
        item: dict[str, Any] = {
            "input_ids": ids,
            "labels": torch.from_numpy(p.labels.astype(np.int64))[None],
            "position_ids": torch.from_numpy(p.position_ids.astype(np.int64))[:, None, :],
            "mm_token_type_ids": self._types(ids),
        }
        if p.images:
            item["pixel_values"] = torch.from_numpy(self.pixels(p, f" pack {i}"))
            item["image_grid_thw"] = torch.from_numpy(self.grids_for_model(p))
        return item

    def _types(self, ids):
        is_image = ids == self.image_token_id
        start, end = self._video_ids
        if self.video_settings is None or start is None or end is None:
            return is_image.long()
        inside = (ids == start).long().cumsum(-1) > (ids == end).long().cumsum(-1)
        return is_image.long() * (1 + inside.long())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]
