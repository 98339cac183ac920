"""A model's chat format: its answer style, and its own chat template when it ships one.

``ChatFormat.of(processor, model_type)`` decides how a model's conversations are rendered:

- a checkpoint whose ``chat_template`` is not one of glmv's is rendered *with that template*
  (jinja, as ``apply_chat_template`` does): a template that adds a default system prompt, keeps the
  thinking of earlier turns or words the generation prompt its own way trains and generates exactly
  as the checkpoint expects;
- glmv's presets (and a model without any template) use glmv's own renderer (``glmv_cli.data.chat``),
  which produces the text of glmv's jinja templates without running jinja (~6 us instead of ~120 us).

The style comes from the template when there is one (``template_style``: the 4.5V family's templates
have the ``/nothink`` switch and the empty ``<think></think>``; GLM-4.1V's have neither), else from
the model type. So GLM-4.6V-Flash, a ``glm4v`` model with the 4.5V template, gets the 4.5V format.

Labels with a checkpoint template: glmv renders the conversation itself (segments marked trained or
not, see ``chat.render_segments``), renders it with the template, and
- when both texts are equal (the usual case for zai-org's templates) uses its labels as they are;
- else carries each trained span over to the template's text, where it must appear unchanged
  (``align_segments``); the ids are the template's, so they equal ``tokenizer(apply_chat_template(...))``
  token for token (plus the closing ``<|endoftext|>`` glmv trains);
- and when a trained span is not in the template's text (the template rewrites what glmv would
  train) fails with a ``ChatFormatError`` showing the diff: training on it would teach text the
  model never sees at inference.

Answer forms (``convert_answer_form``): data written for the other family is converted when the
conversion is unambiguous — GLM-4.1V ``<think>R</think><answer>A</answer>`` becomes GLM-4.5V's
``<think>R</think>A`` and back — and refused otherwise, naming the message and what to change.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from glmv_cli.data.chat import (GLM41V_TEMPLATE, GLM45V_TEMPLATE, IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, ChatFormatError,
                                encode_segments, message_reasoning, render_prompt, render_segments,
                                style_for_model_type)

ANS_O, ANS_C = "<answer>", "</answer>"
THINK_O, THINK_C = "<think>", "</think>"
_OWN_TEMPLATES = (GLM41V_TEMPLATE, GLM45V_TEMPLATE)
_DIFF_CHARS = 240  # context shown on each side of the first difference


def template_style(template: str | None) -> str | None:
    """``glm45v`` for a template with the 4.5V thinking switch (``/nothink``, an empty
    ``<think></think>``), ``glm41v`` for another GLM template, None without a template."""
    if not template:
        return None
    if ANS_O in template:  # a template that writes the answer tags itself is 4.1V-style
        return "glm41v"
    return "glm45v" if ("/nothink" in template or "<think></think>" in template) else "glm41v"


def _template_of(obj: Any) -> str | None:
    t = getattr(obj, "chat_template", None)
    if not t:
        t = getattr(getattr(obj, "tokenizer", None), "chat_template", None)
    return t if isinstance(t, str) and t else None


@dataclass(frozen=True)
class ChatFormat:
    """How one model's conversations become tokens: ``style`` (glm41v / glm45v) and ``template``
    (the checkpoint's own jinja template, or None for glmv's renderer)."""

    style: str
    template: str | None = None

    @classmethod
    def of(cls, processor: Any, model_type: str = "glm4v", style: str = "auto") -> "ChatFormat":
        """The format of a loaded processor (or tokenizer); ``style`` other than auto overrides."""
        template = _template_of(processor)
        if style == "auto":
            style = template_style(template) or style_for_model_type(model_type)
        return cls(style, None if template in _OWN_TEMPLATES else template)

    @property
    def source(self) -> str:
        """``checkpoint`` (rendered with the model's template) or ``glmv``."""
        return "checkpoint" if self.template else "glmv"

    # -- rendering ----------------------------------------------------------------------------

    def template_text(self, messages: Sequence[dict], *, add_generation_prompt: bool, enable_thinking: bool) -> str:
        """The checkpoint template's rendering (one ``<|image|>`` per image, as zai-org's do)."""
        from transformers.utils.chat_template_utils import render_jinja_template

        msgs = template_messages(messages, reads_reasoning="reasoning_content" in (self.template or ""))
        try:
            out, _ = render_jinja_template(conversations=[msgs], chat_template=self.template,
                                           add_generation_prompt=add_generation_prompt,
                                           enable_thinking=enable_thinking)
        except Exception as e:  # a template's own raise_exception or a jinja error
            raise ChatFormatError(f"the model's chat template failed on this conversation: {e}") from None
        return out[0]

    def segments(self, messages: Sequence[dict], *, add_generation_prompt: bool = False, enable_thinking: bool = True,
                 train_on: str = "last", videos: list[str] | None = None
                 ) -> tuple[list[tuple[str, bool]], int, bool, bool]:
        """(segments, image count, closing eos trained, realigned): the text to tokenise with its
        trained spans; ``realigned`` is True when the template's text differs from glmv's rendering."""
        videos = [] if videos is None else videos
        segs, n_images, close = render_segments(messages, style=self.style, add_generation_prompt=add_generation_prompt,
                                                enable_thinking=enable_thinking, train_on=train_on, videos=videos)
        if self.template is None:
            return segs, n_images, close, False
        text = self.template_text(messages, add_generation_prompt=add_generation_prompt,
                                  enable_thinking=enable_thinking)
        ours = "".join(s for s, _ in segs)
        if text == ours:
            return segs, n_images, close, False
        return align_segments(segs, text, self.style), n_images, close, True

    def arrays(self, tokenizer: Any, messages: Sequence[dict], *, image_token_counts: Sequence[int] = (),
               video_layouts: Sequence[tuple[int, Sequence[int]]] = (), add_generation_prompt: bool = False,
               enable_thinking: bool = True, train_on: str = "last") -> tuple[np.ndarray, np.ndarray, bool]:
        """``(input_ids, labels, realigned)`` of a conversation (see ``chat.chat_arrays``)."""
        videos: list[str] = []
        segs, n_images, close, realigned = self.segments(messages, add_generation_prompt=add_generation_prompt,
                                                         enable_thinking=enable_thinking, train_on=train_on,
                                                         videos=videos)
        ids, labels = encode_segments(tokenizer, segs, image_token_counts, n_images, close, video_layouts, videos)
        return ids, labels, realigned

    def prompt_text(self, messages: Sequence[dict], *, enable_thinking: bool = True) -> str:
        """The generation prompt as text (one ``<|image|>`` per image), e.g. for vLLM."""
        if self.template is None:
            return render_prompt(messages, style=self.style, add_generation_prompt=True,
                                 enable_thinking=enable_thinking)
        return self.template_text(messages, add_generation_prompt=True, enable_thinking=enable_thinking)


def template_messages(messages: Sequence[dict], *, reads_reasoning: bool) -> list[dict]:
    """Messages as a published chat template expects them: text-only content as one string (the
    GLM-4.1V template prints system and assistant content as is), and a reasoning field kept for a
    template that reads ``reasoning_content``, else written inline as ``<think>…</think>``."""
    out = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str) and (IMAGE_PLACEHOLDER in content or VIDEO_PLACEHOLDER in content):
            content = _placeholder_parts(content)  # templates know media parts, not glmv's placeholders
        if isinstance(content, (list, tuple)) and all(isinstance(p, dict) and p.get("type") == "text"
                                                      for p in content):
            content = "".join(p.get("text", "") for p in content)
        msg = {"role": m.get("role"), "content": content}
        reasoning = message_reasoning(m, f"messages[{i}]") if m.get("role") == "assistant" else None
        if reasoning is not None:
            if reads_reasoning:
                msg["reasoning_content"] = reasoning
            elif isinstance(content, str):
                msg["content"] = THINK_O + reasoning + THINK_C + content
            else:
                msg["content"] = [{"type": "text", "text": THINK_O + reasoning + THINK_C}, *content]
        out.append(msg)
    return out


