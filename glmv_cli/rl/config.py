"""RLCS options: rollouts, GRPO loss, curriculum, dynamic sampling expansion.

Four dataclasses grouped in ``RLCSConfig``. Every field is also a flat option name, so the
``glmv rlcs`` command exposes it as ``--field-name`` and a ``--recipe`` YAML may set it as
``field_name`` (or ``field-name``); ``RLCSConfig.from_flat`` rejects unknown keys with the list
of valid ones. ``validate()`` raises ``GlmvError`` naming the flag, e.g.
``--clip-eps-high must be >= --clip-eps-low (0.2), got 0.1``.

Defaults and where they come from ("paper" = arXiv 2507.01006 §5, RLCS; "chosen" = the paper
gives no number and this is our pick, with the reason). The "paper" entries name techniques
(docs/design.md §8); no number below is claimed to be the paper's own.

    temperature 1.0, top_p 1.0        paper: rollouts sample the full distribution; top-p < 1
                                      drops tail tokens and was reported to destabilise RL
    forced_answering on               paper: a response that exhausts the thinking budget gets
                                      ``</think><answer>`` appended and a short answer budget
    mask_forced_tokens on             docs/design.md §8: forced tokens are not policy samples
    kl_coef 0, entropy_coef 0         paper: no KL loss and no entropy bonus (both kept as options)
    clip_eps_low 0.2, clip_eps_high 0.28
                                      paper adopts clip-higher; the values are DAPO's
                                      (arXiv 2503.14476) — the paper gives none
    loss_agg token-mean               token-level loss as in DAPO (docs/design.md §8)
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

from dataclasses import dataclass, field
from typing import Any, Mapping

from glmv_cli.errors import GlmvError
from glmv_cli.names import AGG_MODES, TIER_NAMES
from glmv_cli.options import flag, opt

KL_ESTIMATORS = ("k1", "k2", "k3")
CURRICULUM_MODES = ("tiered", "uniform")


def parse_tier_boundaries(value: Any) -> tuple[float, ...]:
    """``"0.05,0.3,0.7,0.95"``, ``"[0.05, ...]"`` or a list -> 4 increasing values in (0, 1]."""
    if isinstance(value, str):
        value = value.strip().strip("[]() ")
    b = parse_float_list(value, "tier_boundaries")
    if len(b) != 4 or any(not (0 < x <= 1) for x in b) or list(b) != sorted(set(b)):
        raise GlmvError(f"--tier-boundaries must be 4 increasing values in (0, 1], got {value!r}")
    return b


def parse_float_list(value: Any, name: str) -> tuple[float, ...]:
    """``"0.05,0.3"`` or ``[0.05, 0.3]`` -> ``(0.05, 0.3)``; errors name the flag."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(float(str(x).strip()) for x in items)
    except (TypeError, ValueError):
        raise GlmvError(f"{flag(name)} must be a comma-separated list of numbers, got {value!r}") from None


def parse_domain_weights(value: Any) -> dict[str, float]:
    """``"stem=2,ocr=1"``, ``"{stem: 2}"`` or a mapping -> ``{"stem": 2.0, "ocr": 1.0}``; ``""`` -> ``{}``."""
    name = "domain_weights"
    if isinstance(value, str) and value.strip().startswith("{"):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise GlmvError(f"--domain-weights must look like 'stem=2,ocr=1', got {value!r}") from None
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
        if out[str(k)] < 0:
            raise GlmvError(f"{flag(name)}: weight of domain '{k}' must be >= 0, got {out[str(k)]}")
    if out and sum(out.values()) <= 0:
        raise GlmvError(f"{flag(name)} must have a positive sum, got {out}")
    return out


@dataclass
class RolloutOptions:
    group_size: int = opt(8, "Rollouts per prompt (the GRPO group size n; >= 2: GRPO compares rollouts within a "
                             "group).", min=2)
    temperature: float = opt(1.0, "Sampling temperature of rollouts (the learner scores the same tempered "
                                  "distribution).", gt=0)
    top_p: float = opt(1.0, "Nucleus sampling top-p of rollouts (1.0 = full distribution).", gt=0, max=1)
    max_new_tokens: int = opt(12288, "Cap on response tokens (thinking plus a natural answer).", min=1)
    forced_answering: bool = opt(True, "Force '</think><answer>' when the thinking budget runs out.")
    thinking_budget: int = opt(8192, "Thinking tokens allowed before forced answering.", min=1)
    answer_budget: int = opt(512, "Tokens allowed for the answer after forced answering.", min=1)

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
    adv_std_normalize: bool = opt(False, "Divide group-relative advantages by the group std.")
    adv_eps: float = opt(1e-6, "Added to the group std when normalising advantages.", gt=0)
    clip_eps_low: float = opt(0.2, "PPO clip epsilon below: ratio clipped at 1 - eps_low.", min=0, lt=1)
    clip_eps_high: float = opt(0.28, "PPO clip epsilon above (clip-higher): ratio clipped at 1 + eps_high.", min=0)
    dual_clip_c: float = opt(0.0, "Dual-clip bound c (> 1) for negative advantages; 0 = off.", min=0)
    loss_agg: str = opt("token-mean", "Loss aggregation.", choices=AGG_MODES)
    kl_coef: float = opt(0.0, "Coefficient of a KL(policy || reference) loss term; 0 = no reference model.", min=0)
    kl_estimator: str = opt("k3", "KL estimator.", choices=KL_ESTIMATORS)
    entropy_coef: float = opt(0.0, "Coefficient of an entropy bonus; 0 = off.", min=0)
    ppo_epochs: int = opt(1, "Passes over each rollout batch.", min=1)
    mini_batches: int = opt(1, "Optimizer steps per pass: the kept rows are split into exactly this many "
                               "mini-batches (each needs at least one --micro-batch of rows).", min=1)
    mask_forced_tokens: bool = opt(True, "Exclude forced-answer tokens from the loss.")

    def check(self) -> None:
        if self.clip_eps_high < self.clip_eps_low:
            raise GlmvError(f"{flag('clip_eps_high')} must be >= {flag('clip_eps_low')} ({self.clip_eps_low}), "
                            f"got {self.clip_eps_high}")
        if self.dual_clip_c != 0 and self.dual_clip_c <= 1:
            raise GlmvError(f"{flag('dual_clip_c')} must be 0 (off) or > 1, got {self.dual_clip_c}")

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


