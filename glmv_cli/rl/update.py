"""The GRPO policy update: old log-probs, then ``ppo_epochs x mini_batches`` optimizer steps over packs.

``PolicyUpdate.run(rows, step)``:

1. ``rows.plan_update`` splits the rows into exactly ``mini_batches`` mini-batches (fewer only when
   a step kept fewer rows than that; the metrics say so) and packs each; this rank collates its
   packs (``rows.collate_pack``). Every rank runs the same number of micro batches.
2. Old log-probs. Recomputed by a no-grad forward of the current weights -- unless the update is a
   single optimizer step (``ppo_epochs = mini_batches = 1``) and the rollout engine's log-probs are
   those of the learner's own weights at the same temperature (``exact_logprobs``, the in-process
   HF engine): then the recomputation would only reproduce them, up to the ~1e-6 difference of
   KV-cache decode vs full forward, and is skipped (metric ``old_logp_recomputed`` 0; the PPO
   ratio then starts at ~1 instead of exactly 1).
3. The optimizer steps, through ``Engine.train_step``: the loss function returns the SUM of
   per-token (or per-sequence) losses and the engine divides by the global count, so token-mean
   over micro batches and ranks is the token mean of the whole mini-batch. The learning-rate
   schedule is indexed by ``step x ppo_epochs x mini_batches + k``: a step that keeps fewer rows
   than mini-batches never shifts the schedule of later steps.

Temperature. Rollouts sample softmax(z / T); old, new, reference and behaviour log-probs are all
of that tempered distribution (``forward_logp(temperature=T)``), so at T != 1 the ratio still
starts at 1 (untempered log-probs are off by ~1 nat at T = 0.7 on a random tiny model).

Banned tokens: the rollout engine never samples the structural multimodal tokens (their logits are
-inf); ``forward_logp`` applies the same mask -- on the chunked head as an additive bias row of
-inf (exact: the banned tokens leave the log-sum-exp, and the kernel's backward gives their rows of
the head zero gradient), on the full-logits path as a finite floor so entropy stays finite.
"""

from __future__ import annotations

import contextlib
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from glmv_cli.rl import grpo
from glmv_cli.rl.rows import PackSpec, Row, collate_pack, plan_stats, plan_update, unique_images
from glmv_cli.training import dist

#: logit of a banned token on the full-logits path (fp32): exp(MASKED_LOGIT - lse) == 0 exactly
MASKED_LOGIT = -1.0e30


@contextmanager
def _image_runs(model: Any, batch: dict[str, Any]) -> Iterator[list[torch.Tensor]]:
    """Within the block, the model's vision features of the pack's distinct images fill its image runs.

    transformers computes image features inside the model call (``get_image_features``) and scatters
    them onto the ``<|image|>`` tokens in order. Here that method (on the inner model instance, for
    this one call) returns one entry per image *run*, reusing each distinct image's features;
    probe images are dropped from the runs, and their features' sum x 0 is appended to the yielded
    list for the caller to add to the result. The tower thus runs inside the root module's call, as
    DeepSpeed ZeRO-3 expects (its hooks gather parameters a module reads from a child it does not
    call, like the vision position table, only on that path)."""
    inner = model.model
    runs, n_real = batch["image_runs"].tolist(), int(batch["real_images"])
    ties: list[torch.Tensor] = []
    orig = type(inner).get_image_features

    def shared(self: Any, pixel_values: torch.Tensor, image_grid_thw: Any = None, **kw: Any) -> Any:
        out = orig(self, pixel_values, image_grid_thw, **kw)
        feats = out.pooler_output
        if len(feats) > n_real:  # probe images: the tower ran (same collectives everywhere), no effect
            ties.append(torch.stack([f.float().sum() for f in feats[n_real:]]).sum() * 0.0)
        out.pooler_output = tuple(feats[k] for k in runs) if runs else (feats[0][:0],)
        return out

    inner.get_image_features = types.MethodType(shared, inner)
    try:
        yield ties
    finally:
        inner.__dict__.pop("get_image_features", None)


