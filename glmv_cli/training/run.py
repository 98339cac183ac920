"""What pretrain, extend-context and sft share: options, input checks, the run, the artifact.

A run: validate every option (all ranks, before anything is built) -> read the packed data and the
model -> check data against model (positions, tokenizer) -> open the artifact's staging dir with
``resume=True, keep_on_error=True`` -> find the newest complete checkpoint when ``--resume auto``
(refusing a staging dir of another run, by a fingerprint in ``run.json``) -> ``loop.fit`` ->
export the model in Hugging Face format at the top of the artifact -> commit (rank 0).

Checkpoints in the final artifact: by default they are deleted at commit (an optimizer state is
~3x the model; the exported model is what later stages read). ``--keep-final-checkpoint`` keeps
the newest one under ``checkpoints/`` for continued training; it is listed in the manifest's
``excluded`` field and not hashed (hashing tens of GB of optimizer state buys nothing).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from glmv_cli.artifacts import ArtifactWriter, Manifest, read_manifest, staging_path
from glmv_cli.errors import GlmvError
from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig, parse_train

RUN_FILE = "run.json"
MODEL_STAGES = ("pretrain", "extend-context", "sft", "rlcs")


@dataclass
class TrainOptions:
    """Options every training stage has (flags in parentheses)."""

    data: Path = Path("packed")
    out: Path = Path("out")
    model: str = "tiny"
    train: str = "vision,merger,llm"
    lr: float = 1e-4
    betas: str = "0.9,0.95"
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    micro_batch: int = 1
    global_batch: int = 1
    zero_stage: int = 0
    precision: str = "auto"
    activation_checkpointing: str = "off"
    vision_chunk_images: int = 0
    chunked_loss: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    keep_final_checkpoint: bool = False
    seed: int = 0
    max_steps: int = 0
    epochs: float = 1.0
    log_every: int = 1
    peak_tflops: float = 0.0
    resume: str = "never"
    overwrite: bool = False
    init_vision: Path | None = None
    init_llm: Path | None = None
    seq_len: int = 0  # extend-context: the target context; 0 elsewhere

    def train_config(self) -> TrainConfig:
        try:
            betas = tuple(float(x) for x in self.betas.split(","))
        except ValueError:
            raise GlmvError(f"--betas must be two comma-separated numbers such as 0.9,0.95, got '{self.betas}'") from None
        return TrainConfig(
            optim=OptimConfig(lr=self.lr, betas=betas, eps=self.adam_eps, weight_decay=self.weight_decay,
                              warmup_steps=self.warmup_steps, schedule=self.schedule,
                              min_lr_ratio=self.min_lr_ratio, clip=self.clip),
            batch=BatchConfig(micro_batch=self.micro_batch, global_batch=self.global_batch),
            zero_stage=self.zero_stage, precision=self.precision,
            activation_checkpointing=self.activation_checkpointing,
            vision_chunk_images=self.vision_chunk_images, chunked_loss=self.chunked_loss,
            checkpoint_every=self.checkpoint_every,
            keep_checkpoints=self.keep_checkpoints, seed=self.seed, max_steps=self.max_steps,
            epochs=self.epochs, log_every=self.log_every, peak_tflops=self.peak_tflops,
            train=parse_train(self.train))

    def validate(self, world: int = 1) -> TrainConfig:
        if self.resume not in ("never", "auto"):
            raise GlmvError(f"--resume must be 'auto' or 'never', got '{self.resume}'")
        if (self.init_vision is None) != (self.init_llm is None):
            raise GlmvError("--init-vision and --init-llm go together (AIMv2 vision tower + GLM-4 LM)")
        if self.seq_len < 0:
            raise GlmvError(f"--seq-len must be > 0, got {self.seq_len}")
        return self.train_config().validate(world)


def load_model(spec: str, *, seed: int = 0, what: str = "--model") -> tuple[Any, Any, list[Manifest]]:
    """(model, processor, input manifests) from a preset name, an artifact or an HF directory."""
    from glmv_cli.modeling import load

    p = Path(spec)
    inputs: list[Manifest] = []
    if p.exists():
        if (p / "manifest.json").is_file():
            inputs.append(read_manifest(p, what=what))
        elif not (p / "config.json").is_file():
            raise GlmvError(f"{what} '{p}' is neither a glmv artifact (manifest.json) nor a Hugging Face "
                            "model directory (config.json)")
    # fp32 master weights; DeepSpeed casts to bf16 on GPU. seed: a preset's random init
    model, processor = load(spec, seed=seed, dtype="fp32")
    return model, processor, inputs


def load_assembled(vision_dir: Path, llm_dir: Path, seed: int) -> tuple[Any, Any]:
    """The paper's initialisation; the processor is built around the GLM-4 directory's tokenizer."""
    from transformers import AutoTokenizer

    from glmv_cli.modeling.assemble import assemble, load_sources, token_ids_from_tokenizer
    from glmv_cli.modeling.processor import build_processor

    vision, llm = load_sources(vision_dir, llm_dir)
    try:
        tok = AutoTokenizer.from_pretrained(str(llm_dir))
    except (OSError, ValueError) as e:
        raise GlmvError(f"--init-llm '{llm_dir}' has no usable tokenizer ({e})") from None
    model = assemble(vision, llm, token_ids=token_ids_from_tokenizer(tok), seed=seed)
    return model, build_processor(tok)


def check_data_vs_model(ds: Any, model: Any, processor: Any, data_dir: Path, micro_batch: int) -> None:
    """Stops with a message when the packs cannot be trained on this model."""
    tcfg = getattr(model.config, "text_config", model.config)
    max_pos = int(tcfg.max_position_embeddings)
    if ds.seq_len > max_pos:
        raise GlmvError(
            f"packed dataset '{data_dir}' holds packs of up to {ds.seq_len} tokens but the model's "
            f"max_position_embeddings is {max_pos}; repack with --seq-len <= {max_pos} or run glmv extend-context"
        )
    vocab = int(tcfg.vocab_size)
    data_vocab = int(ds.tokenizer_info.get("vocab_size", 0))
    if data_vocab > vocab:
        raise GlmvError(f"packed dataset '{data_dir}' was tokenised with {data_vocab} tokens but the model's "
                        f"vocab_size is {vocab}; pack with the model's tokenizer")
    if getattr(model.config, "image_token_id", ds.image_token_id) != ds.image_token_id:
        raise GlmvError(f"packed dataset '{data_dir}' uses image token id {ds.image_token_id}, the model "
                        f"{model.config.image_token_id}; pack with the model's tokenizer")
    tok = getattr(processor, "tokenizer", processor)
    if tok is not None:
        ds.check_tokenizer(tok)


def fingerprint(stage: str, opts: TrainOptions, cfg: TrainConfig, data: Manifest, model_id: str) -> dict[str, Any]:
    """What makes a run 'the same run' for --resume (JSON-normalised); length/logging options may change,
    and so may the activation-memory options (checkpointing is bitwise neutral, vision chunks change
    only fp32 rounding), so a run that ran out of memory can resume with more checkpointing."""
    c = cfg.to_dict()
    for k in ("max_steps", "epochs", "checkpoint_every", "keep_checkpoints", "log_every", "peak_tflops",
              "activation_checkpointing", "vision_chunk_images"):
        c.pop(k)
    return json.loads(json.dumps({"stage": stage, "model": model_id, "data_manifest_sha256": data.sha256,
                                  "train": c}))


def _first_diff(old: Any, new: Any, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in new:
            d = _first_diff(old.get(k), new[k], f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    if old == new:
        return None
    if path == "data_manifest_sha256":
        return "--data is a different packed dataset"
    return f"{path}: {old} != {new}"


def _check_resume(staging: Path, fp: dict[str, Any]) -> None:
    f = staging / RUN_FILE
    if not f.is_file():
        if (staging / "checkpoints").exists():
            raise GlmvError(f"--resume auto: '{staging}' has checkpoints but no {RUN_FILE}; it is not a glmv "
                            "training run; use a new --out")
        return
    diff = _first_diff(json.loads(f.read_text(encoding="utf-8")), fp)
    if diff:
        raise GlmvError(f"--resume auto: '{staging}' holds checkpoints of another run ({diff}); "
                        "use a new --out, or drop --resume to start over")


def export_model(engine: Any, processor: Any, out_dir: Path) -> None:
    """The final model in Hugging Face format (all ranks call; rank 0 writes)."""
    import torch

    from glmv_cli.modeling import save

    sd = engine.full_state_dict()
    if engine.rank != 0:
        return
    module = engine.module
    if engine.cfg.zero_stage == 3:  # partitioned: rebuild a full CPU copy from the gathered weights
        fresh = type(module)(module.config)
        fresh.load_state_dict(sd, strict=False)
        module = fresh
    from glmv_cli.training import memory

    memory.uninstall(module)  # the exported model runs its own forward (generation, eval)
    if hasattr(module, "activation_checkpointing_disable"):
        if getattr(module, "is_activation_checkpointing", False):
            module.activation_checkpointing_disable()
    elif getattr(module, "is_gradient_checkpointing", False):
        module.gradient_checkpointing_disable()
    module.config.use_cache = True
    with torch.no_grad():
        save(module, processor, out_dir)


def run_training(stage: str, opts: TrainOptions, *, model_loader: Callable[[], tuple[Any, Any, list[Manifest], str]],
                 prepare: Callable[[Any, Any], None] | None = None) -> Manifest | None:
    """The whole stage; returns the manifest on rank 0, None on other ranks."""
    from glmv_cli.training import dist
    from glmv_cli.training.loop import complete_checkpoints, fit

    world = dist.env_world()
    cfg = opts.validate(world)
    if Path(opts.out).exists() and not opts.overwrite:
        raise GlmvError(f"--out '{opts.out}' already exists; choose a new path or pass --overwrite")
    from glmv_cli.data.packed import PackedDataset

    ds = PackedDataset(opts.data)
    if opts.seq_len and ds.seq_len > opts.seq_len:
        raise GlmvError(f"packed dataset '{opts.data}' holds packs of {ds.seq_len} tokens, more than "
                        f"--seq-len {opts.seq_len}; repack with glmv pack --seq-len {opts.seq_len}")
    model, processor, inputs, model_id = model_loader()
    if prepare is not None:
        prepare(model, processor)
    check_data_vs_model(ds, model, processor, Path(opts.data), cfg.batch.micro_batch)
    from glmv_cli.training.config import total_steps

    steps = total_steps(cfg, len(ds), world)
    fp = fingerprint(stage, opts, cfg, ds.manifest, model_id)
    staging = staging_path(opts.out)
    if opts.resume == "auto":
        _check_resume(staging, fp)
    from glmv_cli.training.engine import Engine

    engine = Engine(model, cfg, total_steps=steps)
    rank0 = engine.rank == 0
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}
    art = ArtifactWriter(opts.out, stage, options=options, inputs=[ds.manifest, *inputs],
                         overwrite=opts.overwrite, resume=opts.resume == "auto", keep_on_error=True,
                         exclude=("checkpoints",))
    try:
        if rank0:
            art.open()
            (art.path / RUN_FILE).write_text(json.dumps(fp, indent=2), encoding="utf-8")
        dist.barrier()
        resume_from = None
        if opts.resume == "auto":
            found = complete_checkpoints(staging)
            resume_from = found[-1] if found else None
        summary = fit(engine, ds, staging, resume_from=resume_from)
        export_model(engine, processor, staging)
        dist.barrier()
        if not rank0:
            return None
        kept = complete_checkpoints(staging)
        if opts.keep_final_checkpoint and kept:
            for old in kept[:-1]:
                shutil.rmtree(old, ignore_errors=True)
            art.extra["excluded"] = {"checkpoints": "resumable optimizer state, not hashed"}
        else:
            shutil.rmtree(staging / "checkpoints", ignore_errors=True)
        art.metrics.update(summary)
        art.metrics.update({"world_size": engine.world, "zero_stage": cfg.zero_stage,
                            "parameters": engine.n_params, "trainable_parameters": engine.n_trainable,
                            "resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from else 0,
                            "seq_len": ds.seq_len, "packs": len(ds)})
        return art.commit()
    finally:
        engine.close()


HELP = {
    "data": "Packed dataset directory (a glmv pack artifact).",
    "out": "Output artifact directory (model in Hugging Face format + metrics.jsonl).",
    "model": "Model to start from: a preset (tiny, glm-4.1v-9b, glm-4.5v), a glmv model artifact or a Hugging Face directory.",
    "train": "Comma list of what is trained: vision, merger, llm.",
    "lr": "Peak learning rate (AdamW).",
    "betas": "AdamW betas, two comma-separated numbers.",
    "adam_eps": "AdamW epsilon.",
    "weight_decay": "AdamW weight decay (not applied to biases, norms and the vision position table).",
    "warmup_steps": "Linear warmup steps.",
    "schedule": "LR decay after warmup: cosine, linear or constant.",
    "min_lr_ratio": "Final LR as a fraction of --lr.",
    "clip": "Gradient-norm clipping threshold (0 disables).",
    "micro_batch": "Packs per micro step per process (joined into one row).",
    "global_batch": "Packs per optimizer step over all processes; accumulation = global / (micro x processes).",
    "zero_stage": "DeepSpeed ZeRO stage 0-3.",
    "precision": "auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.",
    "activation_checkpointing": "Recompute activations in the backward pass: off; full (every LM decoder layer and "
                                "vision block); llm (decoder layers only); vision (vision blocks only); every-N "
                                "(decoder layers 0, N, 2N, ... plus all vision blocks). Recipes may say true (= full) "
                                "or false (= off). Less memory for ~1/3 more compute of the wrapped layers.",
    "vision_chunk_images": "Run the vision tower over at most N images at a time (0: all at once); exact. With "
                           "vision checkpointing each chunk is recomputed on its own, so only one chunk's "
                           "activations are alive in the backward pass.",
    "chunked_loss": "Compute the LM loss through the chunked LM head (glmv_kernels): the full logits are never "
                    "materialised (ZeRO-3 always uses full logits). --no-chunked-loss uses the plain full-logits "
                    "cross-entropy.",
    "checkpoint_every": "Save a resumable checkpoint every N steps (0: only at the end).",
    "keep_checkpoints": "Checkpoints kept while training (newest first).",
    "keep_final_checkpoint": "Keep the last checkpoint in the artifact (not hashed) to continue training later.",
    "seed": "Seed of the data order, of a preset's random init and of the fresh assembly weights.",
    "max_steps": "Optimizer steps (0: --epochs over the data).",
    "epochs": "Passes over the data when --max-steps is 0.",
    "log_every": "Print a step line every N steps.",
    "peak_tflops": "Peak TFLOP/s per device for mfu (0: by device).",
    "resume": "auto: continue from the newest complete checkpoint of an interrupted run with the same --out; never: start over.",
    "overwrite": "Replace --out if it exists.",
    "init_vision": "AIMv2 checkpoint directory for the vision tower (with --init-llm, instead of --model).",
    "init_llm": "GLM-4 causal LM checkpoint directory (with --init-vision).",
    "seq_len": "Target context length in tokens.",
}


def _checkpointing_flag(value: Any) -> str:
    """Click-side conversion of --activation-checkpointing (also of recipe values, bools included)."""
    import typer

    from glmv_cli.training.config import parse_checkpointing

    try:
        return parse_checkpointing(value)
    except GlmvError as e:  # Click prefixes "Invalid value for '--activation-checkpointing': "
        raise typer.BadParameter(str(e).removeprefix("--activation-checkpointing ")) from None


def make_command(app: Any, name: str, run: Callable[..., Any], opts_cls: type, *, fields: list[str],
                 doc: str, defaults: dict[str, Any] | None = None) -> None:
    """Registers ``glmv <name>`` with one --flag per dataclass field in ``fields``.

    The Typer signature is generated from the options dataclass, so the three training commands
    cannot drift apart; ``run(opts)`` is the typed stage function.
    """
    import dataclasses
    import inspect
    from typing import Annotated, Optional

    import typer

    from glmv_cli.cli import RecipeOpt, user_errors
    from glmv_cli.training import dist

    defaults = defaults or {}
    params = []
    for f in dataclasses.fields(opts_cls):
        if f.name not in fields:
            continue
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        ann = {"Path": Path, "Path | None": Optional[Path], "str": str, "int": int, "float": float,
               "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
        flag = "--" + f.name.replace("_", "-")
        if f.name == "activation_checkpointing":  # a mode; YAML true/false still convert (one parser)
            opt = typer.Option(flag, help=HELP[f.name], parser=_checkpointing_flag, metavar="MODE")
        else:
            opt = typer.Option(flag if ann is not bool else f"{flag}/--no-{flag[2:]}", help=HELP[f.name])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=Annotated[ann, opt]))
    params.append(inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RecipeOpt))

    def command(**kw: Any) -> None:
        kw.pop("recipe", None)
        try:
            m = run(opts_cls(**kw))
            if m is not None:
                print(f"wrote {m.path} (final loss {m.metrics.get('final_loss')})")
        finally:
            dist.shutdown()

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    app.command(name)(user_errors(command))
