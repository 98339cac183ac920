"""The rollout contract every generation engine keeps: sampling parameters, prompts, rollouts,
per-rollout seeds, banned multimodal tokens, stop and forced tokens, and the sampler itself.

See ``glmv_cli.generation`` (the package docstring) for the contract as a whole.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

FINISH_REASONS = ("stop", "length", "forced")
STYLES = {"glm41v": ("</think>", "<answer>"), "glm45v": ("</think>",)}
#: pure control tokens that end a turn: always stop tokens, and cut from a rollout's text. Any other
#: stop id (a checkpoint's generation_config may list a content token: GLM-4.1V's eos list has
#: ``</answer>``) ends the rollout too but stays in the text, because the answer format needs it.
STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")
#: structural multimodal tokens: filled by the vision tower or framing images/videos, never text
BANNED_TOKENS = ("<|image|>", "<|video|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
                 "<|end_of_video|>")
BANNED_CONFIG_KEYS = ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                      "video_start_token_id", "video_end_token_id")
#: vLLM logit bias of a banned token: exp(-1e4) is 0 in fp32/bf16, and a finite value survives
#: vLLM's request serialisation where -inf may not
VLLM_BAN_BIAS = -1.0e4


@dataclass
class SamplingParams:
    """How to sample. RL uses temperature 1.0 and top-p 1.0 (docs/design.md §8)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    thinking_budget: int | None = None
    answer_budget: int = 32
    style: str = "glm41v"

    def validate(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.thinking_budget is not None and self.thinking_budget < 1:
            raise ValueError(f"thinking_budget must be >= 1 or None, got {self.thinking_budget}")
        if self.answer_budget < 1:
            raise ValueError(f"answer_budget must be >= 1, got {self.answer_budget}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")


@dataclass
class Prompt:
    """One tokenized prompt. ``pixel_values``/``image_grid_thw`` hold this prompt's images only.

    Engines that take images rather than pixel tensors (an HTTP rollout server renders and
    processes them itself) also need ``messages`` (the conversation the ids were rendered from, in
    the record format), ``images`` (the image files, in placeholder order) and ``enable_thinking``;
    ``prompt_from_record`` fills all three."""

    id: str
    input_ids: list[int]
    pixel_values: Any = None
    image_grid_thw: Any = None
    messages: list | None = None
    images: list | None = None
    enable_thinking: bool = True


@dataclass
class Rollout:
    """One sampled response. ``token_ids`` hold forced tokens and a final stop token when there
    is one; ``logprobs`` and ``forced`` align with them one to one. ``prompt_ids`` are the prompt's
    ids (the learner scores prompt + response). ``text`` is the decoded response, special tokens kept
    (the reward system reads ``<think>``, ``<answer>`` and the box), without a final control stop
    token (``STOP_TOKENS``); a content stop token such as GLM-4.1V's ``</answer>`` stays."""

    prompt_id: str
    index: int
    seed: int
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    forced: list[bool]
    finish_reason: str
    text: str = ""

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def loss_mask(self, include_forced: bool = False) -> list[bool]:
        """Tokens the policy loss sees: forced tokens are masked out by default (docs/design.md §8)."""
        return [True] * len(self.forced) if include_forced else [not f for f in self.forced]


def rollout_seed(seed: int, prompt_id: str, model_tag: str, index: int) -> int:
    """A 63-bit seed that depends only on (seed, prompt id, model tag, rollout index)."""
    h = hashlib.sha256(f"{seed}\x1f{prompt_id}\x1f{model_tag}\x1f{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------- pure cores


def mask_banned(logits, banned):
    """fp32 copy of ``logits`` (..., V) with the ``banned`` ids (a sequence or LongTensor) at -inf."""
    import torch

    logits = logits.float()
    if banned is None or len(banned) == 0:
        return logits
    idx = torch.as_tensor(banned, dtype=torch.long, device=logits.device)
    return logits.index_fill(-1, idx, float("-inf"))


def sample_from_logits(logits, uniforms, temperature: float, top_p: float, banned=None):
    """Samples one token per row by inverse CDF; returns (tokens, logprobs).

    ``logits`` (B, V) float; ``uniforms`` (B,) in [0, 1) drawn from each row's own generator.
    ``banned`` token ids get logit -inf first: they are never drawn and the log-probs are of the
    masked distribution. Log-probs are of softmax(logits / T) before top-p (see module docstring).
    T = 0 is greedy (log-probs at T = 1). Top-p keeps the smallest prefix of the sorted
    distribution whose mass reaches ``top_p`` (the top token is always kept).
    """
    import torch

    logits = mask_banned(logits, banned)
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tok = logits.argmax(dim=-1)
        return tok, logp.gather(1, tok[:, None])[:, 0]
    logp = torch.log_softmax(logits / temperature, dim=-1)
    probs = logp.exp().double()
    u = uniforms.to(device=logits.device, dtype=torch.float64)[:, None]
    if top_p < 1.0:
        sp, order = probs.sort(dim=-1, descending=True, stable=True)
        before = sp.cumsum(-1) - sp  # mass strictly before each sorted token
        sp = sp.masked_fill(before >= top_p, 0.0)
        cdf = sp.cumsum(-1)
        idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max(cdf.shape[1] - 1)
        # never land on a zero-probability tail token through round-off
        idx = torch.minimum(idx, (sp > 0).sum(-1, keepdim=True) - 1)
        tok = order.gather(1, idx)[:, 0]
    else:
        cdf = probs.cumsum(-1)
        idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max(cdf.shape[1] - 1)
        tok = idx[:, 0]
    return tok, logp.gather(1, tok[:, None])[:, 0]


@dataclass
class _RowState:
    """Forced-answering state machine of one rollout (pure Python; see ``step``)."""

    thinking_budget: int | None
    answer_budget: int
    max_new_tokens: int
    think_end: int
    forced_seq: tuple[int, ...]
    stop_ids: frozenset
    phase: str = "think"  # think -> answer (closed naturally) | forced
    generated: int = 0
    answer_sampled: int = 0
    queue: list = field(default_factory=list)
    finish: str | None = None

    def next_forced(self) -> int | None:
        return self.queue[0] if self.queue else None

    def step(self, token: int, was_forced: bool) -> None:
        """Advances after ``token`` was appended; sets ``finish`` when the row is done."""
        self.generated += 1
        if was_forced:
            self.queue.pop(0)
            return
        if self.phase == "forced":
            self.answer_sampled += 1
        if token in self.stop_ids:
            self.finish = "forced" if self.phase == "forced" else "stop"
            return
        if self.phase == "think" and token == self.think_end:
            self.phase = "answer"
        if self.phase == "forced":
            if self.answer_sampled >= self.answer_budget:
                self.finish = "forced"
            return
        if self.phase == "think" and self.thinking_budget is not None and self.generated >= self.thinking_budget:
            self.phase = "forced"
            self.queue = list(self.forced_seq)
            return
        if self.generated >= self.max_new_tokens:
            self.finish = "length"


# ----------------------------------------------------------------------------- HF engine


def special_ids(tokenizer, model=None, style: str = "glm41v") -> tuple[int, tuple[int, ...], frozenset]:
    """(``</think>`` id, forced token ids for ``style``, stop ids) from the tokenizer (+ generation config)."""
    def tid(t: str) -> int | None:
        i = tokenizer.convert_tokens_to_ids(t)
        unk = getattr(tokenizer, "unk_token_id", None)
        return None if i is None or (unk is not None and i == unk and t != tokenizer.unk_token) else int(i)

    forced = []
    for t in STYLES[style]:
        i = tid(t)
        if i is None:
            raise ValueError(f"the tokenizer has no special token {t!r} needed for forced answering")
        forced.append(i)
    stops = {i for i in (tid(t) for t in STOP_TOKENS) if i is not None}
    gc = getattr(model, "generation_config", None) if model is not None else None
    eos = getattr(gc, "eos_token_id", None)
    if eos is not None:
        stops.update([eos] if isinstance(eos, int) else list(eos))
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    return forced[0], tuple(forced), frozenset(stops)


def control_stop_ids(tokenizer) -> frozenset:
    """Ids of ``STOP_TOKENS`` in ``tokenizer``: the stop tokens cut from a rollout's text."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    unk = getattr(tok, "unk_token_id", None)
    ids = (tok.convert_tokens_to_ids(t) for t in STOP_TOKENS)
    return frozenset(int(i) for i in ids if i is not None and (unk is None or i != unk))


def response_ids(token_ids: list[int], forced: list[bool], control: frozenset) -> list[int]:
    """The ids a rollout's text decodes: all of them but a final sampled control stop token."""
    if token_ids and token_ids[-1] in control and not forced[-1]:
        return token_ids[:-1]
    return token_ids


def banned_token_ids(tokenizer, config=None, vocab_size: int | None = None) -> tuple[int, ...]:
    """Sorted ids of the structural multimodal tokens (``BANNED_TOKENS``) that the tokenizer
    knows, plus the ids the model config names (``BANNED_CONFIG_KEYS``); ids >= ``vocab_size``
    (no logit exists for them) are left out."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    unk = getattr(tok, "unk_token_id", None)
    out = set()
    for t in BANNED_TOKENS:
        i = tok.convert_tokens_to_ids(t)
        if i is not None and (unk is None or i != unk):
            out.add(int(i))
    if config is not None:
        for k in BANNED_CONFIG_KEYS:
            v = getattr(config, k, None)
            if isinstance(v, int) and v >= 0:
                out.add(v)
    return tuple(sorted(i for i in out if vocab_size is None or i < vocab_size))
