"""The input record schema (docs/design.md §5) and its validation.

A record is one JSONL line::

    {"id": str, "messages": [{"role": "system"|"user"|"assistant", "content": ...}],
     "images": [path, ...], "domain": str, "answer": str, "difficulty": 1..5}

``content`` is either a string with ``<image>`` placeholders or a list of ``{"type": "text",
"text": ...}`` / ``{"type": "image"}`` parts. An assistant message may carry its thinking apart from
the answer in ``reasoning_content`` (alias ``thinking``), a string: it is trained as the turn's
``<think>…</think>`` part (normalised to ``reasoning_content``); giving it there and as ``<think>`` in
the content is an error. Pretraining records may instead be ``{"text": "...
<image> ...", "images": [...]}``. Image paths are relative to the JSONL file's directory or
absolute.

Validation is strict and cheap (no image is opened here): every problem raises a
:class:`RecordError` whose message starts with ``file:line: field 'x':`` and whose ``reason`` is one
of :data:`REASONS`, the key under which ``--on-bad skip`` counts it in the manifest. Records are
normalised so that every ``content`` becomes a list of parts, with string placeholders split
out; the i-th image part (in message order) is the i-th entry of ``images``.

An ``images`` entry may also be the encoded image itself (``bytes``, e.g. from a parquet column or
an HF ``Image`` feature, via :func:`parse_obj`) or a :class:`glmv_cli.data.blobs.Blob`; those
stay as they are (no file to check). Records in other layouts (ShareGPT, TRL, verl, ...) are
converted to this dict by :mod:`glmv_cli.data.formats` first, so this module stays the one
validator.

Videos: ``"videos": [path, ...]`` (a video file or a folder of frames) with ``<video>``
placeholders / ``{"type": "video"}`` parts, the i-th video part being the i-th entry;
``Record.media`` lists ``"image"`` / ``"video"`` in placeholder order (text order for
pretraining text), which is the order their tokens and pixels take in a sample.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from glmv_cli.errors import GlmvError, where

ROLES = ("system", "user", "assistant")
PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
REASONS = ("malformed_json", "bad_field", "unknown_role", "empty_assistant", "image_count",
           "missing_image", "bad_image", "aspect_ratio", "overlong", "video_count", "missing_video",
           "bad_video", "video_too_long", "answer_format", "template_mismatch", "image_too_large",
           "external_path")
_SPLIT = re.compile("(<image>|<video>)")


class RecordError(GlmvError):
    """A bad input record; the message names file, line and field."""

    def __init__(self, path: object, line: int, field_: str | None, msg: str, reason: str):
        super().__init__(f"{where(path, line, field_)}: {msg}")
        self.path, self.line, self.field, self.reason = str(path), line, field_, reason

    def as_tuple(self) -> tuple:
        """Plain values for the trip back from a worker process."""
        return (str(self), self.path, self.line, self.field, self.reason)

    @classmethod
    def from_tuple(cls, t: tuple) -> "RecordError":
        e = cls.__new__(cls)
        GlmvError.__init__(e, t[0])
        e.path, e.line, e.field, e.reason = t[1], t[2], t[3], t[4]
        return e


@dataclass
class Record:
    path: str
    line: int
    id: str
    kind: str                       # "chat" or "text"
    messages: list[dict] | None     # normalised: {"role", "content": [{"type": "text"|"image", ...}]}
    text: str | None
    images: list[Any] = field(default_factory=list)  # absolute paths (or bytes / Blobs), in placeholder order
    videos: list[str] = field(default_factory=list)  # absolute paths (files or frame folders)
    media: list[str] = field(default_factory=list)   # "image"/"video" in placeholder order
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _split_placeholders(s: str) -> list[dict]:
    if PLACEHOLDER not in s and VIDEO_PLACEHOLDER not in s:
        return [{"type": "text", "text": s}] if s else []
    parts: list[dict] = []
    for k, chunk in enumerate(_SPLIT.split(s)):
        if k % 2:
            parts.append({"type": "image" if chunk == PLACEHOLDER else "video"})
        elif chunk:
            parts.append({"type": "text", "text": chunk})
    return parts


def _content_parts(content: Any, path: str, line: int, fname: str) -> list[dict]:
    if isinstance(content, str):
        return _split_placeholders(content)
    if not isinstance(content, list):
        raise RecordError(path, line, fname, f"expected a string or a list of parts, got {type(content).__name__}",
                          "bad_field")
    parts: list[dict] = []
    for j, part in enumerate(content):
        pf = f"{fname}[{j}]"
        if not isinstance(part, dict) or part.get("type") not in ("text", "image", "video"):
            raise RecordError(path, line, pf, 'expected {"type": "text", "text": ...}, {"type": "image"} '
                              'or {"type": "video"}', "bad_field")
        if part["type"] in ("image", "video"):
            parts.append({"type": part["type"]})
        else:
            text = part.get("text")
            if not isinstance(text, str):
                raise RecordError(path, line, f"{pf}.text", "expected a string", "bad_field")
            parts.extend(_split_placeholders(text))
    return parts


def _is_empty(parts: list[dict]) -> bool:
    return all(p["type"] == "text" and not p["text"].strip() for p in parts)


def _reasoning(m: dict, role: str, parts: list[dict], path: str, line: int, i: int) -> str | None:
    """The thinking of an assistant message given apart from its content (``reasoning_content``, or its
    alias ``thinking``), checked; it is trained as the ``<think>`` part of the turn."""
    from glmv_cli.data.chat import REASONING_FIELDS, ChatFormatError, message_reasoning

    given = [k for k in REASONING_FIELDS if m.get(k) is not None]
    if not given:
        return None
    f = f"messages[{i}].{given[0]}"
    if role != "assistant":
        raise RecordError(path, line, f, f"only assistant messages have reasoning (this one is {role})", "bad_field")
    try:
        reasoning = message_reasoning(m, f"messages[{i}]")
    except ChatFormatError as e:
        raise RecordError(path, line, f, str(e).split(": ", 1)[-1], "bad_field") from None
    if any(p["type"] == "text" and ("<think>" in p["text"] or "</think>" in p["text"]) for p in parts):
        raise RecordError(path, line, f, "the reasoning is given twice: here and as <think>…</think> in the content; "
                          "keep one of them", "bad_field")
    return reasoning


@functools.lru_cache(maxsize=256)
def _base_dir(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _no_nan(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_record(text: str, *, path: str, line: int, mode: str, base_dir: str | None = None,
                 check_files: bool = True, allow_external: bool = False) -> Record:
    """Parses and validates one JSONL line. ``mode`` is ``"sft"`` or ``"pretrain"``."""
    try:
        obj = json.loads(text, parse_constant=_no_nan)
    except json.JSONDecodeError as e:
        raise RecordError(path, line, None, f"malformed JSON ({e.msg} at column {e.colno})",
                          "malformed_json") from None
    except ValueError as e:  # NaN / Infinity: Python's json accepts them, JSON does not
        raise RecordError(path, line, None, f"malformed JSON ({e})", "malformed_json") from None
    return parse_obj(obj, path=path, line=line, mode=mode, base_dir=base_dir, check_files=check_files,
                     allow_external=allow_external)


def _is_image_data(p: Any) -> bool:
    from glmv_cli.data.blobs import Blob

    return isinstance(p, (bytes, bytearray, Blob))


def _media_lists(obj: dict, path: str, line: int) -> tuple[list, list]:
    """The record's ``images`` (paths or bytes) and ``videos`` (paths), type-checked."""
    images = obj.get("images", [])
    if not isinstance(images, list):
        raise RecordError(path, line, "images", "expected a list of image paths", "bad_field")
    for k, p in enumerate(images):
        if not (isinstance(p, str) or _is_image_data(p)) or not p:
            raise RecordError(path, line, f"images[{k}]", "expected a non-empty path string or image bytes",
                              "bad_field")
    videos = obj.get("videos", [])
    if not isinstance(videos, list):
        raise RecordError(path, line, "videos", "expected a list of video paths", "bad_field")
    for k, p in enumerate(videos):
        if not isinstance(p, str) or not p:
            raise RecordError(path, line, f"videos[{k}]", "expected a non-empty path string", "bad_field")
    return images, videos


