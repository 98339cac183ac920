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
uninterrupted run. Under ``torchrun`` / ``deepspeed`` (ZeRO 0-2) each rank rolls out, updates on
and evaluates 1/N of the prompts and rows and every rank sees every scored group (``rl.sharding``),
so N processes follow the one-process run; rank 0 writes the artifact.

Defaults of the training side differ from SFT where RL needs it: constant learning rate, no
weight decay (the policy should stay near its SFT start; there is no KL term to hold it).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import Manifest
from glmv_cli.errors import GlmvError

STAGE = "rlcs"
RUN_FILE = "run.json"
METRICS = "metrics.jsonl"
EVALS = "eval.jsonl"


@dataclass
class RlcsOptions:
    """Options of ``glmv rlcs`` besides the RLCS algorithm options (``rl``)."""

    model: str = "tiny"
    data: Path = Path("rl.jsonl")
    out: Path = Path("rlcs-out")
    steps: int = 100
    grades: Optional[Path] = None
    eval_data: Optional[Path] = None
    eval_every: int = 0
    eval_limit: int = 0
    eval_samples: int = 1
    eval_temperature: float = 0.0
    reward_config: Optional[Path] = None
    on_judge_error: str = "drop"
    on_bad: str = "fail"
    style: str = "auto"
    seed: int = 0
    rollout_batch: int = 64
    micro_batch: int = 16
    lr: float = 1e-6
    betas: str = "0.9,0.999"
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    train: str = "vision,merger,llm"
    zero_stage: int = 0
    precision: str = "auto"
    activation_checkpointing: str = "off"  # off | full | llm | vision | every-N (true = full)
    vision_chunk_images: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    keep_final_checkpoint: bool = False
    log_every: int = 1
    resume: str = "never"
    overwrite: bool = False
    rl: Any = None  # RLCSConfig; built from the flat RLCS options

    def __post_init__(self) -> None:
        if self.rl is None:
            from glmv_cli.rl.config import RLCSConfig

            self.rl = RLCSConfig()

    def validate(self, world: int | None = None) -> Any:
        """Checks every option for ``world`` processes (default: the launcher's); returns the
        engine's TrainConfig."""
        from glmv_cli.training import dist
        from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig, parse_train

        world = dist.env_world() if world is None else world
        if world > 1 and self.zero_stage == 3:
            raise GlmvError("--zero-stage 3 is not supported by glmv rlcs over several processes (ranks decode "
                            "different numbers of tokens, and ZeRO-3 gathers parameters inside every forward); "
                            "use --zero-stage 0, 1 or 2")
        if self.steps < 1:
            raise GlmvError(f"--steps must be >= 1, got {self.steps}")
        for name in ("eval_every", "eval_limit"):
            if getattr(self, name) < 0:
                raise GlmvError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.eval_samples < 1:
            raise GlmvError(f"--eval-samples must be >= 1, got {self.eval_samples}")
        if self.eval_temperature < 0:
            raise GlmvError(f"--eval-temperature must be >= 0 (0 = greedy), got {self.eval_temperature}")
        if self.on_judge_error not in ("drop", "fail"):
            raise GlmvError(f"--on-judge-error must be 'drop' or 'fail', got '{self.on_judge_error}'")
        if self.on_bad not in ("fail", "skip"):
            raise GlmvError(f"--on-bad must be 'fail' or 'skip', got '{self.on_bad}'")
        if self.style not in ("auto", "glm41v", "glm45v"):
            raise GlmvError(f"--style must be auto, glm41v or glm45v, got '{self.style}'")
        if self.rollout_batch < 1:
            raise GlmvError(f"--rollout-batch must be >= 1, got {self.rollout_batch}")
        if self.micro_batch < 1:
            raise GlmvError(f"--micro-batch must be >= 1, got {self.micro_batch}")
        if self.resume not in ("never", "auto"):
            raise GlmvError(f"--resume must be 'auto' or 'never', got '{self.resume}'")
        self.rl.validate()
        try:
            betas = tuple(float(x) for x in str(self.betas).split(","))
        except ValueError:
            raise GlmvError(f"--betas must be two comma-separated numbers such as 0.9,0.999, got '{self.betas}'") from None
        cfg = TrainConfig(
            optim=OptimConfig(lr=self.lr, betas=betas, eps=self.adam_eps, weight_decay=self.weight_decay,
                              warmup_steps=self.warmup_steps, schedule=self.schedule,
                              min_lr_ratio=self.min_lr_ratio, clip=self.clip),
            # nominal: the RL update deals its rows itself (rl.sharding); one unit per rank
            batch=BatchConfig(1, world), zero_stage=self.zero_stage, precision=self.precision,
            activation_checkpointing=self.activation_checkpointing, vision_chunk_images=self.vision_chunk_images,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints, seed=self.seed, max_steps=self.steps,
            log_every=self.log_every, train=parse_train(self.train))
        return cfg.validate(world)


