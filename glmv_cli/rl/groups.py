"""The unit RL exchanges between its parts: one prompt's scored rollout group.

``ScoredGroup`` is produced by the rollout + reward step, consumed by the curriculum sampler
(pass rates), the expansion controller (informative share), the data-parallel gather
(``rl.sharding``) and the policy update (``rl.trainer``). It lives here, owned by none of them,
so those modules import it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from glmv_cli.rl.expansion import is_informative
from glmv_cli.rl.records import RLRecord


@dataclass
class ScoredGroup:
    """One prompt's rollouts and their rewards."""

    record: RLRecord
    prompt: Any  # generation.Prompt
    rollouts: list  # list[generation.Rollout]
    rewards: list[float]
    judge_failed: bool = False
    gate_failures: int = 0

    @property
    def informative(self) -> bool:
        return is_informative(self.rewards)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)); SE 0 for fewer than 2 values."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)