_TIER_W = "Sampling weight of {} (> 0: no tier is starved)."


@dataclass
class CurriculumOptions:
    curriculum: str = opt("tiered", "Prompt sampling: 'tiered' (by pass-rate tier) or 'uniform' (curriculum off).",
                          choices=CURRICULUM_MODES)
    tier_boundaries: tuple[float, ...] = opt(
        (0.05, 0.3, 0.7, 0.95), "Pass-rate boundaries impossible|hard|medium|easy|trivial, e.g. '0.05,0.3,0.7,0.95'.",
        parse=parse_tier_boundaries)
    tier_weight_impossible: float = opt(0.1, _TIER_W.format("samples no rollout solves"), gt=0)
    tier_weight_hard: float = opt(1.0, _TIER_W.format("hard samples"), gt=0)
    tier_weight_medium: float = opt(1.0, _TIER_W.format("medium samples (the informative middle)"), gt=0)
    tier_weight_easy: float = opt(0.5, _TIER_W.format("easy samples"), gt=0)
    tier_weight_trivial: float = opt(0.1, _TIER_W.format("samples every rollout solves"), gt=0)
    tier_weight_unseen: float = opt(1.0, _TIER_W.format("samples with no pass-rate estimate yet"), gt=0)
    prior_strength: float = opt(4.0, "Pseudo-rollouts an offline difficulty grade is worth.", min=0)
    pass_rate_decay: float = opt(0.5, "Factor applied to a sample's old rollout counts at each new group.",
                                 gt=0, max=1)
    domain_weights: dict[str, float] = opt({}, "Per-domain mixture weights, e.g. 'stem=2,ocr=1' (all domains).",
                                           parse=parse_domain_weights)

    def sampler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``curriculum.CurriculumSampler`` (add ids, domains, offline
        grades and the seed)."""
        return {
            "mode": self.curriculum,
            "boundaries": tuple(self.tier_boundaries),
            "weights": {k: getattr(self, f"tier_weight_{k}") for k in TIER_NAMES},
            "domain_weights": dict(self.domain_weights) or None,
            "prior_strength": self.prior_strength,
            "decay": self.pass_rate_decay,
        }


@dataclass
class ExpansionOptions:
    batch_prompts: int = opt(64, "Informative prompt groups per training step (B).", min=1)
    expansion: bool = opt(True, "Roll out ~B/(1-r) prompts, r = EMA of the all-equal-reward group share.")
    expansion_ema_alpha: float = opt(0.1, "EMA weight of the newest step's all-equal share.", gt=0, max=1)
    max_expansion_ratio: float = opt(4.0, "Upper bound on prompts rolled per step, as a multiple of B.", min=1)
    max_topup_rounds: int = opt(2, "Extra rollout rounds when a step has fewer than B informative groups.", min=0)

    def controller(self) -> Any:
        """The ``expansion.ExpansionController`` these options describe (expansion off: always B
        prompts, no top-up)."""
        from glmv_cli.rl.expansion import ExpansionController

        if not self.expansion:
            return ExpansionController(self.batch_prompts, self.expansion_ema_alpha, 1.0, 0)
        return ExpansionController(
            self.batch_prompts, self.expansion_ema_alpha, self.max_expansion_ratio, self.max_topup_rounds
        )


@dataclass
class RLCSConfig:
    """All RLCS algorithm options; the ``glmv rlcs`` stage adds its I/O and training options."""

    rollout: RolloutOptions = field(default_factory=RolloutOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    curriculum: CurriculumOptions = field(default_factory=CurriculumOptions)
    expansion: ExpansionOptions = field(default_factory=ExpansionOptions)

    def validate(self) -> "RLCSConfig":
        from glmv_cli import options

        options.validate(self)
        return self

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], *, source: str | None = None) -> "RLCSConfig":
        """Builds (and validates) a config from flat ``{option: value}`` (snake or kebab case),
        e.g. a recipe's mapping. Unknown keys are errors naming ``source`` and the valid keys."""
        from glmv_cli import options

        return options.build(cls, values, source=source).validate()

    def to_flat(self) -> dict[str, Any]:
        """Flat JSON-safe ``{option: value}``, e.g. for the manifest's resolved options."""
        from glmv_cli import options

        return options.flat_dict(self)
