"""What pretrain, extend-context and sft share: options, input checks, the run, the artifact.

A run (setup -> train -> save): validate every option (all ranks, before anything is built) -> read
the packed data and the model -> check data against model (positions, tokenizer) -> the run
lifecycle of ``glmv_cli.lifecycle`` (resume check by fingerprint, lock, newest complete checkpoint,
metrics truncation) -> ``loop.fit`` -> export the model in Hugging Face format at the top of the
artifact -> commit (rank 0).

Checkpoints in the final artifact: by default they are deleted at commit (an optimizer state is
~3x the model; the exported model is what later stages read). ``--keep-final-checkpoint`` keeps
the newest one under ``checkpoints/`` for continued training; it is listed in the manifest's
``excluded`` field and not hashed (hashing tens of GB of optimizer state buys nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from glmv_cli.artifacts import Manifest, check_out, read_manifest
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt
from glmv_cli.training.config import TrainConfig

MODEL_STAGES = ("pretrain", "extend-context", "sft", "rlcs")


@dataclass(kw_only=True)
class TrainOptions:
    """Options of pretrain, extend-context and sft (each stage changes some defaults)."""

    model: str = opt(help="Model to start from: a glmv model artifact, a Hugging Face directory or Hub id, "
                                    "or a preset (tiny, glm-4.1v-9b, glm-4.5v: random weights).")
    data: Path = opt(help="Packed dataset directory (a glmv pack artifact).")
    out: Path = opt(help="Output artifact directory (model in Hugging Face format + metrics.jsonl).")
    overwrite: bool = opt(False, "Replace --out if it exists.")
    training: TrainConfig = field(default_factory=TrainConfig)


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


def fingerprint(stage: str, cfg: TrainConfig, data: Manifest, model_id: str) -> dict[str, Any]:
    """What makes a run 'the same run' for --resume. Run length, checkpointing, logging and the
    activation-memory options may change (checkpointing is bitwise neutral, vision chunks change only
    fp32 rounding), so a run that ran out of memory can resume with more checkpointing."""
    c = cfg.to_dict()
    for k in ("max_steps", "epochs"):
        c["batch"].pop(k)
    for k in ("activation_checkpointing", "vision_chunk_images"):
        c["engine"].pop(k)
    for k in ("ckpt", "log", "peak_tflops"):
        c.pop(k)
    return {"stage": stage, "model": model_id, "data_manifest_sha256": data.sha256, "train": c}


def model_source(spec: str | None) -> Path | None:
    """The checkpoint directory a model is loaded from (a directory or a Hub id's snapshot), whose
    model files the export carries over unchanged; None for a preset or an assembly."""
    from glmv_cli.modeling import model_dir

    return model_dir(spec) if spec is not None else None


def export_model(engine: Any, processor: Any, out_dir: Path, *, source: Path | None = None,
                 dtype: str = "auto") -> None:
    """The final model in Hugging Face format (all ranks call; rank 0 writes): the files of
    ``source`` carried over, weights in ``dtype`` (auto: the source's)."""
    import torch

    from glmv_cli.modeling import save

    sd = engine.full_state_dict()
    if engine.rank != 0:
        return
    module = engine.module
    if engine.cfg.engine.zero_stage == 3:  # partitioned: rebuild a full CPU copy from the gathered weights
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
        save(module, processor, out_dir, source=source, dtype=dtype)


def run_training(stage: str, opts: TrainOptions, *, model_loader: Callable[[], tuple[Any, Any, list[Manifest], str]],
                 prepare: Callable[[Any, Any], None] | None = None, seq_len: int = 0) -> Manifest | None:
    """The whole stage (setup -> train -> save); the manifest on rank 0, None on other ranks.
    ``seq_len`` > 0 refuses packs longer than it (extend-context)."""
    from glmv_cli import options as O
    from glmv_cli.data.packed import PackedDataset
    from glmv_cli.lifecycle import StageRun
    from glmv_cli.training import dist
    from glmv_cli.training.config import total_steps
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loop import fit
    from glmv_cli.training.tracking import MetricsLog

    world = dist.env_world()
    O.validate(opts, world)
    cfg = opts.training
    check_out(opts.out, opts.overwrite)
    ds = PackedDataset(opts.data)
    if seq_len and ds.seq_len > seq_len:
        raise GlmvError(f"packed dataset '{opts.data}' holds packs of {ds.seq_len} tokens, more than "
                        f"--seq-len {seq_len}; repack with glmv pack --seq-len {seq_len}")
    model, processor, inputs, model_id = model_loader()
    if prepare is not None:
        prepare(model, processor)
    check_data_vs_model(ds, model, processor, Path(opts.data), cfg.batch.micro_batch)
    steps = total_steps(cfg, len(ds), world)
    run = StageRun(opts.out, stage, fingerprint(stage, cfg, ds.manifest, model_id),
                   resume=cfg.ckpt.resume == "auto", overwrite=opts.overwrite, options=O.flat_dict(opts),
                   inputs=[ds.manifest, *inputs], rank0=dist.env_rank() == 0)
    run.check_resume()
    engine = Engine(model, cfg, total_steps=steps)
    try:
        staging = run.open()
        dist.barrier()
        resume_from = run.latest_checkpoint()
        resumed = int(resume_from.name.split("-")[1]) if resume_from else 0
        run.truncate_logs(resumed, ["metrics.jsonl"])
        metrics = MetricsLog(staging, cfg.log.report_to, enabled=run.rank0, resumed_step=resumed,
                             run_name=f"{stage}:{Path(opts.out).name}", config=O.flat_dict(opts))
        try:
            summary = fit(engine, ds, staging, resume_from=resume_from, metrics=metrics)
        finally:
            metrics.close()
        export_model(engine, processor, staging, source=model_source(getattr(opts, "model", None)),
                     dtype=cfg.ckpt.save_dtype)
        dist.barrier()
        if not run.rank0:
            return None
        run.metrics.update(summary)
        run.metrics.update({"world_size": engine.world, "zero_stage": cfg.engine.zero_stage,
                            "parameters": engine.n_params, "trainable_parameters": engine.n_trainable,
                            "resumed_from_step": resumed, "seq_len": ds.seq_len, "packs": len(ds)})
        return run.commit(cfg.ckpt.keep_final_checkpoint)
    finally:
        engine.close()


def report(m: Manifest) -> None:
    """The command's last line: where the model went and its final loss."""
    print(f"wrote {m.path} (final loss {m.metrics.get('final_loss')})")
