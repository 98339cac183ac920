"""The reward registry: domain name -> verifier (or judge, or a user's reward function) and options.

A :class:`RewardConfig` is built from rewards.yaml (``glmv_cli.rewards.config``) or is the
built-in default. Besides routing it keeps, per config, one prepared reference per
``(domain, reference, extra)`` in a bounded LRU (``cache_references``, 4,096 entries): the rollouts
of a GRPO group share their prompt's reference, so it is validated and parsed (for math: number,
exact value, set form, math-verify's parse) once per group instead of once per rollout.

Domains route to one of

* a built-in verifier (``glmv_cli.rewards.verifiers.SPECS``), after the format gates, with the
  domain's ``answer_format`` (glm, boxed or either);
* ``judge``: the LLM judge of ``glmv_cli.rewards.judge``, after the format gates;
* ``reward_fn``: a user's ``package.module:function`` with score()'s signature, which gets the
  whole response. A top-level ``reward_fn`` routes *every* domain there, known or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from glmv_cli.errors import GlmvError
from glmv_cli.rewards.extract import STYLES, GateConfig
from glmv_cli.rewards.judge import Judge, judge_config
from glmv_cli.rewards.mathv import LRU
from glmv_cli.rewards.userfn import load_reward_fn
from glmv_cli.rewards.verifiers import SPECS, Ref

DEFAULT_DOMAINS: dict[str, dict[str, Any]] = {
    "math": {"verifier": "math"},
    "stem": {"verifier": "stem"},
    "chemistry": {"verifier": "chemistry"},
    "mcq": {"verifier": "mcq"},
    "counting": {"verifier": "counting"},
    "chart": {"verifier": "chart"},
    "ocr": {"verifier": "ocr"},
    "grounding": {"verifier": "grounding"},
    "gui": {"verifier": "gui"},
    "yesno": {"verifier": "yesno"},
}
# video: synth's video answers are non-negative integers (a second, a count).
DEFAULT_ALIASES = {"video": "counting"}
REWARD_FN = "reward_fn"
REF_CACHE_SIZE = 4096
# domain keys that are not verifier options
ROUTING_KEYS = ("verifier", "answer_format")


def _extra_key(extra: dict | None) -> str:
    if not extra:
        return ""
    try:
        return json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(extra)


@dataclass
class RewardConfig:
    gates: GateConfig = field(default_factory=GateConfig)
    domains: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_DOMAINS.items()})
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    source: str = "<built-in>"
    reward_fn: str | None = None  # "package.module:function" scoring every domain
    reward_fn_timeout_s: float = 5.0
    cache_references: bool = True
    _built: dict[str, Callable[..., float]] = field(default_factory=dict, repr=False)
    _gates: dict[str, GateConfig] = field(default_factory=dict, repr=False)
    _refs: LRU = field(default_factory=lambda: LRU(REF_CACHE_SIZE), repr=False)

    @property
    def style(self) -> str:
        return self.gates.style

    def copy(self, **changes: Any) -> "RewardConfig":
        """The same configuration with ``changes`` and fresh caches."""
        return replace(self, _built={}, _gates={}, _refs=LRU(REF_CACHE_SIZE), **changes)

    def with_style(self, style: str) -> "RewardConfig":
        if style not in STYLES:
            raise GlmvError(f"--style must be one of {', '.join(STYLES)}, got '{style}'")
        return self.copy(gates=replace(self.gates, style=style))

    def with_reward_fn(self, spec: str | None) -> "RewardConfig":
        """``--reward-fn``: every domain scored by the user's function (None: unchanged)."""
        if spec is None:
            return self
        load_reward_fn(spec)
        return self.copy(reward_fn=spec)

    def known_domains(self) -> list[str]:
        return sorted(set(self.domains) | set(self.aliases))

    def accepts(self, domain: str) -> bool:
        """Can a record of this domain be scored? Any domain can with a top-level reward_fn."""
        return self.reward_fn is not None or domain in self.domains or domain in self.aliases

    def resolve(self, domain: str) -> str:
        d = self.aliases.get(domain, domain)
        if d not in self.domains and self.reward_fn is None:
            raise GlmvError(f"unknown domain '{domain}'; known: {', '.join(self.known_domains())}")
        return d

    def verifier_name(self, domain: str) -> str:
        d = self.resolve(domain)
        if self.reward_fn is not None:
            return REWARD_FN
        return self.domains[d]["verifier"]

    def gates_for(self, domain: str) -> GateConfig:
        """The gate options of a (resolved) domain: the global gates with its answer_format."""
        g = self._gates.get(domain)
        if g is None:
            fmt = self.domains.get(domain, {}).get("answer_format", self.gates.answer_format)
            g = self.gates if fmt == self.gates.answer_format else replace(self.gates, answer_format=fmt)
            self._gates[domain] = g
        return g

    def _options(self, d: str) -> dict[str, Any]:
        opts = {k: v for k, v in self.domains[d].items() if k not in ROUTING_KEYS}
        if isinstance(opts.get("judge"), dict):
            opts["_judge"] = Judge(judge_config(opts["judge"]))
        return opts

    def prepare(self, domain: str, reference: str, extra: dict | None = None) -> Ref:
        """The domain verifier's prepared reference (cached); raises ValueError for a bad one."""
        d = self.resolve(domain)
        name = self.domains[d]["verifier"]
        key = (d, reference, _extra_key(extra))
        if self.cache_references:
            hit = self._refs.get(key)
            if hit is not None:
                return hit
        spec = SPECS[name]
        ref = spec.prepare(reference, extra, self.domains[d])
        if self.cache_references:
            self._refs.put(key, ref)
        return ref

    def verifier(self, domain: str) -> Callable[[str, str, dict | None, str | None], float]:
        """The callable ``(pred, reference, extra, prompt) -> reward`` of a domain (built once)."""
        d = self.resolve(domain)
        if d not in self._built:
            name = self.domains[d]["verifier"]
            opts = self._options(d)
            if name == "judge":
                j = Judge(judge_config(opts))
                self._built[d] = lambda pred, ref, extra, prompt: j.score(prompt or "", ref, pred)
            else:
                check = SPECS[name].check
                self._built[d] = lambda pred, ref, extra, prompt, _c=check, _o=opts, _d=d: _c(
                    pred, self.prepare(_d, ref, extra), extra, _o, prompt)
        return self._built[d]

    def reward_function(self, domain: str) -> Callable[..., Any]:
        d = self.resolve(domain)
        return load_reward_fn(self.reward_fn if self.reward_fn is not None else self.domains[d]["function"],
                              f"{self.source}: reward_fn")

    def reward_fn_timeout(self, domain: str) -> float:
        d = self.resolve(domain)
        if self.reward_fn is not None:
            return self.reward_fn_timeout_s
        return float(self.domains[d].get("timeout_s", self.reward_fn_timeout_s))

    def to_dict(self) -> dict[str, Any]:
        """A rewards.yaml mapping that ``config_from_dict`` reads back into an equal config."""
        g = {f.name: getattr(self.gates, f.name) for f in fields(GateConfig) if f.name != "style"}
        d: dict[str, Any] = {"style": self.gates.style, "gates": g, "domains": self.domains,
                             "aliases": self.aliases, "cache_references": self.cache_references,
                             "reward_fn_timeout_s": self.reward_fn_timeout_s}
        if self.reward_fn is not None:
            d["reward_fn"] = self.reward_fn
        return d

    def as_dict(self) -> dict[str, Any]:
        """What a manifest records: the source and the full configuration."""
        return {"source": self.source, "gates": {f.name: getattr(self.gates, f.name) for f in fields(GateConfig)},
                "domains": self.domains, "aliases": self.aliases, "reward_fn": self.reward_fn,
                "reward_fn_timeout_s": self.reward_fn_timeout_s, "cache_references": self.cache_references}


_DEFAULT: RewardConfig | None = None


def default_config() -> RewardConfig:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RewardConfig()
    return _DEFAULT
