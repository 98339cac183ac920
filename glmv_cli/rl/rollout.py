"""Rollout engines: n sampled responses per prompt, with per-token log-probs and forced answering.

``HFEngine`` is a hand-written KV-cache decode loop over a transformers
``Glm4vForConditionalGeneration`` (or the MoE variant) rather than ``generate()``, for three reasons:

1. Reproducibility independent of batching. Every rollout owns a CPU ``torch.Generator`` seeded
   from ``(seed, prompt id, model tag, rollout index)`` (:func:`rollout_seed`); each sampling step
   draws one uniform from it and inverts the row's CDF. A rollout therefore does not depend on
   which other rows share its batch, on the device, or on where an interrupted job resumed
   (up to float round-off between batch shapes; ``grade-difficulty`` keeps batch composition
   fixed, so its reruns are bit-identical).
2. Log-probs come out of the same pass that samples: no second forward.
3. Forced answering is a per-row state machine that fits naturally in the loop.

Prefill runs once per *distinct* prompt (left-padded, image features computed once), then the
KV cache is repeat-interleaved n times: at n = 8 this cuts prefill cost 8x, which dominates for
image prompts with short answers. Finished rows are dropped from the cache
(``batch_select_indices``) so long stragglers do not pay for finished neighbours.

Positions. Glm4v uses 3D rope (t/h/w). The prompt's position ids come from the model's own
``get_rope_index`` with the left-padding mask; every generated token is text, so all three rows
advance together: the k-th new token sits at ``max(prompt positions) + 1 + k``. transformers'
``generate`` gets the same numbers from cached ``rope_deltas``; the test compares our log-probs with
a full forward over prompt + response.

Banned tokens. The six structural multimodal tokens (``<|image|>``, ``<|video|>``,
``<|begin_of_image|>``, ``<|end_of_image|>``, ``<|begin_of_video|>``, ``<|end_of_video|>``;
:func:`banned_token_ids`) are never sampled: their logits are set to -inf before sampling. Random
and weakly trained models emit them (the random tiny preset, unmasked: 4 of 2,344 sampled
tokens, in 4 of 24 rollouts of ~100 tokens), and one ``<|image|>`` in a response makes it
impossible to re-run through the model (transformers looks for image features it does not
have). Masking changes the policy, so everything below is of the *masked* distribution, and the
RL learner applies the same mask (``RLCSTrainer._forward_logp``). vLLM: ``VLLMEngine``.

Log-probs. ``Rollout.logprobs[i]`` is ``log softmax(masked logits / T)[token_i]`` over the
vocabulary: the temperature-scaled distribution before top-p truncation. At the RL setting
(T = 1.0, top-p = 1.0) this is exactly the behaviour policy, and it is what the learner recomputes
from its own forward, so the PPO ratio starts at 1. With top-p < 1 the true sampling probability is
larger by ``1 / kept_mass``; we still return the untruncated value because that is the policy the
learner models. With T = 0 (greedy) the T = 1 log-probs are returned. Forced tokens get the
model's log-prob of the forced token too (it was not sampled; ``forced`` flags it).

Forced answering (paper §5 / GLM-4.5V): while a row has not emitted ``</think>`` it is "thinking".
When it has generated ``thinking_budget`` tokens without ``</think>``, the engine appends
``</think><answer>`` (style ``glm41v``) or ``</think>`` (style ``glm45v``) as forced tokens, then lets it
sample at most ``answer_budget`` more tokens. A row that closes its thinking within budget is never
touched: its tokens equal those of an unbudgeted run with the same seed.

Finish reasons: ``stop`` (sampled a stop token), ``length`` (hit ``max_new_tokens`` without forcing),
``forced`` (the answer was forced; it then ended by a stop token or by the answer budget). The stop
token is kept in ``token_ids`` (the policy must learn to stop) but not in ``text``.
``max_new_tokens`` caps thinking plus a natural answer; a forced tail may run past it by at most
``len(forced) + answer_budget`` tokens.

``VLLMEngine`` (GPU, import-guarded) runs the same contract on vLLM; see its docstring for how
weights are synced from the learner.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

FINISH_REASONS = ("stop", "length", "forced")
STYLES = {"glm41v": ("</think>", "<answer>"), "glm45v": ("</think>",)}
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
    """How to sample. RL uses temperature 1.0 and top-p 1.0 (DESIGN §8)."""

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
    """One tokenized prompt. ``pixel_values``/``image_grid_thw`` hold this prompt's images only."""

    id: str
    input_ids: list[int]
    pixel_values: Any = None
    image_grid_thw: Any = None


