"""Stage options as dataclasses whose fields carry their own help, choices and bounds.

Every stage's options are one dataclass, optionally composed of small groups (optimizer, batch,
checkpointing, logging, rollout ...). A field is declared with :func:`opt`::

    @dataclass
    class OptimConfig:
        lr: float = opt(1e-4, "Peak learning rate (AdamW).", gt=0)
        schedule: str = opt("cosine", "LR decay after warmup.", choices=("cosine", "linear", "constant"))

A field whose type is itself such a dataclass is a *group*: its fields are flattened into the
command's flags (``--lr``, not ``--optim-lr``), so flag names are unique across a command.
Defaults come from the dataclass (a group's default is its ``default_factory()`` instance, so a
stage can change a group's defaults: ``field(default_factory=lambda: OptimConfig(lr=2e-5))``);
the CLI generator in ``glmv_cli.cli`` reads them from here, which is why CLI and Python defaults
cannot drift apart.

Metadata keys: ``help`` (required), ``choices``, ``min`` / ``max`` (inclusive), ``gt`` / ``lt``
(exclusive bounds), ``flag`` (a flag name other than ``--field-name``), ``argument`` (a positional
argument), ``parse`` (a function that turns the text or recipe value into the field's value and
raises GlmvError naming the flag; the field's CLI type is then ``str``), ``metavar``.

:func:`validate` checks every field against its metadata with messages that name the flag, then
calls the object's (and each group's) ``check()`` for rules between fields. It is the one place
option values are validated; stage functions call it first, so Python callers get the same
checks as the command line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, Field, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from glmv_cli.errors import GlmvError

_NO_DEFAULT: Any = MISSING


def opt(default: Any = _NO_DEFAULT, help: str = "", *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, gt: float | None = None, lt: float | None = None, flag: str | None = None,
        argument: bool = False, parse: Callable[[Any], Any] | None = None, metavar: str | None = None) -> Any:
    """A dataclass field with its CLI metadata (see the module docstring). Mutable defaults are copied."""
    if not help:
        raise ValueError("every option needs a help text")
    meta = {"help": help, "choices": choices, "min": min, "max": max, "gt": gt, "lt": lt, "flag": flag,
            "argument": argument, "parse": parse, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if default is _NO_DEFAULT:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Leaf:
    """One flag: its field, its path of group attribute names and its resolved Python type."""

    name: str
    path: tuple[str, ...]  # attribute names from the root object to the field's owner
    field: Field
    type: Any

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.field.metadata

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or flag(self.name)

    @property
    def help(self) -> str:
        return self.meta["help"]

    def owner(self, obj: Any) -> Any:
        for p in self.path:
            obj = getattr(obj, p)
        return obj

    def get(self, obj: Any) -> Any:
        return getattr(self.owner(obj), self.name)

    def set(self, obj: Any, value: Any) -> None:
        setattr(self.owner(obj), self.name, value)


def flag(name: str) -> str:
    """``clip_eps_low`` -> ``--clip-eps-low``."""
    return "--" + name.replace("_", "-")


def is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def leaves(cls: type, path: tuple[str, ...] = ()) -> list[Leaf]:
    """Every flag of an options class, groups flattened, in declaration order. Names must be unique."""
    out: list[Leaf] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if is_group(tp):
            out.extend(leaves(tp, path + (f.name,)))
        elif "help" in f.metadata:
            out.append(Leaf(f.name, path, f, tp))
    if not path:
        seen: dict[str, Leaf] = {}
        for leaf in out:
            if leaf.name in seen:
                raise TypeError(f"{cls.__name__}: option '{leaf.name}' is declared twice "
                                f"({'.'.join(seen[leaf.name].path) or 'top'} and {'.'.join(leaf.path) or 'top'})")
            seen[leaf.name] = leaf
    return out


def defaults(cls: type) -> Any:
    """An instance with every default (required fields left as None), for reading group defaults."""
    kw = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
            kw[f.name] = None if not is_group(hints[f.name]) else defaults(hints[f.name])
    return cls(**kw)


def default_of(cls: type, leaf: Leaf) -> Any:
    """The default of one flag as the dataclass defines it (MISSING for a required field)."""
    f = leaf.field
    if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
        return MISSING
    return leaf.get(defaults(cls))


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` / ``X | None`` -> (X, True); else (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def list_item(tp: Any) -> Any | None:
    """``list[X]`` -> X; None when tp is not a list type."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return item
    return None


def build(cls: type, flat: Mapping[str, Any], *, source: str | None = None, typed: bool = False) -> Any:
    """An options object from flat ``{flag name: value}`` (snake or kebab case); group fields are
    filled from their defaults. Unknown names are errors listing the valid ones. Values are checked
    against the field types (``coerce``) unless ``typed`` (they come from the command line, which
    converted them already); errors name ``source`` (e.g. a recipe file) and the flag."""
    by_name = {leaf.name: leaf for leaf in leaves(cls)}
    values: dict[str, Any] = {}
    for key, value in flat.items():
        name = str(key).replace("-", "_")
        if name not in by_name:
            raise GlmvError(f"{source or 'options'}: unknown key '{key}'; valid keys: {', '.join(sorted(by_name))}")
        leaf = by_name[name]
        values[name] = value if typed else coerce(leaf, value, f"{source}: {leaf.flag}" if source else leaf.flag)
    return _construct(cls, (), values, by_name)


