"""``glmv convert``: show how glmv reads the rows of a dataset, before packing or training on it.

Opens the input the way pack / grade-difficulty / rlcs do (container, row format detected or
``--format``, ``--domain-map``), reads ``--rows`` rows from ``--start`` and prints, per row, the
canonical glmv record it became -- messages with ``<image>`` placeholders, each image as its path
or as the embedded bytes' type and size, and domain / answer / extra -- or the exact error the
stages would stop on. ``--mode rl`` applies the RL checks (a reference answer, a domain the reward
registry knows). Nothing is written; the function returns the rows for Python callers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt
from glmv_cli.rewards.userfn import REWARD_FN_HELP

_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WEBP"))


@dataclass
class ConvertOptions:
    input: str = opt(help="The data: a JSONL / JSON / parquet / Arrow file, a datasets folder or hf:owner/name.",
                     flag="--input")
    rows: int = opt(3, "How many rows to show.", min=1)
    start: int = opt(1, "First row to show (1-based: a JSONL line, a JSON array element, a table row).", min=1)
    mode: str = opt("sft", "Check rows as glmv pack does in this mode (sft, pretrain) or as RL records (rl: a "
                           "reference answer and a known domain).", choices=("sft", "pretrain", "rl"))
    reward_config: Optional[Path] = opt(None, "rewards.yaml whose domains --mode rl accepts (default: built-in).")
    reward_fn: Optional[str] = opt(None, REWARD_FN_HELP)
    source: DataFormatConfig = field(default_factory=DataFormatConfig)
    domains: DomainConfig = field(default_factory=DomainConfig)

    def validate(self) -> "ConvertOptions":
        from glmv_cli import options

        return options.validate(self)


def describe_image(src: Any) -> str:
    """A path with its size, or the type, size and byte count of embedded bytes."""
    from glmv_cli.data.images import source_head, source_size

    try:
        w, h = source_size(src)
        dims = f"{w}x{h}"
    except FileNotFoundError:
        return f"{src} (missing)"
    except (OSError, ValueError) as e:
        dims = f"unreadable: {e}"
    if isinstance(src, str):
        return f"{src} ({dims})"
    head = source_head(src, 8)
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "image")
    return f"embedded {kind} {dims}, {len(src)} bytes"


def _content_text(content: list[dict]) -> str:
    return "".join(p["text"] if p["type"] == "text" else f"<{p['type']}>" for p in content)


def record_view(rec: Any) -> dict[str, Any]:
    """A readable, JSON-serialisable view of a validated Record."""
    out: dict[str, Any] = {"id": rec.id}
    if rec.kind == "chat":
        out["messages"] = [{"role": m["role"], "content": _content_text(m["content"])} for m in rec.messages]
    else:
        out["text"] = rec.text
    if rec.images:
        out["images"] = [describe_image(src) for src in rec.images]
    if rec.videos:
        out["videos"] = list(rec.videos)
    for k in ("domain", "answer", "difficulty", "extra"):
        if k in rec.meta:
            out[k] = rec.meta[k]
    return out


def convert(opts: ConvertOptions) -> dict[str, Any]:
    """Reads the requested rows; returns {input, format, container, rows: [{row, record | error}]}."""
    from glmv_cli.data.formats import read_record
    from glmv_cli.data.schema import RecordError

    opts.validate()
    src = opts.source.open(opts.input)
    fmt = opts.source.format_of(src)
    rl = None
    if opts.mode == "rl":
        from glmv_cli.rewards.scoring import load_config

        rl = load_config(opts.reward_config, reward_fn=opts.reward_fn)
    shown: list[dict[str, Any]] = []
    end = opts.start + opts.rows
    for line, payload in src.rows():
        if line < opts.start:
            continue
        if line >= end:
            break
        try:
            rec = read_record(payload, fmt, path=src.name, line=line, mode="pretrain" if rl else opts.mode,
                              base_dir=src.base_dir)
            view = record_view(rec)
            if rl is not None:
                from glmv_cli.rl.records import rl_record

                r = rl_record(rec, rl, opts.domains, rl.known_domains(), set())
                view["domain"], view["answer"] = r.domain, r.answer
            shown.append({"row": line, "record": view})
        except RecordError as e:
            shown.append({"row": line, "error": str(e)})
    if not shown:
        raise GlmvError(f"--input '{opts.input}' has no rows from row {opts.start} on")
    return {"input": src.name, "format": fmt, "detected": opts.source.format == "auto", "container": src.kind,
            "rows": shown}


def report(result: dict[str, Any]) -> None:
    how = "detected" if result["detected"] else "forced"
    print(f"{result['input']}: {result['container']} container, format {result['format']} ({how})")
    for r in result["rows"]:
        if "error" in r:
            print(f"row {r['row']}: error: {r['error']}")
        else:
            print(f"row {r['row']}: " + json.dumps(r["record"], ensure_ascii=False, indent=2, default=str))


DOC = """Show how glmv reads a dataset's rows: the detected format and, per row, the glmv record
it becomes (messages with <image> placeholders, images as paths or embedded bytes, domain,
answer) or the exact error pack / rlcs would stop on. See docs/data-formats.md.
"""


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "convert", convert, ConvertOptions, doc=DOC, report=report)
