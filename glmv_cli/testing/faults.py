"""Run ``glmv`` and kill it with SIGKILL at a chosen point: the fault tests' process.

    python -m glmv_cli.testing.faults POINT N -- <glmv arguments>

POINT names where the process dies (N counts occurrences, 1-based, unless said otherwise):

- ``train-step``: at the start of the engine step that would make step N+1 (N steps done);
- ``rl-step``: at the start of the rlcs step after step N;
- ``ckpt-write``: while writing the N-th checkpoint: its optimizer file is left half written in the
  checkpoint's ``.partial`` directory;
- ``export``: while exporting the final model: the first weight shard is left half written;
- ``hash``: at the N-th file hashed by the final commit (before the manifest is written);
- ``grade-chunk``: while appending the N-th chunk of grade-difficulty rollouts (a third of it lands);
- ``pack-shard``: after writing the N-th pack shard, which is left half written;
- ``eval-batch``: while appending the N-th batch of glmv eval sample lines (a third of it lands);
- ``hold``: after taking the staging directory's lock, write the file ``$GLMV_FAULT_READY`` and wait
  until ``$GLMV_FAULT_GO`` exists, then go on (a run that is alive and holds ``--out``).

SIGKILL is what the OOM killer and a preempting scheduler send: no ``finally`` block, no
atexit handler, no flush runs, so what is on disk is exactly what a real crash leaves.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _halve(path: Path) -> None:
    data = Path(path).read_bytes()
    with open(path, "r+b") as f:
        f.truncate(len(data) // 2)
        f.flush()
        os.fsync(f.fileno())


def _counter(n: int) -> Callable[[], bool]:
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == n
    return hit


def _train_step(n: int, hit: Callable[[], bool]) -> None:
    from glmv_cli.training.engine import Engine

    orig = Engine.train_step

    def train_step(self: Any, *a: Any, **k: Any) -> Any:
        if self.step == n:
            die()
        return orig(self, *a, **k)
    Engine.train_step = train_step


def _rl_step(n: int, hit: Callable[[], bool]) -> None:
    from glmv_cli.rl.trainer import RLCSTrainer

    orig_rl = RLCSTrainer.train_step

    def rl_step(self: Any) -> Any:
        if self.step == n:
            die()
        return orig_rl(self)
    RLCSTrainer.train_step = rl_step


def _ckpt_write(n: int, hit: Callable[[], bool]) -> None:
    import safetensors.torch as st

    orig_save = st.save_file

    def save_file(tensors: Any, filename: str, *a: Any, **k: Any) -> Any:
        out = orig_save(tensors, filename, *a, **k)
        if "optim-rank-" in str(filename) and hit():
            _halve(Path(filename))
            die()
        return out
    st.save_file = save_file


def _export(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.modeling as modeling

    orig_export = modeling.save

    def save(model: Any, processor: Any, out_dir: Any, **k: Any) -> Any:
        names = orig_export(model, processor, out_dir, **k)
        if hit():
            _halve(sorted(Path(out_dir).glob("model-*.safetensors"))[0])
            die()
        return names
    modeling.save = save


def _hash(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.artifacts as artifacts

    orig_hash = artifacts.sha256_file

    def sha256_file(path: Any, *, fsync: bool = False) -> str:
        if fsync and hit():  # fsync=True: the commit's file table
            die()
        return orig_hash(path, fsync=fsync)
    artifacts.sha256_file = sha256_file


def _torn_append(module: Any, hit: Callable[[], bool]) -> None:
    """``module.append_rows`` writes a third of the N-th batch (mid-line: a torn tail), then dies."""
    import json

    orig = module.append_rows

    def append_rows(path: Path, lines: list, **k: Any) -> None:
        if hit():
            blob = "".join(json.dumps(d, default=str) + "\n" for d in lines).encode()
            with open(path, "ab") as f:
                f.write(blob[: len(blob) // 3])
                f.flush()
                os.fsync(f.fileno())
            die()
        orig(path, lines, **k)
    module.append_rows = append_rows


def _grade_chunk(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.stages.grade_difficulty as gd

    _torn_append(gd, hit)


def _pack_shard(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.data.storage as storage

    orig_shard = storage.write_shard

    def write_shard(path: Any, packs: Any) -> Any:
        out = orig_shard(path, packs)
        if hit():
            _halve(Path(path))
            die()
        return out
    storage.write_shard = write_shard


def _eval_batch(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.evaluation.runner as runner

    _torn_append(runner, hit)


def _hold(n: int, hit: Callable[[], bool]) -> None:
    import glmv_cli.locks as locks

    orig_acquire = locks.acquire

    def acquire(directory: Path, out: Path, attempts: int = 5) -> Any:
        rec = orig_acquire(directory, out, attempts)
        Path(os.environ["GLMV_FAULT_READY"]).write_text(str(os.getpid()))
        go = Path(os.environ["GLMV_FAULT_GO"])
        while not go.exists():
            time.sleep(0.05)
        return rec
    locks.acquire = acquire


INSTALLERS: dict[str, Callable[[int, Callable[[], bool]], None]] = {
    "train-step": _train_step,
    "rl-step": _rl_step,
    "ckpt-write": _ckpt_write,
    "export": _export,
    "hash": _hash,
    "grade-chunk": _grade_chunk,
    "pack-shard": _pack_shard,
    "eval-batch": _eval_batch,
    "hold": _hold,
}


def install(point: str, n: int) -> None:
    """Patches the named point so the process dies there (see the module docstring)."""
    if point not in INSTALLERS:
        raise SystemExit(f"unknown fault point '{point}'")
    INSTALLERS[point](n, _counter(n))


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[2] != "--":
        raise SystemExit(__doc__)
    install(argv[0], int(argv[1]))
    from glmv_cli.main import app

    app(argv[3:], prog_name="glmv")


if __name__ == "__main__":
    main(sys.argv[1:])
