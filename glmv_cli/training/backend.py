"""The training backend behind ``Engine``: DeepSpeed, or a plain-torch ZeRO-0 path without it.

Which one: ``GLMV_TRAIN_BACKEND`` = ``auto`` (default: DeepSpeed when it is installed, else torch),
``deepspeed`` or ``torch``. The torch path is ZeRO-0 in one process only; ZeRO 1-3 and several
processes need DeepSpeed and are refused with a message (``resolve``).

``TorchZero0`` reproduces what DeepSpeed's ZeRO-0 engine does around a torch AdamW, step for
step, so the two give the same numbers and write the same checkpoint layout:

- fp32 (CPU): the module's own fp32 parameters are the ones AdamW steps; micro-batch gradients
  accumulate in ``p.grad``; at the accumulation boundary the gradient norm is taken over all
  gradients, they are scaled by ``clip / (norm + 1e-6)`` when that is < 1, AdamW steps and the
  gradients are zeroed. The checkpoint's masters are the parameters themselves.
- bf16 (GPU): the module's parameters are cast to bf16 (buffers stay fp32, as DeepSpeed does);
  AdamW steps an fp32 *master* copy of each trainable parameter, made from its bf16 value. After
  every backward the bf16 gradients are added into the masters' fp32 gradients and dropped, so
  accumulation over micro batches happens in fp32. At the boundary: the norm of the fp32
  gradients; a non-finite norm skips the step (DeepSpeed's overflow rule); clipping as above;
  AdamW on the masters; each master copied into its bf16 parameter. Memory per trained parameter:
  2 (bf16 weight) + 4 (master) + 4 (fp32 gradient) + 8 (AdamW moments) bytes. The alternative,
  fp32 weights under ``torch.autocast``, keeps norms and residual adds in fp32 and would not give
  DeepSpeed's numbers.

``BF16Masters`` holds the masters in ``fp32_groups`` and the AdamW as ``.optimizer``, as
DeepSpeed's ZeRO-0 bf16 wrapper does, so ``Engine``'s checkpoint code reads both backends through
one code path and writes the same ``master.i`` / ``exp_avg.i`` tensors.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

from glmv_cli.errors import GlmvError

ENV = "GLMV_TRAIN_BACKEND"
CHOICES = ("auto", "deepspeed", "torch")
CLIP_EPS = 1e-6  # DeepSpeed's clip coefficient: max_norm / (norm + 1e-6)


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def choice() -> str:
    """The ``GLMV_TRAIN_BACKEND`` setting, validated."""
    v = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if v not in CHOICES:
        raise GlmvError(f"{ENV} must be one of {', '.join(CHOICES)}, got '{os.environ.get(ENV)}'")
    return v


def uses_deepspeed() -> bool:
    """True when this process trains (and initialises its process group) through DeepSpeed."""
    v = choice()
    if v == "deepspeed" and not deepspeed_installed():
        raise GlmvError(f"{ENV}=deepspeed but DeepSpeed is not installed (pip install deepspeed==0.19.8)")
    return v == "deepspeed" or (v == "auto" and deepspeed_installed())


def resolve(zero_stage: int, world: int) -> str:
    """"deepspeed" or "torch" for a run of ``--zero-stage zero_stage`` over ``world`` processes."""
    if uses_deepspeed():
        return "deepspeed"
    why = "DeepSpeed is not installed" if not deepspeed_installed() else f"{ENV}=torch"
    if zero_stage != 0:
        raise GlmvError(f"--zero-stage {zero_stage} needs DeepSpeed ({why}); install deepspeed==0.19.8 or "
                        "train with --zero-stage 0, which runs on plain torch in one process")
    if world != 1:
        raise GlmvError(f"training over {world} processes needs DeepSpeed ({why}); install deepspeed==0.19.8 "
                        "or run one process (the torch path is ZeRO-0 on one device)")
    return "torch"


def train_device() -> torch.device:
    """This process's device: cuda:LOCAL_RANK when CUDA is present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def step_begin(device: Any) -> None:
    """Starts a step's CUDA peak-memory window (nothing off CUDA)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def step_end(device: Any) -> float | None:
    """Waits for the step's queued CUDA work (so its time is the step's, not the next one's) and
    returns ``torch.cuda.max_memory_allocated`` since ``step_begin`` in GiB; None off CUDA."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) / 2**30


