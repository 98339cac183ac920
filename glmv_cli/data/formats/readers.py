"""Row readers: one foreign row (a dict) -> glmv's canonical record dict (what schema.py validates).

Each reader is a pure function ``(row, path, line) -> dict`` that raises
:class:`glmv_cli.data.schema.RecordError` naming the row's field; none of them decodes an image
or touches a file. The canonical dict keeps the placeholders (``<image>`` in text or
``{"type": "image"}`` parts) and lists ``images`` in placeholder order, so schema.py checks counts,
roles and empty turns the same way for every format.

Layouts (each learnt from the tool's own docs and example data):

``glmv``      glmv's records as they are (``messages`` or ``text``, ``images`` as paths).
``messages``  HF / TRL / OpenAI chat rows: ``messages`` (or TRL's ``prompt`` + ``completion``),
              content a string with ``<image>`` or a list of parts: ``text`` / ``input_text``,
              ``image`` (inline ``image`` / ``url`` / ``path``, else the next entry of the row's
              ``images`` column), ``image_url`` (``{"url": ...}`` or a string: data URL, path or
              ``file://``), ``video``. GLM-V's ``finetune.json`` (a JSON array of such rows) is
              this format in a JSON-array file.
``sharegpt``  LLaMA-Factory ShareGPT: ``conversations`` of ``{"from": human|gpt|system,
              "value"}``, a ``system`` column, ``images`` (or LLaVA's single ``image``).
``verl``      verl RL rows: ``prompt`` (chat messages, or a string), ``images`` (HF Image
              ``{bytes, path}``, bytes or paths), ``reward_model.ground_truth`` -> answer,
              ``data_source`` -> domain, ``extra_info`` (+ ``data_source``, ``ability``) -> extra.
``easyr1``    EasyR1 rows: ``problem`` (a string with ``<image>``), ``answer``, ``images``.

Every reader passes ``id``, ``domain``, ``answer``, ``difficulty`` and ``extra`` through when the
row has them, so any format can feed RL once it carries a reference answer.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from glmv_cli.data.formats.media import image_list, image_source
from glmv_cli.data.schema import RecordError

_PLACEHOLDER = re.compile(r"<image>|<video>")
_PASS = ("id", "domain", "answer", "difficulty", "extra")
_TEXT_PARTS = ("text", "input_text", "output_text")
_IMAGE_PARTS = ("image", "image_url", "input_image")
_INLINE_IMAGE_KEYS = ("image", "image_url", "url", "path")
ROLE_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system turn
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
TOOL_ROLES = ("observation", "function_call", "function", "tool")


def _passthrough(row: dict, out: dict) -> dict:
    for k in _PASS:
        if row.get(k) is not None:
            out[k] = row[k]
    return out


class _Media:
    """Assigns a row's ``images`` / ``videos`` columns to placeholders and parts in message order.

    Without inline images the columns are passed on whole, so schema.py reports a count mismatch
    exactly as for glmv's own records; with inline ones each column reference takes the next
    column entry and a mismatch is reported here."""

    def __init__(self, row: dict, path: str, line: int):
        self.path, self.line = path, line
        key = "images" if row.get("images") is not None else "image"
        self.image_field = key
        self.columns = {"image": image_list(row.get(key), path, line, key)}
        vids = row.get("videos")
        self.columns["video"] = vids if isinstance(vids, list) else ([] if vids is None else [vids])
        self.refs: dict[str, list[tuple[str, Any]]] = {"image": [], "video": []}  # ("column", field) / ("inline", src)

    def take(self, kind: str, field: str) -> None:
        self.refs[kind].append(("column", field))

    def inline(self, kind: str, src: Any) -> None:
        self.refs[kind].append(("inline", src))

    def text(self, s: str, field: str) -> None:
        for m in _PLACEHOLDER.finditer(s):
            self.take("image" if m.group(0) == "<image>" else "video", field)

    def resolved(self, kind: str) -> list[Any]:
        column, refs = self.columns[kind], self.refs[kind]
        if all(how == "column" for how, _ in refs):
            return list(column)
        name = self.image_field if kind == "image" else "videos"
        reason = "image_count" if kind == "image" else "video_count"
        out, k = [], 0
        for how, value in refs:
            if how == "inline":
                out.append(value)
                continue
            if k >= len(column):
                raise RecordError(self.path, self.line, value, f"refers to {kind} {k + 1} of the row's '{name}' "
                                  f"column, which has {len(column)}", reason)
            out.append(column[k])
            k += 1
        if k < len(column):
            raise RecordError(self.path, self.line, name, f"{len(column)} {kind}(s) listed but only {k} <{kind}> "
                              f"placeholder(s) / {kind} part(s) without an inline source refer to them", reason)
        return out


def _parts(content: list, media: _Media, field: str) -> list[dict]:
    out = []
    for j, part in enumerate(content):
        pf = f"{field}[{j}]"
        if not isinstance(part, dict):
            raise RecordError(media.path, media.line, pf, 'expected a part object such as {"type": "text", '
                              '"text": ...}', "bad_field")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = part.get("text")
            if not isinstance(text, str):
                raise RecordError(media.path, media.line, f"{pf}.text", "expected a string", "bad_field")
            media.text(text, pf)
            out.append({"type": "text", "text": text})
        elif kind in _IMAGE_PARTS:
            inline = next(((k, part[k]) for k in _INLINE_IMAGE_KEYS if part.get(k) is not None), None)
            if inline is None:
                media.take("image", pf)
            else:
                media.inline("image", image_source(inline[1], media.path, media.line, f"{pf}.{inline[0]}"))
            out.append({"type": "image"})
        elif kind == "video":
            inline = next((part[k] for k in ("video", "path", "url") if isinstance(part.get(k), str)), None)
            if inline is None:
                media.take("video", pf)
            else:
                media.inline("video", inline)
            out.append({"type": "video"})
        else:
            raise RecordError(media.path, media.line, f"{pf}.type", f"unknown content part type {kind!r} (expected "
                              "text, image, image_url or video)", "bad_field")
    return out


def _message(m: Any, media: _Media, field: str) -> dict:
    if not isinstance(m, dict):
        raise RecordError(media.path, media.line, field, 'expected {"role": ..., "content": ...}', "bad_field")
    out = dict(m)  # other keys (reasoning_content, ...) stay for schema.py to read
    role = m.get("role")
    out["role"] = ROLE_ALIASES.get(role, role)
    content = m.get("content")
    if isinstance(content, str):
        media.text(content, f"{field}.content")
    elif isinstance(content, list):
        out["content"] = _parts(content, media, f"{field}.content")
    return out


def _turns(value: Any, role: str, field: str, path: str, line: int) -> list[tuple[Any, str]]:
    """TRL's prompt / completion: a list of messages, or a bare string for one turn."""
    if isinstance(value, str):
        return [({"role": role, "content": value}, field)]
    if isinstance(value, list):
        return [(m, f"{field}[{i}]") for i, m in enumerate(value)]
    raise RecordError(path, line, field, "expected a list of messages or a string", "bad_field")


