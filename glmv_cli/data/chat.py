"""Chat templates of GLM-4.1V-Thinking and GLM-4.5V, and SFT / pretraining tokenisation.

Prompt format (both styles)::

    [gMASK]<sop><|system|>\\n{system}<|user|>\\n{user}<|assistant|>…

- ``glm41v`` (GLM-4.1V-Thinking): an assistant turn is ``<|assistant|>\\n{content}`` with
  content ``<think>…</think><answer>…<|begin_of_box|>X<|end_of_box|>…</answer>``; the
  generation prompt is ``<|assistant|>\\n``. Assistant turns before the last user turn lose
  their ``<think>…</think>`` block (as GLM's own demo strips its history). A reasoning field
  (``reasoning_content`` or ``thinking``) becomes the ``<think>…</think>`` block.
- ``glm45v`` (GLM-4.5V): no ``<answer>`` tags; an assistant turn is
  ``<|assistant|>\\n<think>{reasoning}</think>\\n{answer}`` (reasoning from ``reasoning_content`` /
  ``thinking`` or from ``<think>…</think>`` in the content), where only turns after the last
  user turn keep their reasoning (earlier ones get an empty ``<think></think>``). Thinking
  switch as in zai-org's template: with ``enable_thinking=False`` every user turn ends with
  ``/nothink`` and the generation prompt is ``<|assistant|>\\n<think></think>``; with thinking
  on the generation prompt is a bare ``<|assistant|>`` and the model writes ``\\n<think>``.

Images: a ``"<image>"`` placeholder in string content, or a ``{"type": "image"}`` part in list
content, becomes ``<|begin_of_image|>`` + n × ``<|image|>`` + ``<|end_of_image|>`` with n from
``image_token_counts`` (grid t·h·w / merge²). The jinja template saved with the tokenizer emits
one ``<|image|>`` per image, as zai-org's does; the processor expands it.

Videos: a ``"<video>"`` placeholder or a ``{"type": "video"}`` part becomes
``<|begin_of_video|><|video|><|end_of_video|>``; with ``video_layouts`` (per video:
``(tokens_per_pair, pair_timestamps)``) the ``<|video|>`` is expanded as transformers'
``Glm4vProcessor`` does: per frame pair ``<|begin_of_image|>`` + n × ``<|image|>`` +
``<|end_of_image|>`` + the integer timestamp in seconds. Video frames reuse the image token;
``mm_token_type_ids`` marks them 2 (inside the video markers). Every token of a video block is
-100 in the labels, timestamps included (they are input, not something to predict).

``encode_chat`` renders the same text as the jinja template in plain Python (6 µs instead of
jinja's 120 µs per record), tokenises the whole string and assigns labels by token start offsets,
so its ids equal ``tokenizer(apply_chat_template(...))`` exactly (plus a closing
``<|endoftext|>`` when the conversation ends on an assistant turn). Tokenising the whole string
rather than each turn is what makes that equality hold: byte-level BPE may merge across a turn
boundary (``"\n "``), and such a token is labelled by where it starts. The whole-string encode is
rebuilt from cached pieces between added tokens (:class:`_Pieces`: the tokenizer itself encodes
each such piece on its own, so the result is the same ids and offsets): the role headers,
``"\n"``, markers and stock sentences cost a dict lookup, and only new text reaches the Rust
pre-tokeniser (~2 µs a word). On the 10k-record benchmark (benchmarks/pack_bench.py) this took
the stage from ~2,100 to ~2,750 records per CPU-second on the loaded 2-core dev machine.
Image tokens are expanded in the id list (``np.repeat``), not in the text, so a 1,000-token image
costs no tokenizer time.
Labels sit on the assistant's tokens plus the token that closes its turn — the next role token
(``<|user|>`` is a stop token in GLM's generation config) or the final ``<|endoftext|>`` —
and are -100 elsewhere. By default only the assistant turns after the last user turn are
trained (``train_on="last"``): earlier turns have their reasoning stripped, and training on
them would teach the model to answer without thinking; ``train_on="all"`` trains every one.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from glmv_cli.names import STYLES

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"

BOI, IMG, EOI = "<|begin_of_image|>", "<|image|>", "<|end_of_image|>"
BOV, VID, EOV = "<|begin_of_video|>", "<|video|>", "<|end_of_video|>"
PREFIX = "[gMASK]<sop>"
EOS = "<|endoftext|>"
NOTHINK = "/nothink"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered (the data layer adds file and line)."""


