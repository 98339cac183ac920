"""Where rows come from: JSONL, JSON arrays, and every container the ``datasets`` library reads.

``open_source(spec)`` picks the container from the spec:

==============================  ===========================================================
``hf:owner/name``               a Hub dataset through ``datasets.load_dataset`` (``--subset``,
                                ``--split``); offline it is read from the datasets cache
``DIR`` from ``save_to_disk``   ``datasets.load_from_disk`` (a DatasetDict needs ``--split``)
other ``DIR``                   ``datasets.load_dataset(DIR)``: a dataset repo checked out or
                                downloaded (``data/train-*.parquet`` ...), streamed
``*.parquet`` / ``*.arrow``     ``datasets.load_dataset("parquet" | "arrow", streaming=True)``
``*.jsonl``                     one JSON object per line (kept as text; parsed where encoded)
``*.json``                      a JSON array of rows (GLM-V's finetune.json, LLaMA-Factory
                                files), or JSONL when its first character is not ``[``
==============================  ===========================================================

Rows are ``(row, payload)`` pairs: ``row`` is 1-based (the line of a JSONL file, the element of
a JSON array, the row of a table), ``payload`` the line's text or the row's dict. Images of HF
``Image`` features are read with ``decode=False``: the row holds ``{"bytes", "path"}``, never a
decoded picture. Parquet and Arrow files are streamed (no Arrow copy in the cache); Hub datasets
are loaded (memory-mapped) so that they resolve from the cache when offline.

``fingerprint()`` identifies the data for run fingerprints and resume checks: the file's SHA-256,
the SHA-256 of a folder's files, or the Hub dataset's cache fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from glmv_cli.errors import GlmvError

HUB_PREFIX = "hf:"
FILE_KINDS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}


class Source:
    """One input: its rows, a name for messages, the directory relative image paths resolve in."""

    def __init__(self, spec: str, name: str, kind: str, base_dir: str | None, *, dataset: Any = None,
                 path: Path | None = None, hub: tuple | None = None):
        self.spec, self.name, self.kind, self.base_dir = spec, name, kind, base_dir
        self.path = path
        self._dataset = dataset
        self._hub = hub
        self._array: list | None = None

    def rows(self) -> Iterator[tuple[int, Any]]:
        if self.kind == "jsonl":
            with open(self.path, "rb") as fh:  # type: ignore[arg-type]
                for line, raw in enumerate(fh, start=1):
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise GlmvError(f"{self.name}:{line}: not UTF-8 text ({e.reason} at byte {e.start} of the "
                                        f"line){_binary_hint(Path(self.path))}") from None  # type: ignore[arg-type]
                    if text.strip():
                        yield line, text.rstrip("\r\n")
        elif self.kind == "json":
            yield from enumerate(self._load_array(), start=1)
        else:
            yield from self._dataset_rows()

    def first_row(self) -> tuple[int, Any] | None:
        return next(iter(self.rows()), None)

    def _load_array(self) -> list:
        if self._array is None:
            try:
                data = json.loads(Path(self.path).read_text(encoding="utf-8"))  # type: ignore[arg-type]
            except json.JSONDecodeError as e:
                raise GlmvError(f"{self.name}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno}); a .json "
                                "input is a JSON array of rows or one JSON object per line") from None
            except UnicodeDecodeError as e:
                raise GlmvError(f"{self.name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if not isinstance(data, list):
                raise GlmvError(f"{self.name}: expected a JSON array of rows, got a JSON {type(data).__name__} "
                                "(or write one JSON object per line)")
            self._array = data
        return self._array

    def _dataset_rows(self) -> Iterator[tuple[int, Any]]:
        ds = self._dataset
        if hasattr(ds, "to_iterable_dataset"):  # a map-style Dataset (memory-mapped Arrow)
            ds = ds.to_iterable_dataset()
        ds = ds.decode(False)  # HF Image features as {bytes, path}: no decode, no re-encode
        it = iter(ds)
        row = 0
        while True:
            try:
                obj = next(it)
            except StopIteration:
                return
            except Exception as e:  # pyarrow / fsspec errors of a damaged container
                raise GlmvError(f"{self.name}: cannot read row {row + 1} ({type(e).__name__}: {e})") from None
            row += 1
            yield row, obj

    def fingerprint(self) -> str:
        if self.kind in ("jsonl", "json", "parquet", "arrow"):
            from glmv_cli.artifacts import sha256_file

            return sha256_file(self.path)  # type: ignore[arg-type]
        if self.kind in ("dataset", "folder"):
            return folder_sha256(Path(self.path))  # type: ignore[arg-type]
        fp = getattr(self._dataset, "_fingerprint", None) or ""
        return hashlib.sha256(json.dumps([self.spec, *(self._hub or ()), fp]).encode()).hexdigest()


def folder_sha256(d: Path) -> str:
    """SHA-256 over a folder's files (relative names and contents, sorted by name)."""
    from glmv_cli.artifacts import sha256_file

    h = hashlib.sha256()
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(d).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def is_dataset_folder(p: Path) -> bool:
    """A ``save_to_disk`` folder, or a folder of parquet / Arrow files (a dataset repo's layout)."""
    if (p / "dataset_dict.json").is_file() or ((p / "dataset_info.json").is_file() and (p / "state.json").is_file()):
        return True
    return any(f.suffix in (".parquet", ".arrow") for f in p.rglob("*") if f.is_file())


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    return datasets