def _chat(row: dict, turns: list[tuple[Any, str]], path: str, line: int) -> dict:
    media = _Media(row, path, line)
    messages = [_message(m, media, f) for m, f in turns]
    out: dict[str, Any] = {"messages": messages, "images": media.resolved("image")}
    videos = media.resolved("video")
    if videos:
        out["videos"] = videos
    return out


def read_glmv(row: dict, path: str, line: int) -> dict:
    return row


def _canonical(row: dict) -> bool:
    """Is a messages row already a glmv record (string or plain-part contents, image paths)?"""
    images = row.get("images", [])
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images) or "image" in row:
        return False
    msgs = row.get("messages")
    if not isinstance(msgs, list):
        return False
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") in ROLE_ALIASES:
            return False
        c = m.get("content")
        if isinstance(c, list) and not all(isinstance(p, dict) and (p.get("type") == "text" or (
                p.get("type") in ("image", "video") and len(p) == 1)) for p in c):
            return False
    return True


def read_messages(row: dict, path: str, line: int) -> dict:
    if _canonical(row):  # glmv's own layout: nothing to convert, schema.py validates it
        return row
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list):
            raise RecordError(path, line, "messages", "expected a non-empty list of messages", "bad_field")
        turns = [(m, f"messages[{i}]") for i, m in enumerate(msgs)]
    elif "prompt" in row:
        turns = _turns(row["prompt"], "user", "prompt", path, line)
        if row.get("completion") is not None:
            turns += _turns(row["completion"], "assistant", "completion", path, line)
    else:
        raise RecordError(path, line, "messages", "missing (a chat row needs 'messages', or 'prompt' and "
                          "'completion')", "bad_field")
    return _passthrough(row, _chat(row, turns, path, line))


