"""Dynamic sampling expansion: roll out enough prompts that B informative groups remain.

A GRPO group whose n rewards are all equal (all correct, all wrong, or the same partial score)
has zero advantage for every member, so — with no KL or entropy term — it contributes nothing to
the gradient. If a share r of groups is like that, rolling out B prompts leaves about B·(1 − r)
useful ones and the effective batch shrinks exactly when the model becomes good (r grows as
easy prompts saturate). The paper keeps an exponential moving average of that share and rolls
out about B / (1 − r) prompts per step:

    r_k = (1 − α)·r_{k−1} + α·f_k        (f_k = all-equal groups / groups in step k; r_1 = f_1)
    prompts_k = min(ceil(B / (1 − r_{k−1})), ceil(B · max_ratio))

With α = 0.1 the EMA forgets an old step's share with a half-life of ~6.6 steps, smoothing the
step-to-step noise of f (128 groups at r = 0.5 give one step's f a standard error of 0.044)
while still tracking the drift of r over a run. ``max_ratio`` caps the rollout cost when r
approaches 1 (r = 0.9 would ask for 10×B prompts). If a step still ends up short of B
informative groups, up to ``max_topup_rounds`` extra rounds roll out the shortfall, each again
expanded by 1/(1 − r); after that the step trains on what it has (smaller batch) rather than
stalling. Extra informative groups beyond B are dropped by ``select_groups`` so the batch shape
stays fixed; the rollout order is random, so keeping the first B is an unbiased choice.

Logged per step: ``expansion_ratio`` (prompts rolled / B), the EMA, this step's all-equal share,
and the number of top-up rounds used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


def is_informative(group_rewards: Iterable[float], tol: float = 0.0) -> bool:
    """True when a group's rewards are not all equal (max − min > tol), i.e. it has a gradient."""
    vals = [float(v) for v in group_rewards]
    if not vals:
        return False
    return max(vals) - min(vals) > tol


def select_groups(
    groups: Sequence[Sequence[float]], target: int, tol: float = 0.0
) -> tuple[list[int], int]:
    """Indices of the first ``target`` informative groups (in rollout order), and the number of
    all-equal groups among ``groups``."""
    keep: list[int] = []
    n_equal = 0
    for i, g in enumerate(groups):
        if is_informative(g, tol):
            if len(keep) < target:
                keep.append(i)
        else:
            n_equal += 1
    return keep, n_equal


def ema_update(prev: float | None, observed: float, alpha: float) -> float:
    """One EMA step; the first observation initialises the average (no bias toward 0)."""
    if prev is None:
        return float(observed)
    return (1.0 - alpha) * float(prev) + alpha * float(observed)


def expanded_count(need: int, ema: float | None, max_ratio: float) -> int:
    """Prompts to roll so that about ``need`` informative groups come back: ceil(need / (1 − r)),
    at most ceil(need · max_ratio); ``need`` itself while no share has been observed yet."""
    if need <= 0:
        return 0
    cap = math.ceil(need * max_ratio - 1e-9)
    if ema is None:
        return need
    keep = 1.0 - float(ema)
    if keep <= 0.0:
        return cap
    # the small slack keeps exact quotients (64 / 0.5) from rounding up through float noise
    return max(need, min(cap, math.ceil(need / keep - 1e-9)))


@dataclass
class ExpansionController:
    """Sizes each step's rollout from an EMA of the all-equal group share.

    Typical step::

        n = ctl.prompts_to_roll()
        groups = rollout(sampler.sample(n))             # rewards per group
        keep, n_equal = select_groups(groups, ctl.target_groups)
        rounds = 0
        while (extra := ctl.topup_count(len(keep), rounds)) > 0:
            ...roll ``extra`` more prompts, extend keep...; rounds += 1
        ctl.update(total_groups_rolled, total_all_equal, topup_rounds=rounds)
    """

    target_groups: int
    ema_alpha: float = 0.1
    max_ratio: float = 4.0
    max_topup_rounds: int = 2
    ema: float | None = None
    steps: int = 0
    last_fraction: float | None = None
    last_prompts: int | None = None
    last_topup_rounds: int = 0

    def __post_init__(self) -> None:
        if self.target_groups <= 0:
            raise ValueError(f"target_groups must be > 0, got {self.target_groups}")
        if not (0.0 < self.ema_alpha <= 1.0):
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if self.max_ratio < 1.0:
            raise ValueError(f"max_ratio must be >= 1, got {self.max_ratio}")
        if self.max_topup_rounds < 0:
            raise ValueError(f"max_topup_rounds must be >= 0, got {self.max_topup_rounds}")

    def prompts_to_roll(self) -> int:
        """Prompts for this step's first rollout round."""
        return expanded_count(self.target_groups, self.ema, self.max_ratio)

    @property
    def ratio(self) -> float:
        """The current expansion ratio, prompts_to_roll() / B."""
        return self.prompts_to_roll() / self.target_groups

    def topup_count(self, have_informative: int, rounds_done: int) -> int:
        """Prompts for one more round when short of B informative groups; 0 when the batch is
        full or ``max_topup_rounds`` rounds were already spent."""
        need = self.target_groups - int(have_informative)
        if need <= 0 or rounds_done >= self.max_topup_rounds:
            return 0
        return expanded_count(need, self.ema, self.max_ratio)

    def update(self, n_groups: int, n_all_equal: int, *, topup_rounds: int = 0) -> float:
        """Folds one step's counts (all rounds together) into the EMA; returns the new EMA."""
        if n_groups <= 0:
            raise ValueError(f"n_groups must be > 0, got {n_groups}")
        if not (0 <= n_all_equal <= n_groups):
            raise ValueError(f"n_all_equal must be in [0, {n_groups}], got {n_all_equal}")
        self.last_prompts = self.prompts_to_roll()
        self.last_fraction = n_all_equal / n_groups
        self.ema = ema_update(self.ema, self.last_fraction, self.ema_alpha)
        self.steps += 1
        self.last_topup_rounds = int(topup_rounds)
        return self.ema

    def metrics(self) -> dict[str, float]:
        """Values to log after ``update``: the ratio used this step and the state going forward."""
        used = self.last_prompts if self.last_prompts is not None else self.prompts_to_roll()
        return {
            "expansion_ratio": used / self.target_groups,
            "all_equal_ema": self.ema if self.ema is not None else 0.0,
            "all_equal_frac": self.last_fraction if self.last_fraction is not None else 0.0,
            "informative_frac": 1.0 - self.last_fraction if self.last_fraction is not None else 1.0,
            "topup_rounds": float(self.last_topup_rounds),
            "next_prompts": float(self.prompts_to_roll()),
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (floats round-trip exactly through ``json``)."""
        return {
            "version": 1,
            "target_groups": self.target_groups,
            "ema_alpha": self.ema_alpha,
            "max_ratio": self.max_ratio,
            "max_topup_rounds": self.max_topup_rounds,
            "ema": self.ema,
            "steps": self.steps,
            "last_fraction": self.last_fraction,
            "last_prompts": self.last_prompts,
            "last_topup_rounds": self.last_topup_rounds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the EMA and counters. The configuration (B, α, caps) stays as constructed, so a
        resumed run may change them; the EMA carries over."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported expansion state version {state.get('version')!r}")
        ema = state.get("ema")
        self.ema = None if ema is None else float(ema)
        self.steps = int(state.get("steps", 0))
        lf = state.get("last_fraction")
        self.last_fraction = None if lf is None else float(lf)
        lp = state.get("last_prompts")
        self.last_prompts = None if lp is None else int(lp)
        self.last_topup_rounds = int(state.get("last_topup_rounds", 0))
