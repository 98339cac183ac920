"""Token ids and labels of rendered chats: the token-level half of ``glmv_cli.data.chat``.

``chat.py`` renders conversations as text segments ``(text, trained)``; this module turns segments
into ids and labels with image runs expanded to their token counts and videos into GLM's native
layout (frame pairs of ``<|image|>`` tokens, each followed by its timestamp), and builds
``mm_token_type_ids``. ``chat_arrays`` / ``encode_chat`` / ``pretrain_arrays`` are the entry points
pack, rollouts, eval and the server use.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from glmv_cli.data.chat import (BOI, BOV, EOI, EOS, EOV, IGNORE_INDEX, IMAGE_PLACEHOLDER, IMG, PREFIX, VID,
                                VIDEO_PLACEHOLDER, ChatFormatError, _check_counts, _check_layouts, _render)


def encode_segments(tokenizer, segs: list[tuple[str, bool]], image_token_counts: Sequence[int], n_images: int,
                    close_eos: bool, video_layouts: Sequence[tuple[int, Sequence[int]]], videos: list[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Ids and labels of ``segs`` (checked image counts and video layouts), as ``chat_arrays`` makes them."""
    counts = _check_counts(image_token_counts, n_images)
    layouts = _check_layouts(video_layouts, videos)
    return _encode_segments(tokenizer, segs, counts, close_eos, layouts)