def _messages(raw: Any, mode: str, path: str, line: int) -> list[dict]:
    """The validated messages (content as parts, reasoning fields read) of a chat record."""
    if not isinstance(raw, list) or not raw:
        raise RecordError(path, line, "messages", "expected a non-empty list of messages", "bad_field")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise RecordError(path, line, f"messages[{i}]", 'expected {"role": ..., "content": ...}', "bad_field")
        role = m.get("role")
        if role not in ROLES:
            raise RecordError(path, line, f"messages[{i}].role",
                              f"unknown role {json.dumps(role)} (expected system, user or assistant)",
                              "unknown_role")
        if "content" not in m:
            raise RecordError(path, line, f"messages[{i}].content", "missing", "bad_field")
        parts = _content_parts(m["content"], path, line, f"messages[{i}].content")
        reasoning = _reasoning(m, role, parts, path, line, i)
        if role == "assistant" and _is_empty(parts) and not (reasoning or "").strip():
            raise RecordError(path, line, f"messages[{i}].content", "empty assistant turn", "empty_assistant")
        msg = {"role": role, "content": parts}
        if reasoning is not None:
            msg["reasoning_content"] = reasoning
        messages.append(msg)
    if mode == "sft" and not any(m["role"] == "assistant" for m in messages):
        raise RecordError(path, line, "messages", "no assistant turn (mode sft trains on assistant replies)",
                          "bad_field")
    return messages


