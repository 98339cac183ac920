"""Reward functions users bring: ``package.module:function``, loaded by a plain import.

The function has the signature of :func:`glmv_cli.rewards.score`::

    def my_reward(prompt: str | None, response: str, reference: str, domain: str,
                  extra: dict | None) -> float

It receives the whole response (no format gate runs first: the function decides what an answer
is) and returns a number; glmv clamps it to [0, 1]. It runs under the same timeout and error
counting as the built-in verifiers: an exception, a non-number, a non-finite value or a run past
its timeout is reward 0 with ``error`` set. Loading imports the module, which runs the user's own
code: glmv never evaluates a string, it only imports what the user names. The current directory is
searched after ``sys.path`` so a module next to the data works without installing it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from typing import Any, Callable

from glmv_cli.errors import GlmvError

REWARD_FN_HELP = ("Your own reward, package.module:function, called as glmv_cli.rewards.score is: (prompt, response, "
                  "reference, domain, extra) -> float in [0, 1]. glmv imports the module (running your code) and "
                  "scores every domain with it in place of the gates and verifiers, under the verifier timeout.")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_LOADED: dict[str, Callable[..., Any]] = {}


def load_reward_fn(spec: Any, where: str = "--reward-fn") -> Callable[..., Any]:
    """Imports ``package.module:function`` and checks that it takes score()'s five arguments."""
    if spec in _LOADED:
        return _LOADED[spec]
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise GlmvError(f"{where} must look like 'package.module:function', got {spec!r}")
    mod_name, attr = spec.split(":")
    if not _DOTTED.fullmatch(mod_name) or not _DOTTED.fullmatch(attr):
        raise GlmvError(f"{where} must look like 'package.module:function', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as e:  # the user's module may raise anything while it imports
        raise GlmvError(f"{where} '{spec}': importing module '{mod_name}' failed "
                        f"({type(e).__name__}: {e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GlmvError(f"{where} '{spec}': module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise GlmvError(f"{where} '{spec}': '{attr}' is not callable")
    try:
        inspect.signature(obj).bind(None, "", "", "", None)
    except TypeError:
        raise GlmvError(f"{where} '{spec}': the function must accept (prompt, response, reference, domain, "
                        "extra) like glmv_cli.rewards.score") from None
    except ValueError:  # no signature to inspect (a builtin): calling it will tell
        pass
    _LOADED[spec] = obj
    return obj
