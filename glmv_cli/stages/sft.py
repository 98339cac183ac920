"""``glmv sft``: supervised fine-tuning on packed chat data (assistant-only labels).

The labels come from ``glmv pack`` in sft mode (prompts, system/user turns and image tokens are
-100), so the loss is the mean next-token cross-entropy over assistant tokens of the global batch.
The data must have been packed in sft mode; pretraining packs (every token a label) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glmv_cli.artifacts import Manifest
from glmv_cli.errors import GlmvError
from glmv_cli.training.config import OptimConfig, TrainConfig
from glmv_cli.training.run import TrainOptions


@dataclass(kw_only=True)
class SftOptions(TrainOptions):
    training: TrainConfig = field(default_factory=lambda: TrainConfig(optim=OptimConfig(lr=2e-5)))


def sft(opts: SftOptions) -> Manifest | None:
    """Fine-tunes on packed SFT data; returns the manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_model, run_training

    def loader():
        model, proc, inputs = load_model(opts.model, seed=opts.training.seed,
                                        verify_inputs=opts.checks.verify_inputs)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    def prepare(model, processor) -> None:
        from glmv_cli.data.packed import PackedDataset

        mode = PackedDataset(opts.data).mode
        if mode != "sft":
            raise GlmvError(f"--data '{opts.data}' was packed in '{mode}' mode; glmv sft needs "
                            "assistant-only labels: run glmv pack --mode sft")

    return run_training("sft", opts, model_loader=loader, prepare=prepare)


def register(app) -> None:
    from glmv_cli.cli import add_command
    from glmv_cli.training.run import report

    add_command(app, "sft", sft, SftOptions, report=report,
                doc="Supervised fine-tuning on packed chat data (loss on assistant tokens only).\n\n"
                    "Starts from a model artifact, a Hugging Face directory or Hub id; same engine and flags as "
                    "pretrain.")
