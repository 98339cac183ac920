"""From a validated record to a packable sample: image headers, tokens, labels, position ids.

Per record, in a worker process: read each image's header for its size (no decode), compute the
grid the model's image processor will choose and so the ``<|image|>`` token count, tokenise with
:mod:`glmv_cli.data.chat` (cached pieces, a Rust ``encode`` for new text), then compute the 4-row
position ids with numpy. Measured cost per small record (one or two images, benchmarks/pack_bench.py, CPU time
on the shared 2-core dev machine under load 7-11): parse + validate 25-50 us, image headers 10-20
us (PNG/JPEG/GIF/BMP sizes are read from the first bytes without PIL), chat tokenisation 60-120 us
(chat.py: cached pieces between added tokens, a Rust ``encode`` only for new text, ids and labels
as numpy arrays without a list round trip), positions 25-50 us, so ~3-4.5k records per CPU-second
on one core; parsing, positions and the tokeniser's new text now cost about the same. The output
is a pure function of the record and the tokenizer, which is why any ``--workers`` count gives
identical packs.

Labels: ``sft`` trains the assistant turns (chat.py decides which); ``pretrain`` trains every text
token of a chat record too, and the text of ``{"text": ...}`` records. In both, image tokens and
the sample's first token are -100: the first token would otherwise be "predicted" by the last
token of the previous sample in the pack, a target the sample never has when run alone.

Videos (:mod:`glmv_cli.data.video`): the container header gives frame count, rate and size
(~10 ms a file on the loaded dev box, no decoding); the sampling plan gives the frame count T
and the timestamps, the video resize rule (T in the pixel budget) the grid (T/2, h, w), so the
prompt -- frame pairs of h·w/4 ``<|image|>`` tokens each followed by its integer second -- is
exact before any pixel is decoded. Every token from ``<|begin_of_video|>`` to ``<|end_of_video|>`` is -100. Positions: a
video is t frame-pair images of grid (1, h, w) (what ``get_rope_index`` does), so the image
code computes them; media (images and videos) keep placeholder order in ``grids`` and in the
pack. Handled-but-counted cases (a clip over the duration cap spread over its length, one
frame paired with itself, ``max_frames`` applied) are listed in ``Encoded.notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from glmv_cli.data.images import (AspectRatioError, ImageSettings, describe_source, fast_size, grid_for_size,
                                  header_size, source_bytes, source_size, tokens_for_grid)
from glmv_cli.data.positions import sample_positions
from glmv_cli.data.schema import Record, RecordError
from glmv_cli.data.video import VideoError, VideoSettings, plan_sampling, probe

VIDEO_REASONS = {"missing": "missing_video", "too_long": "video_too_long"}  # other VideoError kinds: bad_video

IGNORE = -100
HEADER_BYTES = 4096  # PNG/GIF/BMP sizes sit in the first 26 bytes; JPEG's frame header usually within 4 kB


@dataclass
class Encoded:
    """A sample before its images are read in full (paths only, to keep memory small)."""

    input_ids: np.ndarray   # int32 [n]
    labels: np.ndarray      # int32 [n]
    positions: np.ndarray   # int32 [4, n]
    image_paths: list[Any]  # media sources: paths, or embedded bytes / Blobs (glmv_cli.data.images)
    grids: list[tuple[int, int, int]]
    source: tuple[int, int]  # (input index, line)
    kinds: list[int] = field(default_factory=list)   # per media entry: 0 image, 1 video (empty: all images)
    videos: list[Any] = field(default_factory=list)  # per video: (VideoMeta, SamplePlan)
    notes: list[str] = field(default_factory=list)   # counted handling: video over_cap / single_frame / capped,
    #                                                  answer_converted, template_realigned

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def image_size(src: Any) -> tuple[int, int]:
    """(width, height) of an image source -- a file, embedded bytes or a Blob -- from its first
    bytes (the whole image only for odd formats)."""
    if not isinstance(src, str):
        return source_size(src, HEADER_BYTES)
    with open(src, "rb") as f:
        head = f.read(HEADER_BYTES)
        size = fast_size(head)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
        return header_size(head + f.read())


def image_grids(rec: Record, settings: ImageSettings = ImageSettings()) -> list[tuple[int, int, int]]:
    """The patch grid of each of a record's images, from their headers; a RecordError naming the
    record and ``images[k]`` for a missing or unreadable image or an aspect ratio the model refuses.
    pack, rlcs, grade-difficulty and eval all check their records through this one function."""
    out = []
    for k, src in enumerate(rec.images):
        try:
            w, h = image_size(src)
        except FileNotFoundError:
            raise RecordError(rec.path, rec.line, f"images[{k}]", f"image file '{src}' does not exist",
                              "missing_image") from None
        except (OSError, ValueError) as e:
            raise RecordError(rec.path, rec.line, f"images[{k}]", f"{describe_source(src)}: {e}",
                              "bad_image") from None
        try:
            out.append(grid_for_size(w, h, settings))
        except AspectRatioError as e:
            raise RecordError(rec.path, rec.line, f"images[{k}]", f"{describe_source(src)}: {e}",
                              "aspect_ratio") from None
    return out


class Encoder:
    """Turns records into :class:`Encoded` samples for one tokenizer and image processor."""

    def __init__(self, tokenizer: Any, image_processor: Any, *, mode: str, style: str, train_on: str = "last",
                 video: VideoSettings | None = None, template: str | None = None):
        from glmv_cli.data.template import ChatFormat
        from glmv_cli.modeling.video_processor import GlmvVideoProcessor

        self.format = ChatFormat(style, template)
        self.tokenizer = tokenizer
        self.settings = ImageSettings.from_processor(image_processor)
        self.video = video or VideoSettings()
        self.video_processor = GlmvVideoProcessor.from_image_processor(image_processor)
        self.mode, self.style, self.train_on = mode, style, train_on
        conv = tokenizer.convert_tokens_to_ids
        self.image_token_id = int(conv("<|image|>"))
        self.video_start_id, self.video_end_id = int(conv("<|begin_of_video|>")), int(conv("<|end_of_video|>"))
        self._no_label_pretrain = np.array([conv(t) for t in ("[gMASK]", "<sop>", "<|begin_of_image|>",
                                                              "<|image|>", "<|end_of_image|>")], dtype=np.int64)

    def grids(self, rec: Record) -> list[tuple[int, int, int]]:
        return image_grids(rec, self.settings)

    def video_plans(self, rec: Record) -> list[tuple[Any, Any, tuple[int, int, int]]]:
        """(meta, plan, grid) per video, from headers only."""
        out = []
        for k, path in enumerate(rec.videos):
            try:
                meta = probe(path, self.video)
                plan = plan_sampling(meta, self.video)
                grid = self.video_processor.grid(plan.num_frames, meta.height, meta.width)
            except VideoError as e:
                raise RecordError(rec.path, rec.line, f"videos[{k}]", str(e),
                                  VIDEO_REASONS.get(e.kind, "bad_video")) from None
            except ValueError as e:  # the resize rule: aspect ratio over 200
                raise RecordError(rec.path, rec.line, f"videos[{k}]", f"'{path}': {e}", "aspect_ratio") from None
            out.append((meta, plan, grid))
        return out

    def _chat(self, rec: Record, counts: list[int], layouts: list) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Ids and labels of a chat record in the model's format, and what was adapted: the answer
        form converted to the model's family, or the labels carried over to the model's own template."""
        from glmv_cli.data.chat import ChatFormatError
        from glmv_cli.data.template import convert_answer_form

        try:
            messages, converted = convert_answer_form(rec.messages, self.style)
        except ChatFormatError as e:
            raise RecordError(rec.path, rec.line, "messages", str(e), "answer_format") from None
        try:
            ids, labels, realigned = self.format.arrays(self.tokenizer, messages, image_token_counts=counts,
                                                        video_layouts=layouts, train_on=self.train_on)
        except ChatFormatError as e:  # schema.py checks the same rules first; what is left is the template's
            reason = "template_mismatch" if "chat template" in str(e) else "bad_field"
            raise RecordError(rec.path, rec.line, "messages", str(e), reason) from None
        return ids, labels, ["answer_converted"] * bool(converted) + ["template_realigned"] * realigned

    def encode(self, rec: Record, input_index: int = 0) -> Encoded:
        from glmv_cli.data.chat import ChatFormatError, pretrain_arrays

        grids = self.grids(rec)
        counts = [tokens_for_grid(g, self.settings) for g in grids]
        vids = self.video_plans(rec) if rec.videos else []
        layouts = [(self.video_processor.tokens_per_pair(g), plan.pair_timestamps) for _, plan, g in vids]
        adapted: list[str] = []
        if rec.kind == "text":
            try:
                ids64, labels64 = pretrain_arrays(self.tokenizer, rec.text, image_token_counts=counts,
                                                  video_layouts=layouts)
            except ChatFormatError as e:  # schema.py checks the same rules first; this is a backstop
                raise RecordError(rec.path, rec.line, "text", str(e), "bad_field") from None
        else:
            ids64, labels64, adapted = self._chat(rec, counts, layouts)
        ids = ids64.astype(np.int32)
        if self.mode == "pretrain" and rec.kind == "chat":
            labels = np.where(np.isin(ids, self._no_label_pretrain), IGNORE, ids).astype(np.int32)
        else:
            labels = labels64.astype(np.int32)
        types = ids == self.image_token_id
        labels[types] = IGNORE
        labels[0] = IGNORE
        if not vids:
            pos = sample_positions(types.view(np.int8), grids, self.settings.merge_size, dtype=np.int32)
            return Encoded(ids, labels, pos, list(rec.images), grids, (input_index, rec.line), notes=adapted)
        # the whole video block is input (timestamps too), in every mode
        opened = np.cumsum(ids == self.video_start_id) - np.cumsum(ids == self.video_end_id)
        labels[(opened > 0) | (ids == self.video_end_id)] = IGNORE
        media_grids, rope_grids, paths, kinds = [], [], [], []
        it_img, it_vid = iter(zip(rec.images, grids)), iter(zip(rec.videos, vids))
        for kind in rec.media:
            if kind == "image":
                path, g = next(it_img)
                rope_grids.append(g)
            else:
                path, (_, _, g) = next(it_vid)
                rope_grids.extend([(1, g[1], g[2])] * g[0])
            media_grids.append(tuple(g))
            paths.append(path)
            kinds.append(0 if kind == "image" else 1)
        pos = sample_positions(types.view(np.int8), rope_grids, self.settings.merge_size, dtype=np.int32)
        notes = adapted + [n for _, plan, _ in vids for n, on in (("video_over_cap", plan.over_cap),
                                                                  ("video_single_frame", plan.single_frame),
                                                                  ("video_capped", plan.capped)) if on]
        return Encoded(ids, labels, pos, paths, media_grids, (input_index, rec.line), kinds,
                       [(m, p) for m, p, _ in vids], notes)


