"""``glmv info DIR``: print an artifact's manifest and its lineage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from glmv_cli.artifacts import MANIFEST, Manifest, read_manifest, verify_files
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt


def _short(v: object, width: int = 60) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= width else s[: width - 1] + "…"


def info(path: Path, *, as_json: bool = False, verify: bool = False, console: Console | None = None) -> dict:
    """Prints the manifest of ``path`` (a table, or raw JSON) and returns it."""
    m = read_manifest(path)
    console = console or Console(highlight=False)
    if as_json:
        console.print_json(json.dumps(m.data))
    else:
        head = Table(title=f"{m.path}", show_header=False)
        head.add_row("stage", m.stage)
        head.add_row("created", str(m.data.get("created")))
        head.add_row("glmv", str(m.data.get("glmv_version")))
        head.add_row("files", f"{len(m.files)} ({sum(f['bytes'] for f in m.files.values()):,} bytes)")
        for k, v in sorted(m.options.items()):
            head.add_row(f"option {k}", _short(v))
        for k, v in sorted(m.metrics.items()):
            head.add_row(f"metric {k}", _short(v))
        console.print(head)
        lin = Table(title="lineage (oldest first)")
        for col in ("#", "stage", "path", "created", "key metrics"):
            lin.add_column(col)
        chain = m.lineage + [m.lineage_entry()]
        for i, e in enumerate(chain):
            metrics = e.get("metrics") or {}
            keym = ", ".join(f"{k}={_short(v, 12)}" for k, v in list(metrics.items())[:4])
            lin.add_row(str(i), e.get("stage", "?"), _short(e.get("path", ""), 50), str(e.get("created")), keym)
        console.print(lin)
    if verify:
        problems = verify_files(m)
        ckpt = m.data.get("checkpoint_files") or {}
        if ckpt:
            problems += verify_files(Manifest(m.path, {**m.data, "files": ckpt}))
        if "integrity" not in m.data:
            problems.append(f"{m.path / MANIFEST}: no integrity hash (written by an older glmv, or "
                            "removed by hand): its options and metrics cannot be checked")
        if problems:
            raise GlmvError("artifact is damaged:\n  " + "\n  ".join(problems))
        extra = f" and {len(ckpt)} checkpoint files" if ckpt else ""
        console.print(f"verified {len(m.files)} files{extra}: all hashes match; the manifest's integrity hash matches")
    return m.data


@dataclass
class InfoOptions:
    path: Path = opt(help="Artifact directory (has a manifest.json).", argument=True, metavar="DIR")
    as_json: bool = opt(False, "Print the raw manifest as JSON.", flag="--json")
    verify: bool = opt(False, "Re-hash every file against the manifest.")


def info_stage(opts: InfoOptions) -> dict:
    return info(opts.path, as_json=opts.as_json, verify=opts.verify)


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "info", info_stage, InfoOptions,
                doc="Print an artifact's manifest: stage, options, metrics, files and lineage.")
