"""Checks run when records are loaded, before any model is built.

:func:`check_reference` validates one reference answer with its domain's verifier and returns it
normalised (``"1.0"`` for counting becomes ``"1"``, ``"(B)"`` for mcq ``"B"``). A reference no
verifier can read (``"one"`` for counting, a grounding box with x1 > x2) is a ``GlmvError`` whose
message says what the verifier expects; loaders prefix the file, line and field. Without this the
reference would only surface as a verifier error on every rollout of that prompt, hours in.
Judge and ``reward_fn`` domains accept any non-empty string (the judge and the user's code decide).

:func:`check_answer_format` looks at the prompts: verl/EasyR1 prompt sets ask for ``\\boxed{}``,
which the default ``glm`` answer format scores 0. It returns a message naming the domains,
counts and a record, or None when every domain's policy fits its prompts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable

from glmv_cli.errors import GlmvError
from glmv_cli.rewards.registry import REWARD_FN, RewardConfig, default_config

_ASKS_BOXED = re.compile(r"\\?boxed\s*\{")


def check_reference(reference: Any, domain: str, cfg: RewardConfig | None = None,
                    extra: dict | None = None) -> str:
    """The reference normalised for its domain's verifier; GlmvError when it cannot be scored."""
    cfg = cfg or default_config()
    if not isinstance(reference, str) or not reference.strip():
        raise GlmvError(f"the reference answer must be a non-empty string, got {reference!r}"[:200])
    d = cfg.resolve(domain)
    name = cfg.verifier_name(domain)
    if name in (REWARD_FN, "judge"):
        return reference
    try:
        return cfg.prepare(d, reference, extra).text
    except ValueError as e:
        raise GlmvError(f"domain '{domain}': {e}") from None


def asks_for_boxed(prompt: str) -> bool:
    """Does the prompt ask for the answer in ``\\boxed{}``?"""
    return bool(_ASKS_BOXED.search(prompt))


def check_answer_format(prompts: Iterable[tuple[str, str, str]], cfg: RewardConfig | None = None) -> str | None:
    """``prompts``: (record id, domain, prompt text). A message when prompts of a domain ask for
    ``\\boxed{}`` answers but the domain's answer format (``glm``, with a required box) would score
    every such answer 0; None otherwise."""
    cfg = cfg or default_config()
    asked: dict[str, list[str]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    for rid, domain, text in prompts:
        totals[domain] += 1
        if asks_for_boxed(text or ""):
            asked[domain].append(rid)
    problems = []
    for domain, ids in sorted(asked.items()):
        if cfg.verifier_name(domain) == REWARD_FN:
            continue
        g = cfg.gates_for(cfg.resolve(domain))
        if g.answer_format == "glm" and g.require_box:
            problems.append(f"{len(ids)} of {totals[domain]} '{domain}' prompts (e.g. record '{ids[0]}')")
    if not problems:
        return None
    return ("prompts ask for \\boxed{} answers but the reward config's answer format is 'glm', which scores "
            f"\\boxed answers 0: {'; '.join(problems)}. Set 'answer_format: boxed' (or 'either') for those "
            f"domains in the reward config (domains.<name>.answer_format, or gates.answer_format for all)")
