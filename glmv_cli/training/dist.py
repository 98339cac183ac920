"""Process-group set-up for one process, ``torchrun`` and the ``deepspeed`` launcher alike.

Launchers export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; a plain ``glmv sft``
has none, so we fill in a single-process group on a free local port. CPU runs use gloo (DESIGN
§10); DeepSpeed's shared-memory comm op is disabled before ``initialize`` because its first use
JIT-compiles for ~37 s and gloo does not need it. Without DeepSpeed (``training.backend``) the
group is made by ``torch.distributed.init_process_group`` from the same environment variables.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched() -> bool:
    """True under torchrun / deepspeed (they set WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init() -> None:
    """Initialises torch.distributed through DeepSpeed, or plain torch without it (idempotent)."""
    import torch

    from glmv_cli.training.backend import uses_deepspeed

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    added: list[str] = []
    if not launched():
        # a one-process group; the variables are removed again afterwards so that child processes
        # (a torchrun launched from a test, a subprocess) do not mistake them for a launcher's
        for k, v in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"),
                     ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(_free_port()))):
            if k not in os.environ:
                os.environ[k] = v
                added.append(k)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        if uses_deepspeed():
            import deepspeed

            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
            deepspeed.init_distributed(dist_backend=backend, verbose=False)
        else:
            dist.init_process_group(backend=backend, init_method="env://")
    finally:
        for k in added:  # DeepSpeed's engine still reads LOCAL_RANK later
            if k not in ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):
                os.environ.pop(k, None)


def init_coordination() -> None:
    """A gloo process group for coordination only (barriers, small all-gathers), for stages that run
    no collective on a model (``grade-difficulty`` under torchrun: each rank grades its own shard).
    No DeepSpeed and no CUDA: the rollout engine (an in-process HF model on ``cuda:LOCAL_RANK``, or
    vLLM) keeps the GPU to itself. Idempotent; a no-op outside a launcher."""
    import torch.distributed as dist

    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    dist.init_process_group("gloo")


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Sums a few numbers over ranks (float64 on CPU; gloo and nccl both take it via the device)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return t.tolist()


def all_max(values: list[float]) -> list[float]:
    """Element-wise maximum of a few numbers over ranks."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _device() -> Any:
    """Where collective buffers live: the current GPU under NCCL, else the CPU (gloo)."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_padded(t: Any, sizes: list[int]) -> list[Any]:
    """Every rank's 1-D tensor ``t`` (lengths ``sizes``), padded to the longest for the collective."""
    import torch
    import torch.distributed as dist

    dev = _device()
    buf = torch.zeros(max(max(sizes), 1), dtype=t.dtype, device=dev)
    buf[: t.numel()] = t.to(dev)
    parts = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(parts, buf)
    return [p[:n].cpu() for p, n in zip(parts, sizes)]


def all_gather_tensors(tensors: dict[str, Any], meta: Any = None) -> list[tuple[dict[str, Any], Any]]:
    """Every rank's (``tensors``, ``meta``), in rank order, on every rank.

    ``tensors``: the same names on every rank, 1-D tensors of any length and a dtype the backend
    carries (int32 token ids, float32 log-probs, uint8 flags) -- exchanged as they are, one
    collective per name; ``meta``: small JSON-serialisable metadata (one more collective). The
    lengths travel first, in one int64 collective. This is how rollouts cross ranks: 9 bytes per
    token (int32 id, float32 log-prob, uint8 forced flag) instead of ~37 as JSON text, and no
    Python ints to parse."""
    import json

    import torch
    import torch.distributed as dist

    names = sorted(tensors)
    blob = torch.frombuffer(bytearray(json.dumps(meta, separators=(",", ":")).encode("utf-8")), dtype=torch.uint8)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [({k: tensors[k] for k in names}, json.loads(bytes(blob.tolist()).decode("utf-8")))]
    flat = [tensors[k].reshape(-1) for k in names]
    mine = torch.tensor([t.numel() for t in flat] + [blob.numel()], dtype=torch.int64, device=_device())
    all_sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(all_sizes, mine)
    sizes = [s.cpu().tolist() for s in all_sizes]
    out: list[tuple[dict[str, Any], Any]] = [({}, None) for _ in sizes]
    for j, (k, t) in enumerate(zip(names, flat)):
        for r, part in enumerate(_gather_padded(t, [s[j] for s in sizes])):
            out[r][0][k] = part
    metas = _gather_padded(blob, [s[-1] for s in sizes])
    return [(d, json.loads(bytes(m.numpy().tobytes()).decode("utf-8"))) for (d, _), m in zip(out, metas)]


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (JSON-serialisable, small: metadata, eval scores), in rank order.

    JSON bytes in a uint8 tensor rather than ``all_gather_object``: that one pickles, and nothing
    in glmv unpickles (docs/design.md §3). Bulk numbers (token ids, log-probs) go through ``all_gather_tensors``."""
    return [m for _, m in all_gather_tensors({}, obj)]


def shutdown() -> None:
    """Destroys the process group, and DeepSpeed's cached groups with it, so that a later stage in
    the same process (tests, notebooks) can initialise again."""
    import sys

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is not None:
        for name in ("_WORLD_GROUP", "_DATA_PARALLEL_GROUP", "_ZERO_PARAM_INTRA_PARALLEL_GROUP",
                     "_MODEL_PARALLEL_GROUP", "_TENSOR_MODEL_PARALLEL_GROUP"):
            if hasattr(groups, name):
                setattr(groups, name, None)
        for name in ("_EXPERT_PARALLEL_GROUP", "_EXPERT_PARALLEL_GROUP_RANKS", "_EXPERT_DATA_PARALLEL_GROUP",
                     "_EXPERT_DATA_PARALLEL_GROUP_RANKS", "_ALL_TO_ALL_GROUP"):
            d = getattr(groups, name, None)
            if isinstance(d, dict):
                d.clear()
