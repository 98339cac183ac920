"""rewards.yaml -> :class:`glmv_cli.rewards.registry.RewardConfig`, every key checked::

    style: glm41v            # or glm45v (no <answer> tags)
    gates: {require_think: true, require_box: true, language_mix: true, min_cjk_chars: 20,
            min_english_words: 15, max_response_chars: 262144, max_answer_chars: 4096,
            answer_format: glm}          # glm | boxed | either, the default of every domain
    domains:
      math: {verifier: math, timeout_s: 1.0}
      geo3k: {verifier: math, answer_format: boxed}
      chart: {verifier: chart, rel_tol: 0.025}
      stem: {verifier: stem, judge: {endpoints: [{url: "http://host:8000/v1/chat/completions", model: m}]}}
      open_vqa:
        verifier: judge
        endpoints: [{url: "http://host:8000/v1/chat/completions", model: m, api_key_env: JUDGE_KEY}]
      mine: {verifier: reward_fn, function: "my_pkg.rewards:score", timeout_s: 5}
    aliases: {science: stem}
    reward_fn: "my_pkg.rewards:score"   # scores every domain (runs your own code)
    reward_fn_timeout_s: 5.0
    cache_references: true              # one prepared reference per (domain, reference) and config

Domains given in the file override or extend the built-in ones. Unknown keys and wrong types are
errors naming the file and the key.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from glmv_cli.errors import GlmvError
from glmv_cli.rewards.extract import ANSWER_FORMATS, STYLES, GateConfig
from glmv_cli.rewards.judge import JUDGE_OPTIONS, judge_config
from glmv_cli.rewards.registry import DEFAULT_ALIASES, DEFAULT_DOMAINS, REWARD_FN, RewardConfig
from glmv_cli.rewards.userfn import load_reward_fn
from glmv_cli.rewards.verifiers import VERIFIER_OPTIONS

TOP_KEYS = ("aliases", "cache_references", "domains", "gates", "reward_fn", "reward_fn_timeout_s", "style")
_NUMERIC = {"timeout_s", "max_chars", "rel_tol", "iou_threshold", "point_tol", "retries", "backoff_s",
            "temperature", "max_tokens"}
_BOOLEAN = {"fast_path", "cache", "collapse_whitespace", "ignore_case"}


def _allowed(v: str) -> tuple[str, ...]:
    if v == "judge":
        return JUDGE_OPTIONS + ("answer_format",)
    if v == REWARD_FN:
        return ("function", "timeout_s")
    return VERIFIER_OPTIONS[v] + ("answer_format",)


def _check_values(where: str, name: str, spec: dict[str, Any]) -> None:
    for k, val in spec.items():
        if k in _NUMERIC and (isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0):
            raise GlmvError(f"{where}: domains.{name}.{k} must be a non-negative number, got {val!r}")
        if k in _BOOLEAN and not isinstance(val, bool):
            raise GlmvError(f"{where}: domains.{name}.{k} must be true or false, got {val!r}")
    if spec.get("answer_format", "glm") not in ANSWER_FORMATS:
        raise GlmvError(f"{where}: domains.{name}.answer_format must be one of {', '.join(ANSWER_FORMATS)}, "
                        f"got {spec['answer_format']!r}")
    yr = spec.get("year_range", [0, 0])
    if not (isinstance(yr, list) and len(yr) == 2 and all(isinstance(x, int) for x in yr)):
        raise GlmvError(f"{where}: domains.{name}.year_range must be [first, last] years, got {yr!r}")
    if spec.get("shape", "step") not in ("step", "linear", "thresholded"):
        raise GlmvError(f"{where}: domains.{name}.shape must be step, linear or thresholded, got '{spec['shape']}'")


def _check_domain(where: str, name: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise GlmvError(f"{where}: domains.{name} must be a mapping with a 'verifier' key")
    v = spec.get("verifier")
    choices = sorted(list(VERIFIER_OPTIONS) + ["judge", REWARD_FN])
    if v not in choices:
        raise GlmvError(f"{where}: domains.{name}.verifier is '{v}'; expected one of: {', '.join(choices)}")
    allowed = _allowed(v)
    for k in spec:
        if k != "verifier" and k not in allowed:
            raise GlmvError(f"{where}: unknown key 'domains.{name}.{k}' for verifier '{v}'; "
                            f"valid: {', '.join(('verifier',) + tuple(allowed))}")
    _check_values(where, name, spec)
    judge_spec = spec if v == "judge" else spec.get("judge")
    if judge_spec is not None:
        label = f"domains.{name}" if v == "judge" else f"domains.{name}.judge"
        if not isinstance(judge_spec, dict):
            raise GlmvError(f"{where}: {label} must be a mapping of judge options")
        unknown = sorted(set(judge_spec) - set(JUDGE_OPTIONS) - ({"verifier", "answer_format"} if v == "judge" else set()))
        if unknown:
            raise GlmvError(f"{where}: unknown key '{label}.{unknown[0]}'; valid: {', '.join(JUDGE_OPTIONS)}")
        try:
            judge_config(judge_spec)
        except ValueError as e:
            raise GlmvError(f"{where}: {label}: {e}") from None
    if v == REWARD_FN:
        if "function" not in spec:
            raise GlmvError(f"{where}: domains.{name}.function is missing ('package.module:function')")
        load_reward_fn(spec["function"], f"{where}: domains.{name}.function")
    return dict(spec)


def _gates(where: str, data: dict[str, Any]) -> GateConfig:
    g = data.get("gates") or {}
    if not isinstance(g, dict):
        raise GlmvError(f"{where}: 'gates' must be a mapping")
    names = [f.name for f in fields(GateConfig) if f.name != "style"]
    defaults = GateConfig()
    for k, val in g.items():
        if k not in names:
            raise GlmvError(f"{where}: unknown key 'gates.{k}'; valid: {', '.join(sorted(names))}")
        want = type(getattr(defaults, k))
        if want is str:
            if val not in ANSWER_FORMATS:
                raise GlmvError(f"{where}: gates.{k} must be one of {', '.join(ANSWER_FORMATS)}, got {val!r}")
        elif isinstance(val, bool) != (want is bool) or not isinstance(val, want):
            raise GlmvError(f"{where}: gates.{k} must be {'true or false' if want is bool else 'an integer'}, "
                            f"got {val!r}")
    style = data.get("style", "glm41v")
    if style not in STYLES:
        raise GlmvError(f"{where}: 'style' must be one of {', '.join(STYLES)}, got '{style}'")
    return GateConfig(style=style, **g)


def config_from_dict(data: dict[str, Any], where: str = "<dict>") -> RewardConfig:
    """Builds a RewardConfig from a parsed rewards.yaml mapping (see the module docstring)."""
    if not isinstance(data, dict):
        raise GlmvError(f"{where}: a reward config must be a mapping, got {type(data).__name__}")
    unknown = set(data) - set(TOP_KEYS)
    if unknown:
        raise GlmvError(f"{where}: unknown key '{sorted(unknown)[0]}'; valid: {', '.join(TOP_KEYS)}")
    gates = _gates(where, data)
    domains = {k: dict(v) for k, v in DEFAULT_DOMAINS.items()}
    spec_domains = data.get("domains") or {}
    if not isinstance(spec_domains, dict):
        raise GlmvError(f"{where}: 'domains' must be a mapping of domain name -> verifier options")
    for name, spec in spec_domains.items():
        domains[str(name)] = _check_domain(where, str(name), spec)
    aliases = dict(DEFAULT_ALIASES)
    for a, target in (data.get("aliases") or {}).items():
        if target not in domains:
            raise GlmvError(f"{where}: aliases.{a} points to unknown domain '{target}'")
        aliases[str(a)] = str(target)
    fn = data.get("reward_fn")
    if fn is not None:
        load_reward_fn(fn, f"{where}: reward_fn")
    timeout = data.get("reward_fn_timeout_s", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise GlmvError(f"{where}: reward_fn_timeout_s must be a positive number, got {timeout!r}")
    cache = data.get("cache_references", True)
    if not isinstance(cache, bool):
        raise GlmvError(f"{where}: cache_references must be true or false, got {cache!r}")
    return RewardConfig(gates=gates, domains=domains, aliases=aliases, source=where, reward_fn=fn,
                        reward_fn_timeout_s=float(timeout), cache_references=cache)


def load_config(path: str | Path | None, reward_fn: str | None = None) -> RewardConfig:
    """Reads rewards.yaml (None: the built-in registry); ``reward_fn`` (``--reward-fn``) overrides
    the file's top-level ``reward_fn``."""
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
