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
import shutil
from pathlib import Path
from typing import Any, Iterable

from glmv_cli.artifacts import ArtifactWriter, Manifest, check_out, staging_path
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
    """The rows of a log file this run wrote (missing file: none)."""
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def truncate_rows(path: Path, step: int) -> None:
    """Keeps the rows of steps <= ``step`` (what a restored checkpoint has seen)."""
    kept = [r for r in read_jsonl_rows(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


class StageRun:
    """The staging directory of one resumable stage run (rank 0 writes; every rank may read)."""

    def __init__(self, out: Path, stage: str, fingerprint: dict[str, Any], *, resume: bool, overwrite: bool,
                 options: dict[str, Any], inputs: Iterable[Manifest], rank0: bool = True):
        self.out = Path(out)
        self.stage = stage
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.resume = resume
        self.rank0 = rank0
        self.path = staging_path(self.out)
        self.art = ArtifactWriter(self.out, stage, options=options, inputs=inputs, overwrite=overwrite,
                                  resume=resume, keep_on_error=True, exclude=(CKPT_DIR, WANDB_DIR, SCRATCH_DIR))
        self.metrics = self.art.metrics
        self.extra = self.art.extra

    def check_resume(self) -> None:
        """Refuses an --out of another run before anything heavy is built (all ranks may call)."""
        check_out(self.out, self.art.overwrite)
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
            (self.path / RUN_FILE).write_text(json.dumps(self.fingerprint, indent=2), encoding="utf-8")
        return self.path

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
        """Rank 0: manifest last, rename into place, then drop the checkpoints (or all but the last)."""
        self.retain(1)
        if keep_final_checkpoint:
            self.art.extra["excluded"] = {CKPT_DIR: "resumable training state, not hashed"}
        manifest = self.art.commit()
        shutil.rmtree(self.out / SCRATCH_DIR, ignore_errors=True)
        if not keep_final_checkpoint:
            shutil.rmtree(self.out / CKPT_DIR, ignore_errors=True)
        return manifest
