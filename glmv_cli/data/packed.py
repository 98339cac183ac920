"""``PackedDataset(dir)``: the reader of a ``glmv pack`` artifact, yielding model-ready dicts.

Each item is one pack (one row of at most ``seq_len`` tokens)::

    input_ids          int64 (1, L)
    labels             int64 (1, L)     -100 where no loss (prompts, image tokens, sample starts)
    position_ids       int64 (4, 1, L)  text row restarting per sample + 3D-RoPE t/h/w rows
    mm_token_type_ids  int64 (1, L)     1 on <|image|> tokens, else 0
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
"""

from __future__ import annotations

import io
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
        self._processor = None

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

    def raw(self, i: int) -> RawPack:
        return self._shards.pack(i)

    def pixels(self, pack: RawPack, where: str = "") -> np.ndarray:
        """Decodes and preprocesses a pack's images; returns (patches, dim) float32."""
        from PIL import Image

        images = []
        for k, data in enumerate(pack.images):
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                images.append(im.convert("RGB") if im.mode != "RGB" else im.copy())
        out = self.image_processor(images=images, return_tensors="np")
        grids = np.asarray(out["image_grid_thw"]).astype(np.int64)
        if not np.array_equal(grids, pack.grids.astype(np.int64)):
            raise GlmvError(f"packed dataset '{self.dir}'{where}: decoded images give grids {grids.tolist()}, "
                            f"the pack stored {pack.grids.tolist()}")
        return np.asarray(out["pixel_values"], dtype=np.float32)

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
            "mm_token_type_ids": (ids == self.image_token_id).long(),
        }
        if p.images:
            item["pixel_values"] = torch.from_numpy(self.pixels(p, f" pack {i}"))
            item["image_grid_thw"] = torch.from_numpy(p.grids.astype(np.int64))
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]