def _resolve_media(images: list, videos: list, base: str, check_files: bool, allow_external: bool, path: str,
                   line: int) -> tuple[list, list]:
    """Media paths made absolute under the data root (checked to exist); image bytes as they are."""
    resolved = []
    for k, p in enumerate(images):
        if not isinstance(p, str):  # embedded bytes: nothing to resolve
            resolved.append(p)
            continue
        full = p if p.startswith("/") else os.path.normpath(os.path.join(base, p))
        _check_inside(full, base, allow_external, path, line, f"images[{k}]")
        if check_files and not os.path.isfile(full):
            raise RecordError(path, line, f"images[{k}]", f"image file '{full}' does not exist", "missing_image")
        resolved.append(full)
    vids = []
    for k, p in enumerate(videos):
        full = p if p.startswith("/") else os.path.normpath(os.path.join(base, p))
        _check_inside(full, base, allow_external, path, line, f"videos[{k}]")
        if check_files and not os.path.exists(full):
            raise RecordError(path, line, f"videos[{k}]", f"video '{full}' does not exist", "missing_video")
        vids.append(full)
    return resolved, vids


def parse_obj(obj: Any, *, path: str, line: int, mode: str, base_dir: str | None = None,
              check_files: bool = True, allow_external: bool = False) -> Record:
    """Validates one decoded record (a JSONL line's object, or a converted row of another format).
    Media paths must stay inside ``base_dir`` unless ``allow_external`` (``glmv_cli.data.mediacheck``)."""
    if not isinstance(obj, dict):
        raise RecordError(path, line, None, f"expected a JSON object, got {type(obj).__name__}", "malformed_json")
    rid = obj.get("id", f"{os.path.basename(path)}:{line}")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise RecordError(path, line, "id", "expected a string", "bad_field")
    images, videos = _media_lists(obj, path, line)
    messages = None
    body = None
    if "messages" in obj:
        messages = _messages(obj["messages"], mode, path, line)
        media = [p["type"] for m in messages for p in m["content"] if p["type"] != "text"]
    elif mode == "pretrain" and "text" in obj:
        body = obj["text"]
        if not isinstance(body, str) or not body.strip():
            raise RecordError(path, line, "text", "expected a non-empty string", "bad_field")
        media = ["image" if t == PLACEHOLDER else "video" for t in _SPLIT.findall(body)]
    else:
        need = "'messages'" if mode == "sft" else "'messages' or 'text'"
        raise RecordError(path, line, "messages", f"missing (mode {mode} needs {need})", "bad_field")
    if media.count("video") != len(videos):
        raise RecordError(path, line, "videos",
                          f"{media.count('video')} <video> placeholder(s) but {len(videos)} video(s) listed",
                          "video_count")
    if media.count("image") != len(images):
        raise RecordError(path, line, "images",
                          f"{media.count('image')} <image> placeholder(s) but {len(images)} image(s) listed",
                          "image_count")
    base = base_dir if base_dir is not None else _base_dir(path)
    resolved, vids = _resolve_media(images, videos, base, check_files, allow_external, path, line)
    meta = {k: obj[k] for k in ("domain", "answer", "difficulty", "extra") if k in obj}
    return Record(path=path, line=line, id=str(rid), kind="chat" if messages is not None else "text",
                  messages=messages, text=body, images=resolved, meta=meta, videos=vids, media=media)


def _check_inside(full: str, base: str, allow: bool, path: str, line: int, fname: str) -> None:
    from glmv_cli.data.mediacheck import outside_root

    if not allow and outside_root(full, base):
        raise RecordError(path, line, fname, f"'{full}' is outside the data directory '{base}' (pass "
                          "--allow-external-paths to read files elsewhere)", "external_path")
