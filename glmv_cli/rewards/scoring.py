"""``score(prompt, response, reference, domain, extra) -> reward in [0, 1]`` and its configuration.

Order of work for one response: length cap -> format gate -> language-mix gate -> answer-length
cap -> the domain's verifier. A gate failure is reward 0 with the gate's reason. A verifier that
raises (including a malformed reference) or times out is reward 0 with ``error`` set; nothing ever
propagates to the caller except an unknown domain, which is a caller bug. Nothing in a response is
executed: verifiers parse with regexes, ``json.loads``, ``Fraction`` and math-verify's LaTeX parser.

``RewardConfig`` is the registry: domain name -> (verifier name, options), plus the gate options
and the answer style. ``rewards.yaml``::

    style: glm41v            # or glm45v (no <answer> tags)
    gates: {require_think: true, require_box: true, language_mix: true, min_cjk_chars: 20,
            min_english_words: 15, max_response_chars: 262144, max_answer_chars: 4096}
    domains:
      math: {verifier: math, timeout_s: 1.0}
      chart: {verifier: chart, rel_tol: 0.025}
      open_vqa:
        verifier: judge
        endpoints: [{url: "http://host:8000/v1/chat/completions", model: m, api_key_env: JUDGE_KEY}]
        retries: 2
        cache_dir: .judge-cache

Domains given in the file override or extend the built-in ones; ``aliases`` maps extra names
(``stem`` -> ``math`` is built in). Unknown keys are errors naming the file and the key.

A user reward function (top-level ``reward_fn: "package.module:function"`` with
``reward_fn_timeout_s``, or ``--reward-fn``; :mod:`glmv_cli.rewards.user_fn`) scores every domain,
named or not, in place of the gates and verifiers.
"""

from __future__ import annotations

import math as _math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from glmv_cli.errors import GlmvError
from glmv_cli.rewards.extract import STYLES, GateConfig, gate
from glmv_cli.rewards.judge import JUDGE_OPTIONS, Judge, judge_config
from glmv_cli.rewards.mathv import VerifierTimeout
from glmv_cli.rewards.verifiers import VERIFIER_OPTIONS, VERIFIERS

DEFAULT_DOMAINS: dict[str, dict[str, Any]] = {
    "math": {"verifier": "math"},
    "mcq": {"verifier": "mcq"},
    "counting": {"verifier": "counting"},
    "chart": {"verifier": "chart"},
    "ocr": {"verifier": "ocr"},
    "grounding": {"verifier": "grounding"},
    "gui": {"verifier": "gui"},
    "yesno": {"verifier": "yesno"},
}
# video: synth's video answers are non-negative integers (a second, a count).
DEFAULT_ALIASES = {"stem": "math", "video": "counting"}


@dataclass
class RewardResult:
    """One scored response. ``gate`` is the failed gate's reason (None = passed); ``error`` is the
    verifier's exception or ``timeout`` (None = it ran)."""

    reward: float
    domain: str
    verifier: str
    answer: str | None = None
    gate: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "domain": self.domain, "verifier": self.verifier,
                "answer": self.answer, "gate": self.gate, "error": self.error}


@dataclass
class RewardConfig:
    gates: GateConfig = field(default_factory=GateConfig)
    domains: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_DOMAINS.items()})
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    source: str = "<built-in>"
    reward_fn: str | None = None  # "package.module:function" scoring every domain (user_fn.py)
    reward_fn_timeout_s: float = 5.0
    _built: dict[str, Callable[..., float]] = field(default_factory=dict, repr=False)

    @property
    def style(self) -> str:
        return self.gates.style

    def with_style(self, style: str) -> "RewardConfig":
        if style not in STYLES:
            raise GlmvError(f"--style must be one of {', '.join(STYLES)}, got '{style}'")
        return replace(self, gates=replace(self.gates, style=style), _built={})

    def with_reward_fn(self, spec: str | None) -> "RewardConfig":
        """This config with ``spec`` (``--reward-fn``) scoring every domain; None keeps it as is."""
        if spec is None:
            return self
        from glmv_cli.rewards.user_fn import load_reward_fn

        load_reward_fn(spec)  # a bad spec fails before any model is built
        return replace(self, reward_fn=spec, _built={})

    def known_domains(self) -> list[str]:
        return sorted(set(self.domains) | set(self.aliases))

    def accepts(self, domain: str) -> bool:
        """Can a record of this domain be scored? Any can when a reward function scores them all."""
        return self.reward_fn is not None or domain in self.domains or domain in self.aliases

    def resolve(self, domain: str) -> str:
        d = self.aliases.get(domain, domain)
        if d not in self.domains and self.reward_fn is not None:
            return domain
        if d not in self.domains:
            raise GlmvError(f"unknown domain '{domain}'; known: {', '.join(self.known_domains())}")
        return d

    def verifier_name(self, domain: str) -> str:
        return self.domains[self.resolve(domain)]["verifier"]

    def verifier(self, domain: str) -> Callable[[str, str, dict | None, str | None], float]:
        """The callable ``(pred, reference, extra, prompt) -> reward`` of a domain (built once)."""
        d = self.resolve(domain)
        if d not in self._built:
            spec = dict(self.domains[d])
            name = spec.pop("verifier")
            if name == "judge":
                j = Judge(judge_config(spec))
                self._built[d] = lambda pred, ref, extra, prompt: j.score(prompt or "", ref, pred)
            else:
                fn = VERIFIERS[name]
                self._built[d] = lambda pred, ref, extra, prompt, _fn=fn, _o=spec: _fn(pred, ref, extra, _o)
        return self._built[d]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "gates": {f.name: getattr(self.gates, f.name) for f in fields(GateConfig)},
                "domains": self.domains, "aliases": self.aliases, "reward_fn": self.reward_fn,
                "reward_fn_timeout_s": self.reward_fn_timeout_s}


