"""``glmv pretrain``: multimodal pretraining on packed data with the DeepSpeed engine.

Starts from a preset (random init), a glmv model artifact / Hugging Face directory, or the paper's
assembly (``--init-vision AIMV2_DIR --init-llm GLM4_DIR``: AIMv2 tower with its patch conv inflated
to 3D, GLM-4 LM, fresh downsample + merger; see glmv_cli/modeling/assemble.py). ``--train`` picks
what is updated: in the paper's first phase typically ``merger`` (or ``vision,merger``), later all.
Output: the model in Hugging Face format, metrics.jsonl, and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glmv_cli.artifacts import Manifest
from glmv_cli.errors import GlmvError
from glmv_cli.training.run import TrainOptions

FIELDS = ["model", "init_vision", "init_llm", "data", "out", "train", "lr", "betas", "adam_eps",
          "weight_decay", "warmup_steps", "schedule", "min_lr_ratio", "clip", "micro_batch", "global_batch",
          "zero_stage", "precision", "activation_checkpointing", "vision_chunk_images", "checkpoint_every",
          "keep_checkpoints", "keep_final_checkpoint", "seed", "max_steps", "epochs", "log_every",
          "peak_tflops", "resume", "overwrite"]


@dataclass
class PretrainOptions(TrainOptions):
    def validate(self, world: int = 1):
        if self.init_vision is not None and self.model not in ("", "tiny"):
            raise GlmvError("--model and --init-vision/--init-llm exclude each other: start from a model, "
                            "or assemble one")
        return super().validate(world)


def pretrain(opts: PretrainOptions) -> Manifest | None:
    """Runs pretraining; returns the artifact's manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_assembled, load_model, run_training

    def loader():
        if opts.init_vision is not None:
            model, proc = load_assembled(Path(opts.init_vision), Path(opts.init_llm), opts.seed)
            return model, proc, [], f"assembled:{Path(opts.init_vision).resolve()}+{Path(opts.init_llm).resolve()}"
        model, proc, inputs = load_model(opts.model, seed=opts.seed)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    return run_training("pretrain", opts, model_loader=loader)


def register(app) -> None:
    from glmv_cli.training.run import make_command

    make_command(app, "pretrain", pretrain, PretrainOptions, fields=FIELDS, defaults={"lr": 1e-4},
                 doc="Pretrain a GLM-4.1V-style model on packed data (DeepSpeed ZeRO 0-3, exact resume).\n\n"
                     "Start from --model PRESET|DIR, or assemble --init-vision AIMV2_DIR --init-llm GLM4_DIR. "
                     "Writes the model (Hugging Face format), metrics.jsonl and a manifest to --out. "
                     "Under torchrun/deepspeed every process runs the same command.")
