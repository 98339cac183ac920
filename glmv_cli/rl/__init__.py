"""Reinforcement learning with curriculum sampling (RLCS), the algorithm side of ``glmv rlcs``.

The modules here are small and mostly pure, so each piece is tested on hand-computed values
without a model:

- ``config``: the RLCS option dataclasses (defaults and where each comes from), ``validate()``
  with flag-naming errors, and the flat ``{option: value}`` view that ``--recipe`` YAML fills.
- ``grpo``: group-relative advantages, the clipped policy loss with separate ε_low / ε_high,
  loss aggregation modes, the forced-token loss mask, optional KL and entropy terms.
- ``curriculum``: difficulty tiers from pass rates, tier weights, and the checkpointable
  ``CurriculumSampler`` (offline grade prior + online pass rates, per-domain mixture).
- ``expansion``: dynamic sampling expansion, an EMA of the all-equal-reward group fraction that
  sizes each step's rollout so that B informative groups remain.

Rollout generation (temperature/top-p sampling, thinking budget, forced answering) and the
stage itself live beside these modules and import from them, never the other way round.
"""