def _placeholder_parts(text: str) -> list[dict]:
    parts = []
    for k, chunk in enumerate(re.split(r"(<image>|<video>)", text)):
        if k % 2:
            parts.append({"type": "image" if chunk == IMAGE_PLACEHOLDER else "video"})
        elif chunk:
            parts.append({"type": "text", "text": chunk})
    return parts


# -------------------------------------------------------------------------------------------- alignment


def align_segments(segs: list[tuple[str, bool]], text: str, style: str) -> list[tuple[str, bool]]:
    """``text`` (the template's rendering) cut into segments whose trained spans are glmv's.

    Each trained span of ``segs`` must appear unchanged in ``text``: at the same place when both texts
    agree up to its end, at the same distance from the end when they agree from its start on (O(n)
    string compares, the usual cases), else inside one block that ``difflib`` matches between glmv's
    text and ``text`` (quadratic, ~4 ms for a 2-turn record). Otherwise a ChatFormatError with the diff.
    Costs per record (benchmarks/template_bench.py): glmv's renderer ~70-90 us, the template with equal
    text ~140 us, a realigned 2-turn record ~120 us."""
    ours = "".join(s for s, _ in segs)
    blocks = None
    spans: list[tuple[int, int]] = []
    pos = 0
    for s, trained in segs:
        if trained and s:
            lo, hi = pos, pos + len(s)
            tail = len(ours) - lo
            # the common cases in O(n): the texts agree up to the span's end (the template differs
            # after it), or from its start to the end (it differs before: a default system prompt,
            # the thinking of earlier turns); else the general alignment
            if text[:hi] == ours[:hi]:
                spans.append((lo, hi))
            elif len(text) >= tail and text[len(text) - tail:] == ours[lo:]:
                spans.append((len(text) - tail, len(text) - tail + len(s)))
            else:
                if blocks is None:
                    blocks = difflib.SequenceMatcher(None, ours, text, autojunk=False).get_matching_blocks()
                hit = next((b for b in blocks if b.a <= lo and hi <= b.a + b.size), None)
                if hit is None:
                    raise ChatFormatError(mismatch_message(ours, text, lo, style))
                spans.append((lo - hit.a + hit.b, hi - hit.a + hit.b))
        pos += len(s)
    out: list[tuple[str, bool]] = []
    at = 0
    for lo, hi in spans:
        if lo < at:
            raise ChatFormatError(mismatch_message(ours, text, lo, style))
        if lo > at:
            out.append((text[at:lo], False))
        out.append((text[lo:hi], True))
        at = hi
    if at < len(text):
        out.append((text[at:], False))
    return out


