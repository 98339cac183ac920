"""A reward function the user brings: ``--reward-fn package.module:function``.

The function has the signature of :func:`glmv_cli.rewards.score`::

    def my_reward(prompt: str | None, response: str, reference: str, domain: str,
                  extra: dict | None) -> float

It gets the whole response (glmv's format and language gates do not run first: the function
decides what an answer is) and returns a number, clamped to [0, 1]. It runs under the same
timeout and error accounting as the built-in verifiers: an exception, a value that is not a
finite number, or a call past ``reward_fn_timeout_s`` (default 5 s) is reward 0 with ``error``
set, counted like a verifier error.

Loading imports the named module, which runs the user's own code -- that is the point, and why
it is documented on the flag. glmv never evaluates a string: the spec is split at ``:`` and
resolved by ``importlib.import_module`` and attribute lookup. The current directory is searched
after ``sys.path``, so a module next to the data works without installing it.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
from typing import Any, Callable

from glmv_cli.errors import GlmvError

REWARD_FN_HELP = ("Your own reward, package.module:function, called as glmv_cli.rewards.score is: (prompt, response, "
                  "reference, domain, extra) -> float in [0, 1]. glmv imports the module (running your code) and "
                  "scores every domain with it in place of the gates and verifiers, under the verifier timeout.")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CACHE: dict[str, Callable[..., Any]] = {}


def load_reward_fn(spec: str, what: str = "--reward-fn") -> Callable[..., Any]:
    """The callable named by ``package.module:function`` (imported once per process)."""
    if spec in _CACHE:
        return _CACHE[spec]
    module, sep, attr = str(spec).partition(":")
    if not sep or not _NAME.fullmatch(module) or not _NAME.fullmatch(attr):
        raise GlmvError(f"{what} must be 'package.module:function', got '{spec}'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except Exception as e:  # the user's module may raise anything on import
        raise GlmvError(f"{what} '{spec}': cannot import '{module}' ({type(e).__name__}: {e})") from None
    for name in attr.split("."):
        if not hasattr(obj, name):
            raise GlmvError(f"{what} '{spec}': '{module}' has no attribute '{attr}'")
        obj = getattr(obj, name)
    if not callable(obj):
        raise GlmvError(f"{what} '{spec}': '{attr}' is not callable")
    try:
        inspect.signature(obj).bind("prompt", "response", "reference", "domain", None)
    except TypeError:
        raise GlmvError(f"{what} '{spec}': the function must take (prompt, response, reference, domain, extra), "
                        "the arguments of glmv_cli.rewards.score") from None
    except ValueError:  # a builtin without a signature: calling it will tell
        pass
    _CACHE[spec] = obj
    return obj


def call_reward_fn(fn: Callable[..., Any], timeout_s: float, prompt: str | None, response: str, reference: str,
                   domain: str, extra: dict | None) -> float:
    """``fn``'s reward in [0, 1]; raises VerifierTimeout past ``timeout_s`` and ValueError for a
    result that is not a finite number (the caller turns both into reward 0 with ``error``)."""
    from glmv_cli.rewards.mathv import call_with_timeout

    r = call_with_timeout(fn, timeout_s, prompt, response, reference, domain, extra)
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise ValueError(f"the reward function returned {type(r).__name__}, not a number")
    if not math.isfinite(r):
        raise ValueError(f"the reward function returned {r}")
    return min(1.0, max(0.0, float(r)))
