"""One run lifecycle for every resumable stage (pretrain, extend-context, sft, rlcs, grade-difficulty).

A run writes into the staging directory of its artifact (``.<out>.incomplete``, see
``glmv_cli.artifacts``) and goes through the same steps whatever the stage:

1. ``check_resume()`` before anything heavy is built: with ``--resume auto`` an existing staging
   directory must hold ``run.json`` with the same fingerprint (the options that decide the result);
   a staging directory with checkpoints but no ``run.json`` is refused, never silently restarted.
2. ``open()`` (rank 0): takes the exclusive lock of the staging directory (a second run on the same
   ``--out`` is refused, naming the holder), writes ``run.json``.
3. ``latest_checkpoint()`` -> the newest complete checkpoint (``state.json`` written last); the
   stage restores from it and calls ``truncate_logs(step)`` so ``metrics.jsonl`` / ``eval.jsonl``
   read as one uninterrupted run.
4. ``retain(keep)`` while training: drops all but the newest ``keep`` complete checkpoints.
5. ``commit(keep_final_checkpoint)``: hashes every file but ``checkpoints/``, writes the manifest
   last and renames the directory into place. Checkpoints are deleted only *after* that rename, so
   a kill during the final hashing (minutes for a 9B model) still resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from glmv_cli.artifacts import ArtifactWriter, Manifest, staging_path
from glmv_cli.errors import GlmvError

RUN_FILE = "run.json"
WANDB_DIR = "wandb"  # --report-to wandb's working state (glmv_cli.training.tracking)
SCRATCH_DIR = "scratch"  # working files of a run (e.g. rlcs' policy snapshots for rollout servers)
CKPT_DIR = "checkpoints"
STATE = "state.json"


def ckpt_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint dirs with a state.json (written last), oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE).is_file())


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first option that differs between two fingerprints, as ``--flag: old != new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in new:
            d = first_difference(old.get(k), new[k], k)
            if d:
                return d
        return None
    if old == new:
        return None
    if path.endswith("sha256"):
        return f"{path.removesuffix('_sha256').removesuffix('_manifest')} is a different input"
    return f"--{path.replace('_', '-')}: {old} != {new}"


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a log file this run wrote (missing file: none). A torn last line (a kill in
    the middle of an append) is dropped; damage anywhere else is an error naming the line."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise GlmvError(f"{path}:{i + 1}: damaged log line in the staging directory; use a new --out "
                            "or --resume never") from None
    return rows


def truncate_rows(path: Path, step: int) -> None:
    """Keeps the rows of steps <= ``step`` (what a restored checkpoint has seen); atomic."""
    kept = [r for r in read_jsonl_rows(path) if r.get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)


class StageRun:
    """The staging directory of one resumable stage run (rank 0 writes; every rank may read)."""

    def __init__(self, out: Path, stage: str, fingerprint: dict[str, Any], *, resume: bool, overwrite: bool,
                 options: dict[str, Any], inputs: Iterable[Manifest], rank0: bool = True,
                 input_paths: Iterable[Any] = (), progress: Iterable[str] = ()):
        self.out = Path(out)
        self.progress = tuple(progress)  # glob patterns of files whose content is resumable work (besides checkpoints)
        self.stage = stage
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.resume = resume
        self.rank0 = rank0
        self.path = staging_path(self.out)
        self.art = ArtifactWriter(self.out, stage, options=options, inputs=inputs, overwrite=overwrite,
                                  resume=resume, keep_on_error=True, exclude=(CKPT_DIR, WANDB_DIR, SCRATCH_DIR),
                                  input_paths=input_paths)
        self.metrics = self.art.metrics
        self.extra = self.art.extra

    def check_resume(self) -> None:
        """Refuses an --out of another run before anything heavy is built (all ranks may call): a
        path :func:`~glmv_cli.artifacts.check_out` refuses, a staging dir a live run holds, or one
        whose run.json differs (with --resume auto)."""
        self.art.check(lock=self.rank0)  # other ranks may get here after rank 0 took the lock
        if not self.resume:
            return
        f = self.path / RUN_FILE
        if not f.is_file():
            if (self.path / CKPT_DIR).exists():
                raise GlmvError(f"--resume auto: '{self.path}' has checkpoints but no {RUN_FILE}; it is not a "
                                "glmv run of this version; use a new --out")
            return
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GlmvError(f"{f}:{e.lineno}: invalid JSON ({e.msg}); use a new --out") from None
        diff = first_difference(old, self.fingerprint)
        if diff:
            raise GlmvError(f"--resume auto: '{self.path}' holds a run with other options ({diff}); "
                            "use a new --out, or pass --resume never to start over")

    def open(self) -> Path:
        """Rank 0: lock and (re)create the staging dir, write run.json. Returns the staging path."""
        if self.rank0:
            self.art.open()
            tmp = self.path / (RUN_FILE + ".tmp")
            tmp.write_text(json.dumps(self.fingerprint, indent=2), encoding="utf-8")
            os.replace(tmp, self.path / RUN_FILE)
        return self.path

    def release(self) -> None:
        """Rank 0, on an error: keeps the staging dir for --resume auto when it holds resumable work
        (a complete checkpoint, or a ``progress`` file) and gives up its lock; removes it when it
        holds nothing worth resuming (an error before the first checkpoint leaves nothing behind)."""
        if not self.rank0:
            return
        work = (f for p in self.progress for f in self.path.glob(p) if f.is_file() and f.stat().st_size > 0)
        if complete_checkpoints(self.path) or next(work, None) is not None:
            self.art.release()
        else:
            self.art.abort()

    def latest_checkpoint(self) -> Path | None:
        if not self.resume:
            return None
        found = complete_checkpoints(self.path)
        return found[-1] if found else None

    def truncate_logs(self, step: int, names: Iterable[str]) -> None:
        """Rank 0: keeps the log rows of steps <= ``step`` (what the restored checkpoint has seen)."""
        if not self.rank0:
            return
        for name in names:
            truncate_rows(self.path / name, step)

    def append(self, name: str, row: dict[str, Any]) -> None:
        if self.rank0:
            with (self.path / name).open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def rows(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl_rows(self.path / name)

    def retain(self, keep: int) -> None:
        """Rank 0: deletes all but the newest ``keep`` complete checkpoints (and torn partial ones)."""
        if not self.rank0:
            return
        for old in complete_checkpoints(self.path)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def commit(self, keep_final_checkpoint: bool) -> Manifest:
        """Rank 0: manifest last, rename into place, then drop the checkpoints (or all but the last).

        A kept checkpoint is listed with its sizes and hashes under ``checkpoint_files`` (not
        ``files``: later stages read the exported model, never the checkpoint), so ``glmv push
        --include-checkpoints`` can upload exactly those files, hash-checked. Hashing costs
        ~1.3 GB/s on one core: the checkpoint's fp32 weights and AdamW moments are ~16 bytes per
        trainable parameter, the price of a checkpoint one can publish."""
        self.retain(1)
        for torn in (self.path / CKPT_DIR).glob(".*.partial") if (self.path / CKPT_DIR).is_dir() else ():
            shutil.rmtree(torn, ignore_errors=True)  # a checkpoint write a kill interrupted
        if keep_final_checkpoint:
            self.art.extra["excluded"] = {CKPT_DIR: "resumable training state: listed in checkpoint_files, "
                                                    "not read by later stages"}
            self.art.extra["checkpoint_files"] = (self.art._file_table(self.path / CKPT_DIR)
                                                  if (self.path / CKPT_DIR).is_dir() else {})
        manifest = self.art.commit()
        shutil.rmtree(self.out / SCRATCH_DIR, ignore_errors=True)
        if not keep_final_checkpoint:
            shutil.rmtree(self.out / CKPT_DIR, ignore_errors=True)
        return manifest
