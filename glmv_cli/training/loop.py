"""The packed-data training loop: data order, checkpoints, exact resume, logging.

Data order is a pure function of (seed, step): epoch e visits the packs in the permutation drawn
from ``seed + e``; optimizer step s takes the ``global_batch`` packs at offset
``(s mod steps_per_epoch) * global_batch`` of its epoch's permutation (a last partial global batch
is dropped). Those packs are cut into micro batches of ``micro_batch`` packs and dealt round-robin
to the ranks, so the same global batch gives the same packs, and hence the same gradient, in 1 or N
processes. The data cursor is therefore just the step; it is saved (with the epoch/offset for
humans) in each checkpoint's extra state and checked on resume.

Checkpoints go to ``<run_dir>/checkpoints/step-NNNNNNNN`` every ``checkpoint_every`` steps and at
the end; only the newest ``keep_checkpoints`` are kept. ``metrics.jsonl`` gets one JSON line per
step (rank 0); on resume, lines past the resumed step are dropped so the file reads as one run.
The next step's micro batches are read and joined in a background thread while the current step
runs, into pinned memory on CUDA (``training.prefetch``); on CUDA each metrics line also has
``max_memory_allocated_gb``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from glmv_cli.lifecycle import CKPT_DIR, ckpt_name, complete_checkpoints, read_jsonl_rows
from glmv_cli.training import dist
from glmv_cli.training.engine import Engine
from glmv_cli.training.tracking import MetricsLog
from glmv_cli.training.loss import chunked_lm_loss_sum, concat_packs, lm_loss_sum, sample_lengths, step_flops
from glmv_cli.training.prefetch import StepPrefetcher, wants_pinned

def batch_indices(step: int, n_packs: int, global_batch: int, seed: int) -> list[int]:
    """The pack indices of optimizer step ``step`` (0-based), in order."""
    per_epoch = n_packs // global_batch
    epoch, within = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n_packs, generator=g).tolist()
    return perm[within * global_batch:(within + 1) * global_batch]


def rank_micro_batches(indices: Sequence[int], micro: int, world: int, rank: int) -> list[list[int]]:
    """Micro batches of ``micro`` packs dealt round-robin; this rank's share."""
    groups = [list(indices[i:i + micro]) for i in range(0, len(indices), micro)]
    return groups[rank::world]


def step_line(step: int, total: int, m: dict[str, Any]) -> str:
    """The fixed-format rank-0 step line."""
    return (f"step {step}/{total} | loss {m['loss']:.4f} | lr {m['lr']:.3e} | "
            f"tok/s {m['tok_s']:,.0f} | mfu {100 * m['mfu']:.2f}%")