def _construct(cls: type, path: tuple[str, ...], values: dict[str, Any], by_name: dict[str, Leaf]) -> Any:
    kw: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if is_group(tp):
            sub = {n: v for n, v in values.items() if by_name[n].path[: len(path) + 1] == path + (f.name,)}
            group = _construct(tp, path + (f.name,), sub, by_name)
            if f.default_factory is not MISSING:  # type: ignore[misc]
                base = f.default_factory()  # type: ignore[misc]
                for leaf in leaves(tp):
                    if leaf.name not in sub:
                        leaf.set(group, leaf.get(base))
            kw[f.name] = group
        elif f.name in values and by_name.get(f.name) is not None and by_name[f.name].path == path:
            kw[f.name] = values[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
            raise GlmvError(f"{by_name[f.name].flag if f.name in by_name else f.name} is required")
    return cls(**kw)


def flat_dict(obj: Any) -> dict[str, Any]:
    """``{flag name: value}`` of every flag, JSON-safe (paths as strings, tuples as lists)."""
    return {leaf.name: _json_safe(leaf.get(obj)) for leaf in leaves(type(obj))}


def _json_safe(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return v


def _check_leaf(leaf: Leaf, value: Any) -> None:
    m = leaf.meta
    if value is None:
        return
    values = value if isinstance(value, (list, tuple)) and m.get("choices") is not None else [value]
    if m.get("choices") is not None:
        for v in values:
            if v not in m["choices"]:
                raise GlmvError(f"{leaf.flag} must be one of {', '.join(map(str, m['choices']))}, got '{v}'")
    nums = value if isinstance(value, (list, tuple)) else [value]
    for v in nums:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise GlmvError(f"{leaf.flag} must be a number, got nan")
        if not _in_range(v, m):
            raise GlmvError(f"{leaf.flag} must be {_range_text(m)}, got {v}")


def _in_range(v: float, m: Mapping[str, Any]) -> bool:
    return not ((m.get("gt") is not None and not v > m["gt"]) or (m.get("lt") is not None and not v < m["lt"])
                or (m.get("min") is not None and v < m["min"]) or (m.get("max") is not None and v > m["max"]))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _range_text(m: Mapping[str, Any]) -> str:
    """``>= 1``, ``> 0``, ``in (0, 1]`` ... from the bounds in the metadata."""
    lo, lo_open = (m["gt"], True) if m.get("gt") is not None else (m.get("min"), False)
    hi, hi_open = (m["lt"], True) if m.get("lt") is not None else (m.get("max"), False)
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    return f"{'<' if hi_open else '<='} {_num(hi)}"


def validate(obj: Any, world: int = 1) -> Any:
    """Parses and checks every field (metadata rules, then ``check()`` of groups and object).

    ``parse`` functions run first, so ``check()`` sees parsed values. Returns ``obj``."""
    for leaf in leaves(type(obj)):
        parse = leaf.meta.get("parse")
        if parse is not None:
            leaf.set(obj, parse(leaf.get(obj)))
        _check_leaf(leaf, leaf.get(obj))
    for group in _groups(obj):
        check = getattr(group, "check", None)
        if check is not None:
            _call_check(check, world)
    return obj


def _call_check(check: Callable[..., Any], world: int) -> None:
    import inspect

    if "world" in inspect.signature(check).parameters:
        check(world=world)
    else:
        check()


def _groups(obj: Any) -> Iterator[Any]:
    """Groups depth first, the object itself last."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.init and is_group(hints[f.name]):
            yield from _groups(getattr(obj, f.name))
    yield obj


# -- text and recipe values -------------------------------------------------------------------------


def cli_type(leaf: Leaf) -> Any:
    """The Python type Typer sees for a flag (``parse`` fields take text)."""
    if leaf.meta.get("parse") is not None:
        tp, optional = unwrap_optional(leaf.type)
        return typing.Optional[str] if optional else str
    return leaf.type


def as_text(value: Any) -> Any:
    """A parse-field value in its flag spelling: tuples/lists ``a,b``, mappings ``k=v,...``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(x) for x in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


def coerce(leaf: Leaf, value: Any, where: str) -> Any:
    """A recipe value checked against the flag's type; errors name ``where`` (file and key).

    YAML gives typed values, so ``seq_len: "abc"`` or ``seq_len: true`` is an error here rather
    than a silent conversion (``True`` would become 1)."""
    if leaf.meta.get("parse") is not None:
        try:
            leaf.meta["parse"](value)
        except GlmvError as e:
            raise GlmvError(str(e) if where == leaf.flag else f"{where}: {e}") from None
        return as_text(value)
    tp, optional = unwrap_optional(leaf.type)
    if value is None:
        if optional:
            return None
        raise GlmvError(f"{where}: needs a value ({_type_name(tp)}), got null")
    item = list_item(tp)
    if item is not None:
        items = value if isinstance(value, list) else [value]
        return [_coerce_scalar(item, v, f"{where} item {i}") for i, v in enumerate(items)]
    return _coerce_scalar(tp, value, where)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            Path: "a path"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce_scalar(tp: Any, value: Any, where: str) -> Any:
    bad = GlmvError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if math.isnan(float(value)):
            raise bad
        return float(value)
    if tp in (str, Path):
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Path)):
            raise bad
        return tp(value) if tp is Path else str(value)
    raise bad
