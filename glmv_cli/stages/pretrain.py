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
from typing import Optional

from glmv_cli.artifacts import Manifest
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt
from glmv_cli.training.run import TrainOptions


@dataclass(kw_only=True)
class PretrainOptions(TrainOptions):
    model: Optional[str] = opt(None, "Model to start from: a glmv model artifact, a Hugging Face directory or Hub "
                                     "id, or a preset (tiny, glm-4.1v-9b, glm-4.5v: random weights). Or assemble "
                                     "one with --init-vision and --init-llm.")
    init_vision: Optional[Path] = opt(None, "AIMv2 checkpoint directory for the vision tower (with --init-llm, "
                                            "instead of --model).")
    init_llm: Optional[Path] = opt(None, "GLM-4 causal LM checkpoint directory (with --init-vision).")

    def check(self) -> None:
        if (self.init_vision is None) != (self.init_llm is None):
            raise GlmvError("--init-vision and --init-llm go together (AIMv2 vision tower + GLM-4 LM)")
        if self.init_vision is not None and self.model is not None:
            raise GlmvError("--model and --init-vision/--init-llm exclude each other: start from a model, "
                            "or assemble one")
        if self.init_vision is None and self.model is None:
            raise GlmvError("give --model (a model or preset to start from) or --init-vision with --init-llm")


def pretrain(opts: PretrainOptions) -> Manifest | None:
    """Runs pretraining; returns the artifact's manifest (None on ranks other than 0)."""
    from glmv_cli.training.run import load_assembled, load_model, run_training

    seed = opts.training.seed

    def loader():
        if opts.init_vision is not None:
            model, proc = load_assembled(Path(opts.init_vision), Path(opts.init_llm), seed)
            return model, proc, [], f"assembled:{Path(opts.init_vision).resolve()}+{Path(opts.init_llm).resolve()}"
        model, proc, inputs = load_model(opts.model, seed=seed, verify_inputs=opts.checks.verify_inputs)
        return model, proc, inputs, inputs[0].sha256 if inputs else str(opts.model)

    return run_training("pretrain", opts, model_loader=loader)


def register(app) -> None:
    from glmv_cli.cli import add_command
    from glmv_cli.training.run import report

    add_command(app, "pretrain", pretrain, PretrainOptions, report=report,
                doc="Pretrain a GLM-4.1V-style model on packed data (DeepSpeed ZeRO 0-3, exact resume).\n\n"
                    "Start from --model PRESET|DIR|HUB_ID, or assemble --init-vision AIMV2_DIR --init-llm GLM4_DIR. "
                    "Writes the model (Hugging Face format), metrics.jsonl and a manifest to --out. "
                    "Under torchrun/deepspeed every process runs the same command.")
