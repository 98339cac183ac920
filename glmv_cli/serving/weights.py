"""Weights on disk for a running server: write a policy snapshot (learner side) and load one into a
live model (server side).

``write_snapshot`` reuses the export code (``glmv_cli.modeling.save``: sharded safetensors +
index in the Hugging Face layout vLLM and SGLang load) into a staging folder inside the shared
directory, then renames the files into place (index last) and removes shards the new index no
longer lists, so a reader never sees a half-written file. The processor files are written the
first time only (they do not change between RL steps).

``load_snapshot`` reads every tensor the index lists, checks names, shapes and that every model
tensor is covered (a tensor tied to a loaded one counts as covered) before it copies anything, so a
bad directory leaves the model as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

INDEX_NAME = "model.safetensors.index.json"


def _shards(directory: Path) -> list[Path]:
    index = directory / INDEX_NAME
    if index.is_file():
        try:
            wm = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise GlmvError(f"{index}: not a safetensors index ({e})") from None
        return [directory / s for s in sorted(set(wm.values()))]
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    raise GlmvError(f"'{directory}' holds no {INDEX_NAME} or model.safetensors")


def load_snapshot(model: Any, directory: str | os.PathLike) -> dict[str, Any]:
    """Copies the weights of ``directory`` into ``model`` in place; returns {tensors, bytes}."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(directory)
    if not d.is_dir():
        raise GlmvError(f"weights directory '{d}' does not exist")
    state = model.state_dict()
    new: dict[str, Any] = {}
    for shard in _shards(d):
        if not shard.is_file():
            raise GlmvError(f"'{shard}' is listed in the index but missing")
        try:
            new.update(load_file(str(shard)))
        except (SafetensorError, OSError) as e:
            raise GlmvError(f"'{shard}': cannot read safetensors ({e})") from None
    unknown = sorted(set(new) - set(state))
    if unknown:
        raise GlmvError(f"'{d}' holds tensors the model does not have: {', '.join(unknown[:5])}")
    loaded_ptrs = {state[k].data_ptr() for k in new}
    missing = sorted(k for k in state if k not in new and state[k].data_ptr() not in loaded_ptrs)
    if missing:
        raise GlmvError(f"'{d}' lacks {len(missing)} model tensors, e.g. {', '.join(missing[:5])}")
    for k, t in new.items():
        if tuple(t.shape) != tuple(state[k].shape):
            raise GlmvError(f"'{d}': tensor {k} has shape {tuple(t.shape)}, the model {tuple(state[k].shape)}")
    nbytes = 0
    with torch.no_grad():
        for k, t in new.items():
            state[k].copy_(t.to(dtype=state[k].dtype))
            nbytes += t.numel() * t.element_size()
    return {"tensors": len(new), "bytes": nbytes}


def write_snapshot(model: Any, processor: Any, directory: str | os.PathLike) -> dict[str, Any]:
    """Writes ``model`` (and, when the directory has none yet, ``processor``) into ``directory``;
    returns {files, bytes}. Call on one process (rank 0) with full (gathered) weights."""
    from glmv_cli.modeling import save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    staging = d / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    first = not (d / "config.json").is_file()
    try:
        save(model, processor if first else None, staging)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        nbytes = sum((staging / n).stat().st_size for n in names if n.endswith(".safetensors"))
        for n in [n for n in names if n != INDEX_NAME] + ([INDEX_NAME] if INDEX_NAME in names else []):
            os.replace(staging / n, d / n)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    keep = {p.name for p in _shards(d)}
    for stale in d.glob("model*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
    return {"files": len(names), "bytes": nbytes}
