"""The one training engine (DeepSpeed) shared by pretrain, extend-context, sft and the RL update.

``Engine`` is the step-level API (``train_step``, ``save_checkpoint``/``load_checkpoint``);
``fit`` is the packed-data loop with checkpoints, resume, logging and export; ``TrainConfig``
composes the option groups, validated in one place (``glmv_cli.options``).
"""

from glmv_cli.training.config import (BatchConfig, CheckpointConfig, EngineConfig, LogConfig, OptimConfig,
                                      TrainConfig, lr_at, total_steps)

__all__ = ["BatchConfig", "CheckpointConfig", "EngineConfig", "LogConfig", "OptimConfig", "TrainConfig", "lr_at",
           "total_steps"]