# ---------------------------------------------------------------------------- helpers


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _truncate(path: Path, step: int) -> None:
    """Keeps the lines of steps <= ``step`` so a resumed run's files read as one run."""
    kept = [r for r in _read_lines(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def step_line(m: dict[str, Any], total: int) -> str:
    """The fixed-format step line (DESIGN §6) plus the RL quantities."""
    return (f"step {m['step']}/{total} | loss {m.get('loss', 0.0):.4f} | lr {m.get('lr', 0.0):.3e} | "
            f"tok/s {m.get('tokens_per_s', 0.0):,.0f} | reward {m['reward']:.3f} | "
            f"informative {m['informative_frac']:.2f} | expansion {m['expansion_ratio']:.2f}")


def _fingerprint(opts: RlcsOptions, data_sha: str, model_id: str, grades_sha: str | None) -> dict[str, Any]:
    skip = {"steps", "out", "overwrite", "resume", "checkpoint_every", "keep_checkpoints", "keep_final_checkpoint",
            "log_every", "eval_every", "eval_limit", "eval_samples", "eval_temperature", "eval_data", "rl",
            "model", "data", "grades", "activation_checkpointing", "vision_chunk_images"}  # memory knobs may change
    o = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items() if k not in skip}
    return json.loads(json.dumps({"stage": STAGE, "model": model_id, "data_sha256": data_sha,
                                  "grades_sha256": grades_sha, "options": o, "rl": opts.rl.to_flat()}))


def _check_resume(staging: Path, fp: dict[str, Any]) -> None:
    f = staging / RUN_FILE
    if not f.is_file():
        return
    old = json.loads(f.read_text(encoding="utf-8"))
    for k in fp:
        if old.get(k) != fp[k]:
            detail = k
            if isinstance(fp[k], dict) and isinstance(old.get(k), dict):
                sub = [s for s in fp[k] if old[k].get(s) != fp[k][s]]
                if sub:
                    detail = f"--{sub[0].replace('_', '-')}: {old[k].get(sub[0])} != {fp[k][sub[0]]}"
            raise GlmvError(f"--resume auto: '{staging}' holds checkpoints of another run ({detail}); "
                            "use a new --out, or drop --resume to start over")


# ---------------------------------------------------------------------------- the stage


def rlcs(opts: RlcsOptions) -> Manifest | None:
    """Runs (or resumes) RLCS and writes the model artifact; the manifest on rank 0, None on other
    ranks (under torchrun / deepspeed: rollouts, update and eval are split over the ranks, see
    ``rl.sharding``)."""
    from glmv_cli.artifacts import ArtifactWriter, read_manifest, sha256_file, staging_path
    from glmv_cli.rewards.scoring import load_config
    from glmv_cli.rl.records import load_data, load_grades, load_rl_records
    from glmv_cli.training import dist

    tcfg = opts.validate()
    if Path(opts.out).exists() and not opts.overwrite:
        raise GlmvError(f"--out '{opts.out}' already exists; choose a new path or pass --overwrite")
    reward_cfg = load_config(opts.reward_config)
    data = load_data(opts.data, reward_cfg, on_bad=opts.on_bad)
    grades, grade_manifest = None, None
    if opts.grades is not None:
        grades = load_grades(opts.grades, data)
        grade_manifest = read_manifest(opts.grades, what="--grades")
    eval_path = opts.eval_data if opts.eval_data is not None else (data.eval_default if opts.eval_every else None)
    eval_recs = []
    if eval_path is not None:
        from glmv_cli.rl.records import resolve_data

        ep = Path(eval_path)
        if ep.is_dir():
            _, _, ev = resolve_data(ep, what="--eval-data")
            if ev is None:
                raise GlmvError(f"--eval-data '{ep}' has no eval.jsonl")
            ep = ev
        eval_recs, _ = load_rl_records(ep, reward_cfg, what="--eval-data")
        if opts.eval_limit:
            eval_recs = eval_recs[: opts.eval_limit]

    # a resume with other options is refused before anything heavy is built
    mp = Path(opts.model)
    model_id = read_manifest(mp, what="--model").sha256 if (mp / "manifest.json").is_file() else str(opts.model)
    staging = staging_path(opts.out)
    fp = _fingerprint(opts, sha256_file(data.path), model_id,
                      grade_manifest.sha256 if grade_manifest is not None else None)
    if opts.resume == "auto":
        _check_resume(staging, fp)

    from glmv_cli.training.run import export_model, load_model

    model, processor, model_inputs = load_model(opts.model)
    style = opts.style
    if style == "auto":
        from glmv_cli.data.chat import style_for_model_type

        style = style_for_model_type(getattr(model.config, "model_type", "glm4v"))
    reward_cfg = reward_cfg.with_style(style)
    ref_model = None
    if opts.rl.loss.kl_coef > 0:
        ref_model = copy.deepcopy(model).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)

    from glmv_cli.rl.trainer import RLCSTrainer, TrainerOptions
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loop import CKPT_DIR, ckpt_name, complete_checkpoints

    lc = opts.rl.loss
    engine = Engine(model, tcfg, total_steps=opts.steps * lc.ppo_epochs * lc.mini_batches)
    t_opts = TrainerOptions(seed=opts.seed, rollout_batch=opts.rollout_batch, micro_batch=opts.micro_batch,
                            on_judge_error=opts.on_judge_error, eval_temperature=opts.eval_temperature,
                            eval_samples=opts.eval_samples, style=style)
    trainer = RLCSTrainer(engine, processor, data.records, opts.rl, reward_cfg, t_opts, offline_grades=grades,
                          ref_model=ref_model, log=lambda s: print(s, flush=True) if engine.rank == 0 else None)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items() if k != "rl"}
    options.update(opts.rl.to_flat())
    inputs = [m for m in (data.manifest, *model_inputs, grade_manifest) if m is not None]
    art = ArtifactWriter(opts.out, STAGE, options=options, inputs=inputs, overwrite=opts.overwrite,
                         resume=opts.resume == "auto", keep_on_error=True, exclude=("checkpoints",))
    rank0 = engine.rank == 0
    say = (lambda s: print(s, flush=True)) if rank0 else (lambda s: None)
    try:
        if rank0:
            art.open()
            (staging / RUN_FILE).write_text(json.dumps(fp, indent=2), encoding="utf-8")
        dist.barrier()
        resumed_from = 0
        found = complete_checkpoints(staging) if opts.resume == "auto" else []
        if found:
            extra = engine.load_checkpoint(found[-1])
            trainer.load_state_dict(extra["rlcs"])
            resumed_from = trainer.step
            say(f"resumed from {found[-1]} (step {resumed_from})")
        mpath, epath = staging / METRICS, staging / EVALS
        if rank0:
            _truncate(mpath, resumed_from)
            _truncate(epath, resumed_from)
        dist.barrier()  # every rank reads the eval log below

        def run_eval() -> None:
            if eval_recs:
                e = trainer.evaluate(eval_recs)
                if rank0:
                    _append(epath, e)
                say(f"eval step {e['step']} | reward {e['reward']:.4f} ± {e['reward_se']:.4f} (n={e['prompts']})")

        def save() -> None:
            engine.save_checkpoint(staging / CKPT_DIR / ckpt_name(trainer.step), {"rlcs": trainer.state_dict()})
            if rank0:
                for old in complete_checkpoints(staging)[:-opts.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
            dist.barrier()

        if eval_recs and not any(e.get("step") == trainer.step for e in _read_lines(epath)):
            run_eval()
        dist.barrier()  # rank 0 may have appended to the eval log the others just read
        while trainer.step < opts.steps:
            m = trainer.train_step()
            if rank0:
                _append(mpath, m)
            if trainer.step % opts.log_every == 0 or trainer.step == opts.steps:
                say(step_line(m, opts.steps))
            if eval_recs and opts.eval_every and trainer.step % opts.eval_every == 0 and trainer.step != opts.steps:
                run_eval()
            if opts.checkpoint_every and trainer.step % opts.checkpoint_every == 0 and trainer.step != opts.steps:
                save()
        if eval_recs:
            run_eval()
        if opts.keep_final_checkpoint:
            save()
        export_model(engine, processor, staging)
        dist.barrier()
        if not rank0:
            return None
        from glmv_cli.rl.plots import plot_run

        metrics, evals = _read_lines(mpath), _read_lines(epath)
        plot_run(metrics, evals, staging / "plots")
        if opts.keep_final_checkpoint:
            for old in complete_checkpoints(staging)[:-1]:
                shutil.rmtree(old, ignore_errors=True)
            art.extra["excluded"] = {"checkpoints": "resumable engine + sampler state, not hashed"}
        else:
            shutil.rmtree(staging / CKPT_DIR, ignore_errors=True)
        art.metrics.update(summarize(metrics, evals))
        art.metrics.update({"resumed_from_step": resumed_from, "records": len(data.records),
                            "bad_records": data.skipped, "eval_records": len(eval_recs),
                            "grades_matched": len(grades) if grades else 0, "style": style,
                            "world_size": engine.world, "zero_stage": opts.zero_stage,
                            "parameters": engine.n_params, "trainable_parameters": engine.n_trainable})
        return art.commit()
    finally:
        engine.close()


def summarize(metrics: list[dict[str, Any]], evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Manifest metrics: step counts, averages, and the held-out curve with its SE."""
    out: dict[str, Any] = {"steps": len(metrics)}
    if metrics:
        n = len(metrics)
        for k in ("reward", "informative_frac", "expansion_ratio", "response_length", "forced_rate",
                  "truncated_rate", "clip_frac", "tokens_per_s"):
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
            from glmv_cli.rl.trainer import mean_se

            out["eval_gain_paired"], out["eval_gain_paired_se"] = mean_se([pb[k] - pa[k] for k in common])
    return out


# ---------------------------------------------------------------------------- CLI

HELP = {
    "model": "Policy to start from: a preset (tiny, ...), a glmv model artifact (e.g. glmv sft output) or a Hugging Face directory.",
    "data": "RL records: a JSONL file or a glmv synth artifact (its rl.jsonl).",
    "out": "Output artifact directory (HF model, metrics.jsonl, eval.jsonl, plots/).",
    "steps": "RL steps (each: rollouts + ppo_epochs x mini_batches optimizer steps).",
    "grades": "A glmv grade-difficulty artifact of this --data: offline pass rates as the curriculum's prior.",
    "eval_data": "Held-out records (JSONL or synth artifact; default with --eval-every: the synth artifact's eval.jsonl).",
    "eval_every": "Held-out eval every N steps (also before the first and after the last); 0 = only with --eval-data, at start and end.",
    "eval_limit": "Use only the first N eval records (0 = all).",
    "eval_samples": "Responses per eval prompt (the SE is over prompts).",
    "eval_temperature": "Eval sampling temperature (0 = greedy).",
    "reward_config": "rewards.yaml: verifier registry, gates, LLM-judge endpoints (default: built-in).",
    "on_judge_error": "drop: groups whose judge call got no verdict are counted and dropped; fail: stop the run.",
    "on_bad": "fail: stop on the first bad RL record; skip: count it in the manifest and go on.",
    "style": "Response format: auto (from the model type), glm41v or glm45v.",
    "seed": "Seed of prompt sampling and rollouts.",
    "rollout_batch": "Rows (prompts x group size) decoded together.",
    "micro_batch": "Rows per forward/backward in the policy update.",
    "lr": "Learning rate (AdamW).",
    "betas": "AdamW betas, two comma-separated numbers.",
    "adam_eps": "AdamW epsilon.",
    "weight_decay": "AdamW weight decay.",
    "warmup_steps": "Linear warmup (optimizer steps).",
    "schedule": "LR schedule after warmup: constant, cosine or linear.",
    "min_lr_ratio": "Final LR as a fraction of --lr (cosine/linear).",
    "clip": "Gradient-norm clipping threshold (0 disables).",
    "train": "Comma list of what is trained: vision, merger, llm.",
    "zero_stage": "DeepSpeed ZeRO stage 0-3.",
    "precision": "auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.",
    "activation_checkpointing": "Recompute activations in backward: off, full, llm, vision, every-N (see glmv sft --help).",
    "vision_chunk_images": "Run the vision tower over at most N images at a time in the update (0 = all at once).",
    "checkpoint_every": "Save a resumable checkpoint every N steps (0: none until the end).",
    "keep_checkpoints": "Checkpoints kept while training.",
    "keep_final_checkpoint": "Keep the last checkpoint in the artifact (not hashed) to continue later.",
    "log_every": "Print a step line every N steps.",
    "resume": "auto: continue an interrupted run with the same --out from its newest checkpoint; never: start over.",
    "overwrite": "Replace --out if it exists.",
}


def _norm_rl_value(name: str, value: Any) -> Any:
    """A recipe may give lists/mappings where the flag takes text; make both forms one string."""
    if name == "tier_boundaries" and isinstance(value, str):
        v = value.strip()
        if v.startswith(("[", "(")):
            return v.strip("[]() ")
    if name == "domain_weights" and isinstance(value, str) and value.strip().startswith("{"):
        import yaml

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise GlmvError(f"--domain-weights must look like 'stem=2,ocr=1', got {value!r}") from None
        return parsed if isinstance(parsed, dict) else value
    return value


def options_from_kwargs(kw: dict[str, Any]) -> RlcsOptions:
    """Splits flat command kwargs into the stage options and the RLCS config."""
    from glmv_cli.rl.config import RLCSConfig, option_fields

    rl_names = set(option_fields())
    rl = {k: _norm_rl_value(k, v) for k, v in kw.items() if k in rl_names}
    rest = {k: v for k, v in kw.items() if k not in rl_names}
    return RlcsOptions(**rest, rl=RLCSConfig.from_flat(rl, source="options"))


def _rl_flag_default(f: dataclasses.Field) -> tuple[type, Any]:
    d = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if isinstance(d, bool):
        return bool, d
    if isinstance(d, tuple):
        return str, ",".join(str(x) for x in d)
    if isinstance(d, dict):
        return str, ",".join(f"{k}={v}" for k, v in d.items())
    return type(d), d


def register(app: Any) -> None:
    import inspect
    from typing import Annotated

    import typer

    from glmv_cli.cli import RecipeOpt, user_errors
    from glmv_cli.rl.config import option_fields, option_help

    params = []

    def add(name: str, ann: Any, default: Any, help: str) -> None:
        flag = "--" + name.replace("_", "-")
        decl = f"{flag}/--no-{flag[2:]}" if ann is bool else flag
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[ann, typer.Option(decl, help=help)]))

    types = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path, "Optional[Path]": Optional[Path]}
    for f in dataclasses.fields(RlcsOptions):
        if f.name == "rl":
            continue
        ann = types[f.type if isinstance(f.type, str) else f.type.__name__]
        add(f.name, ann, f.default, HELP[f.name])
    for name, (_, f) in option_fields().items():
        ann, default = _rl_flag_default(f)
        add(name, ann, default, option_help(name))
    params.append(inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RecipeOpt))

    def command(**kw: Any) -> None:
        from glmv_cli.training import dist

        kw.pop("recipe", None)
        try:
            m = rlcs(options_from_kwargs(kw))
            if m is None:  # not rank 0
                return
            ev = m.metrics.get("eval_final")
            tail = f", held-out reward {m.metrics['eval_first']:.4f} -> {ev:.4f}" if ev is not None else ""
            if "eval_gain_paired" in m.metrics:
                g, se = m.metrics["eval_gain_paired"], m.metrics["eval_gain_paired_se"]
                tail += f", paired change {g:+.4f} ± {se:.4f}" + (f" ({g / se:+.1f} SE)" if se > 0 else "")
            print(f"wrote {m.path} ({m.metrics.get('steps')} steps{tail})")
        finally:
            dist.shutdown()
            sys.stdout.flush()

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (
        "Reinforcement learning with curriculum sampling (GRPO) on verifiable rewards.\n\n"
        "Each step samples prompts by difficulty tier (offline --grades + online pass rates), rolls out "
        "--group-size responses per prompt (about B/(1-r) prompts so --batch-prompts informative groups "
        "remain), scores them with the reward system and updates the policy through the DeepSpeed engine. "
        "Every option can also be set in --recipe YAML.")
    command.__name__ = "rlcs"
    app.command("rlcs")(user_errors(command))
