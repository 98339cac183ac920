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
5. Update (``rl.update``): advantages A = r - mean(group) (std scaling optional); one row per
   response (``rl.rows``), packed by length; old log-probs (recomputed, or the rollout's own when
   one optimizer step follows on-policy rollouts); ``ppo_epochs x mini_batches`` optimizer steps.

The rollout engine is used through one call, ``generate(prompts, params, n, seed) -> rollouts``
(one list of ``n`` ``generation.Rollout`` per prompt), and its ``exact_logprobs`` flag; the HF
engine runs in this process on the policy's own weights (lock-stepped over ranks under ZeRO-3).
Scoring is one call per rollout round too: every response of the round goes to
``rewards.RewardPool.score_many`` (``--reward-workers`` verifier processes, ``--judge-threads``
LLM-judge threads; results identical to serial scoring, in input order).

Time per step (``metrics.jsonl`` and the step line): ``rollout_s`` (generation only),
``reward_s`` (scoring), ``gather_s`` (exchanging groups between ranks), ``old_logp_s`` (the
old-log-prob forward, 0 when skipped) and ``update_s`` (forward/backward/optimizer).

What a step logs (``metrics.jsonl``, one line per step, and per domain under ``domains``):
reward, pass rate (reward ≥ 0.5), informative fraction, expansion ratio / EMA / top-up rounds,
tier histogram, response length, truncation and forced-answer rates, clip fractions, approximate
KL, grad norm, the PPO ratio's range on the first mini-batch, whether old log-probs were
recomputed, the update's padding ratio and forwards, tokens/s and the groups dropped for judge
failures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from glmv_cli.errors import GlmvError
from glmv_cli.rl import sharding
from glmv_cli.rl.config import RLCSConfig
from glmv_cli.rl.curriculum import CurriculumSampler
from glmv_cli.rl.expansion import ExpansionController, select_groups
from glmv_cli.rl.groups import ScoredGroup, mean_se
from glmv_cli.rl.records import RLRecord
from glmv_cli.rl.rows import PackSpec, Row, build_rows, check_response_tokens
from glmv_cli.rl.update import PolicyUpdate, UpdateSetup

PASS_THRESHOLD = 0.5
JUDGE_ERRORS = ("drop", "fail")
STATE_VERSION = 1
TIMES = ("rollout_s", "reward_s", "gather_s")


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
    reward_workers: int = 1          # verifier processes (1: in this process)
    judge_threads: int = 16          # threads for LLM-judge calls
    template: str | None = None      # the policy checkpoint's own chat template (None: glmv's rendering)