class _Pieces:
    """Whole-string tokenisation rebuilt from cached pieces between added tokens.

    A fast tokenizer first cuts the text at its added tokens (leftmost-longest match) and
    pre-tokenises and BPE-encodes each piece between them on its own, so ``encode(text)`` equals
    the concatenation of the pieces' encodings, offsets shifted by where each piece starts. Chat
    records repeat most pieces ("\\n", " ", a system prompt, a stock answer sentence), and the
    Rust pre-tokeniser costs ~2 us a word (26 us for a 12-word question), so a dict of piece ->
    (ids, start offsets) skips most Rust calls: the 10k-record benchmark's tokenise step drops
    from ~70 to ~30 us a record. Used only where the equality is guaranteed by construction: no
    normaliser, no truncation or padding, added tokens matched verbatim (not normalised, no
    strip / single-word rules, special tokens not encoded as text), a post-processor that adds
    nothing without special tokens; ``for_tokenizer`` returns None otherwise.
    """

    MAX_ENTRIES = 20_000  # <= ~30 MB per worker (pieces <= MAX_PIECE chars); emptied when full
    MAX_PIECE = 256       # longer pieces are rarely repeated: encode them without caching

    def __init__(self, backend, added: dict[str, int]):
        import re

        self.backend = backend
        self.added = added
        self.split = re.compile("(" + "|".join(re.escape(c) for c in sorted(added, key=len, reverse=True)) + ")")
        self.cache: dict[str, tuple[list[int], list[int]]] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer) -> "_Pieces | None":
        backend = getattr(tokenizer, "backend_tokenizer", None)
        try:
            decoder = backend.get_added_tokens_decoder()
            plain = (backend.normalizer is None and backend.truncation is None and backend.padding is None
                     and not getattr(backend, "encode_special_tokens", False)
                     and (backend.post_processor is None
                          or type(backend.post_processor).__name__ == "TemplateProcessing"))
        except AttributeError:
            return None
        if not plain or not decoder:
            return None
        added = {}
        for tid, tok in decoder.items():
            if tok.normalized or tok.lstrip or tok.rstrip or tok.single_word or not tok.content:
                return None
            added[tok.content] = int(tid)
        return cls(backend, added)

    def _piece(self, piece: str) -> tuple[list[int], list[int]]:
        hit = self.cache.get(piece)
        if hit is not None:
            return hit
        enc = self.backend.encode(piece, add_special_tokens=False)
        out = (enc.ids, [a for a, _ in enc.offsets])
        if len(piece) <= self.MAX_PIECE:
            if len(self.cache) >= self.MAX_ENTRIES:
                self.cache.clear()
            self.cache[piece] = out
        return out

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Ids and token start offsets (characters), as ``backend.encode(text)`` gives them."""
        ids: list[int] = []
        starts: list[int] = []
        pos = 0
        added = self.added
        # split() with a capturing group alternates: piece, added token, piece, ..., piece
        for k, part in enumerate(self.split.split(text)):
            if k & 1:
                ids.append(added[part])
                starts.append(pos)
            elif part:
                pid, pst = self._piece(part)
                ids += pid
                starts += [x + pos for x in pst] if pos else pst
            pos += len(part)
        return ids, starts


class _Ids:
    """Token ids of the markers, looked up once per tokenizer."""

    __slots__ = ("image", "boi", "eoi", "eos", "video", "stamps", "pieces")

    def __init__(self, tokenizer):
        conv = tokenizer.convert_tokens_to_ids
        self.image, self.boi, self.eoi, self.eos = conv(IMG), conv(BOI), conv(EOI), conv(EOS)
        video = conv(VID)
        # a tokenizer without <|video|> maps it to unk: match nothing rather than every unk
        self.video = -1 if video is None or video == tokenizer.unk_token_id else video
        self.stamps: dict[int, list[int]] = {}  # timestamp -> its ids (digits tokenised alone)
        for name, v in (("<|image|>", self.image), ("<|begin_of_image|>", self.boi), ("<|endoftext|>", self.eos)):
            if v is None or v == tokenizer.unk_token_id:
                raise ChatFormatError(f"the tokenizer has no {name} token; it is not a GLM tokenizer")
        self.pieces = _Pieces.for_tokenizer(tokenizer)


_ids_cache: dict[int, tuple[Any, _Ids]] = {}


def _marker_ids(tokenizer) -> _Ids:
    hit = _ids_cache.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    ids = _Ids(tokenizer)
    if len(_ids_cache) > 64:  # tokenizers come and go in tests; keep the cache small
        _ids_cache.clear()
    _ids_cache[id(tokenizer)] = (tokenizer, ids)
    return ids


def _video_ids(tokenizer, ids_of: _Ids, n: int, stamps: list[int]) -> np.ndarray:
    """Ids of one expanded ``<|video|>``: per pair BOI, n x IMG, EOI, the timestamp's tokens.

    Special tokens split the text before BPE, so a timestamp between ``<|end_of_image|>`` and
    the next marker is tokenised on its own: these ids equal tokenising the expanded text."""
    backend = tokenizer.backend_tokenizer
    parts = []
    for t in stamps:
        tid = ids_of.stamps.get(t)
        if tid is None:
            tid = ids_of.stamps[t] = backend.encode(str(t), add_special_tokens=False).ids
        parts.append([ids_of.boi] + [ids_of.image] * n + [ids_of.eoi] + tid)
    return np.fromiter((i for p in parts for i in p), dtype=np.int64)


def _expand_videos(tokenizer, ids_of: _Ids, ids: np.ndarray, labels: np.ndarray,
                   layouts: list[tuple[int, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    at = np.flatnonzero(ids == ids_of.video)
    if len(at) != len(layouts):
        raise ChatFormatError(
            f"{len(layouts)} video(s) given but the text has {len(at)} <|video|> token(s) "
            "(a literal <|video|> in the text counts too)"
        )
    if not len(at):
        return ids, labels
    id_parts, lab_parts, prev = [], [], 0
    for pos, (n, stamps) in zip(at.tolist(), layouts):
        v = _video_ids(tokenizer, ids_of, n, stamps)
        id_parts += [ids[prev:pos], v]
        lab_parts += [labels[prev:pos], np.full(v.shape, IGNORE_INDEX, dtype=np.int64)]
        prev = pos + 1
    id_parts.append(ids[prev:])
    lab_parts.append(labels[prev:])
    return np.concatenate(id_parts), np.concatenate(lab_parts)


def _encode_segments(
    tokenizer, segs: list[tuple[str, bool]], counts: list[int], close_eos: bool,
    layouts: list[tuple[int, list[int]]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and labels (int64 arrays) of the whole text; labels by token start offset; image
    expansion. The text is tokenised as one string (from cached pieces where the tokenizer allows,
    see :class:`_Pieces`, else one Rust ``encode``)."""
    ids_of = _marker_ids(tokenizer)
    text = "".join([s for s, _ in segs])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer; offsets are needed")
    if ids_of.pieces is not None:
        id_list, start_list = ids_of.pieces.encode(text)
    else:
        enc = backend.encode(text, add_special_tokens=False)
        id_list, start_list = enc.ids, [a for a, _ in enc.offsets]
    if close_eos:  # starts at len(text): outside every trained span; its label is set below
        id_list.append(ids_of.eos)
        start_list.append(len(text))
    ids = np.array(id_list, dtype=np.int64)
    # Trainable character spans [lo, hi), in order; a token is trained if it starts in one.
    lo, hi, pos = [], [], 0
    for s, trainable in segs:
        if trainable and s:
            lo.append(pos)
            hi.append(pos + len(s))
        pos += len(s)
    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    if lo and len(ids):
        starts = np.array(start_list, dtype=np.int64)
        if len(lo) == 1:  # one trained span (the common case): two comparisons
            inside = (starts >= lo[0]) & (starts < hi[0])
        else:
            k = np.searchsorted(np.asarray(hi), starts, side="right")
            inside = k < len(lo)
            inside[inside] = np.asarray(lo)[k[inside]] <= starts[inside]
        labels[inside] = ids[inside]
    if close_eos:
        labels[-1] = ids_of.eos
    n_found = id_list.count(ids_of.image)
    if n_found != len(counts):
        raise ChatFormatError(
            f"{len(counts)} image(s) given but the text has {n_found} <|image|> token(s) "
            "(a literal <|image|> in the text counts too)"
        )
    if n_found:
        is_image = ids == ids_of.image
        labels[is_image] = IGNORE_INDEX
        repeats = np.ones(ids.shape, dtype=np.int64)
        repeats[is_image] = counts
        ids = np.repeat(ids, repeats)
        labels = np.repeat(labels, repeats)
    # after the images: an expanded video holds <|image|> tokens of its own
    if layouts:
        ids, labels = _expand_videos(tokenizer, ids_of, ids, labels, layouts)
    elif ids_of.video >= 0 and ids_of.video in id_list:
        raise ChatFormatError(
            f"0 video(s) given but the text has {id_list.count(ids_of.video)} <|video|> token(s) "
            "(a literal <|video|> in the text counts too)"
        )
    return ids, labels


