"""The one command generator: every ``glmv`` stage command is built here from its options dataclass.

A stage module defines an options dataclass (fields declared with ``glmv_cli.options.opt``, help,
choices and bounds in the field metadata), a typed stage function ``run(opts) -> result`` and a
``report(result)`` that prints the outcome, then calls::

    add_command(app, "sft", sft, SftOptions, doc=__doc__-like text, report=report)

The generator makes one flag per leaf field (groups flattened), with the dataclass default, a
``--flag/--no-flag`` pair for booleans, repeatable flags for lists, and ``--recipe FILE.yaml``
(option defaults from YAML: flags win; unknown keys and wrongly typed values are errors naming the
file and the key). The command builds the options object, runs the stage and prints its report;
a :class:`GlmvError` prints ``error: …`` and exits 2. ``invoke(name, opts)`` is the same path
without argv, for tests and scripts.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import click
import typer
from rich.console import Console

from glmv_cli import options as O
from glmv_cli.errors import GlmvError

console = Console(stderr=True, highlight=False)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns GlmvError into ``error: <message>`` on stderr and exit code 2; an OSError (a full
    disk, a read-only mount, a permission) the same way, as one line naming the path
    (``glmv_cli.oserrors``), since it is the machine's state, not a bug, that needs fixing."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GlmvError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as e:  # noqa: BLE001 - OS errors only; anything else is a bug and keeps its traceback
            from glmv_cli.oserrors import describe, os_error_from

            ose = os_error_from(e, "?")
            if ose is None or ose.errno is None:
                raise
            print(f"error: {describe(ose)}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _recipe_callback(opts_cls: type) -> Callable[..., Any]:
    by_name = {leaf.name: leaf for leaf in O.leaves(opts_cls)}

    def callback(ctx: click.Context, param: click.Parameter, value: Optional[Path]) -> Optional[Path]:
        if value is None or ctx.resilient_parsing:
            return value
        from glmv_cli.recipe import load_recipe

        stage = ctx.info_name or ctx.command.name or "?"
        try:
            raw = load_recipe(value, stage=stage, valid=list(by_name))
            typed = {k: O.coerce(by_name[k], v, f"{value}: key '{k}'") for k, v in raw.items()}
        except GlmvError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        ctx.default_map = {**(ctx.default_map or {}), **typed}
        return value

    return callback


def _flag_default(opts_cls: type, leaf: O.Leaf) -> Any:
    d = O.default_of(opts_cls, leaf)
    if d is dataclasses.MISSING:
        return inspect.Parameter.empty
    if leaf.meta.get("parse") is not None:
        return O.as_text(d)
    if isinstance(d, Path):
        return d
    return d


def _help(leaf: O.Leaf) -> str:
    h = leaf.help
    choices = leaf.meta.get("choices")
    if choices and "one of" not in h:
        h += f" [one of: {', '.join(map(str, choices))}]"
    return h


def _parameter(opts_cls: type, leaf: O.Leaf) -> inspect.Parameter:
    tp = O.cli_type(leaf)
    default = _flag_default(opts_cls, leaf)
    meta = leaf.meta
    if meta.get("argument"):
        info: Any = typer.Argument(help=_help(leaf), metavar=meta.get("metavar"))
    else:
        base, _ = O.unwrap_optional(tp)
        decl = [leaf.flag]
        if base is bool and meta.get("flag") is None:
            decl = [f"{leaf.flag}/--no-{leaf.flag[2:]}"]
        info = typer.Option(*decl, help=_help(leaf), metavar=meta.get("metavar"))
        if O.list_item(base) is not None and default is not inspect.Parameter.empty:
            tp = Optional[base]
            default = None if not default else list(default)
    return inspect.Parameter(leaf.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[tp, info])


def options_from_kwargs(opts_cls: type, kw: dict[str, Any]) -> Any:
    """The options object from the command's keyword arguments (lists given as None -> default)."""
    flat = {}
    for leaf in O.leaves(opts_cls):
        if leaf.name not in kw:
            continue
        v = kw[leaf.name]
        base, optional = O.unwrap_optional(leaf.type)
        if O.list_item(base) is not None:
            if optional and not v:
                v = None
            elif v is None and not optional:
                d = O.default_of(opts_cls, leaf)
                v = list(d) if d is not dataclasses.MISSING else []
            elif v is not None:
                v = list(v)
        flat[leaf.name] = v
    return O.build(opts_cls, flat, typed=True)


COMMANDS: dict[str, tuple[Callable[[Any], Any], type, Callable[[Any], None] | None]] = {}


def add_command(app: typer.Typer, name: str, run: Callable[[Any], Any], opts_cls: type, *, doc: str,
                report: Callable[[Any], None] | None = None) -> None:
    """Registers ``glmv <name>``: one flag per option of ``opts_cls``, ``--recipe``, then
    ``report(run(opts))``. ``run`` is the typed stage function (it validates its options)."""
    params = [_parameter(opts_cls, leaf) for leaf in O.leaves(opts_cls)]
    recipe = inspect.Parameter(
        "recipe", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[Path], typer.Option(
            "--recipe", help="YAML file of option defaults for this stage (flags override; unknown keys "
                             "and wrongly typed values are errors).",
            is_eager=True, callback=_recipe_callback(opts_cls), dir_okay=False)])

    def command(**kw: Any) -> None:
        kw.pop("recipe", None)
        try:
            result = run(options_from_kwargs(opts_cls, kw))
            if report is not None and result is not None:
                report(result)
        finally:
            _shutdown_dist()

    command.__signature__ = inspect.Signature(params + [recipe])  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    COMMANDS[name] = (run, opts_cls, report)
    app.command(name)(user_errors(command))


def _shutdown_dist() -> None:
    """Tears down a process group a training stage opened (no-op otherwise)."""
    mod = sys.modules.get("glmv_cli.training.dist")
    if mod is not None:
        mod.shutdown()
    sys.stdout.flush()


def invoke(name: str, opts: Any) -> Any:
    """Runs a registered stage on an options object (the command's code path, without argv)."""
    import glmv_cli.main  # noqa: F401  (registers every command)

    run, _, _ = COMMANDS[name]
    return run(opts)
