"""Shared pieces of the Typer commands: user-error handling and the ``--recipe`` option.

Stage modules define a typed stage function (callable from Python and tests) and a thin Typer
command over it. Decorate the command with :func:`user_errors` so a :class:`GlmvError` prints
``error: …`` and exits 2, and give it a ``recipe: RecipeOpt = None`` parameter.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import click
import typer
from rich.console import Console

from glmv_cli.errors import GlmvError
from glmv_cli.recipe import load_recipe

console = Console(stderr=True, highlight=False)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns GlmvError into ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GlmvError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _recipe_callback(ctx: click.Context, param: click.Parameter, value: Optional[Path]) -> Optional[Path]:
    if value is None or ctx.resilient_parsing:
        return value
    names = [p.name for p in ctx.command.params if p.name and p.name != "recipe"]
    try:
        defaults = load_recipe(value, stage=ctx.info_name or ctx.command.name or "?", valid=names)
    except GlmvError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


RecipeOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--recipe",
        help="YAML file of option defaults for this stage (flags override; unknown keys are errors).",
        is_eager=True,
        callback=_recipe_callback,
        dir_okay=False,
    ),
]