_DEFAULT: RewardConfig | None = None


def default_config() -> RewardConfig:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RewardConfig()
    return _DEFAULT


_NUMERIC = {"timeout_s", "max_chars", "rel_tol", "iou_threshold", "point_tol", "retries", "backoff_s",
            "temperature", "max_tokens"}
_BOOLEAN = {"fast_path", "cache", "collapse_whitespace", "ignore_case"}


def _check_domain(where: str, name: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise GlmvError(f"{where}: domains.{name} must be a mapping with a 'verifier' key")
    v = spec.get("verifier")
    allowed_v = sorted(list(VERIFIERS) + ["judge"])
    if v not in allowed_v:
        raise GlmvError(f"{where}: domains.{name}.verifier is '{v}'; expected one of: {', '.join(allowed_v)}")
    allowed = JUDGE_OPTIONS if v == "judge" else VERIFIER_OPTIONS[v]
    for k in spec:
        if k != "verifier" and k not in allowed:
            raise GlmvError(f"{where}: unknown key 'domains.{name}.{k}' for verifier '{v}'; "
                            f"valid: {', '.join(('verifier',) + tuple(allowed))}")
    for k, val in spec.items():
        if k in _NUMERIC and (isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0):
            raise GlmvError(f"{where}: domains.{name}.{k} must be a non-negative number, got {val!r}")
        if k in _BOOLEAN and not isinstance(val, bool):
            raise GlmvError(f"{where}: domains.{name}.{k} must be true or false, got {val!r}")
    if v == "judge":
        try:
            judge_config(spec)
        except ValueError as e:
            raise GlmvError(f"{where}: domains.{name}: {e}") from None
    yr = spec.get("year_range", [0, 0])
    if not (isinstance(yr, list) and len(yr) == 2 and all(isinstance(x, int) for x in yr)):
        raise GlmvError(f"{where}: domains.{name}.year_range must be [first, last] years, got {yr!r}")
    if v == "grounding" and spec.get("shape", "step") not in ("step", "linear", "thresholded"):
        raise GlmvError(f"{where}: domains.{name}.shape must be step, linear or thresholded, got '{spec['shape']}'")
    return dict(spec)


def config_from_dict(data: dict[str, Any], where: str = "<dict>") -> RewardConfig:
    """Builds a RewardConfig from a parsed rewards.yaml mapping (see the module docstring)."""
    if not isinstance(data, dict):
        raise GlmvError(f"{where}: a reward config must be a mapping, got {type(data).__name__}")
    unknown = set(data) - {"style", "gates", "domains", "aliases", "reward_fn", "reward_fn_timeout_s"}
    if unknown:
        raise GlmvError(f"{where}: unknown key '{sorted(unknown)[0]}'; valid: aliases, domains, gates, reward_fn, "
                        "reward_fn_timeout_s, style")
    gate_names = {f.name: f.type for f in fields(GateConfig)}
    g = data.get("gates") or {}
    if not isinstance(g, dict):
        raise GlmvError(f"{where}: 'gates' must be a mapping")
    for k in g:
        if k not in gate_names or k == "style":
            raise GlmvError(f"{where}: unknown key 'gates.{k}'; valid: "
                            f"{', '.join(sorted(n for n in gate_names if n != 'style'))}")
    style = data.get("style", "glm41v")
    if style not in STYLES:
        raise GlmvError(f"{where}: 'style' must be one of {', '.join(STYLES)}, got '{style}'")
    defaults = GateConfig()
    for k, val in g.items():
        want = type(getattr(defaults, k))
        if isinstance(val, bool) != (want is bool) or not isinstance(val, want):
            raise GlmvError(f"{where}: gates.{k} must be {'true or false' if want is bool else 'an integer'}, "
                            f"got {val!r}")
    gates = GateConfig(style=style, **g)
    domains = {k: dict(v) for k, v in DEFAULT_DOMAINS.items()}
    for name, spec in (data.get("domains") or {}).items():
        domains[str(name)] = _check_domain(where, str(name), spec)
    aliases = dict(DEFAULT_ALIASES)
    for a, target in (data.get("aliases") or {}).items():
        if target not in domains:
            raise GlmvError(f"{where}: aliases.{a} points to unknown domain '{target}'")
        aliases[str(a)] = str(target)
    timeout = data.get("reward_fn_timeout_s", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise GlmvError(f"{where}: reward_fn_timeout_s must be a positive number of seconds, got {timeout!r}")
    cfg = RewardConfig(gates=gates, domains=domains, aliases=aliases, source=where,
                       reward_fn_timeout_s=float(timeout))
    fn = data.get("reward_fn")
    if fn is not None and not isinstance(fn, str):
        raise GlmvError(f"{where}: reward_fn must be 'package.module:function', got {fn!r}")
    return cfg.with_reward_fn(fn)


def load_config(path: str | Path | None, reward_fn: str | None = None) -> RewardConfig:
    """Reads rewards.yaml (None: the built-in registry); ``reward_fn`` (``--reward-fn``) overrides
    the file's."""
    if path is None:
        return RewardConfig().with_reward_fn(reward_fn)
    p = Path(path)
    if not p.is_file():
        raise GlmvError(f"--config '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise GlmvError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    return config_from_dict(data, str(p)).with_reward_fn(reward_fn)


def score_detailed(prompt: str | None, response: str, reference: str, domain: str,
                   extra: dict[str, Any] | None = None, *, config: RewardConfig | None = None) -> RewardResult:
    """Gates, then the domain's verifier; never raises for anything inside the response."""
    cfg = config or default_config()
    if cfg.reward_fn is not None:
        return _score_user_fn(cfg, prompt, response, reference, domain, extra)
    d = cfg.resolve(domain)
    vname = cfg.domains[d]["verifier"]
    answer, why = gate(response, cfg.gates)
    if why is not None:
        return RewardResult(0.0, d, vname, None, gate=why)
    try:
        r = float(cfg.verifier(d)(answer, reference, extra, prompt))
    except VerifierTimeout:
        return RewardResult(0.0, d, vname, answer, error="timeout")
    except Exception as e:  # a verifier bug or a bad reference must not kill an RL run
        return RewardResult(0.0, d, vname, answer, error=f"{type(e).__name__}: {e}"[:300])
    if not _math.isfinite(r):
        return RewardResult(0.0, d, vname, answer, error=f"non-finite reward {r}")
    return RewardResult(min(1.0, max(0.0, r)), d, vname, answer)


def _score_user_fn(cfg: RewardConfig, prompt: str | None, response: str, reference: str, domain: str,
                   extra: dict[str, Any] | None) -> RewardResult:
    """The user's function on the whole response, under the verifier timeout and error rules."""
    from glmv_cli.rewards.user_fn import call_reward_fn, load_reward_fn

    fn = load_reward_fn(cfg.reward_fn)  # type: ignore[arg-type]
    try:
        r = call_reward_fn(fn, cfg.reward_fn_timeout_s, prompt, response, reference, domain, extra)
    except VerifierTimeout:
        return RewardResult(0.0, domain, "reward_fn", None, error="timeout")
    except Exception as e:  # the user's code may raise anything; the run goes on
        return RewardResult(0.0, domain, "reward_fn", None, error=f"{type(e).__name__}: {e}"[:300])
    return RewardResult(r, domain, "reward_fn", None)


def score(prompt: str | None, response: str, reference: str, domain: str,
          extra: dict[str, Any] | None = None, *, config: RewardConfig | None = None) -> float:
    """The reward in [0, 1] of one response (see :func:`score_detailed`)."""
    return score_detailed(prompt, response, reference, domain, extra, config=config).reward
