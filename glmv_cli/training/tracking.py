"""Metrics of a training run: ``metrics.jsonl`` (the source of truth) plus ``--report-to``.

Every row a stage logs is appended to ``metrics.jsonl`` as one JSON line; with
``--report-to tensorboard`` the same numeric scalars go to TensorBoard event files under
``<run dir>/tensorboard`` through the real writer (``torch.utils.tensorboard.SummaryWriter``);
with ``--report-to wandb`` they go to a Weights & Biases run, offline by default (``WANDB_MODE``
wins), written under ``<run dir>/wandb`` so no account is needed (that folder is wandb's working
state and is not listed in the artifact's manifest; ``wandb sync`` uploads it later). Nested dicts are flattened with
``/`` (``per_domain/ocr/reward``). On resume the TensorBoard writer purges the steps after the
restored one, as metrics.jsonl is truncated, so both read as one run.

Only rank 0 writes. A tracker that cannot start (package missing) is a GlmvError before training.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

METRICS = "metrics.jsonl"
TB_DIR = "tensorboard"


def scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics row, nested keys joined with '/' (bools and strings dropped)."""
    out: dict[str, float] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(scalars(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
            if math.isfinite(float(v)):
                out[key] = float(v)
    return out


class MetricsLog:
    """Appends rows to metrics.jsonl and mirrors their scalars to the chosen tracker (rank 0 only)."""

    def __init__(self, run_dir: Path, report_to: str = "none", *, enabled: bool = True, resumed_step: int = 0,
                 run_name: str = "glmv", config: dict[str, Any] | None = None):
        self.path = Path(run_dir) / METRICS
        self.enabled = enabled
        self.report_to = report_to
        self._tb = None
        self._wandb = None
        if not enabled or report_to == "none":
            return
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise GlmvError("--report-to tensorboard needs the 'tensorboard' package (pip install tensorboard)") from None
            # purge_step drops events after the restored step, so a resumed run's curve has no doubles
            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR), purge_step=resumed_step + 1 if resumed_step else None)
        elif report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise GlmvError("--report-to wandb needs the 'wandb' package (pip install wandb)") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            # wandb writes <dir>/wandb/; the artifact leaves that folder out of its manifest
            self._wandb = wandb.init(dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "glmv"), name=run_name,
                                     config=config or {}, reinit="finish_previous")
        else:
            raise GlmvError(f"--report-to must be none, tensorboard or wandb, got '{report_to}'")

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (round(v, 8) if isinstance(v, float) else v) for k, v in row.items()}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        step = int(row.get("step", 0))
        if self._tb is not None:
            for k, v in scalars(row).items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars(row), step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