def forward_logp(model: Any, batch: dict[str, Any], *, temperature: float = 1.0, banned: Sequence[int] = (),
                 want_entropy: bool = False, chunked: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probs of the response tokens [rows, T_resp] under softmax(masked logits / T), entropy or
    None) for one pack of ``rows.collate_pack``.

    The vision tower runs once over the pack's distinct images and their features fill every image
    run (``_image_runs``), so rows of one group share one vision forward and its gradient is the
    sum over those rows (as if each row had run it); probe images enter with weight 0. Logits exist
    only at response positions (``logits_to_keep``); without entropy they never exist at all: the
    head runs chunked (``glmv_kernels``) inside its own module call, where ZeRO-3 has gathered its
    weight."""
    from glmv_kernels.logprobs import linear_logprobs
    from glmv_kernels.model_loss import head_forward, unwrap

    m = unwrap(model)
    pos, tgt = batch["resp_pos"], batch["resp_tgt"]
    kw: dict[str, Any] = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
                          "attention_mask": None, "use_cache": False, "logits_to_keep": pos}
    images = contextlib.nullcontext([])
    if "pixel_values" in batch:
        kw.update(pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"])
        images = _image_runs(m, batch)
    ban = torch.tensor(list(banned), dtype=torch.long, device=tgt.device) if banned else None
    ent = None
    if want_entropy or not chunked:
        with images as ties:
            logits = model(**kw).logits[0].float() / temperature  # [N, V]
        if ban is not None:
            # a finite floor, not -inf: exp() is exactly 0 either way, but entropy's p * log p stays
            # 0 instead of 0 * -inf = nan
            logits = logits.index_fill(-1, ban, MASKED_LOGIT)
        logp = grpo.token_logprobs(logits, tgt)
        ent = grpo.entropy_from_logits(logits) if want_entropy else None
    else:
        def head(lm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
            w, bias = lm.weight, lm.bias
            if ban is not None:
                row = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device).index_fill_(0, ban, float("-inf"))
                bias = row if bias is None else bias + row
            return linear_logprobs(hidden[0], w, tgt.to(hidden.device), bias=bias, temperature=temperature)

        with head_forward(m, head), images as ties:
            logp = model(**kw).logits
    for t in ties:
        logp = logp + t
    lay = batch["layout"]
    return logp[lay], (ent[lay] if ent is not None else None)


@contextmanager
def packed_text_attention(model: Any) -> Iterator[None]:
    """Within the block, the LM's attention reads sample boundaries from the packed position ids
    (``glmv_kernels``' registered ``glmv_packed``: flash-attn varlen, flex, or one sdpa per sample)
    instead of transformers' sdpa with a dense block-diagonal mask, whose cost over a pack of k
    rows is k times the rows' own attention. Only an sdpa/eager text attention is swapped (a
    flash-attention model already cuts packed rows itself); the vision tower and the rollouts'
    padded batches are untouched, and the exported config never sees the name."""
    from glmv_kernels.attention import register_hf_packed_attention

    cfg = model.config.get_text_config()
    old = getattr(cfg, "_attn_implementation", None)
    if old not in ("sdpa", "eager"):
        yield
        return
    model.set_attn_implementation({"text_config": register_hf_packed_attention()})
    try:
        yield
    finally:
        model.set_attn_implementation({"text_config": old})


def loss_units(batch: dict[str, Any], agg: str) -> float:
    """The loss units of a pack: loss tokens (token-mean) or sequences with any (seq-mean-*)."""
    m = batch["loss_mask"]
    return float(m.sum()) if agg == "token-mean" else float((m.sum(-1) > 0).sum())


@dataclass
class UpdateSetup:
    """What the update needs besides the rows: from the trainer's model, options and engine."""

    spec: PackSpec
    micro_batch: int
    temperature: float
    banned: tuple[int, ...]
    exact_logprobs: bool  # the rollout engine's log-probs are the learner's own (HF engine)
    equal_images: bool  # pad every rank's pack to the same image count (vision chunks over ranks)