@dataclass
class Rollout:
    """One sampled response. ``token_ids`` hold forced tokens and a final stop token when there
    is one; ``logprobs`` and ``forced`` align with them one to one. ``prompt_ids`` are the prompt's
    ids (the learner scores prompt + response). ``text`` is the decoded response without the stop
    token, special tokens kept (the reward system reads ``<think>``, ``<answer>`` and the box)."""

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
        """Tokens the policy loss sees: forced tokens are masked out by default (DESIGN §8)."""
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


class HFEngine:
    """Batched sampling with a KV cache over a transformers Glm4v model (CPU or GPU).

    ``batch_size`` bounds the rows (prompts x n) decoded together; prompts are grouped so a
    prompt's n rollouts always share a batch. ``model_tag`` enters every rollout's seed: the RL
    stage passes one per policy version (e.g. ``step-120``) so that a prompt drawn again at a later
    step gets fresh samples, while a resumed step reproduces its own. ``banned_token_ids`` (computed
    once from tokenizer and config) are masked out of every sampling step.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 32, model_tag: str = "model"):
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.batch_size = max(1, int(batch_size))
        self.model_tag = model_tag
        cfg = model.config
        self.image_token_id = int(getattr(cfg, "image_token_id"))
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        # the config's vocab size, not lm_head's shape: ZeRO-3 leaves a partitioned (empty) weight
        vocab = getattr(cfg.get_text_config(), "vocab_size", None)
        self.banned_token_ids = banned_token_ids(self.tokenizer, cfg, vocab)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, n: int = 1,
                 seed: int = 0) -> list[list[Rollout]]:
        """Returns, for each prompt, its n rollouts (index 0..n-1) in order."""
        params.validate()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        per = max(1, self.batch_size // n)
        out: list[list[Rollout]] = []
        for i in range(0, len(prompts), per):
            out.extend(self._generate_group(list(prompts[i:i + per]), params, n, seed))
        return out

    def _generate_group(self, prompts: list[Prompt], params: SamplingParams, n: int,
                        seed: int) -> list[list[Rollout]]:
        import torch
        from transformers import DynamicCache

        model, dev = self.model, self.device
        think_end, forced_seq, stops = special_ids(self.tokenizer, model, params.style)
        hit = sorted(set(forced_seq) & set(self.banned_token_ids))
        if hit:
            raise ValueError(f"forced-answering tokens {hit} are banned multimodal tokens; check the tokenizer")
        banned = torch.tensor(self.banned_token_ids, dtype=torch.long, device=dev)
        lens = [len(p.input_ids) for p in prompts]
        L = max(lens)
        ids = torch.full((len(prompts), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), L), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, L - lens[r]:] = torch.tensor(p.input_ids, dtype=torch.long)
            mask[r, L - lens[r]:] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        types = ((ids == self.image_token_id) & mask.bool()).long()
        pv = [p.pixel_values for p in prompts if p.pixel_values is not None]
        grids = [torch.as_tensor(p.image_grid_thw).reshape(-1, 3) for p in prompts if p.image_grid_thw is not None]
        pixel_values = torch.cat([torch.as_tensor(x) for x in pv]).to(dev, model.dtype) if pv else None
        grid = torch.cat(grids).to(dev) if grids else None
        with torch.no_grad():
            pos, _ = model.model.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)
            next_pos = (pos.masked_fill(~mask.bool()[None], -1).amax(dim=(0, 2)) + 1).long()
            cache = DynamicCache(config=model.config.get_text_config())
            kw = dict(pixel_values=pixel_values, image_grid_thw=grid, mm_token_type_ids=types) if grid is not None else {}
            outp = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                         use_cache=True, logits_to_keep=1, **kw)
            cache = outp.past_key_values
            logits = outp.logits[:, -1]
            if n > 1:
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, dim=0)
                mask = mask.repeat_interleave(n, dim=0)
                next_pos = next_pos.repeat_interleave(n, dim=0)

            rows = [(pi, j) for pi in range(len(prompts)) for j in range(n)]
            seeds = [rollout_seed(seed, prompts[pi].id, self.model_tag, j) for pi, j in rows]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            states = [_RowState(params.thinking_budget, params.answer_budget, params.max_new_tokens,
                                think_end, forced_seq, stops) for _ in rows]
            toks: list[list[int]] = [[] for _ in rows]
            lps: list[list[float]] = [[] for _ in rows]
            frc: list[list[bool]] = [[] for _ in rows]
            active = list(range(len(rows)))
            while active:
                u = torch.stack([torch.rand((), generator=gens[r], dtype=torch.float64) for r in active])
                sampled, logp_all = sample_from_logits(logits, u, params.temperature, params.top_p, banned)
                forced_now = [states[r].next_forced() for r in active]
                if any(f is not None for f in forced_now):
                    ftok = torch.tensor([f if f is not None else 0 for f in forced_now], device=logits.device)
                    fl = torch.log_softmax(mask_banned(logits, banned) / (params.temperature or 1.0), -1)
                    fl = fl.gather(1, ftok[:, None])[:, 0]
                    isf = torch.tensor([f is not None for f in forced_now], device=logits.device)
                    sampled = torch.where(isf, ftok, sampled)
                    logp_all = torch.where(isf, fl, logp_all)
                tok_l, lp_l = sampled.tolist(), logp_all.tolist()
                keep = []
                for k, r in enumerate(active):
                    was_forced = forced_now[k] is not None
                    toks[r].append(tok_l[k])
                    lps[r].append(lp_l[k])
                    frc[r].append(was_forced)
                    states[r].step(tok_l[k], was_forced)
                    if states[r].finish is None:
                        keep.append(k)
                if not keep:
                    break
                feed = sampled
                if len(keep) < len(active):
                    sel = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(sel)
                    mask, next_pos, feed = mask[sel], next_pos[sel], sampled[sel]
                    active = [active[k] for k in keep]
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                p3 = next_pos.view(1, -1, 1).expand(3, -1, 1)
                o = model(input_ids=feed[:, None], attention_mask=mask, position_ids=p3,
                          past_key_values=cache, use_cache=True)
                cache, logits = o.past_key_values, o.logits[:, -1]
                next_pos = next_pos + 1
        res: list[list[Rollout]] = [[] for _ in prompts]
        for r, (pi, j) in enumerate(rows):
            body = toks[r][:-1] if toks[r] and toks[r][-1] in stops and not frc[r][-1] else toks[r]
            res[pi].append(Rollout(
                prompt_id=prompts[pi].id, index=j, seed=seeds[r], prompt_ids=list(prompts[pi].input_ids),
                token_ids=toks[r], logprobs=lps[r], forced=frc[r], finish_reason=states[r].finish or "length",
                text=self.tokenizer.decode(body, skip_special_tokens=False),
            ))
        return res


# ----------------------------------------------------------------------------- prompts from records


def prompt_messages(messages: Sequence[dict]) -> list[dict]:
    """The conversation up to and including the last user turn (a trailing reference answer in
    an RL record's messages is not part of the prompt)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("a prompt needs at least one user message")
    return [dict(m) for m in messages[: last_user + 1]]


def prompt_from_record(record, tokenizer, image_processor, *, style: str = "glm41v",
                       enable_thinking: bool = True) -> Prompt:
    """Tokenizes a validated ``glmv_cli.data.schema.Record`` as a generation prompt.

    Images are loaded with PIL and run through ``image_processor`` (the Glm4v PIL image
    processor); each contributes grid.prod() / merge² ``<|image|>`` tokens.
    """
    from PIL import Image

    from glmv_cli.data.chat import encode_chat

    tok = getattr(tokenizer, "tokenizer", tokenizer)
    msgs = prompt_messages(record.messages)
    pixel_values = grid = None
    counts: list[int] = []
    if record.images:
        imgs = []
        for p in record.images:
            with Image.open(p) as im:
                imgs.append(im.convert("RGB"))
        enc = image_processor(images=imgs, return_tensors="pt")
        pixel_values, grid = enc["pixel_values"], enc["image_grid_thw"]
        merge = int(getattr(image_processor, "merge_size", 2))
        counts = [int(g.prod().item()) // (merge * merge) for g in grid]
    ids = encode_chat(tok, msgs, image_token_counts=counts, style=style, add_generation_prompt=True,
                      enable_thinking=enable_thinking)["input_ids"]
    return Prompt(id=str(record.id), input_ids=list(ids), pixel_values=pixel_values, image_grid_thw=grid)


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


# ----------------------------------------------------------------------------- vLLM engine


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


@dataclass
class TextPrompt:
    """A prompt for vLLM: the rendered text with one ``<|image|>`` per image (vLLM expands it) and
    the PIL images."""

    id: str
    text: str
    images: list = field(default_factory=list)


class VLLMEngine:
    """The same rollout contract on vLLM (GPU only; needs ``pip install vllm``).

    Each rollout is its own request with ``seed = rollout_seed(...)``, so results are independent
    of batching as in ``HFEngine``. Forced answering runs in two phases: phase 1 samples up to the
    thinking budget; a rollout that stopped is done, one that closed ``</think>`` continues for the
    rest of ``max_new_tokens``, and one that did not gets the forced tokens appended and
    continues for ``answer_budget`` tokens. Phase 2 re-submits prompt + phase-1 text (vLLM's prefix
    cache makes this cheap); forced tokens have ``logprob = nan`` (vLLM does not score them without
    a prompt-logprob pass; they are masked out of the loss by default anyway).

    Weight sync (RL): the learner owns the trainable copy. After each optimizer step it calls
    ``engine.sync_weights(model.named_parameters())`` (rank 0, gathered full tensors under ZeRO-3
    via ``deepspeed.zero.GatheredParameters``); this streams ``(name, tensor)`` pairs into vLLM's
    model through its ``load_weights`` (the same loader that reads HF checkpoints, so HF parameter
    names map unchanged), inside the engine process (``LLM.apply_model``; run vLLM in-process with
    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` so the tensors are not serialised) with no file round trip. The prefix cache is reset afterwards, since cached KV belongs to the old weights.
    Log-probs are vLLM's sampled-token log-probs (``logprobs=0``), computed from the processed
    logits of the temperature-scaled distribution; the learner should recompute old log-probs
    with its own forward when exact equality matters (vLLM and HF kernels differ in round-off).

    Banned multimodal tokens (:func:`banned_token_ids`) get ``logit_bias`` ``VLLM_BAN_BIAS`` on every
    request (vLLM's ``SamplingParams.logit_bias``, a ``{token id: bias}`` map added to the logits
    before sampling), so they are never sampled. Depending on vLLM's ``logprobs_mode`` the returned
    log-probs are of the raw or of the biased logits; the learner recomputes them over the masked
    distribution either way.
    """

    def __init__(self, model_path: str, *, tokenizer=None, model_tag: str = "model", **llm_kwargs: Any):
        if not vllm_available():
            raise RuntimeError("the vllm engine needs the 'vllm' package (GPU only): pip install vllm")
        from vllm import LLM

        self.llm = LLM(model=str(model_path), **{"enable_prefix_caching": True, **llm_kwargs})
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        self.model_tag = model_tag
        self.banned_token_ids = banned_token_ids(self.tokenizer)

    def sync_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        weights = [(n, t.detach()) for n, t in named_tensors]

        def _load(model):
            model.load_weights(weights=weights)

        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(_load)
        else:  # older vLLM with an in-process executor
            _load(self.llm.llm_engine.model_executor.driver_worker.model_runner.model)
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()

    def _run(self, reqs: list[tuple[str, list, int, int]], params: SamplingParams, stops: frozenset):
        from vllm import SamplingParams as VSP

        ban = {"logit_bias": {i: VLLM_BAN_BIAS for i in self.banned_token_ids}} if self.banned_token_ids else {}
        inputs, sps = [], []
        for text, images, max_tokens, seed in reqs:
            inputs.append({"prompt": text, **({"multi_modal_data": {"image": images}} if images else {})})
            sps.append(VSP(n=1, temperature=params.temperature, top_p=params.top_p, max_tokens=max_tokens,
                           seed=seed, stop_token_ids=sorted(stops), logprobs=0, skip_special_tokens=False,
                           detokenize=True, **ban))
        outs = self.llm.generate(inputs, sps, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            lps = [float(next(iter(d.values())).logprob) if d else float("nan") for d in (c.logprobs or [])]
            lps += [float("nan")] * (len(ids) - len(lps))
            res.append((ids, lps, c.finish_reason))
        return res

    def generate(self, prompts: Sequence[TextPrompt], params: SamplingParams, n: int = 1,
                 seed: int = 0) -> list[list[Rollout]]:
        params.validate()
        think_end, forced_seq, stops = special_ids(self.tokenizer, None, params.style)
        keys = [(pi, j) for pi in range(len(prompts)) for j in range(n)]
        seeds = [rollout_seed(seed, prompts[pi].id, self.model_tag, j) for pi, j in keys]
        budget = params.thinking_budget
        first = self._run([(prompts[pi].text, prompts[pi].images, min(budget or params.max_new_tokens,
                                                                           params.max_new_tokens), s)
                           for (pi, _), s in zip(keys, seeds)], params, stops)
        state = []
        follow = []
        for r, ((pi, j), (ids, lps, fin)) in enumerate(zip(keys, first)):
            stopped = fin == "stop" or (bool(ids) and ids[-1] in stops)
            closed = think_end in ids
            st = {"ids": ids, "lps": lps, "forced": [False] * len(ids), "finish": None}
            if stopped:
                st["finish"] = "stop"
            elif budget is not None and not closed and len(ids) >= budget:
                st["ids"] = ids + list(forced_seq)
                st["lps"] = lps + [float("nan")] * len(forced_seq)
                st["forced"] += [True] * len(forced_seq)
                st["finish"] = "forced"
                follow.append((r, params.answer_budget))
            elif len(ids) < params.max_new_tokens and budget is not None and budget < params.max_new_tokens:
                follow.append((r, params.max_new_tokens - len(ids)))
            else:
                st["finish"] = "length"
            state.append(st)
        if follow:
            reqs = []
            for r, mt in follow:
                pi = keys[r][0]
                text = prompts[pi].text + self.tokenizer.decode(state[r]["ids"], skip_special_tokens=False)
                reqs.append((text, prompts[pi].images, mt, (seeds[r] + 1) & ((1 << 63) - 1)))
            for (r, mt), (ids, lps, fin) in zip(follow, self._run(reqs, params, stops)):
                st = state[r]
                st["ids"] += ids
                st["lps"] += lps
                st["forced"] += [False] * len(ids)
                if st["finish"] is None:
                    st["finish"] = "stop" if fin == "stop" or (ids and ids[-1] in stops) else "length"
        res: list[list[Rollout]] = [[] for _ in prompts]
        for r, (pi, j) in enumerate(keys):
            st = state[r]
            body = st["ids"][:-1] if st["ids"] and st["ids"][-1] in stops and not st["forced"][-1] else st["ids"]
            res[pi].append(Rollout(prompts[pi].id, j, seeds[r], [], st["ids"], st["lps"], st["forced"],
                                   st["finish"], self.tokenizer.decode(body, skip_special_tokens=False)))
        return res
