"""The one error type a user sees.

A `GlmvError` carries a message written for the user: it names the file, line, field or flag
at fault and what was expected. The CLI prints it as ``error: <message>`` and exits with code 2;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class GlmvError(Exception):
    """A user-facing error (bad input, bad option, missing artifact)."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Formats a location as ``file:line: field 'x'`` for error messages."""
    loc = str(path)
    if line is not None:
        loc += f":{line}"
    if field is not None:
        loc += f": field '{field}'"
    return loc
