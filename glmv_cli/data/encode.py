"""From a validated record to a packable sample: image headers, tokens, labels, position ids.

Per record, in a worker process: read each image's header for its size (no decode), compute the
grid the model's image processor will choose and so the ``<|image|>`` token count, tokenise with
:mod:`glmv_cli.data.chat` (one Rust ``encode`` per record), then compute the 4-row position ids
with numpy. Measured cost per small record (one or two images, benchmarks/pack_bench.py, CPU time
on the shared 2-core dev machine under load 7-11): parse + validate 25-50 us, image headers 10-20
us (PNG/JPEG/GIF/BMP sizes are read from the first bytes without PIL), chat tokenisation 125-280 us
(chat.py: one Rust ``encode`` plus a per-token Python loop), ids/labels/positions 20-45 us, so
2-4k records/s per core with the tokeniser the main cost. The output is a pure function of the
record and the tokenizer, which is why any ``--workers`` count gives identical packs.

Labels: ``sft`` trains the assistant turns (chat.py decides which); ``pretrain`` trains every text
token of a chat record too, and the text of ``{"text": ...}`` records. In both, image tokens and
the sample's first token are -100: the first token would otherwise be "predicted" by the last
token of the previous sample in the pack, a target the sample never has when run alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from glmv_cli.data.images import (AspectRatioError, ImageSettings, fast_size, grid_for_size, header_size,
                                  tokens_for_grid)
from glmv_cli.data.positions import sample_positions
from glmv_cli.data.schema import Record, RecordError, parse_record

IGNORE = -100
HEADER_BYTES = 4096  # PNG/GIF/BMP sizes sit in the first 26 bytes; JPEG's frame header usually within 4 kB


@dataclass
class Encoded:
    """A sample before its images are read in full (paths only, to keep memory small)."""

    input_ids: np.ndarray   # int32 [n]
    labels: np.ndarray      # int32 [n]
    positions: np.ndarray   # int32 [4, n]
    image_paths: list[str]
    grids: list[tuple[int, int, int]]
    source: tuple[int, int]  # (input index, line)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file from its first bytes (whole file only for odd formats)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        size = fast_size(head)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
        return header_size(head + f.read())


class Encoder:
    """Turns records into :class:`Encoded` samples for one tokenizer and image processor."""

    def __init__(self, tokenizer: Any, image_processor: Any, *, mode: str, style: str, train_on: str = "last"):
        self.tokenizer = tokenizer
        self.settings = ImageSettings.from_processor(image_processor)
        self.mode, self.style, self.train_on = mode, style, train_on
        conv = tokenizer.convert_tokens_to_ids
        self.image_token_id = int(conv("<|image|>"))
        self._no_label_pretrain = np.array([conv(t) for t in ("[gMASK]", "<sop>", "<|begin_of_image|>",
                                                              "<|image|>", "<|end_of_image|>")], dtype=np.int64)

    def grids(self, rec: Record) -> list[tuple[int, int, int]]:
        out = []
        for k, path in enumerate(rec.images):
            try:
                w, h = image_size(path)
            except FileNotFoundError:
                raise RecordError(rec.path, rec.line, f"images[{k}]", f"image file '{path}' does not exist",
                                  "missing_image") from None
            except (OSError, ValueError) as e:
                raise RecordError(rec.path, rec.line, f"images[{k}]", f"'{path}': {e}", "bad_image") from None
            try:
                out.append(grid_for_size(w, h, self.settings))
            except AspectRatioError as e:
                raise RecordError(rec.path, rec.line, f"images[{k}]", f"'{path}': {e}", "aspect_ratio") from None
        return out

    def encode(self, rec: Record, input_index: int = 0) -> Encoded:
        from glmv_cli.data.chat import ChatFormatError, encode_chat, encode_pretrain_text

        grids = self.grids(rec)
        counts = [tokens_for_grid(g, self.settings) for g in grids]
        try:
            if rec.kind == "text":
                enc = encode_pretrain_text(self.tokenizer, rec.text, image_token_counts=counts)
            else:
                enc = encode_chat(self.tokenizer, rec.messages, image_token_counts=counts, style=self.style,
                                  train_on=self.train_on)
        except ChatFormatError as e:  # schema.py checks the same rules first; this is a backstop
            raise RecordError(rec.path, rec.line, "messages" if rec.kind == "chat" else "text", str(e),
                              "bad_field") from None
        ids = np.array(enc["input_ids"], dtype=np.int32)
        if self.mode == "pretrain" and rec.kind == "chat":
            labels = np.where(np.isin(ids, self._no_label_pretrain), IGNORE, ids).astype(np.int32)
        else:
            labels = np.array(enc["labels"], dtype=np.int32)
        types = ids == self.image_token_id
        labels[types] = IGNORE
        labels[0] = IGNORE
        pos = sample_positions(types.view(np.int8), grids, self.settings.merge_size, dtype=np.int32)
        return Encoded(ids, labels, pos, list(rec.images), grids, (input_index, rec.line))


def encode_lines(encoder: Encoder, items: Iterable[tuple[int, str, int, str]]) -> list[tuple]:
    """Parses + encodes ``(input_index, path, line, text)`` items.

    Returns, per item, ``("ok", Encoded)`` or ``("bad", RecordError.as_tuple())``: plain values,
    so a worker process can send them back.
    """
    out: list[tuple] = []
    for idx, path, line, text in items:
        try:
            # the encoder opens every image anyway and reports a missing one with the same message
            rec = parse_record(text, path=path, line=line, mode=encoder.mode, check_files=False)
            out.append(("ok", encoder.encode(rec, idx)))
        except RecordError as e:
            out.append(("bad", e.as_tuple()))
    return out
