"""``--recipe FILE.yaml``: option defaults for one stage.

A recipe is a YAML mapping from option names (``seq_len`` or ``seq-len``) to values. Values fill
the options not given on the command line; flags always win. An unknown key is an error that names
the key and lists the valid ones, so a typo never silently falls back to a default. The reserved key
``stage`` (optional) must name the command the recipe is used with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from glmv_cli.errors import GlmvError

RESERVED = ("stage",)


def load_recipe(path: str | Path, *, stage: str, valid: Iterable[str]) -> dict[str, Any]:
    """Reads a recipe and returns ``{param_name: value}`` with names in snake case.

    ``valid`` lists the stage's parameter names (snake case). Raises GlmvError on unknown keys,
    a stage mismatch, or YAML that is not a mapping.
    """
    from glmv_cli.data.jsonl import check_input_file

    p = check_input_file(path, "--recipe")  # a FIFO or device would hang or fill memory
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GlmvError(f"{p}: not UTF-8 text (a recipe is a YAML file)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise GlmvError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GlmvError(f"{p}: a recipe must be a mapping of option names to values, got {type(data).__name__}")
    valid = sorted(set(valid))
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name == "stage":
            if value != stage:
                raise GlmvError(f"{p}: field 'stage' is '{value}' but this command is '{stage}'")
            continue
        if name not in valid:
            raise GlmvError(
                f"{p}: unknown key '{key}' for 'glmv {stage}'; valid keys: {', '.join(valid)}"
            )
        out[name] = value
    return out
