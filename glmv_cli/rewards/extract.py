"""Answer extraction and the two gates every response passes before a verifier sees it.

Format gate (strict, used for rewards). GLM-4.1V style::

    <think>reasoning</think><answer>text <|begin_of_box|>X<|end_of_box|> text</answer>

GLM-4.5V style drops the ``<answer>`` tags: the answer part is everything after ``</think>``.
Rules: only whitespace before ``<think>``; each of ``<think>``/``</think>`` exactly once (and
``<answer>``/``</answer>`` exactly once for 4.1V, never for 4.5V), in order, so nested or repeated
tags fail; exactly one ``<|begin_of_box|>…<|end_of_box|>`` in the whole response and it lies in the
answer part (a box inside the thinking is smuggling); the box is not empty; ``\\boxed`` in the
answer part fails (the model must use GLM's box tokens, not a second convention the verifier would
have to guess between). All checks are ``str.count``/``find``: linear, ~1 ms per MB.

``answer_format`` (per domain in rewards.yaml) chooses the box convention: ``glm`` (the default,
above), ``boxed`` (prompt sets from verl/EasyR1 ask for ``\\boxed{X}``: exactly one ``\\boxed{...}``
with balanced braces in the whole response, in the answer part, not empty; GLM's box tokens fail)
or ``either`` (whichever one convention the response uses; both in one response fail).

Language-mix gate: the response is split into paragraphs at newlines. A paragraph is "long Chinese"
with >= 20 CJK characters outnumbering its Latin words, "long English" with >= 15 Latin words
(2+ letters, LaTeX commands removed) outnumbering its CJK characters. A response with both fails.
Short mixes (an English term in a Chinese sentence, a Chinese label in an English one) pass.

``extract_answer`` is the lenient reader eval and rollouts use: drop the thinking, take the
``<answer>`` part, take the (last) box; it never judges the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from glmv_cli.names import STYLES

THINK_O, THINK_C = "<think>", "</think>"
ANS_O, ANS_C = "<answer>", "</answer>"
BOX_O, BOX_C = "<|begin_of_box|>", "<|end_of_box|>"
ANSWER_FORMATS = ("glm", "boxed", "either")
BOXED = "\\boxed"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z]{2,}")
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_PARA = re.compile(r"\n+")


@dataclass(frozen=True)
class GateConfig:
    """Options of the format and language-mix gates (see the module docstring)."""

    style: str = "glm41v"
    require_think: bool = True
    require_box: bool = True
    forbid_boxed: bool = True
    language_mix: bool = True
    min_cjk_chars: int = 20
    min_english_words: int = 15
    max_response_chars: int = 262_144
    max_answer_chars: int = 4096
    answer_format: str = "glm"


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got '{style}'")
    return style


def strip_math_delimiters(s: str) -> str:
    """'$x$', '\\(x\\)', '\\[x\\]' -> 'x' (only a delimiter pair around the whole string)."""
    s = s.strip()
    for o, c in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) >= len(o) + len(c) and s.startswith(o) and s.endswith(c):
            return s[len(o): len(s) - len(c)].strip()
    return s


def format_gate(response: str, cfg: GateConfig = GateConfig()) -> tuple[str | None, str | None]:
    """Returns ``(answer, None)`` when the format is valid, else ``(None, reason)``.

    ``answer`` is the box content (delimiters stripped) or, with ``require_box=False`` and no box,
    the whole answer part.
    """
    if len(response) > cfg.max_response_chars:
        return None, "too_long"
    n_to, n_tc = response.count(THINK_O), response.count(THINK_C)
    if cfg.require_think or n_to or n_tc:
        if n_to != 1 or n_tc != 1:
            return None, "think_tags" if (n_to or n_tc) else "missing_think"
        i, j = response.find(THINK_O), response.find(THINK_C)
        if j < i:
            return None, "think_tags"
        if response[:i].strip():
            return None, "text_before_think"
        think, rest = response[i + len(THINK_O): j], response[j + len(THINK_C):]
    else:
        think, rest = "", response
    n_ao, n_ac = response.count(ANS_O), response.count(ANS_C)
    if cfg.style == "glm41v":
        if n_ao != 1 or n_ac != 1:
            return None, "answer_tags" if (n_ao or n_ac) else "missing_answer"
        body = rest.strip()
        if not (body.startswith(ANS_O) and body.endswith(ANS_C)):
            return None, "answer_tags"
        part = body[len(ANS_O): len(body) - len(ANS_C)]
    else:
        if n_ao or n_ac:
            return None, "answer_tags"
        part = rest
    fmt = cfg.answer_format
    has_glm = BOX_O in response or BOX_C in response
    if fmt == "either":
        if has_glm and BOXED in response:
            return None, "two_box_conventions"
        fmt = "boxed" if BOXED in response else "glm"
    if fmt == "boxed":
        return _boxed_answer(response, think, part, cfg)
    return _glm_answer(response, think, part, cfg)


def _unboxed(part: str, cfg: GateConfig) -> tuple[str | None, str | None]:
    if cfg.require_box:
        return None, "missing_box"
    ans = strip_math_delimiters(part)
    return (ans, None) if ans else (None, "empty_answer")


def _glm_answer(response: str, think: str, part: str, cfg: GateConfig) -> tuple[str | None, str | None]:
    n_bo, n_bc = response.count(BOX_O), response.count(BOX_C)
    if BOX_O in think or BOX_C in think:
        return None, "box_in_think"
    if cfg.forbid_boxed and BOXED in part:
        return None, "boxed"
    if n_bo == 0 and n_bc == 0:
        return _unboxed(part, cfg)
    if n_bo != 1 or n_bc != 1:
        return None, "box_count"
    a, b = part.find(BOX_O), part.find(BOX_C)
    if a < 0 or b < a:
        return None, "box_count"
    ans = strip_math_delimiters(part[a + len(BOX_O): b])
    if not ans:
        return None, "empty_box"
    return ans, None


def _boxed_answer(response: str, think: str, part: str, cfg: GateConfig) -> tuple[str | None, str | None]:
    if BOX_O in response or BOX_C in response:
        return None, "box_tokens"  # one convention per domain: a second one is a guess to hedge with
    if BOXED in think:
        return None, "box_in_think"
    n = response.count(BOXED)
    if n == 0:
        return _unboxed(part, cfg)
    if n != 1:
        return None, "box_count"
    inner = _last_boxed(part)
    if inner is None:
        return None, "box_count"
    ans = strip_math_delimiters(inner)
    if not ans:
        return None, "empty_box"
    return ans, None


def language_mix(text: str, min_cjk_chars: int = 20, min_english_words: int = 15) -> bool:
    """True when ``text`` holds both a long Chinese and a long English paragraph."""
    if not _CJK.search(text):  # the common case: one regex scan and done
        return False
    zh = en = False
    for para in _PARA.split(text):
        c = len(_CJK.findall(para))
        w = len(_WORD.findall(_LATEX_CMD.sub(" ", para)))
        if c >= min_cjk_chars and c > w:
            zh = True
        elif w >= min_english_words and w > c:
            en = True
        if zh and en:
            return True
    return False


def gate(response: str, cfg: GateConfig = GateConfig()) -> tuple[str | None, str | None]:
    """Format gate then language-mix gate: ``(answer, None)`` or ``(None, reason)``."""
    ans, why = format_gate(response, cfg)
    if why is not None:
        return None, why
    if len(ans) > cfg.max_answer_chars:  # type: ignore[arg-type]
        return None, "answer_too_long"
    if cfg.language_mix and language_mix(response, cfg.min_cjk_chars, cfg.min_english_words):
        return None, "language_mix"
    return ans, None


def _last_boxed(s: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), or None."""
    i = s.rfind(BOXED)
    if i < 0:
        return None
    j = s.find("{", i)
    if j < 0 or s[i + len(BOXED): j].strip():
        return None
    depth = 0
    for k in range(j, len(s)):
        if s[k] == "{":
            depth += 1
        elif s[k] == "}":
            depth -= 1
            if depth == 0:
                return s[j + 1: k]
    return None


def extract_answer(response: str, style: str = "glm41v") -> str | None:
    """The answer as GLM's eval reads it: drop ``<think>…</think>``, take ``<answer>…</answer>``
    (when present), take the content of the last box (``<|begin_of_box|>`` or, failing that,
    ``\\boxed{}``), strip ``$`` delimiters. ``None`` when nothing is left or when the response
    is still inside its thinking (no ``</think>``)."""
    check_style(style)
    text = response
    if THINK_C in text:
        text = text[text.rfind(THINK_C) + len(THINK_C):]
    elif THINK_O in text:
        return None
    if ANS_O in text:
        text = text[text.rfind(ANS_O) + len(ANS_O):]
        end = text.find(ANS_C)
        text = text if end < 0 else text[:end]
    elif ANS_C in text:
        text = text[: text.find(ANS_C)]
    if BOX_O in text:
        text = text[text.rfind(BOX_O) + len(BOX_O):]
        end = text.find(BOX_C)
        text = text if end < 0 else text[:end]
    else:
        boxed = _last_boxed(text)
        if boxed is not None:
            text = boxed
    ans = strip_math_delimiters(text)
    return ans or None
