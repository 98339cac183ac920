"""Bring your own data: readers that turn the layouts users already have into glmv records.

Two independent choices per input. The *container* (:mod:`.containers`): JSONL, a JSON array,
parquet, Arrow, a ``datasets`` folder or a Hub id. The *row format* (:mod:`.readers`): glmv,
messages (HF / TRL / OpenAI), sharegpt (LLaMA-Factory), verl, easyr1 -- detected per file from
its first row unless ``--format`` forces one. A row is converted to glmv's canonical record dict
and validated by :func:`glmv_cli.data.schema.parse_obj`, the one validator, so every format gets
the same ``file:row: field 'x': ...`` errors and the same ``--on-bad skip`` accounting.

glmv's own JSONL takes a fast path (:func:`read_record` hands the line to ``parse_record``), so
the common case costs what it did before readers existed.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from glmv_cli.data.formats.containers import Source, open_source
from glmv_cli.data.formats.readers import FORMATS, convert, detect
from glmv_cli.data.schema import Record, RecordError, parse_obj, parse_record
from glmv_cli.errors import GlmvError

__all__ = ["FORMATS", "Source", "convert", "decode_payload", "detect", "iter_records", "open_source",
           "read_record", "resolve_format"]


def decode_payload(payload: Any, path: str, line: int) -> Any:
    """A JSONL line's object (RecordError ``malformed_json`` when it is not JSON); dicts unchanged."""
    if not isinstance(payload, str):
        return payload
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        raise RecordError(path, line, None, f"malformed JSON ({e.msg} at column {e.colno})", "malformed_json") from None


def resolve_format(source: Source, fmt: str = "auto") -> str:
    """``fmt`` itself, or (``auto``) the format of the source's first row."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise GlmvError(f"--format must be auto or one of {', '.join(FORMATS)}, got '{fmt}'")
        return fmt
    first = source.first_row()
    if first is None:
        return "glmv"  # an empty input: nothing to detect, nothing to read
    line, payload = first
    try:
        obj = decode_payload(payload, source.name, line)
    except RecordError:
        return "glmv"  # the line's own error is reported when it is read
    found = detect(obj)
    if found is None:
        keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        raise GlmvError(f"{source.name}:{line}: cannot tell the row format (columns: {keys}); pass --format, one "
                        f"of {', '.join(FORMATS)} (docs/data-formats.md shows each)")
    return found


def read_record(payload: Any, fmt: str, *, path: str, line: int, mode: str, base_dir: str | None = None,
                check_files: bool = True) -> Record:
    """One row (JSONL text or a dict) read as ``fmt`` and validated."""
    if fmt == "glmv" and isinstance(payload, str):
        return parse_record(payload, path=path, line=line, mode=mode, base_dir=base_dir, check_files=check_files)
    obj = convert(fmt, decode_payload(payload, path, line), path, line)
    return parse_obj(obj, path=path, line=line, mode=mode, base_dir=base_dir, check_files=check_files)


def iter_records(source: Source, fmt: str, mode: str, *, check_files: bool = True
                 ) -> Iterator[tuple[int, Record | RecordError]]:
    """``(row, Record)`` or ``(row, RecordError)`` for every row of a source, in order."""
    for line, payload in source.rows():
        try:
            yield line, read_record(payload, fmt, path=source.name, line=line, mode=mode, base_dir=source.base_dir,
                                    check_files=check_files)
        except RecordError as e:
            yield line, e