class PolicyUpdate:
    """Runs the update of one RL step on the DeepSpeed engine (``training.engine.Engine``)."""

    def __init__(self, engine: Any, loss_opts: Any, setup: UpdateSetup, ref_model: Any = None):
        self.engine, self.lc, self.setup, self.ref_model = engine, loss_opts, setup, ref_model
        self.rank, self.world = int(getattr(engine, "rank", 0)), int(getattr(engine, "world", 1))

    def _logp(self, model: Any, b: dict[str, Any], want_entropy: bool = False):
        s = self.setup
        return forward_logp(model, b, temperature=s.temperature, banned=s.banned, want_entropy=want_entropy)

    def collate(self, rows: Sequence[Row], plan: list) -> list[list[dict[str, Any]]]:
        """This rank's packs of every mini-batch, collated."""
        out = []
        for mb in plan:
            mine = mb[self.rank]
            batches = []
            for k, p in enumerate(mine):
                n_img = 0
                if self.setup.equal_images:
                    n_img = max(unique_images([rows[i] for i in ranks[k]]) for ranks in mb)
                batches.append(collate_pack([rows[i] for i in p], self.setup.spec, min_images=n_img))
            out.append(batches)
        return out

    def _old_logp(self, mbs: list[list[dict[str, Any]]], recompute: bool) -> float:
        """Fills old (and reference) log-probs; returns the max |old - behaviour| (0 when reused)."""
        gap = 0.0
        model = self.engine.module
        model.eval()
        with torch.no_grad():
            for b in (b for mb in mbs for b in mb):
                if recompute:
                    b["old_logp"] = self._logp(model, self.engine._to_device(b))[0].cpu()
                    gap = max(gap, float(((b["old_logp"] - b["behaviour_logp"]).abs() * b["loss_mask"]).max()))
                else:
                    b["old_logp"] = b["behaviour_logp"]
                if self.ref_model is not None:
                    b["ref_logp"] = self._logp(self.ref_model, b)[0]
        return gap

    def run(self, rows: Sequence[Row], step: int) -> dict[str, float]:
        lc, s = self.lc, self.setup
        lengths = [len(r.ids) for r in rows]
        plan = plan_update(lengths, [r.rid for r in rows], world=self.world, mini_batches=lc.mini_batches,
                           micro_batch=s.micro_batch)
        stats = plan_stats(plan, lengths)
        mbs = self.collate(rows, plan)
        recompute = not (lc.ppo_epochs * len(plan) == 1 and s.exact_logprobs)
        ref = packed_text_attention(self.ref_model) if self.ref_model is not None else contextlib.nullcontext()
        with packed_text_attention(self.engine.module), ref:
            return self._run(plan, mbs, stats, recompute, step)

    def _run(self, plan: list, mbs: list[list[dict[str, Any]]], stats: Any, recompute: bool,
             step: int) -> dict[str, float]:
        lc = self.lc
        t0 = time.perf_counter()
        gap = self._old_logp(mbs, recompute)
        old_s = time.perf_counter() - t0
        kw = lc.loss_kwargs()
        stats_mb: list[dict[str, float]] = []
        first = {"on": True, "gap": 0.0, "rmin": 1.0, "rmax": 1.0}

        def loss_fn(model: Any, batch: dict[str, Any]) -> torch.Tensor:
            logp, ent = self._logp(model, batch, want_entropy=lc.entropy_coef != 0)
            loss, m = grpo.rlcs_loss(logp, batch["old_logp"], batch["advantages"], batch["loss_mask"],
                                     ref_logp=batch.get("ref_logp"), entropy=ent, denominator=1.0, **kw)
            stats_mb.append(m)
            if first["on"] and m["tokens"] > 0:
                d = ((logp.detach() - batch["behaviour_logp"]).abs() * batch["loss_mask"]).max()
                first["gap"] = max(first["gap"], float(d))
                first["rmin"], first["rmax"] = min(first["rmin"], m["ratio_min"]), max(first["rmax"], m["ratio_max"])
            return loss

        def count(batch: dict[str, Any]) -> float:
            return loss_units(batch, lc.loss_agg)

        steps = []
        for e in range(lc.ppo_epochs):
            for j, micro in enumerate(mbs):
                # the schedule position of this optimizer step, whatever earlier steps ran
                self.engine.step = (step * lc.ppo_epochs + e) * lc.mini_batches + j
                steps.append(self.engine.train_step(micro, loss_fn=loss_fn, count_fn=count))
                first["on"] = False
        return self._metrics(steps, stats_mb, mbs, first, gap if recompute else None, recompute, stats, old_s)

    def _metrics(self, steps: list[dict[str, float]], stats_mb: list[dict[str, float]],
                 mbs: list[list[dict[str, Any]]], first: dict[str, Any], gap: float | None, recompute: bool,
                 plan: Any, old_s: float) -> dict[str, float]:
        lc = self.lc
        w = [m.get("tokens", 0.0) for m in stats_mb]
        keys = ("clip_frac_high", "clip_frac_low", "dual_clip_frac", "approx_kl")
        batches = [b for mb in mbs for b in mb]
        # token-weighted over every rank's micro batches: the same figures as one process
        sums = dist.all_sum([sum(w)] + [sum(m.get(k, 0.0) * t for m, t in zip(stats_mb, w)) for k in keys]
                            + [sum(float(b["forced_mask"].sum()) for b in batches),
                               float(sum(b["real_tokens"] for b in batches))])
        tot = sums[0] or 1.0
        avg = {k: v / tot for k, v in zip(keys, sums[1:len(keys) + 1])}
        g_first, neg_rmin, rmax = dist.all_max([first["gap"], -first["rmin"], first["rmax"]])
        # |learner - rollout engine| log-prob on sampled tokens before the update: ~1e-6 (same
        # weights and temperature, two code paths: KV-cache decode vs packed forward)
        (gap_all,) = dist.all_max([gap]) if gap is not None else (g_first,)
        tsec = sum(st["time_s"] for st in steps)
        return {
            "loss": steps[-1]["loss"], "loss_first": steps[0]["loss"], "lr": steps[-1]["lr"],
            "grad_norm": steps[-1]["grad_norm"], "optimizer_steps": float(len(steps)),
            "mini_batches_run": float(len(mbs)), **avg, "clip_frac": avg["clip_frac_high"] + avg["clip_frac_low"],
            "loss_tokens": sums[0] / max(1, len(steps)),
            "forced_tokens_masked": sums[len(keys) + 1] if lc.mask_forced_tokens else 0.0,
            "behaviour_logp_gap": gap_all, "ratio_first_min": -neg_rmin, "ratio_first_max": rmax,
            "old_logp_recomputed": 1.0 if recompute else 0.0,
            "padding_ratio": plan.padding_ratio, "update_forwards": float(plan.forwards),
            "update_tokens_per_s": lc.ppo_epochs * sums[-1] / max(tsec, 1e-9),
            "old_logp_s": old_s, "update_s": tsec,
        }