def media_bytes(e: Encoded) -> list[bytes]:
    """The bytes a pack stores per media entry: image files as read; videos per
    :func:`glmv_cli.data.video.stored_bytes` (a file as is, a frame folder's sampled frames)."""
    if not e.kinds or not any(e.kinds):
        return [source_bytes(p) for p in e.image_paths]
    from glmv_cli.data.video import stored_bytes

    vids = iter(e.videos)
    out = []
    for path, kind in zip(e.image_paths, e.kinds):
        out.append(stored_bytes(*next(vids)) if kind else source_bytes(path))
    return out


def encode_lines(encoder: Encoder, items: Iterable[tuple]) -> list[tuple]:
    """Reads + encodes ``(input_index, path, row, payload[, format, base_dir])`` items: ``payload``
    is a JSONL line or a row dict, read as ``format`` (default glmv) by
    :func:`glmv_cli.data.formats.read_record`, relative image paths resolved in ``base_dir``.

    Returns, per item, ``("ok", Encoded)`` or ``("bad", RecordError.as_tuple())``: plain values,
    so a worker process can send them back.
    """
    from glmv_cli.data.formats import read_record

    out: list[tuple] = []
    for idx, path, line, payload, *how in items:
        fmt = how[0] if how else "glmv"
        base = how[1] if len(how) > 1 else None
        try:
            # the encoder opens every image anyway and reports a missing one with the same message
            rec = read_record(payload, fmt, path=path, line=line, mode=encoder.mode, base_dir=base,
                              check_files=False)
            out.append(("ok", encoder.encode(rec, idx)))
        except RecordError as e:
            out.append(("bad", e.as_tuple()))
    return out