class RLCSTrainer:
    """Owns sampler, expansion controller, rollout engine and the policy update of one run."""

    def __init__(self, engine: Any, processor: Any, records: Sequence[RLRecord], cfg: RLCSConfig,
                 reward_config: Any, opts: TrainerOptions, *, offline_grades: dict[str, float] | None = None,
                 ref_model: Any = None, log: Callable[[str], None] | None = None, rollout: Any = None,
                 after_update: Callable[[], dict[str, float]] | None = None):
        """``rollout``: another engine of the rollout contract (``rl.engines``; default: an HFEngine
        over the policy); ``after_update``: called on every rank after each step's update (the
        weight sync of a rollout server), its figures join the step's metrics."""
        if opts.on_judge_error not in JUDGE_ERRORS:
            raise GlmvError(f"--on-judge-error must be one of {', '.join(JUDGE_ERRORS)}, got '{opts.on_judge_error}'")
        self.engine, self.processor, self.cfg, self.opts = engine, processor, cfg, opts
        self.reward_config = reward_config
        from glmv_cli.rewards import RewardPool

        self.rewards = RewardPool(reward_config, opts.reward_workers, opts.judge_threads)
        self.records = list(records)
        self.by_id = {r.id: r for r in self.records}
        self.tok = getattr(processor, "tokenizer", processor)
        self.sampler = CurriculumSampler(
            [r.id for r in self.records], [r.domain for r in self.records],
            offline_pass_rates=offline_grades, seed=opts.seed, **cfg.curriculum.sampler_kwargs())
        self.controller: ExpansionController = cfg.expansion.controller()
        self.model = engine.module
        self.rank, self.world = int(getattr(engine, "rank", 0)), int(getattr(engine, "world", 1))
        pad = getattr(self.tok, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self.image_token_id = int(self.model.config.image_token_id)
        probe = sharding.probe_params(self.model.config)
        zero = int(getattr(getattr(getattr(engine, "cfg", None), "engine", None), "zero_stage", 0))
        self.rollout = rollout if rollout is not None else self._rollout_engine(probe,
                                                                             lockstep=self.world > 1 and zero == 3)
        self.after_update = after_update
        self.ref_model = ref_model
        if cfg.loss.kl_coef > 0 and ref_model is None:
            raise GlmvError("--kl-coef > 0 needs a reference model (the stage keeps a frozen copy of --model)")
        # never sampled by the engine; the learner masks them too (same distribution, ratio 1)
        self.banned_ids: tuple[int, ...] = tuple(self.rollout.banned_token_ids)
        spec = PackSpec(self.pad_id, self.image_token_id, probe["merge"] if probe else 1,
                        probe["patch_dim"] if probe else 0, mask_forced=cfg.loss.mask_forced_tokens)
        chunks = int(getattr(getattr(getattr(engine, "cfg", None), "engine", None), "vision_chunk_images", 0))
        self.updater = PolicyUpdate(engine, cfg.loss, UpdateSetup(
            spec, opts.micro_batch, cfg.rollout.temperature, self.banned_ids,
            exact_logprobs=bool(getattr(self.rollout, "exact_logprobs", False)),
            equal_images=self.world > 1 and chunks > 0), ref_model=ref_model)
        self._prompts: dict[str, Any] = {}
        self._times: dict[str, float] = {k: 0.0 for k in TIMES}
        self.step = 0
        self.judge_dropped_total = 0
        self.log = log or (lambda s: None)

    def _rollout_engine(self, probe: dict[str, int] | None, *, lockstep: bool) -> Any:
        """The rollout engine behind ``generate(prompts, params, n, seed) -> rollouts``."""
        from glmv_cli.generation import HFEngine
        from glmv_cli.generation.lockstep import LockStep

        ls = LockStep(self.image_token_id, self.pad_id, probe) if lockstep else None
        return HFEngine(self.model, self.tok, batch_size=self.opts.rollout_batch, model_tag="rlcs", lockstep=ls)

    def _awake(self, on: bool) -> None:
        """An in-process vLLM engine gives its GPU memory back while the learner updates."""
        fn = getattr(self.rollout, "wake_up" if on else "sleep", None)
        if fn is not None:
            fn()

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

    def _generate(self, prompts: list, params: Any, n: int, seed: int) -> list:
        """This rank's rollouts (a lock-stepped engine runs even without prompts of its own)."""
        if not prompts and getattr(self.rollout, "lockstep", None) is None:
            return []
        self.model.eval()
        with torch.no_grad():
            return self.rollout.generate(prompts, params, n=n, seed=seed)

    def _score(self, recs: Sequence[RLRecord], outs: Sequence[Sequence[Any]]) -> list[tuple[list[float], bool, int]]:
        """(rewards, judge failed, gate failures) per record, all responses scored in one call."""
        from glmv_cli.generation import prompt_text

        items = []
        for rec, rolls in zip(recs, outs):
            ptext = prompt_text(rec.record.messages) if rec.record is not None else ""
            items.extend((ptext, r.text, rec.answer, rec.domain, rec.extra) for r in rolls)
        results = self.rewards.score_many(items)
        out, k = [], 0
        for rolls in outs:
            out.append(group_outcome(results[k:k + len(rolls)]))
            k += len(rolls)
        return out

    def roll(self, ids: Sequence[str], step: int, rnd: int) -> list[ScoredGroup]:
        if not ids:
            return []
        t0 = time.perf_counter()
        mine = sharding.shard(ids, self.rank, self.world)  # all of them in one process
        prompts = [self.prompt(i) for i in mine]
        outs = self._generate(prompts, self.sampling_params(), self.cfg.rollout.group_size, self._seed(step, rnd))
        t1 = time.perf_counter()
        recs = [self.by_id[rid] for rid in mine]
        groups = [ScoredGroup(rec, p, rolls, *res)
                  for rec, p, rolls, res in zip(recs, prompts, outs, self._score(recs, outs))]
        t2 = time.perf_counter()
        if self.world > 1:
            groups = sharding.gather_groups(groups, len(ids), lambda rid: (self.by_id[rid], self.prompt(rid)))
        t3 = time.perf_counter()
        for k, v in zip(TIMES, (t1 - t0, t2 - t1, t3 - t2)):
            self._times[k] += v
        return groups

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

    def build_rows(self, groups: Sequence[ScoredGroup]) -> list[Row]:
        rows = build_rows(groups, std_normalize=self.cfg.loss.adv_std_normalize, eps=self.cfg.loss.adv_eps)
        check_response_tokens(rows, self.banned_ids, self.tok)
        return rows

    def update(self, rows: Sequence[Row]) -> dict[str, float]:
        """Old log-probs, then ppo_epochs x mini_batches optimizer steps (``rl.update``)."""
        got = self.updater.run(rows, self.step)
        want = self.cfg.loss.mini_batches
        if got["mini_batches_run"] < want:
            self.log(f"step {self.step + 1}: {len(rows)} kept rows fill only {int(got['mini_batches_run'])} of "
                     f"--mini-batches {want}: {int(got['optimizer_steps'])} optimizer steps")
        return got

    def train_step(self) -> dict[str, Any]:
        """One full RLCS step; returns its metrics line."""
        t0 = time.perf_counter()
        step = self.step
        self._times = {k: 0.0 for k in TIMES}
        self._awake(True)
        kept, valid, info = self.collect(step)
        self._awake(False)
        m: dict[str, Any] = {"step": step + 1, **info}
        m.update(rollout_metrics(valid, kept))
        m.update(self.controller.metrics())
        m["batch_groups"] = len(kept)
        if kept:
            m.update(self.update(self.build_rows(kept)))
        else:
            self.log(f"step {step + 1}: no informative group; the policy is not updated")
            m.update({"loss": 0.0, "grad_norm": 0.0, "optimizer_steps": 0.0, "clip_frac": 0.0,
                      "old_logp_s": 0.0, "update_s": 0.0})
        if self.after_update is not None:
            m.update(self.after_update())
        m.update({f"sampler_{k}": v for k, v in self.sampler.metrics().items()})
        dm = self.sampler.domain_metrics()
        for d, vals in m["domains"].items():
            vals["tier_histogram"] = {k[5:]: int(v) for k, v in dm.get(d, {}).items() if k.startswith("tier_")}
            vals["sampler_pass_rate_mean"] = dm.get(d, {}).get("pass_rate_mean", 0.0)
        gen_tokens = sum(r.num_tokens for g in valid for r in g.rollouts)
        m.update(self._times)
        m["rollout_tokens_per_s"] = gen_tokens / max(m["rollout_s"], 1e-9)
        m["step_s"] = time.perf_counter() - t0
        m["tokens_per_s"] = (gen_tokens + m.get("loss_tokens", 0.0)) / max(m["step_s"], 1e-9)
        m["judge_dropped_total"] = self.judge_dropped_total
        self.step += 1
        return m

    # ------------------------------------------------------------------ held-out eval

    def evaluate(self, records: Sequence[RLRecord]) -> dict[str, Any]:
        """Mean reward (and SE over prompts) on held-out records; per domain too."""
        from glmv_cli.generation import prompt_from_record

        if not records:
            return {}
        n = max(1, self.opts.eval_samples)
        mine = sharding.shard(records, self.rank, self.world)
        prompts = [prompt_from_record(r.record, self.tok, self.processor.image_processor, style=self.opts.style,
                                      template=self.opts.template) for r in mine]
        sp = self.sampling_params(temperature=self.opts.eval_temperature)
        t0 = time.perf_counter()
        self._awake(True)
        outs = self._generate(prompts, sp, n, self.opts.seed + 7_777_777)
        self._awake(False)
        scored = []  # per record: (judge failed, mean reward, response lengths)
        for rolls, (rewards, failed, _) in zip(outs, self._score(mine, outs)):
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

    def close(self) -> None:
        self.rewards.close()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise GlmvError(f"RLCS checkpoint state has version {state.get('version')!r}, expected {STATE_VERSION}")
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.controller.load_state_dict(state["expansion"])
        self.judge_dropped_total = int(state.get("judge_dropped_total", 0))


def group_outcome(results: Sequence[Any]) -> tuple[list[float], bool, int]:
    """(rewards, judge_failed, gate failures) of one group's ``RewardResult``s.

    A judge failure (``JudgeError``: no endpoint produced a verdict) on any response marks the
    whole group: its zeros are not the policy's fault, so training on them would teach noise."""
    failed = any(r.error is not None and r.error.startswith("JudgeError") for r in results)
    return [float(r.reward) for r in results], failed, sum(1 for r in results if r.gate is not None)


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
