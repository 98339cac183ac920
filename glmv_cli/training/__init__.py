"""The one training engine (DeepSpeed) shared by pretrain, extend-context, sft and the RL update.

``Engine`` is the step-level API (``train_step``, ``save_checkpoint``/``load_checkpoint``);
``fit`` is the packed-data loop with checkpoints, resume, logging and export; ``TrainConfig``
holds every option, validated in one place.
"""

from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig, lr_at, total_steps

__all__ = ["BatchConfig", "OptimConfig", "TrainConfig", "lr_at", "total_steps"]