class _Progress:
    """A rich progress bar when stdout is a terminal; plain step lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[info]}"))
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def line(self, text: str, step: int) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
            self.bar.update(self.task, completed=step, info=text.split(" | ", 1)[1])
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _model_dims(model: torch.nn.Module) -> tuple[int, int, int]:
    cfg = getattr(model.config, "text_config", model.config)
    vis = getattr(getattr(model, "model", model), "visual", None)
    n_vis = sum(getattr(p, "ds_numel", p.numel()) for p in vis.parameters()) if vis is not None else 0
    return cfg.num_hidden_layers, cfg.hidden_size, n_vis


def fit(engine: Engine, packs: Sequence[dict[str, Any]], run_dir: str | Path, *,
        resume_from: Path | None = None, extra_state: Callable[[], dict[str, Any]] | None = None,
        log: bool = True, metrics: MetricsLog | None = None) -> dict[str, Any]:
    """Trains ``engine`` for ``engine.total_steps`` steps over ``packs``; returns summary metrics.

    Rows go to ``metrics`` (default: ``run_dir/metrics.jsonl`` alone); the caller truncates the
    file on resume (``lifecycle.StageRun.truncate_logs``)."""
    cfg = engine.cfg
    run_dir = Path(run_dir)
    n = len(packs)
    G, micro = cfg.batch.global_batch, cfg.batch.micro_batch
    if resume_from is not None:
        extra = engine.load_checkpoint(resume_from)
        cursor = extra.get("cursor", {})
        if cursor.get("n_packs") not in (None, n) or cursor.get("global_batch") not in (None, G):
            from glmv_cli.errors import GlmvError

            raise GlmvError(f"checkpoint '{resume_from}' was taken over {cursor.get('n_packs')} packs with "
                            f"--global-batch {cursor.get('global_batch')}; this run has {n} and {G}")
    own_log = metrics is None
    if own_log:
        if engine.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run_dir, enabled=engine.rank == 0)
    n_layers, hidden, n_vis = _model_dims(engine.module)
    n_text = engine.n_params - n_vis
    peak = cfg.peak_tflops or _peak(engine)
    progress = _Progress(engine.total_steps, engine.step, log and engine.rank == 0)
    losses: list[float] = []
    tok_total, t_run = 0.0, time.perf_counter()
    per_epoch = n // G
    # the chunked head runs inside lm_head's own module call, so ZeRO-3 gathers its weight there too
    loss_fn = chunked_lm_loss_sum if cfg.engine.chunked_loss else lm_loss_sum

    def step_batches(step: int) -> list[dict[str, Any]]:
        idx = batch_indices(step, n, G, cfg.seed)
        mine = rank_micro_batches(idx, micro, engine.world, engine.rank)
        return [concat_packs([packs[i] for i in grp]) for grp in mine]

    loader = StepPrefetcher(step_batches, range(engine.step, engine.total_steps),
                            pin_memory=wants_pinned(engine.device)).start()
    try:
        while engine.step < engine.total_steps:
            step = engine.step
            mbs = loader.get(step)
            m = engine.train_step(mbs, loss_fn=loss_fn)
            lens = [sample_lengths(mb["position_ids"]) for mb in mbs if "position_ids" in mb]
            patches = sum(int(mb["pixel_values"].shape[0]) for mb in mbs
                          if mb.get("pixel_values") is not None)
            flops, patches = dist.all_sum([step_flops(n_text, n_layers, hidden, lens, n_vis, patches), patches])
            m["tok_s"] = m["tokens"] / max(m["time_s"], 1e-9)
            m["mfu"] = flops / max(m["time_s"], 1e-9) / (peak * 1e12 * engine.world)
            m["epoch"] = step // per_epoch
            losses.append(m["loss"])
            tok_total += m["tokens"]
            metrics.log(m)
            if engine.rank == 0:
                if log and (engine.step % cfg.log.log_every == 0 or engine.step == engine.total_steps):
                    progress.line(step_line(engine.step, engine.total_steps, m), engine.step)
            done = engine.step == engine.total_steps
            if done or (cfg.ckpt.checkpoint_every and engine.step % cfg.ckpt.checkpoint_every == 0):
                save(engine, run_dir, n, extra_state)
    finally:
        loader.close()
        progress.close()
        if own_log:
            metrics.close()
    if engine.rank == 0:  # the whole run's losses, including steps before a resume
        losses = [r["loss"] for r in read_jsonl_rows(metrics.path)]
    return {"steps": engine.step, "final_loss": losses[-1] if losses else None,
            "first_loss": losses[0] if losses else None, "tokens": tok_total,
            "train_seconds": round(time.perf_counter() - t_run, 3)}


def save(engine: Engine, run_dir: Path, n_packs: int, extra_state: Callable[[], dict[str, Any]] | None) -> Path:
    G = engine.cfg.batch.global_batch
    per_epoch = n_packs // G
    extra = {"cursor": {"step": engine.step, "epoch": engine.step // per_epoch,
                        "offset": (engine.step % per_epoch) * G, "n_packs": n_packs, "global_batch": G}}
    if extra_state is not None:
        extra.update(extra_state())
    path = engine.save_checkpoint(Path(run_dir) / CKPT_DIR / ckpt_name(engine.step), extra)
    if engine.rank == 0:
        for old in complete_checkpoints(run_dir)[:-engine.cfg.ckpt.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return path


def _peak(engine: Engine) -> float:
    from glmv_cli.training.loss import default_peak_tflops

    return default_peak_tflops(torch.device(engine.device) if not isinstance(engine.device, torch.device)
                               else engine.device)
