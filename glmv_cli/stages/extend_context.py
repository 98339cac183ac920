"""``glmv extend-context``: continue a model on packed data at a longer context (default 32768).

Same engine and options as pretrain; the model's ``max_position_embeddings`` is raised to
``--seq-len`` when smaller (GLM-4.1V's M-RoPE has no trained length limit, only the config field),
and the packs must be at most ``--seq-len`` long. Activation checkpointing is ``full`` by default
here: at 32k tokens the activations, not the weights, dominate memory (``--activation-checkpointing llm``
or ``every-N`` trade some of it back for speed; ``--vision-chunk-images`` bounds the vision side).
"""

from __future__ import annotations

from dataclasses import dataclass

from glmv_cli.artifacts import Manifest
from glmv_cli.training.run import TrainOptions

FIELDS = ["model", "data", "out", "seq_len", "train", "lr", "betas", "adam_eps", "weight_decay",
          "warmup_steps", "schedule", "min_lr_ratio", "clip", "micro_batch", "global_batch", "zero_stage",
          "precision", "activation_checkpointing", "vision_chunk_images", "checkpoint_every",
          "keep_checkpoints", "keep_final_checkpoint", "seed", "max_steps", "epochs", "log_every",
          "peak_tflops", "resume", "overwrite"]
DEFAULTS = {"seq_len": 32768, "activation_checkpointing": "full", "lr": 5e-5}


@dataclass
class ExtendContextOptions(TrainOptions):
    seq_len: int = 32768
    activation_checkpointing: str = "full"

    def validate(self, world: int = 1):
        from glmv_cli.errors import GlmvError

        if self.seq_len <= 0:
            raise GlmvError(f"--seq-len must be > 0, got {self.seq_len}")
        return super().validate(world)


def extend_context(opts: ExtendContextOptions) -> Manifest | None:
    """Continues training at ``--seq-len``; returns the manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_model, run_training

    def loader():
        model, proc, inputs = load_model(opts.model, seed=opts.seed)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    def prepare(model, processor) -> None:
        tcfg = getattr(model.config, "text_config", model.config)
        if tcfg.max_position_embeddings < opts.seq_len:
            tcfg.max_position_embeddings = opts.seq_len

    return run_training("extend-context", opts, model_loader=loader, prepare=prepare)


def register(app) -> None:
    from glmv_cli.training.run import make_command

    make_command(app, "extend-context", extend_context, ExtendContextOptions, fields=FIELDS, defaults=DEFAULTS,
                 doc="Continue a pretrained model on long packed data at --seq-len (default 32768).\n\n"
                     "Same engine and flags as pretrain; raises max_position_embeddings to --seq-len.")
