"""The user turn glmv asks for one benchmark row.

A prompt is text with one ``<video>`` placeholder per video and one ``<image>`` per image (media
first unless the benchmark's text places them), plus the media cells in that order. Kinds:

- ``mcq``: question, the options as ``A. text`` lines (a benchmark whose options already carry their
  letters -- Video-MME's ``"A. darker"`` -- is printed as stored, not lettered twice), then the
  instruction; ``options_in_question`` for benchmarks that print options inside the question; an
  open row of a mostly multiple-choice benchmark (MMMU) gets no options line.
- ``open``: the question (ChartQAPro: the ``Paragraph`` context first, a conversation's earlier turns
  with their answers, an instruction per question type).
- ``yesno``: question + "Answer yes or no."; ``grounding``: the referring expression in GLM's box
  request (0-1000 normalised coordinates); ``chat``: the user turns of a glmv record (synth).

MMMU-Pro's ``vision`` setting has no question column: the screenshot holds question and options,
so the prompt is the instruction alone. Instructions are glmv's own wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from glmv_cli.evaluation.data import EvalRow, image_cells
from glmv_cli.evaluation.spec import TaskSpec, is_missing

MCQ_INSTRUCTION = "Answer with the option's letter from the given choices."
YESNO_INSTRUCTION = "Answer yes or no."
GROUNDING_TEMPLATE = ("Help me to locate {expr} in the image and give me its bounding box "
                      "[x1, y1, x2, y2] in coordinates normalised to 0-1000.")
VISION_INSTRUCTION = "Answer the multiple-choice question shown in the image with the option's letter."
CHARTQAPRO_INSTRUCTIONS = {
    "Factoid": "Answer with a single word, number or phrase (or 'unanswerable'); keep the chart's unit notation "
               "such as K, M or B, no other units. Give several answers as a list ['a', 'b'].",
    "Multi Choice": "Answer with the option's letter only (or 'unanswerable').",
    "Conversational": "Answer the last question with a single word, number or phrase (or 'unanswerable').",
    "Fact Checking": "Answer true or false (or 'unanswerable').",
    "Hypothetical": "Answer with a single word, number or phrase (or 'unanswerable').",
}
_LETTERED = re.compile(r"^\(?[A-Z][.):]\s")


@dataclass
class PromptParts:
    text: str
    images: list[tuple[str, Any]] = field(default_factory=list)   # (column, cell)
    videos: list[Any] = field(default_factory=list)               # video cells (names/paths)


def parse_options(value: Any) -> list[str]:
    from glmv_cli.evaluation.scoring import parse_options as parse

    return parse(value)


def options_of(spec: TaskSpec, r: dict[str, Any]) -> list[str]:
    """The options: one column per letter (MMBench A-D, TreeBench A-F; stops at the first empty one),
    a list/dict/string-list column, or none."""
    col = spec.col("options")
    if col is None:
        return []
    if isinstance(col, list):
        out = []
        for c in col:
            v = r.get(c)
            if is_missing(v):
                break
            out.append(str(v))
        return out
    return parse_options(r.get(col))


def _question(spec: TaskSpec, r: dict[str, Any]) -> str:
    q = r.get(spec.col("question"), "")
    if isinstance(q, (list, tuple)):
        if spec.get("question_list") == "conversation":  # ChartQAPro: earlier turns with their answers
            answers = r.get(spec.col("answer")) or []
            q = "\n".join([f"Q: {qq}\nA: {aa}" for qq, aa in zip(q[:-1], answers)] + [str(q[-1])]) if q else ""
        else:
            q = str(q[0]) if q else ""
    q = "" if is_missing(q) else str(q)
    extra = spec.col("choices_text")
    if extra and not is_missing(r.get(extra)):
        q = f"{q}\n{r[extra]}"
    context = spec.col("context")
    if context and not is_missing(r.get(context)):
        q = f"{r[context]}\n{q}"
    hint_col = spec.col("hint")
    if hint_col and not is_missing(r.get(hint_col)):
        q = f"Hint: {r[hint_col]}\n{q}"
    return q


def _mcq_text(spec: TaskSpec, r: dict[str, Any], q: str) -> str:
    opts = options_of(spec, r)
    instruction = spec.get("instruction", MCQ_INSTRUCTION)
    if spec.col("question") and spec.col("question") not in r and spec.get("vision_setting"):
        return spec.get("vision_instruction", VISION_INSTRUCTION)
    if opts:
        lettered = all(_LETTERED.match(o) for o in opts)
        lines = opts if lettered else [f"{chr(65 + i)}. {o}" for i, o in enumerate(opts)]
        return "\n".join([q, *lines, instruction])
    if spec.get("options_in_question"):
        return f"{q}\n{instruction}"
    return q  # an open question inside a mostly multiple-choice benchmark (MMMU, MathVision)


def _chat_text(r: dict[str, Any]) -> str:
    parts = []
    for m in r.get("messages") or []:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        else:
            parts.append("".join(p.get("text", "") if p.get("type") == "text" else "<image>" for p in c))
    return "\n".join(parts)


def body_text(spec: TaskSpec, r: dict[str, Any]) -> str:
    """The text of the user turn without media placeholders."""
    kind = spec.prompt
    if kind == "chat":
        return _chat_text(r).replace("<image>", "").lstrip("\n")
    q = _question(spec, r)
    if kind == "mcq":
        return _mcq_text(spec, r, q)
    if kind == "yesno":
        return f"{q}\n{spec.get('instruction', YESNO_INSTRUCTION)}"
    if kind == "grounding":
        return spec.get("instruction", GROUNDING_TEMPLATE).format(expr=q)
    qtype = r.get(spec.col("type")) if spec.get("instructions_by_type") else None
    instruction = CHARTQAPRO_INSTRUCTIONS.get(str(qtype)) if qtype is not None else spec.get("instruction")
    return q + (f"\n{instruction}" if instruction else "")


def build_prompt(spec: TaskSpec, er: EvalRow) -> PromptParts:
    """Text with placeholders + the media cells, for one row."""
    r = er.row
    images = image_cells(spec, r)
    videos = [r[spec.col("video")]] if spec.col("video") and not is_missing(r.get(spec.col("video"))) else []
    text = body_text(spec, r)
    head = "<video>" * len(videos) + "<image>" * len(images)
    return PromptParts(text=head + ("\n" if head else "") + text, images=images, videos=videos)