def read_sharegpt(row: dict, path: str, line: int) -> dict:
    key = "conversations" if "conversations" in row else "messages"
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RecordError(path, line, key, "expected a non-empty list of turns", "bad_field")
    msgs: list[tuple[Any, str]] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append(({"role": "system", "content": system}, "system"))
    for i, t in enumerate(turns):
        f = f"{key}[{i}]"
        if not isinstance(t, dict):
            raise RecordError(path, line, f, 'expected {"from": ..., "value": ...}', "bad_field")
        tag = "from" if "from" in t else "role"
        who = t.get(tag)
        if who in TOOL_ROLES:
            raise RecordError(path, line, f"{f}.{tag}", f"tool turn '{who}' is not supported (glmv trains plain "
                              "user/assistant conversations)", "unknown_role")
        if who not in SHAREGPT_ROLES:
            raise RecordError(path, line, f"{f}.{tag}", f"unknown speaker {who!r} (expected human, gpt or system)",
                              "unknown_role")
        value = t.get("value", t.get("content"))
        if not isinstance(value, str):
            raise RecordError(path, line, f"{f}.value", "expected a string", "bad_field")
        msgs.append(({"role": SHAREGPT_ROLES[who], "content": value}, f))
    return _passthrough(row, _chat(row, msgs, path, line))


def _answer_text(value: Any, path: str, line: int, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise RecordError(path, line, field, f"expected the reference answer as a string (or a number), got "
                      f"{type(value).__name__}", "bad_field")


def read_verl(row: dict, path: str, line: int) -> dict:
    if "prompt" not in row:
        raise RecordError(path, line, "prompt", "missing (a verl row needs 'prompt')", "bad_field")
    out = _passthrough(row, _chat(row, _turns(row["prompt"], "user", "prompt", path, line), path, line))
    rm = row.get("reward_model")
    if isinstance(rm, dict) and rm.get("ground_truth") is not None:
        out["answer"] = _answer_text(rm["ground_truth"], path, line, "reward_model.ground_truth")
    elif rm is not None and not isinstance(rm, dict):
        raise RecordError(path, line, "reward_model", "expected an object with 'ground_truth'", "bad_field")
    else:
        for key in ("answer", "solution"):
            if row.get(key) is not None:
                out["answer"] = _answer_text(row[key], path, line, key)
                break
    if "domain" not in out and isinstance(row.get("data_source"), str):
        out["domain"] = row["data_source"]
    extra = row.get("extra_info")
    if extra is not None and not isinstance(extra, dict):
        raise RecordError(path, line, "extra_info", f"expected an object, got {type(extra).__name__}", "bad_field")
    merged = {**(row.get("extra") or {}), **(extra or {})}
    for key in ("data_source", "ability"):
        if row.get(key) is not None:
            merged.setdefault(key, row[key])
    if merged:
        out["extra"] = merged
    return out


def read_easyr1(row: dict, path: str, line: int) -> dict:
    problem = row.get("problem")
    if not isinstance(problem, str):
        raise RecordError(path, line, "problem", "expected the prompt as a string", "bad_field")
    out = _passthrough(row, _chat(row, [({"role": "user", "content": problem}, "problem")], path, line))
    if row.get("answer") is not None:
        out["answer"] = _answer_text(row["answer"], path, line, "answer")
    if "domain" not in out and isinstance(row.get("data_source"), str):
        out["domain"] = row["data_source"]
    return out


READERS: dict[str, Callable[[dict, str, int], dict]] = {
    "glmv": read_glmv, "messages": read_messages, "sharegpt": read_sharegpt, "verl": read_verl,
    "easyr1": read_easyr1,
}
FORMATS = tuple(READERS)


def detect(row: Any) -> str | None:
    """The format of a row from its keys (None when no layout fits)."""
    if not isinstance(row, dict):
        return None
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row:
        msgs = row["messages"]
        first = msgs[0] if isinstance(msgs, list) and msgs else None
        if isinstance(first, dict) and "from" in first and "role" not in first:
            return "sharegpt"
        return "messages"
    if "prompt" in row:
        if row.get("completion") is not None and "reward_model" not in row:
            return "messages"
        return "verl"
    if "problem" in row:
        return "easyr1"
    if "text" in row:
        return "glmv"
    return None


def convert(fmt: str, row: Any, path: str, line: int) -> dict:
    """The canonical record of ``row`` read as ``fmt``."""
    if not isinstance(row, dict):
        raise RecordError(path, line, None, f"expected an object, got {type(row).__name__}", "malformed_json")
    return READERS[fmt](row, path, line)
