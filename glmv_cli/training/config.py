"""Training configuration: one dataclass group, validated in one place, plus the LR schedule.

Every message names the command-line flag at fault, so a recipe typo or a bad batch arithmetic
fails before any model is built. Batch arithmetic: a *pack* is one packed row of ``--seq-len``
tokens (DESIGN §5); a micro batch of ``m`` packs is run as ONE row of ``m * seq_len`` tokens
(packs are concatenated; position row 0 restarts per sample, so the block-diagonal mask keeps them
apart exactly as it keeps samples apart inside a pack). The global batch ``G`` packs per optimizer
step is split over ``world`` data-parallel ranks and ``accum`` micro steps:
``G = micro * world * accum``; ``accum`` is derived and must be a whole number.

Schedule: linear warmup from 0 to ``lr`` over ``warmup_steps`` optimizer steps, then cosine (or
constant / linear) decay to ``min_lr_ratio * lr`` at ``total_steps``. ``lr_at`` is a pure function
of the step index so an exact resume needs no scheduler state.

Activation memory (``glmv_cli.training.memory`` applies it): ``--activation-checkpointing`` takes
a mode, parsed here in ONE place (``parse_checkpointing``, used by validation, by the flag's
parser and by recipes): ``off``, ``full`` (every LM decoder layer and every vision block),
``llm`` (decoder layers only), ``vision`` (vision blocks only) or ``every-N`` (decoder layers
0, N, 2N, ... plus every vision block). YAML/old booleans keep working: true = full, false = off.
``--vision-chunk-images N`` runs the vision tower over at most N images at a time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from glmv_cli.errors import GlmvError

SCHEDULES = ("cosine", "linear", "constant")
TRAINABLE = ("vision", "merger", "llm")
CHECKPOINT_MODES = ("off", "full", "llm", "vision", "every-N")
_BOOL_MODES = {"true": "full", "false": "off"}


def parse_checkpointing(value: Any) -> str:
    """The canonical ``--activation-checkpointing`` mode of ``value``, or a GlmvError naming the flag.

    Accepts the modes of CHECKPOINT_MODES (case-insensitive, ``every-N`` with an integer N >= 1;
    ``every-1`` is ``full``) and booleans (true -> full, false -> off), so the recipes written when
    the flag was a switch stay valid.
    """
    if isinstance(value, bool):
        return "full" if value else "off"
    s = str(value).strip().lower()
    s = _BOOL_MODES.get(s, s)
    if s in ("off", "full", "llm", "vision"):
        return s
    if s.startswith("every-") and s[6:].isdigit() and int(s[6:]) >= 1:
        n = int(s[6:])
        return "full" if n == 1 else f"every-{n}"
    raise GlmvError(
        f"--activation-checkpointing must be one of {', '.join(CHECKPOINT_MODES)} (N an integer >= 1, e.g. "
        f"every-2; true = full, false = off), got '{value}'"
    )


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    clip: float = 1.0


@dataclass
class BatchConfig:
    micro_batch: int = 1  # packs per micro step per rank
    global_batch: int = 1  # packs per optimizer step over all ranks

    def accum_steps(self, world: int) -> int:
        return self.global_batch // (self.micro_batch * world)


@dataclass
class TrainConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    zero_stage: int = 0
    precision: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # off | full | llm | vision | every-N (see parse_checkpointing; a bool is accepted and normalised)
    activation_checkpointing: str = "off"
    vision_chunk_images: int = 0  # 0: the vision tower sees all images of a micro batch at once
    # LM loss through glmv_kernels' chunked head: the [tokens x vocab] logits never exist
    # (CPU: 0.47-0.52x the time of the full-logits CE; 4 % of its peak memory at 8K tokens).
    chunked_loss: bool = True
    checkpoint_every: int = 0  # 0: only at the end of the run
    keep_checkpoints: int = 2
    seed: int = 0
    max_steps: int = 0  # 0: derived from epochs
    epochs: float = 1.0
    log_every: int = 1
    peak_tflops: float = 0.0  # 0: by device
    train: tuple[str, ...] = TRAINABLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, world: int = 1) -> "TrainConfig":
        o, b = self.optim, self.batch
        if not (o.lr > 0 and math.isfinite(o.lr)):
            raise GlmvError(f"--lr must be > 0, got {o.lr}")
        if len(o.betas) != 2 or not all(0.0 <= x < 1.0 for x in o.betas):
            raise GlmvError(f"--betas must be two numbers in [0, 1), got {list(o.betas)}")
        if o.eps <= 0:
            raise GlmvError(f"--adam-eps must be > 0, got {o.eps}")
        if o.weight_decay < 0:
            raise GlmvError(f"--weight-decay must be >= 0, got {o.weight_decay}")
        if o.warmup_steps < 0:
            raise GlmvError(f"--warmup-steps must be >= 0, got {o.warmup_steps}")
        if o.schedule not in SCHEDULES:
            raise GlmvError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{o.schedule}'")
        if not 0.0 <= o.min_lr_ratio <= 1.0:
            raise GlmvError(f"--min-lr-ratio must be in [0, 1], got {o.min_lr_ratio}")
        if o.clip < 0:
            raise GlmvError(f"--clip must be >= 0 (0 disables clipping), got {o.clip}")
        if b.micro_batch < 1:
            raise GlmvError(f"--micro-batch must be >= 1, got {b.micro_batch}")
        if b.global_batch < 1:
            raise GlmvError(f"--global-batch must be >= 1, got {b.global_batch}")
        if b.global_batch % (b.micro_batch * world):
            raise GlmvError(
                f"--global-batch {b.global_batch} must be a multiple of --micro-batch {b.micro_batch} x "
                f"{world} data-parallel process(es) = {b.micro_batch * world}"
            )
        if self.zero_stage not in (0, 1, 2, 3):
            raise GlmvError(f"--zero-stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise GlmvError(f"--precision must be auto, fp32 or bf16, got '{self.precision}'")
        self.activation_checkpointing = parse_checkpointing(self.activation_checkpointing)
        if self.vision_chunk_images < 0:
            raise GlmvError(f"--vision-chunk-images must be >= 0 (0: off), got {self.vision_chunk_images}")
        if self.checkpoint_every < 0:
            raise GlmvError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            raise GlmvError(f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.max_steps < 0:
            raise GlmvError(f"--max-steps must be >= 0, got {self.max_steps}")
        if self.max_steps == 0 and not self.epochs > 0:
            raise GlmvError(f"--epochs must be > 0 when --max-steps is 0, got {self.epochs}")
        if self.log_every < 1:
            raise GlmvError(f"--log-every must be >= 1, got {self.log_every}")
        if self.peak_tflops < 0:
            raise GlmvError(f"--peak-tflops must be >= 0, got {self.peak_tflops}")
        bad = [t for t in self.train if t not in TRAINABLE]
        if bad or not self.train:
            raise GlmvError(
                f"--train must be a comma list of {', '.join(TRAINABLE)}, got '{','.join(self.train)}'"
            )
        return self


def parse_train(spec: str) -> tuple[str, ...]:
    """``"vision,llm"`` -> ``("vision", "llm")`` (validated later by TrainConfig.validate)."""
    return tuple(s.strip() for s in spec.split(",") if s.strip())


def total_steps(cfg: TrainConfig, n_packs: int, world: int = 1) -> int:
    """Optimizer steps of the run: --max-steps, else epochs over whole global batches."""
    per_epoch = n_packs // cfg.batch.global_batch
    if per_epoch < 1:
        raise GlmvError(
            f"--global-batch {cfg.batch.global_batch} is larger than the data ({n_packs} packs)"
        )
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, int(math.floor(cfg.epochs * per_epoch)))


def lr_at(step: int, o: OptimConfig, total: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``.

    Warmup is linear from lr/warmup at step 0 to lr at step warmup-1, so step 0 already moves the
    weights; the decay runs from lr at the end of warmup to min_lr_ratio*lr at the last step.
    """
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(1, total - 1 - o.warmup_steps)
    frac = min(1.0, max(0.0, (step - o.warmup_steps) / span))
    floor = o.min_lr_ratio * o.lr
    if o.schedule == "linear":
        return o.lr - (o.lr - floor) * frac
    return floor + (o.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
