"""``score(prompt, response, reference, domain, extra) -> reward in [0, 1]``.

Order of work for one response: length cap -> format gate (the domain's ``answer_format``) ->
language-mix gate -> answer-length cap -> the domain's verifier. A gate failure is reward 0 with
the gate's reason. A verifier that raises (including a malformed reference) or times out is reward
0 with ``error`` set; a STEM answer no verifier can read and no judge is configured for is reward 0
with ``error`` starting ``unverifiable``. Nothing ever propagates to the caller except an unknown
domain, which is a caller bug. Nothing in a response is executed: verifiers parse with regexes,
``json.loads``, ``Fraction`` and math-verify's LaTeX parser.

A domain routed to a user's ``reward_fn`` skips the gates (the function gets the whole response)
and runs under ``call_with_timeout`` like math-verify: an exception, a non-number or a timeout is
reward 0 with ``error`` set; the value is clamped to [0, 1].

The registry and rewards.yaml live in :mod:`glmv_cli.rewards.registry` and
:mod:`glmv_cli.rewards.config`; their public names are importable from here as before.
"""

from __future__ import annotations

import math as _math
import numbers
from dataclasses import dataclass
from typing import Any

from glmv_cli.rewards.config import config_from_dict, load_config
from glmv_cli.rewards.extract import gate
from glmv_cli.rewards.mathv import VerifierTimeout, call_with_timeout
from glmv_cli.rewards.registry import DEFAULT_ALIASES, DEFAULT_DOMAINS, REWARD_FN, RewardConfig, default_config
from glmv_cli.rewards.verifiers import Unverifiable

__all__ = ["DEFAULT_ALIASES", "DEFAULT_DOMAINS", "RewardConfig", "RewardResult", "config_from_dict",
           "default_config", "load_config", "score", "score_detailed"]


@dataclass
class RewardResult:
    """One scored response. ``gate`` is the failed gate's reason (None = passed); ``error`` is the
    verifier's exception, ``timeout`` or ``unverifiable: ...`` (None = it ran)."""

    reward: float
    domain: str
    verifier: str
    answer: str | None = None
    gate: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "domain": self.domain, "verifier": self.verifier,
                "answer": self.answer, "gate": self.gate, "error": self.error}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RewardResult":
        return cls(float(d["reward"]), d["domain"], d["verifier"], d["answer"], d["gate"], d["error"])


def _finish(r: Any, d: str, vname: str, answer: str | None) -> RewardResult:
    if isinstance(r, bool) or not isinstance(r, numbers.Real):
        return RewardResult(0.0, d, vname, answer, error=f"reward is {type(r).__name__}, not a number")
    r = float(r)
    if not _math.isfinite(r):
        return RewardResult(0.0, d, vname, answer, error=f"non-finite reward {r}")
    return RewardResult(min(1.0, max(0.0, r)), d, vname, answer)


def _score_user(cfg: RewardConfig, d: str, prompt: str | None, response: str, reference: str,
                domain: str, extra: dict[str, Any] | None) -> RewardResult:
    try:
        fn = cfg.reward_function(d)
        r = call_with_timeout(fn, cfg.reward_fn_timeout(d), prompt, response, reference, domain, extra)
    except VerifierTimeout:
        return RewardResult(0.0, d, REWARD_FN, error="timeout")
    except Exception as e:  # the user's code must not kill an RL run either
        return RewardResult(0.0, d, REWARD_FN, error=f"{type(e).__name__}: {e}"[:300])
    return _finish(r, d, REWARD_FN, None)


def score_detailed(prompt: str | None, response: str, reference: str, domain: str,
                   extra: dict[str, Any] | None = None, *, config: RewardConfig | None = None) -> RewardResult:
    """Gates, then the domain's verifier; never raises for anything inside the response."""
    cfg = config or default_config()
    d = cfg.resolve(domain)
    vname = cfg.verifier_name(domain)
    if vname == REWARD_FN:
        return _score_user(cfg, d, prompt, response, reference, domain, extra)
    answer, why = gate(response, cfg.gates_for(d))
    if why is not None:
        return RewardResult(0.0, d, vname, None, gate=why)
    try:
        r = cfg.verifier(d)(answer, reference, extra, prompt)
    except VerifierTimeout:
        return RewardResult(0.0, d, vname, answer, error="timeout")
    except Unverifiable as e:
        return RewardResult(0.0, d, vname, answer, error=f"unverifiable: {e}")
    except Exception as e:  # a verifier bug or a bad reference must not kill an RL run
        return RewardResult(0.0, d, vname, answer, error=f"{type(e).__name__}: {e}"[:300])
    return _finish(r, d, vname, answer)


def score(prompt: str | None, response: str, reference: str, domain: str,
          extra: dict[str, Any] | None = None, *, config: RewardConfig | None = None) -> float:
    """The reward in [0, 1] of one response (see :func:`score_detailed`)."""
    return score_detailed(prompt, response, reference, domain, extra, config=config).reward
