"""Generation prompts from validated records: token ids + image tensors (HF) or text + images (vLLM)."""

from __future__ import annotations

from typing import Sequence

from glmv_cli.generation.sampling import Prompt


def prompt_messages(messages: Sequence[dict]) -> list[dict]:
    """The conversation up to and including the last user turn (a trailing reference answer in
    an RL record's messages is not part of the prompt)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("a prompt needs at least one user message")
    return [dict(m) for m in messages[: last_user + 1]]


def prompt_from_record(record, tokenizer, image_processor, *, style: str = "glm41v",
                       enable_thinking: bool = True, template: str | None = None) -> Prompt:
    """Tokenizes a validated ``glmv_cli.data.schema.Record`` as a generation prompt.

    Images (paths or embedded bytes) are decoded with PIL and run through ``image_processor``
    (the Glm4v image processor, with its pixel limits); each contributes grid.prod() / merge²
    ``<|image|>`` tokens. ``template``: the model's own chat template (``ChatFormat.template``),
    None for glmv's rendering of ``style``.
    """
    from glmv_cli.data.images import open_image
    from glmv_cli.data.template import ChatFormat

    tok = getattr(tokenizer, "tokenizer", tokenizer)
    msgs = prompt_messages(record.messages)
    pixel_values = grid = None
    counts: list[int] = []
    if record.images:
        imgs = [open_image(src) for src in record.images]
        enc = image_processor(images=imgs, return_tensors="pt")
        pixel_values, grid = enc["pixel_values"], enc["image_grid_thw"]
        merge = int(getattr(image_processor, "merge_size", 2))
        counts = [int(g.prod().item()) // (merge * merge) for g in grid]
    ids, _, _ = ChatFormat(style, template).arrays(tok, msgs, image_token_counts=counts, add_generation_prompt=True,
                                                   enable_thinking=enable_thinking)
    return Prompt(id=str(record.id), input_ids=ids.tolist(), pixel_values=pixel_values, image_grid_thw=grid,
                  messages=msgs, images=[_sendable(src) for src in record.images or []],
                  enable_thinking=enable_thinking)


def _sendable(src):
    """An image source a rollout server can be sent: a path as text, anything else as its bytes."""
    from pathlib import Path

    from glmv_cli.data.images import source_bytes

    return str(src) if isinstance(src, (str, Path)) else source_bytes(src)


def prompt_text(messages: Sequence[dict]) -> str:
    """The visible text of the prompt's user turns (what a reward function or judge reads)."""
    out = []
    for m in prompt_messages(messages):
        if m["role"] != "user":
            continue
        c = m["content"]
        if isinstance(c, str):
            out.append(c)
        else:
            out.append("".join(p.get("text", "<image>" if p.get("type") == "image" else "") for p in c))
    return "\n".join(out)