def _pick_split(obj: Any, split: str | None, what: str) -> Any:
    """A split of a DatasetDict / IterableDatasetDict (the only one when --split is not given)."""
    if not hasattr(obj, "keys"):
        return obj
    names = list(obj.keys())
    if split is None:
        if len(names) == 1:
            return obj[names[0]]
        raise GlmvError(f"{what} has splits {', '.join(names)}: pass --split")
    if split not in names:
        raise GlmvError(f"{what} has no split '{split}'; splits: {', '.join(names)}")
    return obj[split]


def _load(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except GlmvError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError, ValueError ...)
        hint = ""
        if "offline" in str(e).lower() or "couldn't reach" in str(e).lower():
            hint = (" (offline: a Hub dataset is read from the datasets cache, HF_DATASETS_CACHE; load it once "
                    "online with network access, or point --input at local parquet files)")
        raise GlmvError(f"{what}: cannot load it ({type(e).__name__}: {str(e)[:300]}){hint}") from None


def _hub_source(spec: str, split: str | None, subset: str | None, image_root: str | None, what: str) -> Source:
    repo = spec[len(HUB_PREFIX):]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise GlmvError(f"{what} '{spec}': expected hf:owner/name")
    label = f"{what} '{spec}'"
    datasets = _quiet_datasets()
    ds = _pick_split(_load(label, datasets.load_dataset, repo, name=subset, split=split), split, label)
    name = spec + (f"/{subset}" if subset else "") + (f"[{split}]" if split else "")
    return Source(spec, name, "hub", image_root or os.getcwd(), dataset=ds, hub=(subset, split))


def _folder_source(p: Path, split: str | None, subset: str | None, image_root: str | None, what: str) -> Source:
    label = f"{what} '{p}'"
    datasets = _quiet_datasets()
    if not is_dataset_folder(p):
        raise GlmvError(f"{label} is not a datasets folder (no save_to_disk files, no parquet or Arrow files)")
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        ds = _pick_split(_load(label, datasets.load_from_disk, str(p)), split, label)
        kind = "dataset"
    else:
        ds = _pick_split(_load(label, datasets.load_dataset, str(p), name=subset, split=split, streaming=True),
                         split, label)
        kind = "folder"
    name = str(p) + (f"[{split}]" if split else "")
    return Source(str(p), name, kind, image_root or str(p.resolve()), dataset=ds, path=p)


def open_source(spec: str, *, split: str | None = None, subset: str | None = None,
                image_root: str | os.PathLike | None = None, what: str = "--input") -> Source:
    """The :class:`Source` of an input spec (see the module docstring)."""
    root = str(Path(image_root).resolve()) if image_root is not None else None
    if spec.startswith(HUB_PREFIX):
        return _hub_source(spec, split, subset, root, what)
    p = Path(spec)
    if not p.exists():
        raise GlmvError(f"{what} '{spec}' does not exist")
    if p.is_dir():
        return _folder_source(p, split, subset, root, what)
    kind = FILE_KINDS.get(p.suffix.lower())
    if kind is None:
        raise GlmvError(f"{what} '{spec}': unknown file type '{p.suffix}' (expected .jsonl, .json, .parquet, "
                        ".arrow, a datasets folder, or hf:owner/name)")
    base = root or str(p.resolve().parent)
    if kind == "json" and _first_char(p) != "[":
        kind = "jsonl"  # .json files holding one object per line
    if kind in ("parquet", "arrow"):
        datasets = _quiet_datasets()
        ds = _load(f"{what} '{spec}'", datasets.load_dataset, kind, data_files=str(p), split="train", streaming=True)
        return Source(spec, str(p), kind, base, dataset=ds, path=p)
    return Source(spec, str(p), kind, base, path=p)


def _binary_hint(p: Path) -> str:
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PAR1"):
        return "; it is a parquet file: give it the .parquet suffix"
    if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        return "; it is an Arrow file: give it the .arrow suffix"
    return "; a .jsonl / .json input holds JSON text"


def _first_char(p: Path) -> str:
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(4096), b""):
            s = chunk.lstrip()
            if s:
                return s[:1].decode("latin-1")
    return ""