# --------------------------------------------------------------------------------------------
# Jinja templates (saved as chat_template.jinja; HF's apply_chat_template renders them)
# --------------------------------------------------------------------------------------------

_VISIBLE_MACRO = (
    "{%- macro visible(content) -%}"
    "{%- if content is string -%}"
    "{{- content | replace('<image>', '<|begin_of_image|><|image|><|end_of_image|>')"
    " | replace('<video>', '<|begin_of_video|><|video|><|end_of_video|>') -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part.type == 'image' or 'image' in part -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif part.type == 'video' or 'video' in part -%}{{- '<|begin_of_video|><|video|><|end_of_video|>' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

_LAST_USER = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
)

GLM41V_TEMPLATE = (
    _VISIBLE_MACRO
    + _LAST_USER
    + "{{- '[gMASK]<sop>' -}}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{{- '<|system|>\\n' + visible(m.content) -}}"
    "{%- elif m.role == 'user' -%}{{- '<|user|>\\n' + visible(m.content) -}}"
    "{%- elif m.role == 'assistant' -%}"
    "{%- set c = visible(m.content) -%}"
    "{%- if m.reasoning_content is string -%}{%- set c = '<think>' + m.reasoning_content + '</think>' + c -%}"
    "{%- endif -%}"
    "{%- if loop.index0 < ns.last_user and '</think>' in c -%}"
    "{%- set c = c.split('</think>')[-1].lstrip() -%}{%- endif -%}"
    "{{- '<|assistant|>\\n' + c -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

GLM45V_TEMPLATE = (
    _VISIBLE_MACRO
    + _LAST_USER
    + "{%- set nothink = enable_thinking is defined and not enable_thinking -%}"
    "{{- '[gMASK]<sop>' -}}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{{- '<|system|>\\n' + visible(m.content) -}}"
    "{%- elif m.role == 'user' -%}"
    "{%- set u = visible(m.content) -%}"
    "{{- '<|user|>\\n' + u + ('/nothink' if (nothink and not u.endswith('/nothink')) else '') -}}"
    "{%- elif m.role == 'assistant' -%}"
    "{%- set c = visible(m.content) -%}{%- set r = '' -%}"
    "{%- if m.reasoning_content is string -%}{%- set r = m.reasoning_content -%}"
    "{%- elif '</think>' in c -%}"
    "{%- set r = c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
    "{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{%- if loop.index0 > ns.last_user and r -%}{{- '<|assistant|>\\n<think>' + r.strip() + '</think>' -}}"
    "{%- else -%}{{- '<|assistant|>\\n<think></think>' -}}{%- endif -%}"
    "{%- if c.strip() -%}{{- '\\n' + c.strip() -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|assistant|>' + ('\\n<think></think>' if nothink else '') -}}"
    "{%- endif -%}"
)


def chat_template(style: str = "glm41v") -> str:
    """The jinja chat template of ``style`` (``glm41v`` or ``glm45v``)."""
    _check_style(style)
    return GLM41V_TEMPLATE if style == "glm41v" else GLM45V_TEMPLATE


def style_for_model_type(model_type: str) -> str:
    """The style of a model without a chat template: ``glm45v`` for GLM-4.5V (``glm4v_moe``) and the
    GLM-4.6V family (``glm46v``), ``glm41v`` otherwise. A model's own template decides first
    (``glmv_cli.data.template.template_style``): GLM-4.6V-Flash is a ``glm4v`` in the 4.5V format."""
    return "glm45v" if model_type.startswith(("glm4v_moe", "glm46v")) else "glm41v"


REASONING_FIELDS = ("reasoning_content", "thinking")


def message_reasoning(message: dict, where: str = "message") -> str | None:
    """The thinking part of an assistant message given apart from its content: ``reasoning_content``
    (the field GLM's and OpenAI-style chat APIs return) or its alias ``thinking``; None when absent.
    Both present must agree; a non-string is an error."""
    found = [(k, message[k]) for k in REASONING_FIELDS if message.get(k) is not None]
    for k, v in found:
        if not isinstance(v, str):
            raise ChatFormatError(f"{where}.{k}: expected a string, got {type(v).__name__}")
    if len(found) == 2 and found[0][1] != found[1][1]:
        raise ChatFormatError(f"{where}: reasoning_content and thinking differ; give one of them")
    return found[0][1] if found else None


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ChatFormatError(f"unknown chat style {style!r} (expected one of: {', '.join(STYLES)})")


# --------------------------------------------------------------------------------------------
# Rendering in Python: a list of (text, trainable) segments whose concatenation equals the
# jinja output with one <|image|> per image.
# --------------------------------------------------------------------------------------------


def _visible(content: Any, where: str, videos: list[str] | None = None) -> tuple[str, int]:
    """Content as text with image and video markers; returns (text, number of images) and
    appends the location of each video to ``videos``."""
    marker = BOI + IMG + EOI
    vmarker = BOV + VID + EOV
    if videos is None:
        videos = []
    if isinstance(content, str):
        n = content.count(IMAGE_PLACEHOLDER)
        text = content.replace(IMAGE_PLACEHOLDER, marker) if n else content
        nv = text.count(VIDEO_PLACEHOLDER)
        if nv:
            videos.extend([where] * nv)
            text = text.replace(VIDEO_PLACEHOLDER, vmarker)
        return text, n
    if not isinstance(content, (list, tuple)):
        raise ChatFormatError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")
    out, n = [], 0
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise ChatFormatError(f"{where}.content[{j}]: a part must be an object, got {type(part).__name__}")
        kind = part.get("type")
        if kind == "image" or "image" in part:
            out.append(marker)
            n += 1
        elif kind == "video" or "video" in part:
            out.append(vmarker)
            videos.append(f"{where}.content[{j}]")
        elif kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ChatFormatError(f"{where}.content[{j}]: a text part needs a string 'text'")
            out.append(text)
        else:
            raise ChatFormatError(f"{where}.content[{j}]: unknown part type {kind!r} (expected 'text', 'image' or 'video')")
    return "".join(out), n


def _render(
    messages: Sequence[dict],
    style: str,
    add_generation_prompt: bool,
    enable_thinking: bool,
    train_on: str,
    videos: list[str] | None = None,
) -> tuple[list[tuple[str, bool]], int, bool]:
    """Segments (text, trainable), the image count, and whether a closing EOS is trained;
    the location of each video is appended to ``videos``."""
    _check_style(style)
    if train_on not in ("last", "all"):
        raise ChatFormatError(f"train_on must be 'last' or 'all', got {train_on!r}")
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatFormatError("messages: expected a non-empty list of {role, content} objects")
    roles = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ChatFormatError(f"messages[{i}]: expected an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"messages[{i}]: unknown role {role!r} (expected one of: {', '.join(ROLES)})")
        if "content" not in m or m["content"] is None:
            raise ChatFormatError(f"messages[{i}]: missing 'content'")
        roles.append(role)
    last_user = max((i for i, r in enumerate(roles) if r == "user"), default=-1)
    nothink = style == "glm45v" and not enable_thinking

    segs: list[tuple[str, bool]] = [(PREFIX, False)]
    n_images = 0
    close_pending = False  # the previous assistant turn is trained: its closing token is too
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = roles[i]
        text, n = _visible(m["content"], where, videos)
        n_images += n
        segs.append((ROLE_TOKENS[role], close_pending))
        close_pending = False
        if role == "system":
            segs.append(("\n" + text, False))
        elif role == "user":
            if nothink and not text.endswith(NOTHINK):
                text += NOTHINK
            segs.append(("\n" + text, False))
        else:
            trained = train_on == "all" or i > last_user
            reasoning = message_reasoning(m, where)
            if reasoning is not None and ("<think>" in text or "</think>" in text):
                raise ChatFormatError(f"{where}: the reasoning is given twice (a reasoning field and <think> in the "
                                      "content); keep one of them")
            if style == "glm41v":
                if reasoning is not None:  # GLM-4.1V writes its thinking inline
                    text = "<think>" + reasoning + "</think>" + text
                if not text.strip():
                    raise ChatFormatError(f"{where}: assistant turn is empty")
                if i < last_user and "</think>" in text:
                    text = text.split("</think>")[-1].lstrip()
                segs.append(("\n", False))
                segs.append((text, trained))
            else:
                if reasoning is not None:
                    r = reasoning
                elif "</think>" in text:
                    r = text.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                    text = text.split("</think>")[-1].lstrip("\n")
                else:
                    r = ""
                if not text.strip() and not r.strip():
                    raise ChatFormatError(f"{where}: assistant turn is empty")
                body = "\n<think>" + r.strip() + "</think>" if (i > last_user and r) else "\n<think></think>"
                if text.strip():
                    body += "\n" + text.strip()
                segs.append((body, trained))
            close_pending = trained
    if add_generation_prompt:
        segs.append((ROLE_TOKENS["assistant"] + ("\n" if style == "glm41v" else ""), False))
        if nothink:
            segs.append(("\n<think></think>", False))
        close_pending = False
    return segs, n_images, close_pending


def render_segments(
    messages: Sequence[dict], *, style: str, add_generation_prompt: bool, enable_thinking: bool, train_on: str,
    videos: list[str],
) -> tuple[list[tuple[str, bool]], int, bool]:
    """glmv's rendering as segments ``(text, trained)`` with the image count and whether a closing
    ``<|endoftext|>`` is trained; the location of each video is appended to ``videos``."""
    return _render(messages, style, add_generation_prompt, enable_thinking, train_on, videos)


def encode_segments(tokenizer, segs: list[tuple[str, bool]], image_token_counts: Sequence[int], n_images: int,
                    close_eos: bool, video_layouts: Sequence[tuple[int, Sequence[int]]], videos: list[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Ids and labels of ``segs`` (checked image counts and video layouts), as ``chat_arrays`` makes them."""
    counts = _check_counts(image_token_counts, n_images)
    layouts = _check_layouts(video_layouts, videos)
    return _encode_segments(tokenizer, segs, counts, close_eos, layouts)


def render_prompt(
    messages: Sequence[dict],
    *,
    style: str = "glm41v",
    add_generation_prompt: bool = True,
    enable_thinking: bool = True,
    image_token_counts: Sequence[int] | None = None,
    video_layouts: Sequence[tuple[int, Sequence[int]]] | None = None,
) -> str:
    """The prompt text (what ``apply_chat_template(..., tokenize=False)`` returns).

    With ``image_token_counts`` each image's ``<|image|>`` is repeated its number of tokens,
    and with ``video_layouts`` each ``<|video|>`` becomes its frame pairs and timestamps,
    ready for a tokenizer call without a processor.
    """
    videos: list[str] = []
    segs, n_images, _ = _render(messages, style, add_generation_prompt, enable_thinking, "last", videos)
    text = "".join(s for s, _ in segs)
    if image_token_counts is not None:
        counts = _check_counts(image_token_counts, n_images)
        pieces = text.split(BOI + IMG + EOI)
        out = [pieces[0]]
        for n, rest in zip(counts, pieces[1:]):
            out.append(BOI + IMG * n + EOI)
            out.append(rest)
        text = "".join(out)
    if video_layouts is not None:
        layouts = _check_layouts(video_layouts, videos)
        pieces = text.split(VID)
        out = [pieces[0]]
        for (n, stamps), rest in zip(layouts, pieces[1:]):
            out.append("".join(f"{BOI}{IMG * n}{EOI}{t}" for t in stamps))
            out.append(rest)
        text = "".join(out)
    return text


def _check_counts(image_token_counts: Sequence[int], n_images: int) -> list[int]:
    counts = list(image_token_counts)
    if len(counts) != n_images:
        raise ChatFormatError(
            f"{n_images} image placeholder(s) in the text but {len(counts)} image(s) given"
        )
    for j, n in enumerate(counts):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ChatFormatError(f"image_token_counts[{j}] must be a positive integer, got {n!r}")
    return counts


def _check_layouts(video_layouts: Sequence[tuple[int, Sequence[int]]], videos: list[str]) -> list[tuple[int, list[int]]]:
    """Validated ``(tokens_per_pair, [int timestamps])`` per video; ``videos`` = their locations."""
    layouts = list(video_layouts)
    if videos and not layouts:
        raise ChatFormatError(f"{videos[0]}: video parts are not supported without video_layouts "
                              "(one (tokens_per_pair, pair_timestamps) per video)")
    if len(layouts) != len(videos):
        raise ChatFormatError(f"{len(videos)} video placeholder(s) in the text but {len(layouts)} video(s) given")
    out = []
    for j, lay in enumerate(layouts):
        try:
            n, stamps = lay
            stamps = list(stamps)
        except (TypeError, ValueError):
            raise ChatFormatError(f"video_layouts[{j}] must be (tokens_per_pair, pair_timestamps), got {lay!r}") from None
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ChatFormatError(f"video_layouts[{j}]: tokens_per_pair must be a positive integer, got {n!r}")
        if not stamps:
            raise ChatFormatError(f"video_layouts[{j}]: a video needs at least one frame pair")
        if any(isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0 for t in stamps):
            raise ChatFormatError(f"video_layouts[{j}]: timestamps must be non-negative numbers, got {stamps!r}")
        out.append((n, [int(t) for t in stamps]))
    return out


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
