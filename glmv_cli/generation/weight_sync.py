"""Weight sync from the learner to the rollout servers of a ``ServerEngine``: ``disk`` and ``nccl``.

Both run on one learner process (rank 0) with full weights (under ZeRO-3 gather them first, as
``training.run.export_model`` does) after an optimizer step, while no rollout is in flight; both
return {seconds, bytes} for the step's metrics.

``disk`` (CPU and GPU, every dialect): ``write_snapshot`` writes the policy as safetensors into the
shared directory (the export code, files renamed into place), then every server is told to reload
and the call waits for all of them (``ServerEngine.reload_weights``: vLLM ``/collective_rpc
reload_weights``, which reloads the directory the server was started from, so start the servers on
the shared directory; SGLang ``/update_weights_from_disk``). Cost: one write of the weights plus one
read per server; measured figures and the 9B projection are in docs/rollout-servers.md.

``nccl`` (GPU only; needs the ``vllm`` package on the learner; vllm dialect): vLLM's weight-transfer
protocol, which TRL's current ``VLLMClient`` also uses. The learner joins every server's workers in
one NCCL group as rank 0 (``/get_world_size`` gives each server's worker count; server k's workers
get ranks after the earlier servers'): ``POST /init_weight_transfer_engine {"init_info":
{master_address, master_port, rank_offset, world_size}}`` on every server while the learner runs
``NCCLWeightTransferEngine.trainer_init``. A sync is ``POST /start_weight_update`` on all, then
``POST /update_weights {"update_info": {names, dtype_names, shapes, packed: true}}`` on all while
the learner broadcasts the tensors in that order (``trainer_send_weights``), then ``POST
/finish_weight_update``. The servers must run ``VLLM_SERVER_DEV_MODE=1 vllm serve ...
--weight-transfer-config '{"backend": "nccl"}'``. This path has not run in this project (no GPU
with vLLM here); the disk path is what the CPU tests exercise.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

WEIGHT_SYNCS = ("disk", "nccl")


class DiskWeightSync:
    """``--weight-sync disk``: snapshot into ``directory``, then every server reloads it."""

    def __init__(self, engine: Any, directory: str | Path, processor: Any):
        self.engine, self.directory, self.processor = engine, Path(directory), processor

    def sync(self, model: Any) -> dict[str, float]:
        from glmv_cli.serving.weights import write_snapshot

        t0 = time.perf_counter()
        info = write_snapshot(model, self.processor, self.directory)
        t1 = time.perf_counter()
        self.engine.reload_weights(self.directory)
        t2 = time.perf_counter()
        return {"seconds": t2 - t0, "write_seconds": t1 - t0, "reload_seconds": t2 - t1, "bytes": float(info["bytes"])}


class NcclWeightSync:
    """``--weight-sync nccl``: a parameter broadcast to vLLM servers (see the module docstring)."""

    def __init__(self, engine: Any, *, master_address: str, master_port: int = 51216, device: Any = "cuda:0"):
        if engine.dialect != "vllm":
            raise GlmvError("--weight-sync nccl speaks vLLM's weight-transfer protocol; with SGLang servers use "
                            "--weight-sync disk")
        try:
            import torch
            from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine
        except ImportError as e:
            raise GlmvError(f"--weight-sync nccl needs the vllm package on the learner (GPU): {e}") from None
        if not torch.cuda.is_available():
            raise GlmvError("--weight-sync nccl needs a CUDA device on the learner")
        torch.cuda.set_device(torch.device(device))
        self.engine, self._engine_cls = engine, NCCLWeightTransferEngine
        sizes = [int(r["world_size"]) for r in engine.pool.each("GET", "/get_world_size")]
        world = 1 + sum(sizes)
        infos = [{"master_address": master_address, "master_port": int(master_port), "rank_offset": 1 + sum(sizes[:k]),
                  "world_size": world} for k in range(len(sizes))]
        pool = engine.pool
        # the servers block in the rendezvous while answering, so the learner joins concurrently
        with ThreadPoolExecutor(max_workers=len(infos)) as ex:
            futs = [ex.submit(pool.call, k, "POST", "/init_weight_transfer_engine", {"init_info": infos[k]})
                    for k in range(len(infos))]
            self.group = NCCLWeightTransferEngine.trainer_init(
                {"master_address": master_address, "master_port": int(master_port), "world_size": world})
            for f in futs:
                f.result()

    def sync(self, model: Any) -> dict[str, float]:
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerSendWeightsArgs

        params = list(model.named_parameters())
        update = {"names": [n for n, _ in params], "dtype_names": [str(p.dtype).removeprefix("torch.") for _, p in params],
                  "shapes": [list(p.shape) for _, p in params], "packed": True}
        pool = self.engine.pool
        t0 = time.perf_counter()
        pool.each("POST", "/start_weight_update", {})
        with ThreadPoolExecutor(max_workers=len(pool.urls)) as ex:
            futs = [ex.submit(pool.call, k, "POST", "/update_weights", {"update_info": update})
                    for k in range(len(pool.urls))]
            self._engine_cls.trainer_send_weights(iter((n, p.data) for n, p in params),
                                                  NCCLTrainerSendWeightsArgs(group=self.group, packed=True))
            for f in futs:
                f.result()
        pool.each("POST", "/finish_weight_update", {})
        nbytes = sum(p.numel() * p.element_size() for _, p in params)
        return {"seconds": time.perf_counter() - t0, "bytes": float(nbytes)}
