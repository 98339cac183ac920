"""``glmv extend-context``: continue a model on packed data at a longer context (default 32768).

Same engine and options as pretrain; the model's ``max_position_embeddings`` is raised to
``--seq-len`` when smaller (GLM-4.1V's M-RoPE has no trained length limit, only the config field),
and the packs must be at most ``--seq-len`` long. Activation checkpointing is ``full`` by default
here: at 32k tokens the activations, not the weights, dominate memory (``--activation-checkpointing llm``
or ``every-N`` trade some of it back for speed; ``--vision-chunk-images`` bounds the vision side).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glmv_cli.artifacts import Manifest
from glmv_cli.options import opt
from glmv_cli.training.config import EngineConfig, OptimConfig, TrainConfig
from glmv_cli.training.run import TrainOptions


def _defaults() -> TrainConfig:
    return TrainConfig(optim=OptimConfig(lr=5e-5), engine=EngineConfig(activation_checkpointing="full"))


@dataclass(kw_only=True)
class ExtendContextOptions(TrainOptions):
    seq_len: int = opt(32768, "Target context length in tokens (packs must be at most this long).", min=1)
    training: TrainConfig = field(default_factory=_defaults)


def extend_context(opts: ExtendContextOptions) -> Manifest | None:
    """Continues training at ``--seq-len``; returns the manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_model, run_training

    def loader():
        model, proc, inputs = load_model(opts.model, seed=opts.training.seed,
                                        verify_inputs=opts.checks.verify_inputs)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    def prepare(model, processor) -> None:
        tcfg = getattr(model.config, "text_config", model.config)
        if tcfg.max_position_embeddings < opts.seq_len:
            tcfg.max_position_embeddings = opts.seq_len

    return run_training("extend-context", opts, model_loader=loader, prepare=prepare, seq_len=opts.seq_len)


def register(app) -> None:
    from glmv_cli.cli import add_command
    from glmv_cli.training.run import report

    add_command(app, "extend-context", extend_context, ExtendContextOptions, report=report,
                doc="Continue a pretrained model on long packed data at --seq-len (default 32768).\n\n"
                    "Same engine and flags as pretrain; raises max_position_embeddings to --seq-len.")
