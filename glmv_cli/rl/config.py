"""RLCS options: rollouts, GRPO loss, curriculum, dynamic sampling expansion.

Four dataclasses grouped in ``RLCSConfig``. Every field is also a flat option name, so the
``glmv rlcs`` command exposes it as ``--field-name`` and a ``--recipe`` YAML may set it as
``field_name`` (or ``field-name``); ``RLCSConfig.from_flat`` rejects unknown keys with the list
of valid ones. ``validate()`` raises ``GlmvError`` naming the flag, e.g.
``--clip-eps-high must be >= --clip-eps-low (0.2), got 0.1``.

Defaults and where they come from ("paper" = arXiv 2507.01006 §5, RLCS; "chosen" = the paper
gives no number and this is our pick, with the reason). The "paper" entries name techniques
(as the design brief attributes them to §5); no number below is claimed to be the paper's own.

    temperature 1.0, top_p 1.0        paper: rollouts sample the full distribution; top-p < 1
                                      drops tail tokens and was reported to destabilise RL
    forced_answering on               paper: a response that exhausts the thinking budget gets
                                      ``</think><answer>`` appended and a short answer budget
    mask_forced_tokens on             design brief: forced tokens are not policy samples
    kl_coef 0, entropy_coef 0         paper: no KL loss and no entropy bonus (both kept as options)
    clip_eps_low 0.2, clip_eps_high 0.28
                                      paper adopts clip-higher; the values are DAPO's
                                      (arXiv 2503.14476) — the paper gives none
    loss_agg token-mean               token-level loss as in DAPO, per the design brief
    adv_std_normalize off             chosen: group-mean baseline only (Dr. GRPO); std scaling
                                      up-weights nearly-solved/nearly-failed prompts (see grpo.py)
    expansion on, ema_alpha 0.1       paper: ratio EMA; α chosen (half-life 6.6 steps)
    max_expansion_ratio 4.0           chosen: at most 4× the rollouts of an unexpanded step
    max_topup_rounds 2                chosen: bounded latency when a step comes back short
    batch_prompts 64                  chosen: the paper favours larger batches for multi-domain
                                      RL but gives no number here; B informative groups per step
    group_size 8                      chosen: rollouts per prompt (common GRPO setting)
    thinking_budget 8192, answer_budget 512, max_new_tokens 12288
                                      chosen: the paper forces an answer at a thinking budget
                                      with a short answer budget but gives no numbers
    ppo_epochs 1, mini_batches 1      chosen: one on-policy update per batch; several optional
    curriculum tiered, tier boundaries 0.05/0.3/0.7/0.95,
    tier weights impossible 0.1, hard 1, medium 1, easy 0.5, trivial 0.1, unseen 1
                                      paper: tiers by pass rate favouring the middle; numbers
                                      chosen (see curriculum.py for the reasoning)
    prior_strength 4, pass_rate_decay 0.5
                                      chosen: offline grade worth 4 rollouts; an older group
                                      counts half per later visit
    domain_weights {} (by tier weight alone)
                                      paper: per-domain mixture for joint training; no numbers
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from glmv_cli.errors import GlmvError

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
KL_ESTIMATORS = ("k1", "k2", "k3")
CURRICULUM_MODES = ("tiered", "uniform")
TIER_KEYS = ("impossible", "hard", "medium", "easy", "trivial", "unseen")


def flag(name: str) -> str:
    """``clip_eps_low`` → ``--clip-eps-low``."""
    return "--" + name.replace("_", "-")


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def parse_float_list(value: Any, name: str) -> tuple[float, ...]:
    """``"0.05,0.3"`` or ``[0.05, 0.3]`` → ``(0.05, 0.3)``; errors name the flag."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(float(str(x).strip()) for x in items)
    except (TypeError, ValueError):
        raise GlmvError(f"{flag(name)} must be a comma-separated list of numbers, got {value!r}") from None


