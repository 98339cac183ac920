"""The ``glmv`` command: one subcommand per pipeline stage, nothing else.

Each module in ``glmv_cli.stages`` that defines ``register(app)`` contributes its command(s).
A stage that is not built has no module, so no placeholder command ever appears.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Annotated, Optional

import typer

from glmv_cli import __version__

# Pipeline order for --help; stages not listed come after, alphabetically.
ORDER = ["synth", "convert", "pack", "pretrain", "extend_context", "sft", "grade_difficulty", "rlcs", "eval", "serve",
         "push", "reward", "info"]

app = typer.Typer(
    name="glmv",
    help="Train vision-language reasoning models the GLM-4.1V-Thinking / GLM-4.5V way. "
         "Every stage reads and writes artifact directories (safetensors + manifest.json).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"glmv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                          help="Print the version and exit.")] = None) -> None:
    pass


def _register_stages() -> None:
    import glmv_cli.stages as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        mod = importlib.import_module(f"glmv_cli.stages.{name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(app)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_register_stages()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
