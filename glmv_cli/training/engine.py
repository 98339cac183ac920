"""The one training engine: DeepSpeed ZeRO 0-3 around a Hugging Face model, with a step-level API.

``Engine(model, cfg, total_steps)`` freezes what ``cfg.train`` excludes, builds AdamW (no weight
decay on biases and norms), and wraps the model with ``deepspeed.initialize`` (bf16 on GPU, fp32
on CPU); ``--activation-checkpointing`` / ``--vision-chunk-images`` are applied by
``training.memory.install`` before that. ``train_step(micro_batches, loss_fn, count_fn)`` runs
one optimizer step over any number of micro batches: ``count_fn`` counts each micro batch's loss
units (label tokens by default), the counts are summed over all ranks first, and each micro loss
is scaled by ``world / N_global`` so accumulation and data parallelism reproduce the
single-big-batch gradient. The learning rate is set from the pure schedule ``lr_at(step)`` before
every step, so resume needs no scheduler state.
Without DeepSpeed (or with ``GLMV_TRAIN_BACKEND=torch``) ZeRO-0 in one process runs on
``training.backend.TorchZero0``: the same AdamW, clipping, bf16 master weights and checkpoint
layout in plain torch; ZeRO 1-3 then stop with a message. On CUDA each step's metrics carry
``max_memory_allocated_gb``, the step's peak of ``torch.cuda.max_memory_allocated``, and the
step's time includes its queued kernels (one synchronize per step).
pretrain / extend-context / sft use it through ``loop.fit``; the RL policy update calls
``train_step`` directly with its own loss.

Checkpoints never pickle (docs/design.md §3) and do not use DeepSpeed's torch.save-based format:
``model.safetensors`` holds the full (gathered) module weights, written by rank 0;
``optim-rank-R.safetensors`` holds rank R's fp32 master partitions and AdamW moments exactly as the
ZeRO optimizer lays them out, so a resume needs the same world size and ZeRO stage (checked, with a
message); ``rng-rank-R.safetensors/.json`` hold torch/CUDA/numpy/python RNG states; ``state.json``
(written last, after a barrier, so its presence marks a complete checkpoint) holds the step, the
layout and the caller's extra JSON (data cursor, sampler state).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from glmv_cli.errors import GlmvError
from glmv_cli.lifecycle import STATE
from glmv_cli.oserrors import writing
from glmv_cli.training import backend as train_backend
from glmv_cli.training import dist, memory
from glmv_cli.training.config import TrainConfig, lr_at
from glmv_cli.training.loss import count_label_tokens, is_packed_lm_batch, lm_loss_sum, with_vision_probe

MODEL_FILE = "model.safetensors"
PIXEL_KEYS = ("pixel_values", "pixel_values_videos")


def param_group_of(name: str) -> str:
    """Which --train group a parameter belongs to: vision, merger or llm."""
    if ".visual." in f".{name}":
        if ".merger." in name or ".downsample." in name:
            return "merger"
        return "vision"
    return "llm"


def _is_no_decay(name: str, p: torch.Tensor) -> bool:
    return p.dim() < 2 or "norm" in name.lower() or "embeddings.position" in name


class Engine:
    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
        dist.init()
        self.cfg = cfg
        self.world = dist.world()
        self.rank = dist.rank()
        cfg.validate(self.world)
        self.backend = train_backend.resolve(cfg.engine.zero_stage, self.world)
        if self.backend == "deepspeed":
            import logging
            import warnings

            import deepspeed

            # DeepSpeed's ZeRO calls torch's deprecated collective names every step; its INFO logs
            # repeat the config. Neither is actionable for a user.
            warnings.filterwarnings("ignore", message=r"`torch.distributed.\w+` is deprecated")
            deepspeed.utils.logger.setLevel(logging.WARNING)
        self.total_steps = total_steps
        self.step = 0
        use_cuda = torch.cuda.is_available()
        self.bf16 = cfg.engine.precision == "bf16" or (cfg.engine.precision == "auto" and use_cuda)
        if cfg.engine.precision == "bf16" and not use_cuda:
            raise GlmvError("--precision bf16 needs a GPU; use fp32 (or auto) on CPU")
        trainable = set(cfg.engine.train)
        for name, p in model.named_parameters():
            p.requires_grad_(param_group_of(name) in trainable)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise GlmvError(f"--train {','.join(cfg.engine.train)} selects no parameters of this model")
        # Checkpointing granularity and the chunked vision tower (training.memory) wrap module
        # forwards in place, before ZeRO-3 partitions the weights; inactive under no_grad / eval.
        self.memory = memory.install(model, cfg.engine.activation_checkpointing, cfg.engine.vision_chunk_images)
        model.config.use_cache = False
        o = cfg.optim
        groups = [
            {"params": [p for n, p in named if not _is_no_decay(n, p)], "weight_decay": o.weight_decay},
            {"params": [p for n, p in named if _is_no_decay(n, p)], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=lr_at(0, o, total_steps), betas=tuple(o.betas), eps=o.adam_eps,
                                      foreach=False)
        self.accum = cfg.batch.accum_steps(self.world)
        ds_cfg: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": self.accum,
            "train_batch_size": self.accum * self.world,
            "gradient_clipping": o.clip,
            "zero_optimization": {"stage": cfg.engine.zero_stage},
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
            "zero_allow_untested_optimizer": True,
        }
        if self.bf16:
            ds_cfg["bf16"] = {"enabled": True}
        if self.backend == "deepspeed":
            self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_cfg)
        else:
            self.engine = train_backend.TorchZero0(model, optimizer, bf16=self.bf16, clip=o.clip)
            self.optimizer = self.engine.optimizer
        self.module = self.engine.module
        self.device = self.engine.device
        vcfg = getattr(self.module.config, "vision_config", None)
        self._probe = None
        if vcfg is not None:  # also in one process: identical numerics for 1 and N processes
            self._probe = {"image_token_id": int(self.module.config.image_token_id),
                           "patch_dim": int(vcfg.in_channels * vcfg.temporal_patch_size * vcfg.patch_size ** 2),
                           "merge": int(vcfg.spatial_merge_size)}
        self.n_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in self.module.parameters())
        self.n_trainable = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel()
                               for p in self.module.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ stepping
    @property
    def base_optimizer(self) -> torch.optim.Optimizer:
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def set_lr(self, lr: float) -> None:
        for g in self.base_optimizer.param_groups:
            g["lr"] = lr

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors to the device; under bf16 the pixel values become bf16 (the model's input dtype).
        Other float tensors (an RL batch's log-probs, advantages, masks) stay fp32: in bf16 a
        log-prob of -5 is only known to 0.03, and the PPO ratio exp(new - old) would not start at 1."""
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.bf16 and k in PIXEL_KEYS:
                    v = v.to(torch.bfloat16)
            out[k] = v
        return out

    def _grad_norm_stage0(self) -> float:
        sq = 0.0
        for p in self.module.parameters():
            if p.grad is not None:
                sq += float(p.grad.detach().float().pow(2).sum())
        return sq ** 0.5

    def train_step(self, micro_batches: Sequence[dict[str, Any]],
                   loss_fn: Callable[[torch.nn.Module, dict[str, Any]], torch.Tensor] = lm_loss_sum,
                   count_fn: Callable[[dict[str, Any]], float] = count_label_tokens) -> dict[str, float]:
        """One optimizer step over this rank's micro batches; returns global metrics.

        ``loss_fn(model, batch)`` returns the SUM of the loss over the batch's units;
        ``count_fn(batch)`` returns the number of units. The step minimises
        sum(all units' losses over all ranks) / N_global.

        Packed LM batches (one row, ``labels`` and 4-row ``position_ids``) get the vision probe
        (``loss.with_vision_probe``), so ranks with and without images run the same collectives.
        Other batches (the RL update's padded rows with their own per-token tensors) are passed
        unchanged: a caller mixing image and text-only micro batches over several ranks must give
        every micro batch an image part itself (or apply ``with_vision_probe`` in its collate).
        """
        if not micro_batches:
            raise ValueError("train_step needs at least one micro batch")
        t0 = time.perf_counter()
        train_backend.step_begin(self.device)
        self.engine.train()
        counts = [float(count_fn(mb)) for mb in micro_batches]
        tokens = float(sum(int(mb["input_ids"].numel()) for mb in micro_batches))
        n_global, tokens_global = dist.all_sum([sum(counts), tokens])
        lr = lr_at(self.step, self.cfg.optim, self.total_steps)
        self.set_lr(lr)
        scale = self.world / max(n_global, 1.0)
        loss_local = 0.0
        grad_norm = float("nan")
        for i, mb in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            self.engine.set_gradient_accumulation_boundary(last)
            if self._probe is not None and is_packed_lm_batch(mb):  # same module calls on every rank
                mb = with_vision_probe(mb, **self._probe)
            loss_sum = loss_fn(self.engine, self._to_device(mb))
            loss_local += float(loss_sum.detach().float())
            self.engine.backward(loss_sum * scale, scale_wrt_gas=False)
            if last and self.cfg.engine.zero_stage == 0 and self.backend == "deepspeed":
                grad_norm = self._grad_norm_stage0()
            self.engine.step()
        if self.cfg.engine.zero_stage != 0 or self.backend == "torch":
            gn = self.engine.get_global_grad_norm()
            grad_norm = float(gn) if gn is not None else float("nan")
        (loss_global,) = dist.all_sum([loss_local])
        self.step += 1
        peak = train_backend.step_end(self.device)
        out = {"step": self.step, "loss": loss_global / max(n_global, 1.0), "lr": lr,
               "grad_norm": grad_norm, "tokens": tokens_global, "label_tokens": n_global,
               "time_s": time.perf_counter() - t0}
        if peak is not None:
            out["max_memory_allocated_gb"] = peak
        return out

    # ------------------------------------------------------------------ weights
    def _gathered(self, params: list[torch.nn.Parameter], modifier_rank: int | None = None):
        if self.cfg.engine.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank)
        return _nullcontext()

    def full_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor] | None:
        """Full module weights on CPU on rank 0 (None elsewhere); gathers ZeRO-3 shards in chunks."""
        out: dict[str, torch.Tensor] = {}
        named = list(self.module.named_parameters())
        for i in range(0, len(named), 32):
            chunk = named[i:i + 32]
            with self._gathered([p for _, p in chunk]):
                if self.rank == 0:
                    for n, p in chunk:
                        t = p.detach().to("cpu", copy=True)
                        out[n] = t.to(dtype) if dtype is not None else t
        return out if self.rank == 0 else None

    def load_full_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        named = list(self.module.named_parameters())
        writer = self.cfg.engine.zero_stage != 3 or self.rank == 0  # ZeRO-3: rank 0 writes, exit broadcasts
        missing = [n for n, _ in named if n not in sd]
        if missing:
            raise GlmvError(f"checkpoint lacks {len(missing)} model tensors, e.g. '{missing[0]}'")
        for i in range(0, len(named), 32):
            chunk = named[i:i + 32]
            with self._gathered([p for _, p in chunk], modifier_rank=0):
                if writer:
                    with torch.no_grad():
                        for n, p in chunk:
                            p.data.copy_(sd[n].to(p.dtype))

    def _masters(self) -> list[torch.Tensor]:
        """The fp32 tensors the base optimizer steps, in a fixed order."""
        o = self.optimizer
        for attr in ("fp32_partitioned_groups_flat", "single_partition_of_fp32_groups",
                     "fp32_groups_flat_partition"):
            if hasattr(o, attr):
                return list(getattr(o, attr))
        return [p for g in self.base_optimizer.param_groups for p in g["params"]]

    # ------------------------------------------------------------------ checkpoints
    def layout(self) -> dict[str, Any]:
        return {"world_size": self.world, "zero_stage": self.cfg.engine.zero_stage, "bf16": self.bf16,
                "trainable": list(self.cfg.engine.train)}

    def save_checkpoint(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Writes a complete checkpoint at ``path`` (all ranks call this).

        Never in place: the files go to a hidden sibling ``.<name>.partial``, are fsynced, get
        ``state.json`` last and the directory is renamed onto ``path``, so a kill at any moment
        leaves either the previous checkpoints alone or a complete new one."""
        from safetensors.torch import save_file

        path = Path(path)
        part = path.parent / f".{path.name}.partial"
        if self.rank == 0:
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(parents=True)
        dist.barrier()
        sd = self.full_state_dict()
        if self.rank == 0:
            with writing(part / MODEL_FILE, _nbytes(sd.values())):
                save_file({k: v.contiguous() for k, v in sd.items()}, str(part / MODEL_FILE))
        base = self.base_optimizer
        tensors: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self._masters()):
            tensors[f"master.{i}"] = m.detach().to("cpu", copy=True).contiguous()
            for k, v in base.state.get(m, {}).items():
                if isinstance(v, torch.Tensor):
                    tensors[f"{k}.{i}"] = v.detach().to("cpu", copy=True).reshape(v.shape).contiguous()
        with writing(part / f"optim-rank-{self.rank:05d}.safetensors", _nbytes(tensors.values())):
            save_file(tensors, str(part / f"optim-rank-{self.rank:05d}.safetensors"))
        rng_t, rng_j = _rng_state()
        save_file(rng_t, str(part / f"rng-rank-{self.rank:05d}.safetensors"))
        (part / f"rng-rank-{self.rank:05d}.json").write_text(json.dumps(rng_j), encoding="utf-8")
        _fsync_dir_files(part, f"rank-{self.rank:05d}", model=self.rank == 0)
        dist.barrier()
        if self.rank == 0:
            state = {"step": self.step, "layout": self.layout(), "extra": extra or {}}
            with open(part / STATE, "w", encoding="utf-8") as f:
                f.write(json.dumps(state, indent=2))
                f.flush()
                os.fsync(f.fileno())
            if path.exists():  # an incomplete leftover of the same step (callers skip complete ones)
                shutil.rmtree(path)
            os.replace(part, path)
        dist.barrier()
        return path

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Restores weights, optimizer, RNG and step from ``path``; returns the caller's extra state."""
        from safetensors.torch import load_file

        path = Path(path)
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        lay, now = state["layout"], self.layout()
        diff = [f"{k} {lay.get(k)} -> {now[k]}" for k in now if lay.get(k) != now[k]]
        if diff:
            raise GlmvError(
                f"checkpoint '{path}' was written with a different layout ({'; '.join(diff)}); "
                "resume with the same number of processes, --zero-stage, precision and --train"
            )
        self.load_full_state_dict(load_file(str(path / MODEL_FILE)))
        tensors = load_file(str(path / f"optim-rank-{self.rank:05d}.safetensors"))
        base = self.base_optimizer
        with torch.no_grad():
            for i, m in enumerate(self._masters()):
                m.data.copy_(tensors[f"master.{i}"].to(m.dtype))
                st = {k.rsplit(".", 1)[0]: v.to(m.device) for k, v in tensors.items()
                      if k.rsplit(".", 1)[1] == str(i) and not k.startswith("master.")}
                if st:
                    base.state[m] = st
        rng_t = load_file(str(path / f"rng-rank-{self.rank:05d}.safetensors"))
        rng_j = json.loads((path / f"rng-rank-{self.rank:05d}.json").read_text(encoding="utf-8"))
        _set_rng_state(rng_t, rng_j)
        self.step = int(state["step"])
        dist.barrier()
        return state.get("extra", {})

    def close(self) -> None:
        """Releases DeepSpeed's hooks and buffers (the process group stays; see dist.shutdown)."""
        if hasattr(self.engine, "destroy"):
            self.engine.destroy()


def _nbytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _fsync_dir_files(d: Path, rank_tag: str, model: bool) -> None:
    """fsyncs the files this rank wrote, so the rename that publishes them never outruns the data."""
    for f in d.iterdir():
        if rank_tag in f.name or (model and f.name == MODEL_FILE):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextmanager
def _nullcontext():
    yield


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    t = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        t["cuda"] = torch.cuda.get_rng_state()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    t["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    ver, py_state, gauss = random.getstate()
    j = {"numpy": [name, int(pos), int(has_gauss), float(cached)],
         "python": [ver, list(py_state), gauss]}
    return t, j


def _set_rng_state(t: dict[str, torch.Tensor], j: dict[str, Any]) -> None:
    torch.set_rng_state(t["torch"])
    if "cuda" in t and torch.cuda.is_available():
        torch.cuda.set_rng_state(t["cuda"])
    name, pos, has_gauss, cached = j["numpy"]
    np.random.set_state((name, t["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    ver, py_state, gauss = j["python"]
    random.setstate((ver, tuple(py_state), gauss))