def parse_domain_weights(value: Any, name: str = "domain_weights") -> dict[str, float]:
    """``"stem=2,ocr=1"`` or a mapping → ``{"stem": 2.0, "ocr": 1.0}``; ``""`` → ``{}``."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for part in value.split(","):
            if "=" not in part:
                raise GlmvError(f"{flag(name)} must look like 'stem=2,ocr=1', got {value!r}")
            k, v = part.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    else:
        raise GlmvError(f"{flag(name)} must be 'domain=weight,...' or a mapping, got {value!r}")
    out: dict[str, float] = {}
    for k, v in pairs:
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise GlmvError(f"{flag(name)}: weight of domain '{k}' must be a number, got {v!r}") from None
    return out


@dataclass
class RolloutOptions:
    group_size: int = _opt(8, "Rollouts per prompt (the GRPO group size n).")
    temperature: float = _opt(1.0, "Sampling temperature of rollouts.")
    top_p: float = _opt(1.0, "Nucleus sampling top-p of rollouts (1.0 = full distribution).")
    max_new_tokens: int = _opt(12288, "Cap on response tokens (thinking plus a natural answer).")
    forced_answering: bool = _opt(True, "Force '</think><answer>' when the thinking budget runs out.")
    thinking_budget: int = _opt(8192, "Thinking tokens allowed before forced answering.")
    answer_budget: int = _opt(512, "Tokens allowed for the answer after forced answering.")

    def validate(self) -> None:
        if self.group_size < 2:
            raise GlmvError(f"{flag('group_size')} must be >= 2 (GRPO compares rollouts within a group), got {self.group_size}")
        if not self.temperature > 0:
            raise GlmvError(f"{flag('temperature')} must be > 0, got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise GlmvError(f"{flag('top_p')} must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens <= 0:
            raise GlmvError(f"{flag('max_new_tokens')} must be > 0, got {self.max_new_tokens}")
        if self.thinking_budget <= 0:
            raise GlmvError(f"{flag('thinking_budget')} must be > 0, got {self.thinking_budget}")
        if self.answer_budget <= 0:
            raise GlmvError(f"{flag('answer_budget')} must be > 0, got {self.answer_budget}")

    def sampling_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``rollout.SamplingParams`` (add ``style`` from the model)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "thinking_budget": self.thinking_budget if self.forced_answering else None,
            "answer_budget": self.answer_budget,
        }


@dataclass
class LossOptions:
    adv_std_normalize: bool = _opt(False, "Divide group-relative advantages by the group std.")
    adv_eps: float = _opt(1e-6, "Added to the group std when normalising advantages.")
    clip_eps_low: float = _opt(0.2, "PPO clip ε below: ratio clipped at 1 - ε_low.")
    clip_eps_high: float = _opt(0.28, "PPO clip ε above (clip-higher): ratio clipped at 1 + ε_high.")
    dual_clip_c: float = _opt(0.0, "Dual-clip bound c (> 1) for negative advantages; 0 = off.")
    loss_agg: str = _opt("token-mean", "Loss aggregation: token-mean, seq-mean-token-mean, seq-mean-token-sum.")
    kl_coef: float = _opt(0.0, "Coefficient of a KL(policy || reference) loss term; 0 = no reference model.")
    kl_estimator: str = _opt("k3", "KL estimator: k1, k2 or k3.")
    entropy_coef: float = _opt(0.0, "Coefficient of an entropy bonus; 0 = off.")
    ppo_epochs: int = _opt(1, "Passes over each rollout batch.")
    mini_batches: int = _opt(1, "Optimizer steps per pass (the batch is split into this many mini-batches).")
    mask_forced_tokens: bool = _opt(True, "Exclude forced-answer tokens from the loss.")

    def validate(self) -> None:
        if not (0 <= self.clip_eps_low < 1):
            raise GlmvError(f"{flag('clip_eps_low')} must be in [0, 1), got {self.clip_eps_low}")
        if self.clip_eps_high < self.clip_eps_low:
            raise GlmvError(
                f"{flag('clip_eps_high')} must be >= {flag('clip_eps_low')} ({self.clip_eps_low}), got {self.clip_eps_high}"
            )
        if self.dual_clip_c != 0 and self.dual_clip_c <= 1:
            raise GlmvError(f"{flag('dual_clip_c')} must be 0 (off) or > 1, got {self.dual_clip_c}")
        if self.loss_agg not in AGG_MODES:
            raise GlmvError(f"{flag('loss_agg')} must be one of {', '.join(AGG_MODES)}, got '{self.loss_agg}'")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise GlmvError(f"{flag('kl_estimator')} must be one of {', '.join(KL_ESTIMATORS)}, got '{self.kl_estimator}'")
        if self.kl_coef < 0:
            raise GlmvError(f"{flag('kl_coef')} must be >= 0, got {self.kl_coef}")
        if self.entropy_coef < 0:
            raise GlmvError(f"{flag('entropy_coef')} must be >= 0, got {self.entropy_coef}")
        if not self.adv_eps > 0:
            raise GlmvError(f"{flag('adv_eps')} must be > 0, got {self.adv_eps}")
        if self.ppo_epochs < 1:
            raise GlmvError(f"{flag('ppo_epochs')} must be >= 1, got {self.ppo_epochs}")
        if self.mini_batches < 1:
            raise GlmvError(f"{flag('mini_batches')} must be >= 1, got {self.mini_batches}")

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``grpo.rlcs_loss`` (without tensors)."""
        return {
            "eps_low": self.clip_eps_low,
            "eps_high": self.clip_eps_high,
            "agg": self.loss_agg,
            "clip_ratio_c": self.dual_clip_c if self.dual_clip_c > 1 else None,
            "kl_coef": self.kl_coef,
            "kl_estimator": self.kl_estimator,
            "entropy_coef": self.entropy_coef,
        }


