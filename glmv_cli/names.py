"""Names several stages share, defined once: answer styles, GRPO loss aggregation modes, curriculum tiers.

- ``STYLES``: the two response formats. ``glm41v`` answers ``<think>…</think><answer>…</answer>``;
  ``glm45v`` drops the ``<answer>`` tags. ``STYLE_CHOICES`` adds ``auto`` (from the model) for flags.
- ``AGG_MODES``: how per-token policy losses become one number (see ``rl.grpo.aggregate``).
- ``TIER_NAMES``: curriculum tiers by pass rate, easiest last but one; ``unseen`` = no estimate yet.
"""

from __future__ import annotations

STYLES = ("glm41v", "glm45v")
STYLE_CHOICES = ("auto", *STYLES)
AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
TIER_NAMES = ("impossible", "hard", "medium", "easy", "trivial", "unseen")
