"""The rollout engine of ``glmv rlcs`` (``--engine hf|server|vllm``) and how it follows the policy.

- ``hf``: the trainer's own ``HFEngine`` over the policy's weights (lock-stepped under ZeRO-3); it
  always sees the current weights, so nothing is synced.
- ``server``: ``ServerEngine`` over ``--server-url`` servers; training ranks never decode (so any
  ZeRO stage works). After every RL step's optimizer steps -- and once at the start, so the
  servers serve the policy being trained, also after a resume -- the policy is synced:
  ``--weight-sync disk`` writes it as safetensors to ``--weight-sync-dir`` (default: the run's
  scratch folder; it must be a path every server can read) and every server reloads it, while
  rollouts wait; ``--weight-sync nccl`` broadcasts the parameters to vLLM servers (GPU).
- ``vllm``: ``VLLMEngine`` in each training process (GPU), fed token ids plus images (nothing
  re-tokenised); ``sync_weights`` after every RL step; with ``sleep`` between rollouts and the
  update, training and inference share one GPU's memory.

Every rank calls the sync (under ZeRO-3 the full weights are gathered); rank 0 writes and signals.
The sync's seconds and bytes go to ``metrics.jsonl`` (``weight_sync_s``, ``weight_sync_bytes``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError


def build_rollout_engine(gen: Any, model: Any, processor: Any, *, model_path: str) -> Any:
    """The engine ``--engine`` names, or None for the trainer's own HFEngine."""
    if gen.engine == "hf":
        return None
    tok = getattr(processor, "tokenizer", processor)
    if gen.engine == "server":
        from glmv_cli.generation.options import server_engine

        return server_engine(gen, tok, model.config, model.generation_config, model_tag="rlcs")
    from glmv_cli.generation import VLLMEngine

    if not Path(model_path).is_dir():
        raise GlmvError(f"--engine vllm loads the policy from --model; it must be a model directory, got '{model_path}'")
    return VLLMEngine(model_path, tokenizer=tok, model_tag="rlcs", enable_sleep_mode=True)


class PolicySync:
    """Brings the rollout engine to the policy's current weights (all ranks call ``__call__``)."""

    def __init__(self, rollout: Any, kind: str, directory: Path, processor: Any, train_engine: Any,
                 master: str = "127.0.0.1:51216"):
        self.rollout, self.kind, self.directory = rollout, kind, Path(directory)
        self.processor, self.train = processor, train_engine
        self._sync: Any = None
        self._master = master

    def _sender(self) -> Any:
        if self._sync is None:
            from glmv_cli.generation.weight_sync import DiskWeightSync, NcclWeightSync

            if self.kind == "disk":
                self._sync = DiskWeightSync(self.rollout, self.directory, self.processor)
            else:
                host, _, port = self._master.rpartition(":")
                self._sync = NcclWeightSync(self.rollout, master_address=host or "127.0.0.1", master_port=int(port),
                                            device=self.train.device)
        return self._sync

    def __call__(self) -> dict[str, float]:
        from glmv_cli.generation import VLLMEngine
        from glmv_cli.training import dist

        t0 = time.perf_counter()
        if isinstance(self.rollout, VLLMEngine):  # every rank feeds its own in-process engine
            sd = self._full_weights(every_rank=True)
            self.rollout.sync_weights(sd.items())
            return {"weight_sync_s": time.perf_counter() - t0,
                    "weight_sync_bytes": float(sum(t.numel() * t.element_size() for t in sd.values()))}
        module = self._full_module()
        info: dict[str, float] = {}
        if self.train.rank == 0:
            info = self._sender().sync(module)
        dist.barrier()
        return {"weight_sync_s": time.perf_counter() - t0, "weight_sync_bytes": float(info.get("bytes", 0.0))}

    def _full_weights(self, every_rank: bool) -> dict[str, Any]:
        """Full tensors (gathered under ZeRO-3) on rank 0, or on every rank."""
        if self.train.cfg.engine.zero_stage != 3:
            return {n: p.detach() for n, p in self.train.module.named_parameters()}
        if not every_rank:
            return self.train.full_state_dict()
        import deepspeed

        out = {}
        for n, p in self.train.module.named_parameters():
            with deepspeed.zero.GatheredParameters([p]):
                out[n] = p.detach().clone()
        return out

    def _full_module(self) -> Any:
        """The policy as one full module on rank 0 (a rebuilt copy under ZeRO-3, as the export does)."""
        module = self.train.module
        if self.train.cfg.engine.zero_stage != 3:
            return module
        sd = self.train.full_state_dict()
        if self.train.rank != 0:
            return None
        fresh = type(module)(module.config)
        fresh.load_state_dict(sd, strict=False)
        return fresh
