"""Chat templates of GLM-4.1V-Thinking and GLM-4.5V, and their rendering as text segments.

The token-level half (ids, labels, image / video expansion) is ``glmv_cli.data.chat_tokens``.

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

``chat_tokens.encode_chat`` renders the same text as the jinja template in plain Python (6 µs instead of
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

from typing import Any, Sequence

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
