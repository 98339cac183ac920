"""The RLCS step loop: curriculum sampling → expanded rollouts → rewards → GRPO update.

One step k:

1. ``n = controller.prompts_to_roll()`` (B, or about B / (1 − r) once the all-equal share r has
   been seen); ``sampler.sample(n)`` draws prompt ids by tier weight and domain mixture.
2. Rollouts: ``group_size`` responses per prompt from the rollout engine (temperature / top-p,
   thinking budget + forced answering), seeded by (seed, step, round) so that a resumed run rolls
   exactly what the uninterrupted one would have.
3. Rewards from the reward system. A group with a judge failure (no endpoint answered) is dropped
   and counted (``--on-judge-error drop``, default) or stops the run (``fail``). Every surviving
   group updates the sampler's online pass rate of its prompt.
4. ``select_groups`` keeps the first B informative groups; while short, up to
   ``max_topup_rounds`` extra rounds roll the (expanded) shortfall of prompts not yet rolled this
   step; then ``controller.update`` folds the step's all-equal share into the EMA.
5. Update. Advantages A = r − mean(group) (std scaling optional). Each response becomes one row
   ``prompt + response``; old log-probs are recomputed by a no-grad forward of the current
   weights (so the first mini-batch has ρ = 1 exactly, whatever the rollout engine's kernels),
   forced tokens are masked out of the loss by default, and ``ppo_epochs × mini_batches``
   optimizer steps run through the DeepSpeed engine's ``train_step``: the loss function returns
   the SUM of per-token (or per-sequence) losses and the engine divides by the global count, so
   ``token-mean`` over micro-batches equals the token mean of the whole batch.

Cost (tiny preset SFT'd on synth counting, CPU, 1 thread, 2 cores shared by ~7 jobs): a step of
B = 8 informative groups × 8 rollouts of ~65 tokens (10 prompts rolled on average) took a median
20.8 s wall: 6.6 s rollouts, 9.0 s update (old-log-prob forward + forward/backward over 64 rows),
the rest scoring and bookkeeping; the whole 40-step run used 2 min 23 s of CPU in 17 min of wall.
Rows repeat their prompt's image per rollout (n× vision-tower work in the update); at the tiny
preset's 16 image tokens that is noise, for real models a shared-prefix update would pay off.

Banned tokens. The rollout engine never samples the structural multimodal tokens
(``<|image|>``, ``<|video|>``, image/video begin/end; ``rollout.banned_token_ids``): their
logits are -inf, so the behaviour policy is the *masked* distribution. ``_forward_logp`` applies
the same mask, so old, new and behaviour log-probs are of one distribution and the ratio is 1
on-policy. The chunked LM-head path (``linear_logprobs``) gets the mask as an additive bias
row of -inf at the banned ids: exact (the banned tokens leave the log-sum-exp; no
log(1 − banned mass) subtraction, which loses all precision when that mass nears 1), no
[tokens × vocab] tensor, and the kernel's own backward gives the banned rows of the head zero
gradient. A banned token in a response can therefore only come from a foreign engine or a bug,
and ``collate`` refuses it (``GlmvError``) instead of training on a row it cannot re-run.

What a step logs (``metrics.jsonl``, one line per step, and per domain under ``domains``):
reward, pass rate (reward ≥ 0.5), informative fraction, expansion ratio / EMA / top-up rounds,
tier histogram, response length, truncation and forced-answer rates, clip fractions, approximate
KL, grad norm, tokens/s and the groups dropped for judge failures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from glmv_cli.errors import GlmvError
from glmv_cli.rl import grpo, sharding
from glmv_cli.rl.config import RLCSConfig
from glmv_cli.rl.curriculum import CurriculumSampler
from glmv_cli.rl.expansion import ExpansionController, select_groups
from glmv_cli.rl.groups import ScoredGroup, mean_se
from glmv_cli.rl.records import RLRecord

PASS_THRESHOLD = 0.5
JUDGE_ERRORS = ("drop", "fail")
STATE_VERSION = 1
#: logit of a banned token on the full-logits path (fp32): exp(MASKED_LOGIT - lse) == 0 exactly
MASKED_LOGIT = -1.0e30


def score_group(record: RLRecord, prompt_text: str, texts: Sequence[str], reward_config: Any) -> tuple[list[float], bool, int]:
    """(rewards, judge_failed, gate failures) of one group's response texts.

    A judge failure (``JudgeError``: no endpoint produced a verdict) on any response marks the
    whole group: its zeros are not the policy's fault, so training on them would teach noise.
    """
    from glmv_cli.rewards.scoring import score_detailed

    rewards, failed, gates = [], False, 0
    for t in texts:
        res = score_detailed(prompt_text, t, record.answer, record.domain, record.extra, config=reward_config)
        if res.error is not None and res.error.startswith("JudgeError"):
            failed = True
        if res.gate is not None:
            gates += 1
        rewards.append(float(res.reward))
    return rewards, failed, gates


@dataclass
class TrainerOptions:
    """Knobs of the loop that are not part of the RLCS algorithm."""

    seed: int = 0
    rollout_batch: int = 64          # rows (prompts × n) decoded together
    micro_batch: int = 16            # rows per forward/backward in the update
    on_judge_error: str = "drop"
    eval_temperature: float = 0.0    # 0 = greedy
    eval_samples: int = 1            # responses per eval prompt
    style: str = "glm41v"
    template: str | None = None      # the policy checkpoint's own chat template (None: glmv's rendering)


@dataclass
class _Row:
    ids: list[int]
    prompt_len: int
    forced: list[bool]
    logprobs: list[float]
    advantage: float
    pixel_values: Any
    grid: Any
    domain: str
    rid: str = ""
    live: bool = True  # False: a placeholder row of a rank with no share (no loss tokens)


class RLCSTrainer:
    """Owns sampler, expansion controller, rollout engine and the policy update of one run."""

    def __init__(self, engine: Any, processor: Any, records: Sequence[RLRecord], cfg: RLCSConfig,
                 reward_config: Any, opts: TrainerOptions, *, offline_grades: dict[str, float] | None = None,
                 ref_model: Any = None, log: Callable[[str], None] | None = None):
        from glmv_cli.generation import HFEngine

        if opts.on_judge_error not in JUDGE_ERRORS:
            raise GlmvError(f"--on-judge-error must be one of {', '.join(JUDGE_ERRORS)}, got '{opts.on_judge_error}'")
        self.engine, self.processor, self.cfg, self.opts = engine, processor, cfg, opts
        self.reward_config = reward_config
        self.records = list(records)
        self.by_id = {r.id: r for r in self.records}
        self.tok = getattr(processor, "tokenizer", processor)
        self.sampler = CurriculumSampler(
            [r.id for r in self.records], [r.domain for r in self.records],
            offline_pass_rates=offline_grades, seed=opts.seed, **cfg.curriculum.sampler_kwargs())
        self.controller: ExpansionController = cfg.expansion.controller()
        self.model = engine.module
        self.rank, self.world = int(getattr(engine, "rank", 0)), int(getattr(engine, "world", 1))
        self.probe = sharding.probe_params(self.model.config) if self.world > 1 else None
        self.rollout = HFEngine(self.model, self.tok, batch_size=opts.rollout_batch, model_tag="rlcs")
        self.ref_model = ref_model
        if cfg.loss.kl_coef > 0 and ref_model is None:
            raise GlmvError("--kl-coef > 0 needs a reference model (the stage keeps a frozen copy of --model)")
        self.image_token_id = int(self.model.config.image_token_id)
        # never sampled by the engine; the learner masks them too (same distribution, ratio 1)
        self.banned_ids: tuple[int, ...] = tuple(self.rollout.banned_token_ids)
        pad = getattr(self.tok, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self._prompts: dict[str, Any] = {}
        self.step = 0
        self.judge_dropped_total = 0
        self.log = log or (lambda s: None)

    # ------------------------------------------------------------------ prompts and rollouts

    def prompt(self, rid: str) -> Any:
        """The tokenized prompt of a record (cached: images are processed once per run)."""
        p = self._prompts.get(rid)
        if p is None:
            from glmv_cli.generation import prompt_from_record

            p = prompt_from_record(self.by_id[rid].record, self.tok, self.processor.image_processor,
                                   style=self.opts.style, template=self.opts.template)
            self._prompts[rid] = p
        return p

    def sampling_params(self, **over: Any) -> Any:
        from glmv_cli.generation import SamplingParams

        kw = {**self.cfg.rollout.sampling_kwargs(), "style": self.opts.style, **over}
        return SamplingParams(**kw)

    def _seed(self, step: int, rnd: int) -> int:
        # distinct per (run seed, step, round); rollout_seed hashes it with the prompt id and index
        return (self.opts.seed * 1_000_003 + step) * 101 + rnd

    def roll(self, ids: Sequence[str], step: int, rnd: int) -> list[ScoredGroup]:
        from glmv_cli.generation import prompt_text

        if not ids:
            return []
        mine = sharding.shard(ids, self.rank, self.world)  # all of them in one process
        prompts = [self.prompt(i) for i in mine]
        outs = []
        if mine:
            self.model.eval()
            with torch.no_grad():
                outs = self.rollout.generate(prompts, self.sampling_params(), n=self.cfg.rollout.group_size,
                                             seed=self._seed(step, rnd))
        groups = []
        for rid, p, rolls in zip(mine, prompts, outs):
            rec = self.by_id[rid]
            rewards, failed, gates = score_group(rec, prompt_text(rec.record.messages), [r.text for r in rolls],
                                                 self.reward_config)
            groups.append(ScoredGroup(rec, p, rolls, rewards, failed, gates))
        if self.world == 1:
            return groups
        from glmv_cli.training import dist

        every = sharding.gather_in_order([sharding.group_to_json(g) for g in groups], len(ids), dist.all_gather_json)
        return [sharding.group_from_json(d, self.by_id[d["rid"]], self.prompt(d["rid"])) for d in every]

    # ------------------------------------------------------------------ one step

    def collect(self, step: int) -> tuple[list[ScoredGroup], list[ScoredGroup], dict[str, Any]]:
        """Rolls this step's prompts (with top-ups); returns (kept, all valid groups, info)."""
        ctl = self.controller
        rolled: list[str] = []
        valid: list[ScoredGroup] = []
        dropped = 0
        rnd = 0
        n = ctl.prompts_to_roll()
        while True:
            ids = self.sampler.sample(n, exclude=rolled)
            rolled.extend(ids)
            for g in self.roll(ids, step, rnd):
                if g.judge_failed:
                    if self.opts.on_judge_error == "fail":
                        raise GlmvError(
                            f"the LLM judge gave no verdict for record '{g.record.id}' (domain '{g.record.domain}'): "
                            "no endpoint answered; fix the endpoint or run with --on-judge-error drop")
                    dropped += 1
                    continue
                self.sampler.update(g.record.id, g.rewards)
                valid.append(g)
            keep, _ = select_groups([g.rewards for g in valid], ctl.target_groups)
            n = ctl.topup_count(len(keep), rnd)
            if n <= 0 or not ids:
                break
            rnd += 1
        n_equal = sum(1 for g in valid if not g.informative)
        if valid:
            ctl.update(len(valid), n_equal, topup_rounds=rnd)
        keep, _ = select_groups([g.rewards for g in valid], ctl.target_groups)
        self.judge_dropped_total += dropped
        info = {"prompts_rolled": len(rolled), "groups_valid": len(valid), "groups_all_equal": n_equal,
                "judge_dropped_groups": dropped, "topup_rounds_used": rnd, "prompt_ids": list(rolled)}
        return [valid[i] for i in keep], valid, info

    def build_rows(self, groups: Sequence[ScoredGroup]) -> list[_Row]:
        rows = []
        for g in groups:
            adv = grpo.group_advantages(torch.tensor([g.rewards], dtype=torch.float32),
                                        std_normalize=self.cfg.loss.adv_std_normalize, eps=self.cfg.loss.adv_eps)[0]
            for r, a in zip(g.rollouts, adv.tolist()):
                rows.append(_Row(list(g.prompt.input_ids) + list(r.token_ids), len(g.prompt.input_ids),
                                 list(r.forced), list(r.logprobs), float(a), g.prompt.pixel_values, g.prompt.image_grid_thw,
                                 g.record.domain, g.record.id))
        return rows

    def _probe_row(self) -> _Row:
        """A one-token dummy image as its own row: runs the vision tower, adds no loss token."""
        pr = self.probe
        pv = torch.zeros(pr["merge"] ** 2, pr["patch_dim"])
        return _Row([pr["image_token_id"]], 1, [], [], 0.0, pv, torch.tensor([[1, pr["merge"], pr["merge"]]]),
                    "", "<vision-probe>", live=False)

    def collate(self, rows: Sequence[_Row]) -> dict[str, Any]:
        """Right-padded model inputs of some rows, with response-aligned loss tensors [b, L-1]."""
        if self.probe is not None and all(r.pixel_values is None for r in rows):
            rows = [*rows, self._probe_row()]
        b, L = len(rows), max(len(r.ids) for r in rows)
        ids = torch.full((b, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((b, L), dtype=torch.long)
        resp = torch.zeros((b, L - 1), dtype=torch.float32)
        forced = torch.zeros((b, L - 1), dtype=torch.bool)
        behaviour = torch.zeros((b, L - 1), dtype=torch.float32)
        targets = torch.full((b, L - 1), self.pad_id, dtype=torch.long)
        banned = set(self.banned_ids)
        for i, r in enumerate(rows):
            bad = [(k, t) for k, t in enumerate(r.ids[r.prompt_len:]) if t in banned]
            if bad:
                k, t = bad[0]
                raise GlmvError(
                    f"rollout of record '{r.rid}': response token {k} is the multimodal token id {t} "
                    f"({self.tok.convert_ids_to_tokens(t)!r}), which the rollout engine masks out and never samples; "
                    "the learner cannot re-run such a response (it would look for image features)")
            row = torch.tensor(r.ids)
            ids[i, :len(r.ids)] = row
            mask[i, :len(r.ids)] = 1
            targets[i, :len(r.ids) - 1] = row[1:]
            if not r.live:
                continue
            # logits at position t predict token t + 1: response token j sits at t = prompt_len - 1 + j
            s, e = r.prompt_len - 1, len(r.ids) - 1
            resp[i, s:e] = 1.0
            forced[i, s:e] = torch.tensor(r.forced, dtype=torch.bool)
            behaviour[i, s:e] = torch.tensor(r.logprobs, dtype=torch.float32)
        types = ((ids == self.image_token_id) & mask.bool()).long()
        pv = [torch.as_tensor(r.pixel_values) for r in rows if r.pixel_values is not None]
        grids = [torch.as_tensor(r.grid).reshape(-1, 3) for r in rows if r.grid is not None]
        grid = torch.cat(grids) if grids else None
        with torch.no_grad():
            pos, _ = self.model.model.get_rope_index(ids, types, image_grid_thw=grid, attention_mask=mask)
        batch = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "mm_token_type_ids": types,
                 "advantages": torch.tensor([r.advantage for r in rows], dtype=torch.float32),
                 "loss_mask": grpo.loss_mask_from_flags(resp, forced, mask_forced=self.cfg.loss.mask_forced_tokens),
                 "forced_mask": (forced & resp.bool()).float(), "behaviour_logp": behaviour,
                 "targets": targets}
        if pv:
            batch["pixel_values"] = torch.cat(pv)
            batch["image_grid_thw"] = grid
        return batch

    @staticmethod
    def _forward_logp(model: Any, batch: dict[str, Any], want_entropy: bool = False, banned: Sequence[int] = (),
                      chunked: bool = True):
        """(log-probs of ``batch["targets"]`` [b, L-1], entropy or None) under the policy with the
        ``banned`` ids masked out. ``chunked`` (default) uses the fused LM-head kernel when no entropy
        is wanted and the head is not ZeRO-3-partitioned; otherwise full fp32 logits.

        Positions whose target is banned (the prompt's own ``<|image|>`` run; never a response token,
        ``collate`` checks) have log-prob -inf under the mask; they get 0 and no gradient instead,
        so the loss mask's zeros there multiply a finite number."""
        kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "mm_token_type_ids",
                                    "pixel_values", "image_grid_thw") if k in batch}
        targets = batch["targets"]
        is_banned = None
        if banned:
            is_banned = torch.isin(targets, torch.tensor(list(banned), dtype=targets.dtype, device=targets.device))
        if chunked and not want_entropy:
            from glmv_kernels.logprobs import IGNORE_INDEX, linear_logprobs
            from glmv_kernels.model_loss import unwrap

            m = unwrap(model)
            w = m.lm_head.weight
            if not hasattr(w, "ds_id"):  # ZeRO-3 partitions the head: full logits below
                # chunked head: the [rows x L x vocab] logits never exist (vocab 151,552 at 8K+ tokens)
                hidden = m.model(**kw, use_cache=False)[0][:, :-1]
                bias = m.lm_head.bias
                if banned:
                    ban = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
                    ban.index_fill_(0, torch.tensor(list(banned), dtype=torch.long, device=w.device), float("-inf"))
                    bias = ban if bias is None else bias + ban
                    targets = targets.masked_fill(is_banned, IGNORE_INDEX)  # log-prob 0, no gradient
                return linear_logprobs(hidden, w, targets.to(hidden.device), bias=bias), None
        logits = model(**kw, use_cache=False).logits[:, :-1].float()
        if banned:
            # a finite floor, not -inf: exp() is exactly 0 either way, but entropy's p * log p stays
            # 0 instead of 0 * -inf = nan
            idx = torch.tensor(list(banned), dtype=torch.long, device=logits.device)
            logits = logits.index_fill(-1, idx, MASKED_LOGIT)
            targets = targets.to(logits.device).masked_fill(is_banned.to(logits.device), 0)
        logp = grpo.token_logprobs(logits, targets)
        if banned:
            logp = logp.masked_fill(is_banned.to(logp.device), 0.0)
        ent = grpo.entropy_from_logits(logits) if want_entropy else None
        return logp, ent

    def _count(self, batch: dict[str, Any]) -> float:
        m = batch["loss_mask"]
        if self.cfg.loss.loss_agg == "token-mean":
            return float(m.sum())
        return float((m.sum(-1) > 0).sum())

    def update(self, rows: Sequence[_Row]) -> dict[str, float]:
        """Old log-probs, then ppo_epochs × mini_batches optimizer steps; returns update metrics."""
        lc = self.cfg.loss
        mb = max(1, self.opts.micro_batch)
        if self.world > 1:
            # a rank without a share still runs one micro batch (the same collectives everywhere)
            # on a copy of a row that contributes no loss token
            rows = sharding.shard(rows, self.rank, self.world) or [replace(rows[0], live=False)]
        micro = [self.collate(rows[i:i + mb]) for i in range(0, len(rows), mb)]
        self.model.eval()
        with torch.no_grad():
            for b in micro:
                b["old_logp"] = self._forward_logp(self.model, b, banned=self.banned_ids)[0]
                if self.ref_model is not None:
                    b["ref_logp"] = self._forward_logp(self.ref_model, b, banned=self.banned_ids)[0]
        kw = lc.loss_kwargs()
        stats: list[dict[str, float]] = []

        def loss_fn(model: Any, batch: dict[str, Any]) -> torch.Tensor:
            logp, ent = self._forward_logp(model, batch, want_entropy=lc.entropy_coef != 0, banned=self.banned_ids)
            loss, m = grpo.rlcs_loss(logp, batch["old_logp"], batch["advantages"], batch["loss_mask"],
                                     ref_logp=batch.get("ref_logp"), entropy=ent, denominator=1.0, **kw)
            stats.append(m)
            return loss

        per = math.ceil(len(micro) / lc.mini_batches)
        chunks = [micro[i:i + per] for i in range(0, len(micro), per)]
        steps = []
        for _ in range(lc.ppo_epochs):
            for ch in chunks:
                steps.append(self.engine.train_step(ch, loss_fn=loss_fn, count_fn=self._count))
        tok = sum(s["tokens"] for s in steps)
        tsec = sum(s["time_s"] for s in steps)
        w = [s.get("tokens", 0.0) for s in stats]
        keys = ("clip_frac_high", "clip_frac_low", "dual_clip_frac", "approx_kl")
        # token-weighted over every rank's micro batches: the same figures as one process
        from glmv_cli.training import dist

        sums = dist.all_sum([sum(w)] + [sum(s.get(k, 0.0) * t for s, t in zip(stats, w)) for k in keys]
                            + [sum(float(b["forced_mask"].sum()) for b in micro)])
        tot = sums[0] or 1.0
        avg = {k: v / tot for k, v in zip(keys, sums[1:-1])}

        forced_tokens = sums[-1]
        # |learner − rollout engine| log-prob on sampled tokens before the update: ~1e-6 at T = 1
        # (same weights, two code paths: KV-cache decode vs full forward); a large gap means
        # misaligned tokens or a temperature ≠ 1 behaviour policy
        (gap,) = dist.all_max([max(float(((b["old_logp"] - b["behaviour_logp"]).abs() * b["loss_mask"]).max())
                                   for b in micro)])
        return {
            "loss": steps[-1]["loss"], "loss_first": steps[0]["loss"], "lr": steps[-1]["lr"],
            "grad_norm": steps[-1]["grad_norm"], "optimizer_steps": float(len(steps)),
            **avg, "clip_frac": avg["clip_frac_high"] + avg["clip_frac_low"],
            "loss_tokens": sums[0] / max(1, len(steps)),
            "forced_tokens_masked": forced_tokens if lc.mask_forced_tokens else 0.0,
            "behaviour_logp_gap": gap,
            "update_tokens_per_s": tok / max(tsec, 1e-9), "update_s": tsec,
        }

    def train_step(self) -> dict[str, Any]:
        """One full RLCS step; returns its metrics line."""
        t0 = time.perf_counter()
        step = self.step
        kept, valid, info = self.collect(step)
        t_roll = time.perf_counter() - t0
        m: dict[str, Any] = {"step": step + 1, **info}
        m.update(rollout_metrics(valid, kept))
        m.update(self.controller.metrics())
        m["batch_groups"] = len(kept)
        if kept:
            m.update(self.update(self.build_rows(kept)))
        else:
            self.log(f"step {step + 1}: no informative group; the policy is not updated")
            m.update({"loss": 0.0, "grad_norm": 0.0, "optimizer_steps": 0.0, "clip_frac": 0.0})
        m.update({f"sampler_{k}": v for k, v in self.sampler.metrics().items()})
        dm = self.sampler.domain_metrics()
        for d, vals in m["domains"].items():
            vals["tier_histogram"] = {k[5:]: int(v) for k, v in dm.get(d, {}).items() if k.startswith("tier_")}
            vals["sampler_pass_rate_mean"] = dm.get(d, {}).get("pass_rate_mean", 0.0)
        gen_tokens = sum(r.num_tokens for g in valid for r in g.rollouts)
        m["rollout_s"] = t_roll
        m["rollout_tokens_per_s"] = gen_tokens / max(t_roll, 1e-9)
        m["step_s"] = time.perf_counter() - t0
        m["tokens_per_s"] = (gen_tokens + m.get("loss_tokens", 0.0)) / max(m["step_s"], 1e-9)
        m["judge_dropped_total"] = self.judge_dropped_total
        self.step += 1
        return m

    # ------------------------------------------------------------------ held-out eval

    def evaluate(self, records: Sequence[RLRecord]) -> dict[str, Any]:
        """Mean reward (and SE over prompts) on held-out records; per domain too."""
        from glmv_cli.generation import prompt_from_record, prompt_text

        if not records:
            return {}
        n = max(1, self.opts.eval_samples)
        mine = sharding.shard(records, self.rank, self.world)
        prompts = [prompt_from_record(r.record, self.tok, self.processor.image_processor, style=self.opts.style,
                                      template=self.opts.template) for r in mine]
        sp = self.sampling_params(temperature=self.opts.eval_temperature)
        self.model.eval()
        t0 = time.perf_counter()
        outs = []
        if mine:
            with torch.no_grad():
                outs = self.rollout.generate(prompts, sp, n=n, seed=self.opts.seed + 7_777_777)
        scored = []  # per record: (judge failed, mean reward, response lengths)
        for rec, rolls in zip(mine, outs):
            rewards, failed, _ = score_group(rec, prompt_text(rec.record.messages), [r.text for r in rolls],
                                             self.reward_config)
            scored.append([failed, sum(rewards) / len(rewards), [r.num_tokens for r in rolls]])
        if self.world > 1:
            from glmv_cli.training import dist

            scored = sharding.gather_in_order(scored, len(records), dist.all_gather_json)
        per_prompt: list[float] = []
        by_id: dict[str, float] = {}
        by_dom: dict[str, list[float]] = {}
        lens: list[int] = []
        judge_failed = 0
        for rec, (failed, v, rlens) in zip(records, scored):
            if failed:
                judge_failed += 1
                continue
            per_prompt.append(v)
            by_id[rec.id] = v
            by_dom.setdefault(rec.domain, []).append(v)
            lens.extend(rlens)
        mean, se = mean_se(per_prompt)
        out: dict[str, Any] = {"step": self.step, "reward": mean, "reward_se": se, "prompts": len(per_prompt),
                               "samples_per_prompt": n, "temperature": self.opts.eval_temperature,
                               "response_length": sum(lens) / max(1, len(lens)), "judge_failed": judge_failed,
                               "eval_s": time.perf_counter() - t0, "domains": {}, "per_prompt": by_id}
        for d, vals in sorted(by_dom.items()):
            dm, dse = mean_se(vals)
            out["domains"][d] = {"reward": dm, "reward_se": dse, "prompts": len(vals)}
        return out

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "step": self.step, "sampler": self.sampler.state_dict(),
                "expansion": self.controller.state_dict(), "judge_dropped_total": self.judge_dropped_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise GlmvError(f"RLCS checkpoint state has version {state.get('version')!r}, expected {STATE_VERSION}")
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.controller.load_state_dict(state["expansion"])
        self.judge_dropped_total = int(state.get("judge_dropped_total", 0))