def chat_arrays(
    tokenizer,
    messages: Sequence[dict],
    *,
    image_token_counts: Sequence[int] = (),
    video_layouts: Sequence[tuple[int, Sequence[int]]] = (),
    style: str = "glm41v",
    add_generation_prompt: bool = False,
    enable_thinking: bool = True,
    train_on: str = "last",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_chat` as two int64 arrays ``(input_ids, labels)`` (no list round trip)."""
    videos: list[str] = []
    segs, n_images, close_eos = _render(messages, style, add_generation_prompt, enable_thinking, train_on, videos)
    counts = _check_counts(image_token_counts, n_images)
    layouts = _check_layouts(video_layouts, videos)
    return _encode_segments(tokenizer, segs, counts, close_eos, layouts)


def encode_chat(
    tokenizer,
    messages: Sequence[dict],
    *,
    image_token_counts: Sequence[int] = (),
    video_layouts: Sequence[tuple[int, Sequence[int]]] = (),
    style: str = "glm41v",
    add_generation_prompt: bool = False,
    enable_thinking: bool = True,
    train_on: str = "last",
) -> dict[str, list[int]]:
    """Token ids and SFT labels of a conversation.

    Returns ``{"input_ids": [...], "labels": [...]}`` of equal length; labels are the ids on
    trained assistant tokens and their closing token, -100 elsewhere (image tokens included).
    Raises ``ChatFormatError`` (a ``ValueError``) for an unknown role, an empty assistant turn,
    or a placeholder count that differs from ``len(image_token_counts)`` / ``len(video_layouts)``.
    ``video_layouts``: per video ``(tokens_per_pair, pair_timestamps)``.
    """
    ids, labels = chat_arrays(tokenizer, messages, image_token_counts=image_token_counts,
                              video_layouts=video_layouts, style=style,
                              add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking,
                              train_on=train_on)
    return {"input_ids": ids.tolist(), "labels": labels.tolist()}


def pretrain_arrays(
    tokenizer, text: str, *, image_token_counts: Sequence[int] = (),
    video_layouts: Sequence[tuple[int, Sequence[int]]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_pretrain_text` as two int64 arrays ``(input_ids, labels)``."""
    if not isinstance(text, str):
        raise ChatFormatError(f"text must be a string, got {type(text).__name__}")
    n_images = text.count(IMAGE_PLACEHOLDER)
    counts = _check_counts(image_token_counts, n_images)
    layouts = _check_layouts(video_layouts, ["text"] * text.count(VIDEO_PLACEHOLDER))
    if not text.replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, "").strip():
        raise ChatFormatError("text has no words besides image placeholders")
    body = text.replace(IMAGE_PLACEHOLDER, BOI + IMG + EOI).replace(VIDEO_PLACEHOLDER, BOV + VID + EOV)
    ids, labels = _encode_segments(tokenizer, [(PREFIX, False), (body, True)], counts, True, layouts)
    ids_of = _marker_ids(tokenizer)
    no_label = [ids_of.boi, ids_of.eoi]
    if layouts:
        conv = tokenizer.convert_tokens_to_ids
        no_label += [conv(BOV), conv(EOV)]
    labels[np.isin(ids, np.array([t for t in no_label if t is not None], dtype=np.int64))] = IGNORE_INDEX
    return ids, labels


def encode_pretrain_text(
    tokenizer, text: str, *, image_token_counts: Sequence[int] = (),
    video_layouts: Sequence[tuple[int, Sequence[int]]] = (),
) -> dict[str, list[int]]:
    """Ids and labels of a pretraining document (caption or interleaved text).

    Layout: ``[gMASK]<sop>`` + text (``<image>`` → image block) + ``<|endoftext|>``. Labels on
    every text token and the final ``<|endoftext|>``; -100 on the prefix and on image tokens
    and their begin/end markers (the model cannot predict an image's tokens); likewise on
    every token of a video block (``<video>`` placeholders, ``video_layouts``).
    """
    ids, labels = pretrain_arrays(tokenizer, text, image_token_counts=image_token_counts,
                                  video_layouts=video_layouts)
    return {"input_ids": ids.tolist(), "labels": labels.tolist()}


def mm_token_type_ids(
    input_ids: Iterable[int], *, image_token_id: int, video_start_id: int | None = None, video_end_id: int | None = None
) -> list[int]:
    """1 on image tokens, 2 on image tokens inside a video block, 0 elsewhere.

    transformers' GLM-4V computes 3D rope positions from these (``mm_token_type_ids``); GLM
    reuses ``<|image|>`` for video frames, so the video markers decide the modality.
    """
    out = []
    depth = 0
    for t in input_ids:
        if video_start_id is not None and t == video_start_id:
            depth += 1
        elif video_end_id is not None and t == video_end_id:
            depth = max(0, depth - 1)
        out.append((2 if depth else 1) if t == image_token_id else 0)
    return out
