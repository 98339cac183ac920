"""``HFEngine``: the hand-written KV-cache decode loop over a transformers GLM-4V model (CPU or GPU).

See ``glmv_cli.generation`` for why it is not ``generate()`` and for the contract it keeps.

The loop itself is :meth:`HFEngine.decode`: rows (one sampled sequence each) over distinct
prompts, each row with its own generator and state machine. ``generate`` builds the rows of the
rollout contract (per-rollout seeds, forced answering, banned tokens masked to -inf); the HTTP
server (``glmv_cli.serving``) builds rows from requests (explicit seeds, per-request stop ids and
additive logit biases, optional prompt log-probs) and runs the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from glmv_cli.generation.sampling import (Prompt, Rollout, SamplingParams, _RowState, banned_token_ids,
                                          control_stop_ids, mask_banned, response_ids, rollout_seed,
                                          sample_from_logits, special_ids)


@dataclass
class DecodeRow:
    """One sequence of a decode batch: its prompt (index into the batch's prompts), its own
    random generator (one float64 uniform per step), its state machine (stop, length, forcing) and
    an optional additive logit bias ``{token id: bias}`` applied before temperature."""

    prompt: int
    generator: Any
    state: _RowState
    bias: dict[int, float] | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)


class HFEngine:
    """Batched sampling with a KV cache over a transformers Glm4v model (CPU or GPU).

    ``batch_size`` bounds the rows (prompts x n) decoded together; prompts are grouped so a
    prompt's n rollouts always share a batch. ``model_tag`` enters every rollout's seed: the RL
    stage passes one per policy version (e.g. ``step-120``) so that a prompt drawn again at a later
    step gets fresh samples, while a resumed step reproduces its own. ``banned_token_ids`` (computed
    once from tokenizer and config) are masked out of every sampling step. ``lockstep`` (a
    ``generation.lockstep.LockStep``; data-parallel ranks under ZeRO-3) keeps every rank's module
    calls in step: all ranks call ``generate`` together, possibly with no prompts.
    """

    #: the log-probs are the learner's own (same weights, same temperature, in this process), so the
    #: RL update may reuse them as its old log-probs
    exact_logprobs = True

    def __init__(self, model, tokenizer, *, batch_size: int = 32, model_tag: str = "model", lockstep=None):
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.batch_size = max(1, int(batch_size))
        self.model_tag = model_tag
        self.lockstep = lockstep
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
        groups = -(-len(prompts) // per)
        if self.lockstep is not None:
            groups = self.lockstep.max_int(groups)
        out: list[list[Rollout]] = []
        for g in range(groups):
            chunk = list(prompts[g * per:(g + 1) * per])
            if chunk:
                out.extend(self._generate_group(chunk, params, n, seed))
            else:
                self._idle_group()
        return out

    def _idle_group(self) -> None:
        """A lock-stepped rank without prompts: a filler prefill, then idle steps until all are done."""
        import torch

        ls, model, dev = self.lockstep, self.model, self.device
        f = ls.probe_prompt(ls.max_int(0))
        ids = torch.tensor([f["input_ids"]], dtype=torch.long, device=dev)
        mask = torch.ones_like(ids)
        types = (ids == self.image_token_id).long()
        grid = f["image_grid_thw"].to(dev) if f["image_grid_thw"] is not None else None
        with torch.no_grad():
            pos, _ = model.model.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)
            kw = {}
            if grid is not None:
                kw = dict(pixel_values=f["pixel_values"].to(dev, model.dtype), image_grid_thw=grid,
                          mm_token_type_ids=types)
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=1, **kw)
            self._idle_until_all_done()

    def _idle_until_all_done(self) -> None:
        if self.lockstep is None:
            return
        while self.lockstep.any_active(False):
            self.lockstep.idle_step(self.model, self.device)

    def _generate_group(self, prompts: list[Prompt], params: SamplingParams, n: int,
                        seed: int) -> list[list[Rollout]]:
        import torch

        think_end, forced_seq, stops = special_ids(self.tokenizer, self.model, params.style)
        hit = sorted(set(forced_seq) & set(self.banned_token_ids))
        if hit:
            raise ValueError(f"forced-answering tokens {hit} are banned multimodal tokens; check the tokenizer")
        keys = [(pi, j) for pi in range(len(prompts)) for j in range(n)]
        seeds = [rollout_seed(seed, prompts[pi].id, self.model_tag, j) for pi, j in keys]
        rows = [DecodeRow(pi, torch.Generator().manual_seed(s),
                          _RowState(params.thinking_budget, params.answer_budget, params.max_new_tokens,
                                    think_end, forced_seq, stops))
                for (pi, _), s in zip(keys, seeds)]
        self.decode(prompts, rows, params.temperature, params.top_p, banned=self.banned_token_ids)
        res: list[list[Rollout]] = [[] for _ in prompts]
        control = control_stop_ids(self.tokenizer)  # content stops such as </answer> stay in the text
        for row, (pi, j), s in zip(rows, keys, seeds):
            toks = row.token_ids
            body = response_ids(toks, row.forced, control)
            res[pi].append(Rollout(
                prompt_id=prompts[pi].id, index=j, seed=s, prompt_ids=list(prompts[pi].input_ids),
                token_ids=toks, logprobs=row.logprobs, forced=row.forced, finish_reason=row.state.finish or "length",
                text=self.tokenizer.decode(body, skip_special_tokens=False),
            ))
        return res

    def _prefill(self, prompts: Sequence[Prompt], full_logits: bool):
        """One left-padded forward over the distinct prompts: (cache, logits, mask, next positions).
        ``logits`` is (P, V) at the last position, or (P, L, V) over every position with
        ``full_logits`` (prompt log-probs)."""
        import torch
        from transformers import DynamicCache

        model, dev = self.model, self.device
        batch = list(prompts)
        if self.lockstep is not None:  # the same image count on every rank (filler row, dropped below)
            n_img = sum(torch.as_tensor(p.image_grid_thw).reshape(-1, 3).shape[0] for p in prompts
                        if p.image_grid_thw is not None)
            need = self.lockstep.max_int(n_img) - n_img
            if need > 0:
                batch.append(Prompt("<lockstep>", **self.lockstep.probe_prompt(need)))
        lens = [len(p.input_ids) for p in batch]
        L = max(lens)
        ids = torch.full((len(batch), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), L), dtype=torch.long)
        for r, p in enumerate(batch):
            ids[r, L - lens[r]:] = torch.tensor(p.input_ids, dtype=torch.long)
            mask[r, L - lens[r]:] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        types = ((ids == self.image_token_id) & mask.bool()).long()
        pv = [p.pixel_values for p in batch if p.pixel_values is not None]
        grids = [torch.as_tensor(p.image_grid_thw).reshape(-1, 3) for p in batch if p.image_grid_thw is not None]
        pixel_values = torch.cat([torch.as_tensor(x) for x in pv]).to(dev, model.dtype) if pv else None
        grid = torch.cat(grids).to(dev) if grids else None
        pos, _ = model.model.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)
        next_pos = (pos.masked_fill(~mask.bool()[None], -1).amax(dim=(0, 2)) + 1).long()
        cache = DynamicCache(config=model.config.get_text_config())
        kw = dict(pixel_values=pixel_values, image_grid_thw=grid, mm_token_type_ids=types) if grid is not None else {}
        outp = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                     use_cache=True, logits_to_keep=0 if full_logits else 1, **kw)
        logits = outp.logits if full_logits else outp.logits[:, -1]
        cache = outp.past_key_values
        if len(batch) > len(prompts):
            cache.batch_select_indices(torch.arange(len(prompts), device=dev))
            logits, mask, next_pos = logits[:len(prompts)], mask[:len(prompts)], next_pos[:len(prompts)]
        return cache, logits, mask, next_pos

    def decode(self, prompts: Sequence[Prompt], rows: Sequence[DecodeRow], temperature: float, top_p: float, *,
               banned: Sequence[int] = (), prompt_logprobs: Sequence[bool] | None = None) -> list[list | None]:
        """Runs ``rows`` to completion, appending to each row's token_ids / logprobs / forced.

        Prefill runs once per distinct prompt; the cache is then expanded to the rows
        (``batch_select_indices`` with repeats), and finished rows are dropped from it. ``banned``
        ids get logit -inf; a row's ``bias`` is added to its logits; log-probs are of
        ``log softmax(processed logits / T)`` (T = 1 when greedy). Returns, per prompt, its prompt
        log-probs (``[None, (lp(t1 | t0), rank), ...]`` under the first of its rows' bias) where
        ``prompt_logprobs[p]`` asks for them, else None.
        """
        import torch

        want = list(prompt_logprobs) if prompt_logprobs is not None else [False] * len(prompts)
        dev = self.device
        ban = torch.tensor(list(banned), dtype=torch.long, device=dev)
        with torch.no_grad():
            cache, logits, mask, next_pos = self._prefill(prompts, any(want))
            scored = self._prompt_logprobs(prompts, rows, logits, mask, temperature, want) if any(want) else None
            if logits.dim() == 3:
                logits = logits[:, -1]
            first = [r.prompt for r in rows]
            if first != list(range(len(prompts))):  # the cache holds one row per prompt: expand to the rows
                sel = torch.tensor(first, device=dev)
                cache.batch_select_indices(sel)
                logits, mask, next_pos = logits[sel], mask[sel], next_pos[sel]
            bias = self._bias_rows(rows, logits.shape[-1], dev)
            self._decode_loop(rows, cache, logits, mask, next_pos, temperature, top_p, ban, bias)
        return scored if scored is not None else [None] * len(prompts)

    @staticmethod
    def _bias_rows(rows: Sequence[DecodeRow], vocab: int, dev):
        """A dense (R, V) fp32 bias of the rows' logit biases, or None when no row has one."""
        import torch

        if not any(r.bias for r in rows):
            return None
        bias = torch.zeros((len(rows), vocab), dtype=torch.float32)
        for k, r in enumerate(rows):
            for t, b in (r.bias or {}).items():
                bias[k, int(t)] = float(b)
        return bias.to(dev)

    def _prompt_logprobs(self, prompts, rows, logits, mask, temperature: float, want: Sequence[bool]):
        import torch

        out: list[list | None] = []
        for p, prompt in enumerate(prompts):
            if not want[p]:
                out.append(None)
                continue
            n = len(prompt.input_ids)
            start = mask.shape[1] - n
            lg = logits[p, start:start + n - 1].float()
            bias = next((r.bias for r in rows if r.prompt == p and r.bias), None)
            if bias:
                idx = torch.tensor([int(t) for t in bias], dtype=torch.long, device=lg.device)
                lg = lg.index_add(-1, idx, torch.tensor(list(bias.values()), dtype=lg.dtype, device=lg.device)
                                  .expand(lg.shape[0], -1).contiguous())
            lp = torch.log_softmax(lg / (temperature or 1.0), dim=-1)
            tgt = torch.tensor(prompt.input_ids[1:], dtype=torch.long, device=lg.device)
            own = lp.gather(1, tgt[:, None])
            rank = (lp > own).sum(-1) + 1
            out.append([None] + list(zip(own[:, 0].tolist(), rank.tolist())))
        return out

    def _decode_loop(self, rows: Sequence[DecodeRow], cache, logits, mask, next_pos, temperature: float,
                     top_p: float, ban, bias) -> None:
        import torch

        model, dev = self.model, self.device
        active = list(range(len(rows)))
        while active:
            u = torch.stack([torch.rand((), generator=rows[r].generator, dtype=torch.float64) for r in active])
            proc = mask_banned(logits, ban)
            if bias is not None:
                proc = proc + bias
            sampled, logp_all = sample_from_logits(proc, u, temperature, top_p)
            forced_now = [rows[r].state.next_forced() for r in active]
            if any(f is not None for f in forced_now):
                ftok = torch.tensor([f if f is not None else 0 for f in forced_now], device=logits.device)
                fl = torch.log_softmax(proc / (temperature or 1.0), -1)
                fl = fl.gather(1, ftok[:, None])[:, 0]
                isf = torch.tensor([f is not None for f in forced_now], device=logits.device)
                sampled = torch.where(isf, ftok, sampled)
                logp_all = torch.where(isf, fl, logp_all)
            tok_l, lp_l = sampled.tolist(), logp_all.tolist()
            keep = []
            for k, r in enumerate(active):
                row, was_forced = rows[r], forced_now[k] is not None
                row.token_ids.append(tok_l[k])
                row.logprobs.append(lp_l[k])
                row.forced.append(was_forced)
                row.state.step(tok_l[k], was_forced)
                if row.state.finish is None:
                    keep.append(k)
            if not keep:
                break
            if self.lockstep is not None:
                self.lockstep.any_active(True)
            feed = sampled
            if len(keep) < len(active):
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                mask, next_pos, feed = mask[sel], next_pos[sel], sampled[sel]
                if bias is not None:
                    bias = bias[sel]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            p3 = next_pos.view(1, -1, 1).expand(3, -1, 1)
            o = model(input_ids=feed[:, None], attention_mask=mask, position_ids=p3,
                      past_key_values=cache, use_cache=True)
            cache, logits = o.past_key_values, o.logits[:, -1]
            next_pos = next_pos + 1
        self._idle_until_all_done()
