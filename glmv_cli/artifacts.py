"""Artifacts: directories that one stage writes and later stages read.

An artifact is a directory holding a ``manifest.json``. The manifest records the schema version,
the stage, the glmv version, UTC time, the resolved options, the inputs (path + sha256 of their
manifest), every output file with its sha256, metrics, and ``lineage``: the chain of parent
stages, oldest first. A directory without a complete manifest is never read as an input.

Writes are atomic: a stage writes into a deterministic hidden sibling ``.<name>.incomplete``
and renames it onto ``<name>`` when done; the manifest is the last file written. A crash leaves
the final path untouched. Training stages keep their resumable state in the staging directory
(``checkpoints/step-NNNNNNNN``) so ``--resume auto`` finds it after a kill. The staging directory
is exclusive: :class:`ArtifactWriter` takes its lock (``glmv_cli.locks``) before touching it, so
a second run on the same ``--out`` is refused, naming the holder.

The manifest carries its own ``integrity`` hash: the sha256 of every other field as canonical
JSON. A manifest edited by hand (options, metrics) no longer matches and is refused wherever it
is read, so edited numbers cannot flow into a child's lineage or a model card. It guards against
accidents and stale copies, not against someone who recomputes the hash.

Inputs are checked against their manifests before a stage uses them (:func:`verify_input`):
by default every listed file's size, plus the sha256 of any file modified after its manifest
was written (a copy that kept no mtimes is re-hashed; an intact artifact costs one ``stat``
per file); with ``--verify-inputs`` the sha256 of every file (~1.3 GB/s on one core).
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

from glmv_cli import __version__, locks
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, *, fsync: bool = False) -> str:
    """The file's sha256; ``fsync`` also flushes it to disk (the commit does, before the rename)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
        if fsync:
            os.fsync(f.fileno())
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
        raise GlmvError(f"{what} '{p}' has no {MANIFEST}: it is not a complete glmv artifact{_interrupted_hint(p)}")
    try:
        data = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GlmvError(f"{mf}:{e.lineno}: invalid JSON in manifest ({e.msg})") from None
    except UnicodeDecodeError:
        raise GlmvError(f"{mf}: malformed manifest (not UTF-8 text)") from None
    check_manifest_fields(mf, data)
    check_integrity(mf, data)
    m = Manifest(p.resolve(), data)
    if expect_stage is not None:
        allowed = [expect_stage] if isinstance(expect_stage, str) else list(expect_stage)
        if m.stage not in allowed:
            raise GlmvError(
                f"{what} '{p}' was written by stage '{m.stage}', expected one of: {', '.join(allowed)}"
            )
    return m


def _interrupted_hint(p: Path) -> str:
    """What a directory without a manifest probably is, and what to do about it."""
    stage = p if p.name.endswith(".incomplete") else staging_path(p)
    if not stage.is_dir():
        return ""
    if (stage / "run.json").is_file():
        return f" (an interrupted run is in '{stage}': run the same command with --resume auto to finish it)"
    return f" (an interrupted run left '{stage}': run the stage that writes '{p}' again)"


_HEX = frozenset("0123456789abcdef")


def _bad(mf: Path, msg: str) -> GlmvError:
    return GlmvError(f"{mf}: malformed manifest: {msg}")


def _check_file_table(mf: Path, key: str, table: Any) -> None:
    if not isinstance(table, dict):
        raise _bad(mf, f"field '{key}' must map file names to {{bytes, sha256}}, got {type(table).__name__}")
    for rel, info in table.items():
        parts = Path(rel).parts
        if not rel or rel.startswith("/") or ".." in parts or "\\" in rel:
            raise _bad(mf, f"field '{key}' lists '{rel}', which is not a path inside the artifact")
        if not isinstance(info, dict):
            raise _bad(mf, f"field '{key}.{rel}' must be an object with bytes and sha256")
        n, sha = info.get("bytes"), info.get("sha256")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(mf, f"field '{key}.{rel}.bytes' must be a byte count, got {n!r}")
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
            raise _bad(mf, f"field '{key}.{rel}.sha256' must be 64 hex digits, got {sha!r}")