class BF16Masters:
    """fp32 master weights and fp32 gradient accumulators for a bf16 module's parameter groups.

    ``fp16_groups[i]`` are the trainable bf16 parameters of AdamW group i and ``fp32_groups[i]``
    their fp32 copies (made from the bf16 values), which replace them in AdamW's group i: the
    names and layout of DeepSpeed's ZeRO-0 bf16 wrapper, so the checkpoint's ``master.i`` are the
    same per-parameter tensors in the same order. Each master's ``.grad`` is a persistent fp32
    buffer that every backward adds the bf16 gradients into (DeepSpeed 0.19 accumulates them in
    bf16 instead; one micro batch per step gives identical gradients either way).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.fp16_groups: list[list[torch.nn.Parameter]] = []
        self.fp32_groups: list[list[torch.Tensor]] = []
        for group in optimizer.param_groups:
            lp = [p for p in group["params"] if p.requires_grad]
            hp = []
            for p in lp:
                m = p.detach().clone().float().requires_grad_(True)
                m.grad = torch.zeros_like(m)
                hp.append(m)
            group["params"] = hp
            self.fp16_groups.append(lp)
            self.fp32_groups.append(hp)

    def pairs(self):
        for lp, hp in zip(self.fp16_groups, self.fp32_groups):
            yield from zip(lp, hp)

    @torch.no_grad()
    def accumulate(self) -> None:
        """Adds each bf16 gradient into its master's fp32 gradient and drops it."""
        for p, m in self.pairs():
            if p.grad is not None:
                m.grad.add_(p.grad.to(torch.float32))
                p.grad = None

    def grads(self) -> list[torch.Tensor]:
        return [m.grad for _, m in self.pairs()]

    @torch.no_grad()
    def publish(self) -> None:
        """Copies the fp32 masters into the module's bf16 weights."""
        for p, m in self.pairs():
            p.data.copy_(m.data)

    @torch.no_grad()
    def zero_grad(self) -> None:
        for _, m in self.pairs():
            m.grad.zero_()


class TorchZero0:
    """The engine object ``Engine`` drives when DeepSpeed is not used (see the module docstring).

    It offers the slice of DeepSpeed's engine API that ``Engine`` calls: ``module``, ``device``,
    calling it runs the module, ``train()``, ``set_gradient_accumulation_boundary``,
    ``backward(loss, scale_wrt_gas=False)``, ``step()``, ``get_global_grad_norm()``, ``destroy()``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, bf16: bool, clip: float):
        self.device = train_device()
        if bf16:  # parameters only: buffers (rotary inverse frequencies) stay fp32, as DeepSpeed casts
            for p in model.parameters():
                if p.is_floating_point():
                    p.data = p.data.to(torch.bfloat16)
        self.module = model.to(self.device)
        # AdamW was built before the move; .to() keeps Parameter identity, so its groups still hold them
        self.bf16 = bf16
        self.clip = float(clip)
        self.optimizer: Any = BF16Masters(optimizer) if bf16 else optimizer
        self.base = optimizer
        self._boundary = True
        self._grad_norm: float | None = None
        self.skipped_steps = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "TorchZero0":
        self.module.train(mode)
        return self

    def set_gradient_accumulation_boundary(self, boundary: bool) -> None:
        self._boundary = bool(boundary)

    def backward(self, loss: torch.Tensor, scale_wrt_gas: bool = False) -> None:
        if scale_wrt_gas:  # Engine scales by world / N_global itself; this path has no other use
            raise ValueError("TorchZero0.backward does not rescale by the accumulation steps")
        loss.backward()
        if self.bf16:
            self.optimizer.accumulate()

    def _grads(self) -> list[torch.Tensor]:
        if self.bf16:
            return self.optimizer.grads()
        return [p.grad for p in self.module.parameters() if p.grad is not None]

    @torch.no_grad()
    def step(self) -> None:
        """At the accumulation boundary: norm, (skip on a non-finite norm in bf16), clip, AdamW."""
        if not self._boundary:
            return
        grads = self._grads()
        # per-tensor norms, then the root of their summed squares: DeepSpeed's order of operations
        norm = torch.stack([g.detach().float().norm(2) for g in grads]).pow(2).sum().pow(0.5) \
            if grads else torch.zeros((), device=self.device)
        self._grad_norm = float(norm)
        if self.bf16 and not torch.isfinite(norm):
            self.skipped_steps += 1
            self._grad_norm = float("inf")
            self.optimizer.zero_grad()
            return
        if self.clip > 0:
            coef = self.clip / (norm + CLIP_EPS)
            if coef < 1:
                for g in grads:
                    g.mul_(coef.to(g.dtype))
        self.base.step()
        if self.bf16:
            self.optimizer.publish()
            self.optimizer.zero_grad()
        else:
            for p in self.module.parameters():  # DeepSpeed's engine.zero_grad: grads to None
                p.grad = None

    def get_global_grad_norm(self) -> float | None:
        """The gradient norm of the last optimizer step, before clipping."""
        return self._grad_norm

    def destroy(self) -> None:
        """Nothing to release: no hooks were installed."""