def _rates(groups: Sequence[ScoredGroup]) -> dict[str, float]:
    rewards = [x for g in groups for x in g.rewards]
    rolls = [r for g in groups for r in g.rollouts]
    n = max(1, len(rolls))
    return {
        "reward": sum(rewards) / max(1, len(rewards)),
        "pass_rate": sum(1 for x in rewards if x >= PASS_THRESHOLD) / max(1, len(rewards)),
        "informative_frac": sum(1 for g in groups if g.informative) / max(1, len(groups)),
        "response_length": sum(r.num_tokens for r in rolls) / n,
        "response_length_max": float(max((r.num_tokens for r in rolls), default=0)),
        "truncated_rate": sum(1 for r in rolls if r.finish_reason == "length") / n,
        "forced_rate": sum(1 for r in rolls if r.finish_reason == "forced") / n,
        "format_fail_rate": sum(g.gate_failures for g in groups) / n,
        "groups": float(len(groups)),
    }


def rollout_metrics(valid: Sequence[ScoredGroup], kept: Sequence[ScoredGroup]) -> dict[str, Any]:
    """Step-level rollout statistics over all valid groups, and the same per domain."""
    out: dict[str, Any] = dict(_rates(valid))
    out["kept_reward"] = _rates(kept)["reward"] if kept else 0.0
    doms: dict[str, list[ScoredGroup]] = {}
    for g in valid:
        doms.setdefault(g.record.domain, []).append(g)
    out["domains"] = {d: _rates(gs) for d, gs in sorted(doms.items())}
    return out