def check_manifest_fields(mf: Path, data: Any) -> None:
    """Every field a reader relies on has its type; a GlmvError naming the field otherwise."""
    if not isinstance(data, dict):
        raise _bad(mf, f"expected a JSON object, got {type(data).__name__}")
    for key in ("schema_version", "stage", "files"):
        if key not in data:
            raise GlmvError(f"{mf}: field '{key}' is missing: not a glmv manifest")
    v = data["schema_version"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _bad(mf, f"field 'schema_version' must be a positive integer, got {v!r}")
    if v > SCHEMA_VERSION:
        raise GlmvError(f"{mf}: schema_version {v} is newer than this glmv understands ({SCHEMA_VERSION}); "
                        "upgrade glmv")
    if not isinstance(data["stage"], str) or not data["stage"]:
        raise _bad(mf, f"field 'stage' must be a stage name, got {data['stage']!r}")
    _check_file_table(mf, "files", data["files"])
    if "checkpoint_files" in data:
        _check_file_table(mf, "checkpoint_files", data["checkpoint_files"])
    for key in ("options", "metrics", "integrity"):
        if key in data and not isinstance(data[key], dict):
            raise _bad(mf, f"field '{key}' must be an object, got {type(data[key]).__name__}")
    for key in ("inputs", "lineage"):
        if key in data:
            if not isinstance(data[key], list) or not all(isinstance(e, dict) for e in data[key]):
                raise _bad(mf, f"field '{key}' must be a list of objects")
            for i, e in enumerate(data[key]):
                for sub, typ in (("stage", str), ("path", str), ("manifest_sha256", str)):
                    if sub in e and not isinstance(e[sub], typ):
                        raise _bad(mf, f"field '{key}[{i}].{sub}' must be a string, got {e[sub]!r}")
                for sub in ("options", "metrics"):
                    if sub in e and not isinstance(e[sub], dict):
                        raise _bad(mf, f"field '{key}[{i}].{sub}' must be an object")
    for key in ("created", "glmv_version"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise _bad(mf, f"field '{key}' must be a string, got {data[key]!r}")


def integrity_hash(data: dict[str, Any]) -> str:
    """sha256 of every field but ``integrity``, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in data.items() if k != "integrity"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def check_integrity(mf: Path, data: dict[str, Any]) -> None:
    """Refuses a manifest whose fields no longer match the integrity hash it was written with."""
    rec = data.get("integrity")
    if rec is None:
        return  # written before glmv recorded one; ``glmv info --verify`` says so
    want = rec.get("sha256")
    if want != integrity_hash(data):
        raise GlmvError(f"{mf}: the manifest was changed after it was written (its fields no longer match its "
                        "integrity hash); restore it or re-run the stage that wrote it")


def verify_files(m: Manifest) -> list[str]:
    """Returns a list of problems (missing file, size or hash mismatch); empty when intact."""
    return _file_problems(m, m.files, full=True)


def _file_problems(m: Manifest, table: dict[str, dict[str, Any]], *, full: bool) -> list[str]:
    """Missing, resized or (``full``, or modified after the manifest) re-hashed files of ``table``."""
    problems = []
    try:
        written = (m.path / MANIFEST).stat().st_mtime_ns
    except OSError:
        written = 0
    for rel, info in sorted(table.items()):
        f = m.path / rel
        try:
            st = f.stat()
        except OSError:
            st = None
        if st is None or not f.is_file():
            problems.append(f"{f}: listed in the manifest but missing")
            continue
        if "bytes" in info and st.st_size != info["bytes"]:
            problems.append(f"{f}: size {st.st_size} != manifest {info['bytes']}")
            continue
        if (full or st.st_mtime_ns > written) and sha256_file(f) != info.get("sha256"):
            problems.append(f"{f}: sha256 differs from the manifest")
    return problems


def verify_input(m: Manifest, full: bool = False, what: str = "input") -> Manifest:
    """Checks an input artifact's files against its manifest before a stage reads them: sizes, and
    the sha256 of files modified after the manifest (``full``: of every file). Returns ``m``."""
    problems = _file_problems(m, m.files, full=full)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GlmvError(f"{what} '{m.path}' does not match its manifest: {problems[0]}{more}; the artifact was "
                        "changed after it was written: restore it or re-run the stage that wrote it")
    return m


@dataclass
class InputChecks:
    """How much of each input artifact is checked against its manifest before a stage starts."""

    verify_inputs: bool = opt(False, "Re-hash every file of the input artifacts against their manifests (default: "
                                     "sizes, plus a hash of files modified after their manifest was written).")


def _real(p: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(p)))


def _within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def option_paths(opts: Any, skip: Iterable[str] = ("out",)) -> list[str]:
    """Every option value of ``opts`` that names an existing path (a stage's inputs, for
    :func:`check_out`); ``FILE:WEIGHT`` specs count as ``FILE``."""
    from glmv_cli import options as O

    found: list[str] = []
    for leaf in O.leaves(type(opts)):
        if leaf.name in skip:
            continue
        v = leaf.get(opts)
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            if not isinstance(item, (str, Path)) or not str(item):
                continue
            text = str(item)
            for cand in (text, text.rsplit(":", 1)[0]):
                if os.path.lexists(cand):
                    found.append(cand)
                    break
    return found


def check_out_parent(out: Path) -> None:
    """The nearest existing ancestor of ``out`` must be a writable directory."""
    for anc in Path(os.path.abspath(out)).parents:
        if not anc.exists() and not anc.is_symlink():
            continue
        if not anc.is_dir():
            raise GlmvError(f"--out '{out}': '{anc}' is a file, not a directory")
        if not os.access(anc, os.W_OK | os.X_OK):
            ro = _read_only_mount(anc)
            why = "is on a read-only file system" if ro else "is not writable (permission denied)"
            raise GlmvError(f"--out '{out}': the directory '{anc}' {why}; choose a writable path")
        return


def _read_only_mount(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_disjoint(out: Path, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuses an ``--out`` that is, contains or lies inside one of ``inputs`` (symlinks resolved)."""
    o = _real(out)
    for inp in inputs:
        if inp is None or not os.path.lexists(inp):
            continue
        i = _real(inp)
        if _within(o, i) or _within(i, o):
            how = "is" if o == i else ("lies inside" if _within(o, i) else "contains")
            raise GlmvError(f"--out '{out}' {how} the input '{inp}'; write the output somewhere else "
                            "(--overwrite never replaces an input)")


def check_out(out: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuses an unusable ``--out`` before any work (every stage calls this first):

    - one that is, contains or lies inside an input (``inputs``: paths), even with ``overwrite``,
      since replacing it would delete what the stage reads;
    - a parent that is a file, or a directory that is read-only or not writable;
    - an existing path unless ``overwrite``; with it, only a glmv artifact or an empty directory is
      replaced (never a file or somebody's directory of other things).
    """
    out = Path(out)
    check_disjoint(out, inputs)
    check_out_parent(out)
    if not (out.exists() or out.is_symlink()):
        return
    is_artifact = out.is_dir() and (out / MANIFEST).is_file()
    kind = "an artifact" if is_artifact else ("a directory" if out.is_dir() else "a file")
    if not overwrite:
        raise GlmvError(f"--out '{out}' already exists ({kind}); choose a new path or pass --overwrite")
    if not is_artifact and (not out.is_dir() or any(out.iterdir())):
        raise GlmvError(f"--out '{out}' already exists ({kind}, not a glmv artifact); --overwrite replaces only "
                        "artifacts and empty directories: choose a new path or remove it yourself")


class ArtifactWriter:
    """Writes one artifact atomically.

    >>> with ArtifactWriter(out, "pack", options=opts, inputs=[m]) as art:
    ...     (art.path / "x.safetensors").write_bytes(...)
    ...     art.metrics["packs"] = 12

    ``open()`` checks ``out`` (:func:`check_out`, with the inputs' paths), takes the staging
    directory's lock (a live holder is an error naming it; a provably dead one's lock is broken)
    and, unless ``resume``, empties the directory. On a clean exit every file under the staging
    directory is hashed (and fsynced), the manifest is written last and the directory is renamed
    onto ``out``. On an exception the staging directory is removed unless ``keep_on_error``
    (training keeps it for resume; the lock is released either way). ``out`` must not already be
    a complete artifact unless ``overwrite``.
    """

    def __init__(self, out: str | os.PathLike, stage: str, *, options: dict[str, Any] | None = None,
                 inputs: Iterable[Manifest] = (), overwrite: bool = False, resume: bool = False,
                 keep_on_error: bool = False, exclude: Iterable[str] = (), input_paths: Iterable[Any] = ()):
        self.out = Path(out)
        self.stage = stage
        self.options = dict(options or {})
        self.inputs = list(inputs)
        self.input_paths = [p for p in input_paths if p is not None]
        self.overwrite = overwrite
        self.resume = resume
        self.keep_on_error = keep_on_error
        self.exclude = tuple(exclude)
        self.metrics: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.path = staging_path(self.out)
        self._opened = False
        self._lock: dict[str, Any] | None = None
        self._made: list[Path] = []

    def check(self, lock: bool = True) -> None:
        """The checks of ``open()`` that need no write: --out usable and (``lock``) the staging dir
        not held by a live run."""
        check_out(self.out, self.overwrite, [*self.input_paths, *(m.path for m in self.inputs)])
        if lock:
            locks.check_free(self.path, self.out)

    def open(self) -> "ArtifactWriter":
        check_out(self.out, self.overwrite, [*self.input_paths, *(m.path for m in self.inputs)])
        parent = Path(os.path.abspath(self.out.parent))
        self._made = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again by abort()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock = locks.acquire(self.path, self.out)
        if not self.resume:
            for child in self.path.iterdir():
                if child.name == locks.LOCK or child.name.startswith(locks.LOCK + "."):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self._opened = True
        return self

    def __enter__(self) -> "ArtifactWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        elif not self.keep_on_error:
            self.abort()
        else:
            self.release()

    def release(self) -> None:
        """Gives up the lock and keeps the staging directory (for a resume)."""
        locks.release(self.path, self._lock)
        self._lock = None
        self._opened = False

    def abort(self) -> None:
        """Removes the staging directory, only if this writer holds its lock."""
        if self._lock is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        for made in self._made:  # deepest first; stops at the first one not empty
            try:
                made.rmdir()
            except OSError:
                break
        self._lock = None
        self._opened = False

    def _file_table(self, root: Path | None = None) -> dict[str, dict[str, Any]]:
        root = self.path if root is None else root
        files: dict[str, dict[str, Any]] = {}
        for f in sorted(root.rglob("*")):
            if not f.is_file():
                continue
            rel = f.relative_to(self.path).as_posix()
            if rel == MANIFEST or rel == locks.LOCK or rel.startswith(locks.LOCK + "."):
                continue
            if root == self.path and any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in self.exclude):
                continue
            files[rel] = {"bytes": f.stat().st_size, "sha256": sha256_file(f, fsync=True)}
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
        data = _jsonable({
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
        data["integrity"] = {"algorithm": "sha256 of the other fields as canonical JSON",
                             "sha256": integrity_hash(data)}
        return data

    def commit(self) -> Manifest:
        if not self._opened:
            raise RuntimeError("ArtifactWriter.commit() before open()")
        cur = locks.read_lock(self.path / locks.LOCK)
        if self._lock is None or cur is None or cur.get("token") != self._lock.get("token"):
            held = f" (now {locks.describe(cur)})" if cur else ""
            raise GlmvError(f"--out '{self.out}': this run lost the lock of '{self.path}'{held}; "
                            "not committing a directory another run may have written")
        data = self.manifest_dict()
        tmp = self.path / (MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / MANIFEST)
        if self.out.exists():  # only with overwrite=True
            trash = self.out.parent / f".{self.out.name}.replaced"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.out, trash)
            os.replace(self.path, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.path, self.out)
        locks.release(self.out, self._lock)
        _fsync_dir(self.out.parent)
        self._lock = None
        self._opened = False
        return Manifest(self.out.resolve(), data)


def _fsync_dir(d: Path) -> None:
    """Makes a rename in ``d`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
