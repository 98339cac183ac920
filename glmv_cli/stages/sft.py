"""``glmv sft``: supervised fine-tuning on packed chat data (assistant-only labels).

The labels come from ``glmv pack`` in sft mode (prompts, system/user turns and image tokens are
-100), so the loss is the mean next-token cross-entropy over assistant tokens of the global batch.
The data must have been packed in sft mode; pretraining packs (every token a label) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from glmv_cli.artifacts import Manifest
from glmv_cli.errors import GlmvError
from glmv_cli.training.run import TrainOptions

FIELDS = ["model", "data", "out", "train", "lr", "betas", "adam_eps", "weight_decay", "warmup_steps",
          "schedule", "min_lr_ratio", "clip", "micro_batch", "global_batch", "zero_stage", "precision",
          "activation_checkpointing", "vision_chunk_images", "checkpoint_every", "keep_checkpoints",
          "keep_final_checkpoint", "seed", "max_steps", "epochs", "log_every", "peak_tflops", "resume",
          "overwrite"]
DEFAULTS = {"lr": 2e-5}


@dataclass
class SftOptions(TrainOptions):
    lr: float = 2e-5


def sft(opts: SftOptions) -> Manifest | None:
    """Fine-tunes on packed SFT data; returns the manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_model, run_training

    def loader():
        model, proc, inputs = load_model(opts.model, seed=opts.seed)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    def prepare(model, processor) -> None:
        from glmv_cli.data.packed import PackedDataset

        mode = PackedDataset(opts.data).mode
        if mode != "sft":
            raise GlmvError(f"--data '{opts.data}' was packed in '{mode}' mode; glmv sft needs "
                            "assistant-only labels: run glmv pack --mode sft")

    return run_training("sft", opts, model_loader=loader, prepare=prepare)


def register(app) -> None:
    from glmv_cli.training.run import make_command

    make_command(app, "sft", sft, SftOptions, fields=FIELDS, defaults=DEFAULTS,
                 doc="Supervised fine-tuning on packed chat data (loss on assistant tokens only).\n\n"
                     "Starts from a model artifact or Hugging Face directory; same engine and flags as pretrain.")