@dataclass
class CurriculumOptions:
    curriculum: str = _opt("tiered", "Prompt sampling: 'tiered' (by pass-rate tier) or 'uniform' (curriculum off).")
    tier_boundaries: tuple[float, ...] = _opt(
        (0.05, 0.3, 0.7, 0.95), "Pass-rate boundaries impossible|hard|medium|easy|trivial, e.g. '0.05,0.3,0.7,0.95'."
    )
    tier_weight_impossible: float = _opt(0.1, "Sampling weight of samples no rollout solves.")
    tier_weight_hard: float = _opt(1.0, "Sampling weight of hard samples.")
    tier_weight_medium: float = _opt(1.0, "Sampling weight of medium samples (the informative middle).")
    tier_weight_easy: float = _opt(0.5, "Sampling weight of easy samples.")
    tier_weight_trivial: float = _opt(0.1, "Sampling weight of samples every rollout solves.")
    tier_weight_unseen: float = _opt(1.0, "Sampling weight of samples with no pass-rate estimate yet.")
    prior_strength: float = _opt(4.0, "Pseudo-rollouts an offline difficulty grade is worth.")
    pass_rate_decay: float = _opt(0.5, "Factor applied to a sample's old rollout counts at each new group.")
    domain_weights: dict[str, float] = _opt({}, "Per-domain mixture weights, e.g. 'stem=2,ocr=1' (all domains).")

    def validate(self) -> None:
        if self.curriculum not in CURRICULUM_MODES:
            raise GlmvError(f"{flag('curriculum')} must be one of {', '.join(CURRICULUM_MODES)}, got '{self.curriculum}'")
        b = list(self.tier_boundaries)
        if len(b) != 4 or any(not (0 < x <= 1) for x in b) or b != sorted(set(b)):
            raise GlmvError(f"{flag('tier_boundaries')} must be 4 increasing values in (0, 1], got {self.tier_boundaries}")
        for k in TIER_KEYS:
            v = getattr(self, f"tier_weight_{k}")
            if not v > 0:
                raise GlmvError(f"{flag('tier_weight_' + k)} must be > 0 (no tier may be starved), got {v}")
        if self.prior_strength < 0:
            raise GlmvError(f"{flag('prior_strength')} must be >= 0, got {self.prior_strength}")
        if not (0 < self.pass_rate_decay <= 1):
            raise GlmvError(f"{flag('pass_rate_decay')} must be in (0, 1], got {self.pass_rate_decay}")
        for d, w in self.domain_weights.items():
            if w < 0:
                raise GlmvError(f"{flag('domain_weights')}: weight of domain '{d}' must be >= 0, got {w}")
        if self.domain_weights and sum(self.domain_weights.values()) <= 0:
            raise GlmvError(f"{flag('domain_weights')} must have a positive sum, got {self.domain_weights}")

    def sampler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``curriculum.CurriculumSampler`` (add ids, domains, offline
        grades and the seed)."""
        return {
            "mode": self.curriculum,
            "boundaries": tuple(self.tier_boundaries),
            "weights": {k: getattr(self, f"tier_weight_{k}") for k in TIER_KEYS},
            "domain_weights": dict(self.domain_weights) or None,
            "prior_strength": self.prior_strength,
            "decay": self.pass_rate_decay,
        }


@dataclass
class ExpansionOptions:
    batch_prompts: int = _opt(64, "Informative prompt groups per training step (B).")
    expansion: bool = _opt(True, "Roll out ~B/(1-r) prompts, r = EMA of the all-equal-reward group share.")
    expansion_ema_alpha: float = _opt(0.1, "EMA weight of the newest step's all-equal share.")
    max_expansion_ratio: float = _opt(4.0, "Upper bound on prompts rolled per step, as a multiple of B.")
    max_topup_rounds: int = _opt(2, "Extra rollout rounds when a step has fewer than B informative groups.")

    def validate(self) -> None:
        if self.batch_prompts <= 0:
            raise GlmvError(f"{flag('batch_prompts')} must be > 0, got {self.batch_prompts}")
        if not (0 < self.expansion_ema_alpha <= 1):
            raise GlmvError(f"{flag('expansion_ema_alpha')} must be in (0, 1], got {self.expansion_ema_alpha}")
        if self.max_expansion_ratio < 1:
            raise GlmvError(f"{flag('max_expansion_ratio')} must be >= 1, got {self.max_expansion_ratio}")
        if self.max_topup_rounds < 0:
            raise GlmvError(f"{flag('max_topup_rounds')} must be >= 0, got {self.max_topup_rounds}")

    def controller(self) -> Any:
        """The ``expansion.ExpansionController`` these options describe (expansion off: always B
        prompts, no top-up)."""
        from glmv_cli.rl.expansion import ExpansionController

        if not self.expansion:
            return ExpansionController(self.batch_prompts, self.expansion_ema_alpha, 1.0, 0)
        return ExpansionController(
            self.batch_prompts, self.expansion_ema_alpha, self.max_expansion_ratio, self.max_topup_rounds
        )


_GROUPS = {
    "rollout": RolloutOptions,
    "loss": LossOptions,
    "curriculum": CurriculumOptions,
    "expansion": ExpansionOptions,
}


def option_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every flat option name → (group, dataclass field), in declaration order."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for group, cls in _GROUPS.items():
        for f in dataclasses.fields(cls):
            out[f.name] = (group, f)
    return out


def option_help(name: str) -> str:
    """The ``--help`` text of one flat option."""
    return option_fields()[name][1].metadata["help"]


def _coerce(name: str, f: dataclasses.Field, value: Any) -> Any:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if name == "tier_boundaries":
        return parse_float_list(value, name)
    if name == "domain_weights":
        return parse_domain_weights(value, name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise GlmvError(f"{flag(name)} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GlmvError(f"{flag(name)} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GlmvError(f"{flag(name)} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise GlmvError(f"{flag(name)} must be a string, got {value!r}")
        return value
    return value


@dataclass
class RLCSConfig:
    """All RLCS algorithm options; the ``glmv rlcs`` stage adds its I/O and training options."""

    rollout: RolloutOptions = field(default_factory=RolloutOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    curriculum: CurriculumOptions = field(default_factory=CurriculumOptions)
    expansion: ExpansionOptions = field(default_factory=ExpansionOptions)

    def validate(self) -> "RLCSConfig":
        self.rollout.validate()
        self.loss.validate()
        self.curriculum.validate()
        self.expansion.validate()
        return self

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], *, source: str = "options") -> "RLCSConfig":
        """Builds (and validates) a config from flat ``{option: value}`` (snake or kebab case),
        e.g. a recipe's mapping. Unknown keys are errors naming ``source`` and the valid keys."""
        fields = option_fields()
        groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise GlmvError(f"{source}: unknown key '{key}' for RLCS; valid keys: {', '.join(sorted(fields))}")
            group, f = fields[name]
            groups[group][name] = _coerce(name, f, value)
        cfg = cls(**{g: _GROUPS[g](**kw) for g, kw in groups.items()})
        return cfg.validate()

    def to_flat(self) -> dict[str, Any]:
        """Flat JSON-safe ``{option: value}``, e.g. for the manifest's resolved options."""
        out: dict[str, Any] = {}
        for group in _GROUPS:
            for k, v in dataclasses.asdict(getattr(self, group)).items():
                out[k] = list(v) if isinstance(v, tuple) else v
        return out