def mismatch_message(ours: str, theirs: str, at: int, style: str) -> str:
    """Where glmv's rendering and the template's part, with the diff around the trained text at ``at``."""
    lo = max(0, at - _DIFF_CHARS)
    a = ours[lo: at + _DIFF_CHARS]
    k = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
    b = theirs[max(0, k - _DIFF_CHARS): k + 2 * _DIFF_CHARS]
    diff = "\n".join(difflib.unified_diff(_turns(a), _turns(b), "glmv (trained text)", "the model's chat template",
                                          lineterm="", n=1))
    return (f"the model's chat template renders the text glmv trains differently (glmv renders style {style}); "
            f"the labels would not match what the model sees at inference. First difference at character {k}:\n"
            f"{diff}\nFix the record so both agree (for example the answer form or surrounding whitespace), or pass "
            "--style to match the template")


def _turns(text: str) -> list[str]:
    """Text split before each role token, so a diff reads turn by turn."""
    for tok in ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"):
        text = text.replace(tok, "\n" + tok)
    return text.split("\n")


# -------------------------------------------------------------------------------------------- answer forms


def _text_parts(content: Any) -> list[dict]:
    return [p for p in content if isinstance(p, dict) and p.get("type") == "text"] if isinstance(content, list) else []


def convert_answer_form(messages: Sequence[dict], style: str) -> tuple[list[dict], int]:
    """Assistant turns rewritten into ``style``'s answer form; returns (messages, turns converted).

    To glm45v: one ``<answer>…</answer>`` pair after the thinking, nothing but whitespace around it,
    loses its tags. To glm41v: a thinking turn (``</think>`` in the content, or a reasoning field)
    whose answer has no tags gets them. Anything else in the other family's form raises a
    ChatFormatError naming the message. Content may be a string or a list of parts (the parsed form).
    """
    out, n = [], 0
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            out.append(m)
            continue
        where = f"messages[{i}]"
        content = m.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in _text_parts(content))
        has_reasoning = message_reasoning(m, where) is not None
        new = _to_45v(text, where) if style == "glm45v" else _to_41v(text, has_reasoning, where)
        if new == text:
            out.append(m)
            continue
        n += 1
        if isinstance(content, str):
            out.append({**m, "content": new})
        else:
            out.append({**m, "content": _replace_text(content, text, new, where)})
    return out, n


def _to_45v(text: str, where: str) -> str:
    n_o, n_c = text.count(ANS_O), text.count(ANS_C)
    if not n_o and not n_c:
        return text
    i, j = text.find(ANS_O), text.find(ANS_C)
    head = text[:i].rstrip()
    # before the answer: nothing, or the thinking block and nothing after it
    head_ok = not head or (head.endswith(THINK_C) and head.count(THINK_C) == 1)
    if n_o != 1 or n_c != 1 or j < i or not head_ok or THINK_C in text[i:] or text[j + len(ANS_C):].strip():
        raise ChatFormatError(
            f"{where}.content: the answer uses GLM-4.1V <answer> tags in a form glmv cannot convert for a GLM-4.5V "
            "model (expected [<think>…</think>]<answer>…</answer> with nothing else outside the tags); write the "
            "answer after </think> without the tags, or pack for a GLM-4.1V-style model with --style glm41v")
    return text[:i] + text[i + len(ANS_O): j] + text[j + len(ANS_C):]


def _to_41v(text: str, has_reasoning: bool, where: str) -> str:
    if ANS_O in text or ANS_C in text:
        return text
    if THINK_C in text:
        head, _, answer = text.rpartition(THINK_C)
        head += THINK_C
    elif has_reasoning:
        head, answer = "", text
    else:
        return text  # a turn without thinking is not in either answer form
    if not answer.strip():
        raise ChatFormatError(f"{where}.content: a GLM-4.1V answer needs text after the thinking for "
                              "<answer>…</answer>; add the answer after </think>")
    return head + ANS_O + answer.strip() + ANS_C


def _replace_text(parts: list, old: str, new: str, where: str) -> list:
    """``parts`` with their text replaced by ``new`` (the text parts joined gave ``old``): the whole
    new text goes into the first text part when the turn has one text part, else parts must keep
    their media in place, which only a single text part allows."""
    texts = _text_parts(parts)
    if len(texts) != 1:
        raise ChatFormatError(f"{where}.content: converting the answer form needs the assistant text in one text "
                              f"part, the turn has {len(texts)}")
    return [{**p, "text": new} if p is texts[0] else p for p in parts]
