"""Training configuration: small option groups (optimizer, batch, engine, checkpoints, logging)
composed into ``TrainConfig``, validated in one place (``glmv_cli.options.validate``), plus the LR
schedule.

Every field carries its own help and bounds, and every message names the command-line flag at
fault, so a recipe typo or a bad batch arithmetic fails before any model is built. Stages compose
the groups they need (rlcs takes optimizer, engine, checkpoints and logging but not the packed-data
batch). Batch arithmetic: a *pack* is one packed row of ``--seq-len`` tokens; a micro batch of ``m`` packs is run as ONE row of ``m * seq_len`` tokens
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
from glmv_cli.options import opt

SCHEDULES = ("cosine", "linear", "constant")
TRAINABLE = ("vision", "merger", "llm")
CHECKPOINT_MODES = ("off", "full", "llm", "vision", "every-N")
REPORT_TO = ("none", "tensorboard", "wandb")
SAVE_DTYPES = ("auto", "fp32", "bf16", "fp16")
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


def parse_betas(value: Any) -> tuple[float, float]:
    """``"0.9,0.95"`` or ``[0.9, 0.95]`` -> ``(0.9, 0.95)``; errors name the flag."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        betas = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise GlmvError(f"--betas must be two comma-separated numbers such as 0.9,0.95, got {value!r}") from None
    if len(betas) != 2 or not all(0.0 <= x < 1.0 for x in betas):
        raise GlmvError(f"--betas must be two numbers in [0, 1), got {list(betas)}")
    return betas  # type: ignore[return-value]


def parse_train(value: Any) -> tuple[str, ...]:
    """``"vision,llm"`` (or a list) -> ``("vision", "llm")``, each one of TRAINABLE."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(s).strip() for s in items if str(s).strip())
    if not out or any(t not in TRAINABLE for t in out):
        raise GlmvError(f"--train must be a comma list of {', '.join(TRAINABLE)}, got '{','.join(map(str, items))}'")
    return out


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = opt(1e-4, "Peak learning rate (AdamW).", gt=0)
    betas: tuple[float, float] = opt((0.9, 0.95), "AdamW betas, two comma-separated numbers.", parse=parse_betas)
    adam_eps: float = opt(1e-8, "AdamW epsilon.", gt=0)
    weight_decay: float = opt(0.1, "AdamW weight decay (not applied to biases, norms and the vision position table).",
                              min=0)
    warmup_steps: int = opt(0, "Linear warmup (optimizer steps).", min=0)
    schedule: str = opt("cosine", "LR decay after warmup.", choices=SCHEDULES)
    min_lr_ratio: float = opt(0.1, "Final LR as a fraction of --lr (cosine/linear).", min=0, max=1)
    clip: float = opt(1.0, "Gradient-norm clipping threshold (0 disables).", min=0)


@dataclass
class BatchConfig:
    """How many packs make a step, and how many steps make the run (pretrain / extend-context / sft)."""

    micro_batch: int = opt(1, "Packs per micro step per process (joined into one row).", min=1)
    global_batch: int = opt(1, "Packs per optimizer step over all processes; accumulation = global / "
                               "(micro x processes).", min=1)
    max_steps: int = opt(0, "Optimizer steps (0: --epochs over the data).", min=0)
    epochs: float = opt(1.0, "Passes over the data when --max-steps is 0.", gt=0)

    def accum_steps(self, world: int) -> int:
        return self.global_batch // (self.micro_batch * world)

    def check(self, world: int = 1) -> None:
        if self.global_batch % (self.micro_batch * world):
            raise GlmvError(
                f"--global-batch {self.global_batch} must be a multiple of --micro-batch {self.micro_batch} x "
                f"{world} data-parallel process(es) = {self.micro_batch * world}"
            )


@dataclass
class EngineConfig:
    """What is trained and how: ZeRO stage, precision, activation memory, the LM-head loss."""

    train: tuple[str, ...] = opt(TRAINABLE, "Comma list of what is trained: vision, merger, llm.", parse=parse_train)
    zero_stage: int = opt(0, "DeepSpeed ZeRO stage 0-3.", choices=(0, 1, 2, 3))
    precision: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.", choices=("auto", "fp32", "bf16"))
    activation_checkpointing: str = opt(
        "off", "Recompute activations in the backward pass: off; full (every LM decoder layer and vision block); "
               "llm (decoder layers only); vision (vision blocks only); every-N (decoder layers 0, N, 2N, ... plus "
               "all vision blocks). Recipes may say true (= full) or false (= off). Less memory for ~1/3 more "
               "compute of the wrapped layers.", parse=parse_checkpointing, metavar="MODE")
    vision_chunk_images: int = opt(0, "Run the vision tower over at most N images at a time (0: all at once); "
                                      "exact. With vision checkpointing each chunk is recomputed on its own.", min=0)
    # CPU: 0.47-0.52x the time of the full-logits CE; 4 % of its peak memory at 8K tokens.
    chunked_loss: bool = opt(True, "Compute the LM loss and log-probs through the chunked LM head (glmv_kernels): "
                                   "the [tokens x vocab] logits are never materialised. --no-chunked-loss uses "
                                   "full logits.")


@dataclass
class CheckpointConfig:
    """Resumable checkpoints of a training run, and the dtype of the model it exports."""

    checkpoint_every: int = opt(0, "Save a resumable checkpoint every N steps (0: only at the end).", min=0)
    keep_checkpoints: int = opt(2, "Checkpoints kept while training (newest first).", min=1)
    keep_final_checkpoint: bool = opt(False, "Keep the last checkpoint in the artifact (not hashed) to continue "
                                             "training later.")
    resume: str = opt("never", "auto: continue an interrupted run with the same --out from its newest complete "
                               "checkpoint; never: start over.", choices=("never", "auto"))
    save_dtype: str = opt("auto", "dtype of the exported model's weights: auto (the input checkpoint's, e.g. bf16; "
                                  "fp32 for a preset), fp32, bf16 or fp16.", choices=SAVE_DTYPES)


@dataclass
class LogConfig:
    """Step lines and experiment tracking (metrics.jsonl is always written and is the source of truth)."""

    log_every: int = opt(1, "Print a step line every N steps.", min=1)
    report_to: str = opt("none", "Also write every metrics.jsonl scalar to: none, tensorboard (event files under "
                                 "--out/tensorboard) or wandb (offline unless WANDB_MODE says otherwise).",
                         choices=REPORT_TO)


@dataclass
class TrainConfig:
    """Everything the engine and the packed-data loop read; stages compose it from the groups."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = opt(0, "Seed of the data order, of a preset's random init and of the fresh assembly weights.")
    peak_tflops: float = opt(0.0, "Peak TFLOP/s per device for mfu (0: by device).", min=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, world: int = 1) -> "TrainConfig":
        from glmv_cli import options

        options.validate(self, world)
        return self


def total_steps(cfg: TrainConfig, n_packs: int, world: int = 1) -> int:
    """Optimizer steps of the run: --max-steps, else epochs over whole global batches."""
    b = cfg.batch
    per_epoch = n_packs // b.global_batch
    if per_epoch < 1:
        raise GlmvError(f"--global-batch {b.global_batch} is larger than the data ({n_packs} packs)")
    if b.max_steps:
        return b.max_steps
    return max(1, int(math.floor(b.epochs * per_epoch)))


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
