"""Artifacts: directories that one stage writes and later stages read.

An artifact is a directory holding a ``manifest.json``. The manifest records the schema version,
the stage, the glmv version, UTC time, the resolved options, the inputs (path + sha256 of their
manifest), every output file with its sha256, metrics, and ``lineage``: the chain of parent
stages, oldest first. A directory without a complete manifest is never read as an input.

Writes are atomic: a stage writes into a deterministic hidden sibling ``.<name>.incomplete``
and renames it onto ``<name>`` when done; the manifest is the last file written. A crash leaves
the final path untouched. Training stages keep their resumable state in the staging directory
(``checkpoints/step-NNNNNNNN``) so ``--resume auto`` finds it after a kill.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from glmv_cli import __version__
from glmv_cli.errors import GlmvError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staging_path(out: str | os.PathLike) -> Path:
    """The hidden sibling a stage writes into before the final rename."""
    out = Path(out)
    return out.parent / f".{out.name}.incomplete"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if hasattr(x, "item"):  # numpy / torch scalars
        return _jsonable(x.item())
    if hasattr(x, "value"):  # enums
        return _jsonable(x.value)
    return str(x)


@dataclass
class Manifest:
    """A parsed ``manifest.json`` plus the directory it describes."""

    path: Path
    data: dict[str, Any]

    @property
    def stage(self) -> str:
        return self.data["stage"]

    @property
    def options(self) -> dict[str, Any]:
        return self.data.get("options", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data.get("metrics", {})

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data.get("files", {})

    @property
    def lineage(self) -> list[dict[str, Any]]:
        return self.data.get("lineage", [])

    @property
    def sha256(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def lineage_entry(self) -> dict[str, Any]:
        """How this artifact appears in the lineage of its children."""
        return {
            "stage": self.stage,
            "path": str(self.path),
            "manifest_sha256": self.sha256,
            "created": self.data.get("created"),
            "options": self.options,
            "metrics": self.metrics,
        }


def read_manifest(path: str | os.PathLike, *, expect_stage: str | Iterable[str] | None = None,
                  what: str = "input") -> Manifest:
    """Reads an artifact directory; an error if it has no complete manifest.

    ``expect_stage`` restricts which stages may have produced it (the message lists them).
    """
    p = Path(path)
    if not p.exists():
        raise GlmvError(f"{what} '{p}' does not exist")
    if not p.is_dir():
        raise GlmvError(f"{what} '{p}' is not an artifact directory (expected a directory with {MANIFEST})")
    mf = p / MANIFEST
    if not mf.is_file():
        hint = ""
        if staging_path(p).exists() or p.name.startswith("."):
            hint = " (an interrupted run? resume it with --resume auto)"
        raise GlmvError(
            f"{what} '{p}' has no {MANIFEST}: it is not a complete glmv artifact{hint}"
        )
    try:
        data = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GlmvError(f"{mf}:{e.lineno}: invalid JSON in manifest ({e.msg})") from None
    for key in ("schema_version", "stage", "files"):
        if key not in data:
            raise GlmvError(f"{mf}: field '{key}' is missing: not a glmv manifest")
    if data["schema_version"] > SCHEMA_VERSION:
        raise GlmvError(
            f"{mf}: schema_version {data['schema_version']} is newer than this glmv understands "
            f"({SCHEMA_VERSION}); upgrade glmv"
        )
    m = Manifest(p.resolve(), data)
    if expect_stage is not None:
        allowed = [expect_stage] if isinstance(expect_stage, str) else list(expect_stage)
        if m.stage not in allowed:
            raise GlmvError(
                f"{what} '{p}' was written by stage '{m.stage}', expected one of: {', '.join(allowed)}"
            )
    return m


def verify_files(m: Manifest) -> list[str]:
    """Returns a list of problems (missing file, size or hash mismatch); empty when intact."""
    problems = []
    for rel, info in sorted(m.files.items()):
        f = m.path / rel
        if not f.is_file():
            problems.append(f"{f}: listed in the manifest but missing")
            continue
        if "bytes" in info and f.stat().st_size != info["bytes"]:
            problems.append(f"{f}: size {f.stat().st_size} != manifest {info['bytes']}")
            continue
        if sha256_file(f) != info.get("sha256"):
            problems.append(f"{f}: sha256 differs from the manifest")
    return problems


def check_out(out: Path, overwrite: bool) -> None:
    """Refuses an existing --out unless ``overwrite`` (every stage calls this before heavy work)."""
    out = Path(out)
    if out.exists() and not overwrite:
        kind = "an artifact" if (out / MANIFEST).exists() else ("a directory" if out.is_dir() else "a file")
        raise GlmvError(f"--out '{out}' already exists ({kind}); choose a new path or pass --overwrite")


class ArtifactWriter:
    """Writes one artifact atomically.

    >>> with ArtifactWriter(out, "pack", options=opts, inputs=[m]) as art:
    ...     (art.path / "x.safetensors").write_bytes(...)
    ...     art.metrics["packs"] = 12

    On a clean exit every file under the staging directory is hashed, the manifest is written
    last and the directory is renamed onto ``out``. On an exception the staging directory is
    removed unless ``keep_on_error`` (training keeps it for resume). ``out`` must not already be
    a complete artifact unless ``overwrite``.
    """

    def __init__(self, out: str | os.PathLike, stage: str, *, options: dict[str, Any] | None = None,
                 inputs: Iterable[Manifest] = (), overwrite: bool = False, resume: bool = False,
                 keep_on_error: bool = False, exclude: Iterable[str] = ()):
        self.out = Path(out)
        self.stage = stage
        self.options = dict(options or {})
        self.inputs = list(inputs)
        self.overwrite = overwrite
        self.resume = resume
        self.keep_on_error = keep_on_error
        self.exclude = tuple(exclude)
        self.metrics: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.path = staging_path(self.out)
        self._opened = False

    def open(self) -> "ArtifactWriter":
        check_out(self.out, self.overwrite)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.resume:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._opened = True
        return self

    def __enter__(self) -> "ArtifactWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        elif not self.keep_on_error:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _file_table(self) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = {}
        for f in sorted(self.path.rglob("*")):
            if not f.is_file():
                continue
            rel = f.relative_to(self.path).as_posix()
            if rel == MANIFEST or any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in self.exclude):
                continue
            files[rel] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
        return files

    def manifest_dict(self) -> dict[str, Any]:
        lineage: list[dict[str, Any]] = []
        seen: set[str] = set()
        for m in self.inputs:
            for entry in m.lineage + [m.lineage_entry()]:
                key = entry.get("manifest_sha256") or json.dumps(entry, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    lineage.append(entry)
        return _jsonable({
            "schema_version": SCHEMA_VERSION,
            "stage": self.stage,
            "glmv_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "options": self.options,
            "inputs": [{"stage": m.stage, "path": str(m.path), "manifest_sha256": m.sha256}
                       for m in self.inputs],
            "files": self._file_table(),
            "metrics": self.metrics,
            **self.extra,
            "lineage": lineage,
        })

    def commit(self) -> Manifest:
        if not self._opened:
            raise RuntimeError("ArtifactWriter.commit() before open()")
        data = self.manifest_dict()
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)
        if self.out.exists():  # only with overwrite=True
            trash = self.out.parent / f".{self.out.name}.replaced"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.out, trash)
            os.replace(self.path, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.path, self.out)
        self._opened = False
        return Manifest(self.out.resolve(), data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
