"""``glmv rlcs``: reinforcement learning with curriculum sampling (GRPO) on verifiable rewards.

Parse (every RLCS option of ``glmv_cli.rl.config`` is a flag and a ``--recipe`` key; unknown keys
are errors) → load and check the RL records (reference answer present, domain known to the reward
registry), the optional offline grades (same dataset) and the held-out eval records → load the
model → build the DeepSpeed engine → the step loop of ``glmv_cli.rl.trainer`` with held-out eval
every ``--eval-every`` steps and checkpoints every ``--checkpoint-every`` → export the model in
Hugging Face format, ``metrics.jsonl``, ``eval.jsonl`` and ``plots/*.png`` → manifest.

Resume: checkpoints hold the engine state (weights, AdamW moments, RNG) plus the sampler (pass-rate
counts, PCG64 state), the expansion EMA and the step as JSON. Rollouts are seeded by (seed, step,
round), so ``--resume auto`` samples the same prompts and computes the same losses as the
uninterrupted run. Under ``torchrun`` / ``deepspeed`` (ZeRO 0-3) each rank rolls out, updates on
and evaluates 1/N of the prompts and rows and every rank sees every scored group (``rl.sharding``),
so N processes follow the one-process run; under ZeRO-3 the ranks decode in lock-step
(``generation.lockstep``), and every rank runs the same number of update micro batches whatever
the kept-group count (``rl.rows``). Rank 0 writes the artifact. docs/memory-plan.md sizes the
ZeRO stage, rollout batch and micro batch per GPU.

Defaults of the training side differ from SFT where RL needs it: constant learning rate, no
weight decay (the policy should stay near its SFT start; there is no KL term to hold it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli import options as O
from glmv_cli.artifacts import InputChecks, Manifest
from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
from glmv_cli.data.images import ImageSizeConfig
from glmv_cli.data.mediacheck import MediaChecks
from glmv_cli.errors import GlmvError
from glmv_cli.names import STYLE_CHOICES
from glmv_cli.options import opt
from glmv_cli.rewards.userfn import REWARD_FN_HELP
from glmv_cli.rl.config import RLCSConfig
from glmv_cli.generation.options import EngineOptions
from glmv_cli.training.config import CheckpointConfig, EngineConfig, LogConfig, OptimConfig

STAGE = "rlcs"
METRICS = "metrics.jsonl"
EVALS = "eval.jsonl"
#: the parts of a step's wall time, in the order the step line prints them
STEP_TIMES = ("rollout_s", "reward_s", "gather_s", "old_logp_s", "update_s")


def _rl_optim() -> OptimConfig:
    # constant LR, no weight decay: the policy should stay near its SFT start (no KL term holds it)
    return OptimConfig(lr=1e-6, betas=(0.9, 0.999), weight_decay=0.0, schedule="constant")


@dataclass
class RlcsOptions:
    """Options of ``glmv rlcs``: inputs and outputs, held-out eval, the update's batch, and the groups."""

    model: str = opt(help="Policy to start from: a glmv model artifact (e.g. glmv sft output), a Hugging Face "
                          "directory or Hub id, or a preset name (random weights; only when asked for).")
    data: str = opt(help="RL records: a glmv synth artifact (its rl.jsonl), a JSONL / JSON / parquet / Arrow file, a "
                         "datasets folder or hf:owner/name, in any format --format reads (verl and EasyR1 rows too).")
    out: Path = opt(help="Output artifact directory (HF model, metrics.jsonl, eval.jsonl, plots/).")
    steps: int = opt(100, "RL steps (each: rollouts + ppo_epochs x mini_batches optimizer steps).", min=1)
    grades: Optional[Path] = opt(None, "A glmv grade-difficulty artifact of this --data: offline pass rates as the "
                                       "curriculum's prior.")
    eval_data: Optional[str] = opt(None, "Held-out records (any --data form; default with --eval-every: the synth "
                                         "artifact's eval.jsonl).")
    eval_split: Optional[str] = opt(None, "Split of --eval-data when it is a Hub dataset or datasets folder "
                                          "(default: --split).")
    eval_every: int = opt(0, "Held-out eval every N steps (also before the first and after the last); 0 = only "
                             "with --eval-data, at start and end.", min=0)
    eval_limit: int = opt(0, "Use only the first N eval records (0 = all).", min=0)
    eval_samples: int = opt(1, "Responses per eval prompt (the SE is over prompts).", min=1)
    eval_temperature: float = opt(0.0, "Eval sampling temperature (0 = greedy).", min=0)
    reward_config: Optional[Path] = opt(None, "rewards.yaml: verifier registry, gates, LLM-judge endpoints "
                                              "(default: built-in).")
    reward_fn: Optional[str] = opt(None, REWARD_FN_HELP)
    on_judge_error: str = opt("drop", "drop: groups whose judge call got no verdict are counted and dropped; "
                                      "fail: stop the run.", choices=("drop", "fail"))
    on_bad: str = opt("fail", "fail: stop on the first bad RL record; skip: count it in the manifest and go on.",
                      choices=("fail", "skip"))
    style: str = opt("auto", "Response format: auto (from the model's chat template, else its type), glm41v or "
                             "glm45v.", choices=STYLE_CHOICES)
    seed: int = opt(0, "Seed of prompt sampling and rollouts.")
    rollout_batch: int = opt(64, "Rows (prompts x group size) decoded together.", min=1)
    micro_batch: int = opt(16, "Policy update: each forward/backward packs rows of up to this many times the "
                                "step's longest row in tokens (the slots of that many padded rows).", min=1)
    reward_workers: int = opt(1, "Verifier processes scoring each rollout round's responses (1: in this "
                                 "process); results are identical for any value.", min=1)
    judge_threads: int = opt(16, "Threads for LLM-judge calls (a rank's responses wait on the judge together).",
                             min=1)
    overwrite: bool = opt(False, "Replace --out if it exists.")
    weight_sync: str = opt("disk", "How --engine server servers get each step's policy: disk (safetensors in "
                                   "--weight-sync-dir, then every server reloads) or nccl (a parameter broadcast to "
                                   "vLLM servers; GPU).", choices=("disk", "nccl"))
    weight_sync_dir: Optional[Path] = opt(None, "Directory every rollout server can read where --weight-sync disk "
                                                "writes the policy (default: the run's scratch folder). Start vLLM "
                                                "servers on it: they reload the directory they were started from.")
    weight_sync_master: str = opt("127.0.0.1:51216", "HOST:PORT of the learner in --weight-sync nccl's process group.")
    generation: EngineOptions = field(default_factory=EngineOptions)
    checks: InputChecks = field(default_factory=InputChecks)
    media: MediaChecks = field(default_factory=MediaChecks)
    optim: OptimConfig = field(default_factory=_rl_optim)
    engine: EngineConfig = field(default_factory=EngineConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    rl: RLCSConfig = field(default_factory=RLCSConfig)
    source: DataFormatConfig = field(default_factory=DataFormatConfig)
    domains: DomainConfig = field(default_factory=DomainConfig)
    images: ImageSizeConfig = field(default_factory=ImageSizeConfig)

    def check(self, world: int = 1) -> None:
        g = self.generation
        if g.engine != "server" and (self.weight_sync_dir is not None or self.weight_sync != "disk"):
            raise GlmvError("--weight-sync / --weight-sync-dir apply to --engine server only")
        if g.engine == "server" and self.weight_sync == "disk" and g.server_dialect == "vllm" \
                and self.weight_sync_dir is None:
            raise GlmvError("--engine server --server-dialect vllm reloads the directory each server was started "
                            "from: start the servers on a shared directory holding --model's files and pass it as "
                            "--weight-sync-dir (glmv serve and SGLang can reload any directory: --server-dialect "
                            "sglang needs none)")
        lc, b, n = self.rl.loss, self.rl.expansion.batch_prompts, self.rl.rollout.group_size
        # several optimizer steps per RL step: each mini-batch gets at least one micro batch of rows
        # (one mini-batch is every kept row, however few)
        if lc.mini_batches > 1 and b * n < lc.mini_batches * self.micro_batch:
            raise GlmvError(
                f"--mini-batches {lc.mini_batches} x --micro-batch {self.micro_batch} needs at least "
                f"{lc.mini_batches * self.micro_batch} rows per step, but --batch-prompts {b} x --group-size {n} "
                f"keeps {b * n}; lower --mini-batches or --micro-batch")

    def validate(self, world: int | None = None) -> Any:
        """Checks every option for ``world`` processes (default: the launcher's); returns the
        engine's TrainConfig."""
        from glmv_cli.training import dist
        from glmv_cli.training.config import BatchConfig, TrainConfig

        world = dist.env_world() if world is None else world
        O.validate(self, world)
        # nominal batch: the RL update deals its rows itself (rl.sharding); one unit per rank
        return TrainConfig(optim=self.optim, batch=BatchConfig(1, world, max_steps=self.steps), engine=self.engine,
                           ckpt=self.ckpt, log=self.log, seed=self.seed).validate(world)


def step_line(m: dict[str, Any], total: int) -> str:
    """The fixed-format step line plus the RL quantities."""
    times = " ".join(f"{k[:-2].replace('_', '-')} {m.get(k, 0.0):.1f}" for k in STEP_TIMES)
    return (f"step {m['step']}/{total} | loss {m.get('loss', 0.0):.4f} | lr {m.get('lr', 0.0):.3e} | "
            f"tok/s {m.get('tokens_per_s', 0.0):,.0f} | reward {m['reward']:.3f} | "
            f"informative {m['informative_frac']:.2f} | expansion {m['expansion_ratio']:.2f} | s: {times}")


def _fingerprint(opts: RlcsOptions, data_sha: str, model_id: str, grades_sha: str | None) -> dict[str, Any]:
    """The options that decide the run; length, eval, checkpointing, logging and memory knobs may change."""
    o = O.flat_dict(opts)
    for k in ("steps", "out", "overwrite", "eval_every", "eval_limit", "eval_samples", "eval_temperature",
              "eval_data", "eval_split", "model", "data", "grades", "activation_checkpointing", "vision_chunk_images",
              "reward_workers", "judge_threads", "server_url", "server_timeout_s", "server_retries",
              "weight_sync_dir", "weight_sync_master", "verify_inputs", "verify_images",
              *(leaf.name for leaf in O.leaves(CheckpointConfig)), *(leaf.name for leaf in O.leaves(LogConfig))):
        o.pop(k)
    return {"stage": STAGE, "model": model_id, "data_sha256": data_sha, "grades_sha256": grades_sha, "options": o}


# ---------------------------------------------------------------------------- the stage


@dataclass
class _Inputs:
    data: Any
    grades: Any
    grade_manifest: Any
    eval_recs: list
    reward_cfg: Any


def _load_inputs(opts: RlcsOptions) -> _Inputs:
    """Every record, grade and eval row checked before any model is built."""
    from glmv_cli.artifacts import read_manifest
    from glmv_cli.rewards.scoring import load_config
    from glmv_cli.rl.records import load_data, load_grades, load_rl_records, resolve_data

    from dataclasses import replace

    from glmv_cli.rl.records import check_boxed_prompts

    reward_cfg = load_config(opts.reward_config, reward_fn=opts.reward_fn)
    data = load_data(opts.data, reward_cfg, on_bad=opts.on_bad, source=opts.source, domains=opts.domains,
                     checks=opts.media)
    check_boxed_prompts(data.records, reward_cfg)
    grades, grade_manifest = None, None
    if opts.grades is not None:
        grades = load_grades(opts.grades, data)
        grade_manifest = read_manifest(opts.grades, what="--grades")
    eval_path = opts.eval_data if opts.eval_data is not None else (data.eval_default if opts.eval_every else None)
    eval_recs: list = []
    if eval_path is not None:
        ep = str(eval_path)
        _, manifest, ev = resolve_data(ep, what="--eval-data")
        if manifest is not None:  # a synth artifact: its held-out file
            if ev is None:
                raise GlmvError(f"--eval-data '{ep}' has no eval.jsonl")
            ep = str(ev)
        ev_source = replace(opts.source, split=opts.eval_split or opts.source.split)
        eval_recs, _ = load_rl_records(ep, reward_cfg, what="--eval-data", source=ev_source, domains=opts.domains,
                                       checks=opts.media)
        if opts.eval_limit:
            eval_recs = eval_recs[: opts.eval_limit]
    return _Inputs(data, grades, grade_manifest, eval_recs, reward_cfg)


def _build_trainer(opts: RlcsOptions, tcfg: Any, inp: _Inputs, model: Any, processor: Any) -> tuple[Any, Any, str]:
    """(engine, trainer, style) around the loaded policy."""
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.rl.trainer import RLCSTrainer, TrainerOptions
    from glmv_cli.training.engine import Engine

    fmt = ChatFormat.of(processor, getattr(model.config, "model_type", "glm4v"), opts.style)
    style = fmt.style
    inp.reward_cfg = inp.reward_cfg.with_style(style)
    ref_model = None
    if opts.rl.loss.kl_coef > 0:
        ref_model = copy.deepcopy(model).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    lc = opts.rl.loss
    engine = Engine(model, tcfg, total_steps=opts.steps * lc.ppo_epochs * lc.mini_batches)
    t_opts = TrainerOptions(seed=opts.seed, rollout_batch=opts.rollout_batch, micro_batch=opts.micro_batch,
                            on_judge_error=opts.on_judge_error, eval_temperature=opts.eval_temperature,
                            eval_samples=opts.eval_samples, style=style, template=fmt.template,
                            reward_workers=opts.reward_workers, judge_threads=opts.judge_threads)
    rollout, sync = _rollout(opts, model, processor, engine)
    trainer = RLCSTrainer(engine, processor, inp.data.records, opts.rl, inp.reward_cfg, t_opts,
                          offline_grades=inp.grades, ref_model=ref_model,
                          log=lambda s: print(s, flush=True) if engine.rank == 0 else None,
                          rollout=rollout, after_update=sync)
    return engine, trainer, style


def _rollout(opts: RlcsOptions, model: Any, processor: Any, engine: Any) -> tuple[Any, Any]:
    """(rollout engine or None for the in-process HF engine, its weight sync or None)."""
    from glmv_cli.artifacts import staging_path
    from glmv_cli.lifecycle import SCRATCH_DIR
    from glmv_cli.rl.engines import PolicySync, build_rollout_engine

    rollout = build_rollout_engine(opts.generation, model, processor, model_path=str(opts.model))
    if rollout is None:
        return None, None
    directory = opts.weight_sync_dir or staging_path(opts.out) / SCRATCH_DIR / "policy"
    kind = opts.weight_sync if opts.generation.engine == "server" else "in-process"
    return rollout, PolicySync(rollout, kind, Path(directory), processor, engine, master=opts.weight_sync_master)


def rlcs(opts: RlcsOptions) -> Manifest | None:
    """Runs (or resumes) RLCS and writes the model artifact (setup -> loop -> finish); the manifest on
    rank 0, None on other ranks (under torchrun / deepspeed: rollouts, update and eval are split
    over the ranks, see ``rl.sharding``)."""
    from glmv_cli.artifacts import check_out, option_paths, read_manifest, verify_input
    from glmv_cli.data.images import apply_pixel_limits
    from glmv_cli.lifecycle import StageRun
    from glmv_cli.training import dist
    from glmv_cli.training.run import export_model, load_model, model_source

    tcfg = opts.validate()
    check_out(opts.out, opts.overwrite, option_paths(opts))
    inp = _load_inputs(opts)
    full = opts.checks.verify_inputs
    for m, what in ((inp.data.manifest, "--data"), (inp.grade_manifest, "--grades")):
        if m is not None:
            verify_input(m, full, what)
    mp = Path(opts.model)
    model_id = read_manifest(mp, what="--model").sha256 if (mp / "manifest.json").is_file() else str(opts.model)
    gm = inp.grade_manifest
    fp = _fingerprint(opts, inp.data.fingerprint, model_id, gm.sha256 if gm is not None else None)
    model, processor, model_inputs = load_model(opts.model, seed=opts.seed, verify_inputs=full)
    image_size = apply_pixel_limits(processor.image_processor, opts.images)  # rollouts and the exported processor
    options = O.flat_dict(opts)
    inputs = [m for m in (inp.data.manifest, *model_inputs, gm) if m is not None]
    run = StageRun(opts.out, STAGE, fp, resume=opts.ckpt.resume == "auto", overwrite=opts.overwrite,
                   options=options, inputs=inputs, rank0=dist.env_rank() == 0, input_paths=option_paths(opts))
    run.check_resume()  # a resume with other options is refused before the engine is built
    engine, trainer, style = _build_trainer(opts, tcfg, inp, model, processor)
    committed = False
    try:
        resumed = _setup(run, engine, trainer)
        _loop(opts, run, engine, trainer, inp.eval_recs, resumed)
        export_model(engine, processor, run.path, source=model_source(opts.model), dtype=opts.ckpt.save_dtype)
        dist.barrier()
        if not run.rank0:
            return None
        run.metrics["image_size"] = image_size
        manifest = _finish(opts, run, engine, inp, resumed, style)
        committed = True
        return manifest
    finally:
        if not committed:
            run.release()
        trainer.close()
        engine.close()


def _setup(run: Any, engine: Any, trainer: Any) -> int:
    """Opens the staging dir, restores the newest checkpoint; returns the step resumed from."""
    from glmv_cli.training import dist

    run.open()
    dist.barrier()
    resumed = 0
    ckpt = run.latest_checkpoint()
    if ckpt is not None:
        extra = engine.load_checkpoint(ckpt)
        trainer.load_state_dict(extra["rlcs"])
        resumed = trainer.step
        if run.rank0:
            print(f"resumed from {ckpt} (step {resumed})", flush=True)
    run.truncate_logs(resumed, [METRICS, EVALS])
    if trainer.after_update is not None:  # rollout servers serve the policy being trained, resumed or not
        trainer.after_update()
    dist.barrier()  # every rank reads the eval log below
    return resumed


def _loop(opts: RlcsOptions, run: Any, engine: Any, trainer: Any, eval_recs: list, resumed: int) -> None:
    """Steps with held-out evals and checkpoints. Evals at 0, every --eval-every steps and at the end;
    a resumed run never repeats one that already ran (eval.jsonl holds the step)."""
    from glmv_cli.lifecycle import CKPT_DIR, ckpt_name
    from glmv_cli.training import dist
    from glmv_cli.training.tracking import MetricsLog

    say = (lambda s: print(s, flush=True)) if run.rank0 else (lambda s: None)
    done_evals = {e.get("step") for e in run.rows(EVALS)}
    dist.barrier()  # rank 0 appends to the eval log the others just read

    def run_eval() -> None:
        if not eval_recs or trainer.step in done_evals:
            return
        e = trainer.evaluate(eval_recs)
        run.append(EVALS, e)
        done_evals.add(trainer.step)
        say(f"eval step {e['step']} | reward {e['reward']:.4f} ± {e['reward_se']:.4f} (n={e['prompts']})")

    def save() -> None:
        path = run.path / CKPT_DIR / ckpt_name(trainer.step)
        if not (path / "state.json").is_file():  # a complete checkpoint is never rewritten
            engine.save_checkpoint(path, {"rlcs": trainer.state_dict()})
        run.retain(opts.ckpt.keep_checkpoints)
        dist.barrier()

    metrics = MetricsLog(run.path, opts.log.report_to, enabled=run.rank0, resumed_step=resumed,
                         run_name=f"{STAGE}:{Path(opts.out).name}", config=O.flat_dict(opts))
    try:
        if trainer.step == 0:
            run_eval()
        while trainer.step < opts.steps:
            m = trainer.train_step()
            metrics.log(m)
            if trainer.step % opts.log.log_every == 0 or trainer.step == opts.steps:
                say(step_line(m, opts.steps))
            last = trainer.step == opts.steps
            if opts.eval_every and trainer.step % opts.eval_every == 0 and not last:
                run_eval()
            ckpt_every = opts.ckpt.checkpoint_every
            if last or (ckpt_every and trainer.step % ckpt_every == 0):
                save()
        run_eval()
    finally:
        metrics.close()


def _finish(opts: RlcsOptions, run: Any, engine: Any, inp: _Inputs, resumed: int, style: str) -> Manifest:
    """Rank 0: plots, manifest metrics, commit."""
    from glmv_cli.rl.plots import plot_run

    metrics, evals = run.rows(METRICS), run.rows(EVALS)
    plot_run(metrics, evals, run.path / "plots")
    run.metrics.update(summarize(metrics, evals))
    run.metrics.update({"resumed_from_step": resumed, "records": len(inp.data.records),
                        "bad_records": inp.data.skipped, "data_format": inp.data.format,
                        "eval_records": len(inp.eval_recs),
                        "grades_matched": len(inp.grades) if inp.grades else 0, "style": style,
                        "world_size": engine.world, "zero_stage": opts.engine.zero_stage,
                        "parameters": engine.n_params, "trainable_parameters": engine.n_trainable})
    return run.commit(opts.ckpt.keep_final_checkpoint)


def summarize(metrics: list[dict[str, Any]], evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Manifest metrics: step counts, averages, and the held-out curve with its SE."""
    out: dict[str, Any] = {"steps": len(metrics)}
    if metrics:
        n = len(metrics)
        for k in ("reward", "informative_frac", "expansion_ratio", "response_length", "forced_rate",
                  "truncated_rate", "clip_frac", "tokens_per_s", "padding_ratio", *STEP_TIMES):
            out[f"mean_{k}"] = sum(float(m.get(k, 0.0)) for m in metrics) / n
        out["first_reward"], out["final_reward"] = metrics[0]["reward"], metrics[-1]["reward"]
        out["judge_dropped_groups"] = sum(int(m.get("judge_dropped_groups", 0)) for m in metrics)
        out["prompts_rolled"] = sum(int(m.get("prompts_rolled", 0)) for m in metrics)
    if evals:
        out["eval_curve"] = [{"step": e["step"], "reward": e["reward"], "reward_se": e["reward_se"]} for e in evals]
        a, b = evals[0], evals[-1]
        out["eval_first"], out["eval_final"] = a["reward"], b["reward"]
        out["eval_gain"] = b["reward"] - a["reward"]
        out["eval_gain_se"] = (a["reward_se"] ** 2 + b["reward_se"] ** 2) ** 0.5
        # the same prompts are evaluated each time: the paired SE of the gain is the sharper test
        pa, pb = a.get("per_prompt") or {}, b.get("per_prompt") or {}
        common = [k for k in pa if k in pb]
        if len(common) >= 2:
            from glmv_cli.rl.groups import mean_se

            out["eval_gain_paired"], out["eval_gain_paired_se"] = mean_se([pb[k] - pa[k] for k in common])
    return out


# ---------------------------------------------------------------------------- CLI


def report(m: Manifest) -> None:
    ev = m.metrics.get("eval_final")
    tail = f", held-out reward {m.metrics['eval_first']:.4f} -> {ev:.4f}" if ev is not None else ""
    if "eval_gain_paired" in m.metrics:
        g, se = m.metrics["eval_gain_paired"], m.metrics["eval_gain_paired_se"]
        tail += f", paired change {g:+.4f} ± {se:.4f}" + (f" ({g / se:+.1f} SE)" if se > 0 else "")
    print(f"wrote {m.path} ({m.metrics.get('steps')} steps{tail})")


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "rlcs", rlcs, RlcsOptions, report=report, doc=(
        "Reinforcement learning with curriculum sampling (GRPO) on verifiable rewards.\n\n"
        "Each step samples prompts by difficulty tier (offline --grades + online pass rates), rolls out "
        "--group-size responses per prompt (about B/(1-r) prompts so --batch-prompts informative groups "
        "remain), scores them with the reward system and updates the policy through the DeepSpeed engine. "
        "Every option can also be set in --recipe YAML."))
