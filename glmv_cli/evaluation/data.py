"""One loading path for a benchmark's rows, from the Hub or from local files, through ``datasets``.

Where the rows come from:

- Hub (no ``--data-dir``): ``datasets.load_dataset(path, config, split=...)`` for every config and
  split the spec names (``hub.data_files`` for repos that ship one JSON/TSV table), from the network
  or the local Hugging Face cache. Offline, a missing dataset is a GlmvError saying both ways to
  provide it.
- Local (``--data-dir DIR``): the same tables as files. For each config and split the first match of
  ``DIR/<benchmark>[/<config>][/data]/<split>{.ext,-*.ext}`` (ext: parquet, arrow, jsonl, json, tsv),
  or the spec's ``local`` file names; so a copy of the Hub repo's own file tree (``<config>/test-00000-
  of-00002.parquet``) is read as it is. A glmv synth artifact is its own data dir (``DIR/eval.jsonl``).
  Files go through ``datasets.load_dataset("parquet" | "json" | "csv" | "arrow", data_files=...)`` --
  the same loader and the same ``Image`` features as the Hub; a JSON table whose rows mix types per
  column (glmv synth ``scene`` objects) falls back to the standard library's JSON reader.

Image columns are cast to ``Image(decode=False)``: a cell is ``{bytes, path}`` and is decoded only
when the model needs it (``--check`` decodes every one). A cell may also be a path (relative to the
table's directory, or, for ``layout: hub_folder``, to the dataset's root -- on the Hub it is fetched
with ``hf_hub_download``), raw bytes, or base64 text (VLMEvalKit's TSVs).

Layouts: ``explode: COLUMN`` turns one row into one per element of a list column (RefCOCO's referring
expressions, MotionBench's ``qa`` list -- dict elements are merged into the row); ``layout: zip_json``
reads ``data.json`` and the images from inside a zip (OmniSpatial); ``layout: hub_folder`` resolves
image paths against the dataset root (ChartMuseum). Rows keep the benchmark's own schema; each
:class:`EvalRow` knows its split, config and source row, so errors and samples name them.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from glmv_cli.errors import GlmvError
from glmv_cli.evaluation.spec import TaskSpec, is_missing

TABLE_EXTS = (".parquet", ".arrow", ".jsonl", ".json", ".tsv")
_BUILDER = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".tsv": "csv"}


@dataclass(frozen=True)
class MediaRoot:
    """Where relative media paths resolve: a local directory, a Hub dataset repo or a zip file."""

    kind: str          # dir | hub | zip
    location: str      # directory, repo id, or zip file
    prefix: str = ""   # inside a zip: the folder holding data.json

    def describe(self, rel: str) -> str:
        if self.kind == "hub":
            return f"hf://datasets/{self.location}/{rel}"
        if self.kind == "zip":
            return f"{self.location}!{self.prefix}{rel}"
        return str(Path(self.location) / rel)


@dataclass
class EvalRow:
    """One asked item: the benchmark's row (after ``explode``) and where it came from."""

    task: str
    index: int                     # position in the task's row list
    split: str
    config: str | None
    source_row: int                # row number in its table (0-based)
    item: int | None               # element of the exploded list, if any
    dataset: str
    media: MediaRoot
    fetch: Callable[[], dict[str, Any]] = field(repr=False)

    @property
    def row(self) -> dict[str, Any]:
        return self.fetch()

    @property
    def key(self) -> str:
        """Stable identity of the row within the task (resume matches on it)."""
        parts = [self.split] + ([self.config] if self.config else []) + [str(self.source_row)]
        return "/".join(parts) + (f".{self.item}" if self.item is not None else "")

    def where(self, column: str | None = None) -> str:
        loc = f"dataset '{self.dataset}'" + (f" config '{self.config}'" if self.config else "")
        loc += f" split '{self.split}' row {self.source_row}" + (f" item {self.item}" if self.item is not None else "")
        return loc + (f" column '{column}'" if column else "")


# ------------------------------------------------------------------------------------- tables


def _offline() -> bool:
    flags = (os.environ.get("HF_DATASETS_OFFLINE", "0"), os.environ.get("HF_HUB_OFFLINE", "0"))
    return any(f.lower() in ("1", "true", "yes") for f in flags)


def missing_message(spec: TaskSpec, reason: str) -> str:
    hub, split = spec.hub, spec.splits[0]
    names = [c for c in spec.configs if c]
    where = (f"put its files at DATA_DIR/{spec.benchmark}/{split}.parquet (or .jsonl/.json/.tsv, or a copy of the "
             f"Hub repo's files; image/video paths relative to the file) and pass --data-dir DATA_DIR")
    if not hub.get("path"):
        return f"task {spec.task}: {reason}; {where}"
    cfg = f" (configs: {', '.join(names)})" if len(names) > 1 else (f" --config {names[0]}" if names else "")
    return (f"task {spec.task}: {reason}. Either download '{hub['path']}'{cfg} (split {split}) where there is "
            f"network (`hf download {hub['path']} --repo-type dataset`, or run once with network so datasets "
            f"caches it), or {where}")


def find_local_table(data_dir: Path, spec: TaskSpec, config: str | None, split: str) -> list[Path]:
    """The files holding one (config, split) under ``data_dir`` (several for a sharded Hub copy)."""
    base = data_dir / spec.benchmark
    dirs = ([base / config, base / config / "data"] if config else []) + [base / "data", base, data_dir]
    names = [n.format(split=split, config=config or "") for n in spec.local]
    for d in dirs:
        if not d.is_dir():
            continue
        for n in names:
            if (d / n).is_file():
                return [d / n]
        for ext in TABLE_EXTS:
            if (d / f"{split}{ext}").is_file():
                return [d / f"{split}{ext}"]
            shards = sorted(d.glob(f"{split}-*{ext}"))
            if shards:
                return shards
    return []


def _from_files(files: list[Path]):
    """A ``datasets.Dataset`` from local table files (one builder for all shards)."""
    import datasets

    ext = files[0].suffix
    kw: dict[str, Any] = {"delimiter": "\t"} if ext == ".tsv" else {}
    try:
        return datasets.load_dataset(_BUILDER[ext], data_files=[str(f) for f in files], split="train", **kw)
    except Exception as e:  # noqa: BLE001 - mixed-type JSON rows, or an unreadable file
        if ext in (".jsonl", ".json"):
            return datasets.Dataset.from_list([r for f in files for r in _read_json_rows(f)])
        raise GlmvError(f"{files[0]}: cannot read the table ({type(e).__name__}: {str(e)[:200]})") from None


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL / JSON-list file kept whole (each row's values as JSON text: datasets needs one
    type per column, glmv synth rows mix them); errors name file and line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GlmvError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise GlmvError(f"{path}: expected a JSON list of row objects")
        return [{"_glmv_json": json.dumps(r, ensure_ascii=False)} for r in data]
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GlmvError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise GlmvError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append({"_glmv_json": line})
    return rows


def _from_hub(spec: TaskSpec, config: str | None, split: str):
    import datasets

    hub = spec.hub
    kw: dict[str, Any] = {}
    if hub.get("data_files"):
        kw["data_files"] = hub["data_files"]
        if str(hub["data_files"]).endswith(".tsv"):
            kw["delimiter"] = "\t"
    try:
        return datasets.load_dataset(hub["path"], config, split=split, **kw)
    except Exception as e:  # noqa: BLE001 - every loading failure becomes the same user message
        why = ("it is not in the local Hugging Face cache and the network is off (HF_DATASETS_OFFLINE=1)"
               if _offline() else f"loading failed ({type(e).__name__}: {str(e)[:200]})")
        raise GlmvError(missing_message(spec, why)) from None


def _lazy_images(ds):
    """Image columns as ``{bytes, path}`` cells (decoded later, only when needed)."""
    import datasets

    for name, feat in ds.features.items():
        if isinstance(feat, datasets.Image) and feat.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feat, datasets.Sequence) and isinstance(feat.feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Sequence(datasets.Image(decode=False)))
        elif isinstance(feat, list) and feat and isinstance(feat[0], datasets.Image):
            ds = ds.cast_column(name, [datasets.Image(decode=False)])
    return ds


def _fetcher(ds, i: int, explode: str | None, item: int | None) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        r = dict(ds[i])
        if "_glmv_json" in r:
            r = json.loads(r["_glmv_json"])
        if item is not None:
            el = r[explode][item]
            r = {**r, **el} if isinstance(el, dict) else {**r, explode: el}
        return r
    return get


def _explode_counts(ds, column: str) -> list[int]:
    if "_glmv_json" in ds.column_names:
        return [len(json.loads(s).get(column) or []) for s in ds["_glmv_json"]]
    if column not in ds.column_names:
        return [0] * len(ds)
    return [len(v or []) for v in ds[column]]


def _rows_of(spec: TaskSpec, ds, split: str, config: str | None, media: MediaRoot, start: int) -> list[EvalRow]:
    explode = spec.get("explode")
    rows: list[EvalRow] = []
    counts = _explode_counts(ds, explode) if explode else None
    for i in range(len(ds)):
        items = [None] if counts is None else list(range(counts[i]))
        for k in items:
            rows.append(EvalRow(spec.task, start + len(rows), split, config, i, k, spec.dataset_label(), media,
                                _fetcher(ds, i, explode, k)))
    return rows


def _zip_rows(spec: TaskSpec, data_dir: Path | None, split: str) -> list[EvalRow]:
    """``layout: zip_json``: the zip holds ``<folder>/data.json`` and the images it names."""
    import datasets

    archive = str(spec.get("archive"))
    if data_dir is not None:
        z = data_dir / spec.benchmark / archive
        if not z.is_file():
            raise GlmvError(missing_message(spec, f"no {archive} under {data_dir / spec.benchmark}"))
    else:
        z = Path(_hub_file(spec, archive))
    with zipfile.ZipFile(z) as zf:
        names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "data.json"]
        if not names:
            raise GlmvError(f"{z}: the archive has no data.json")
        prefix = names[0][: -len("data.json")]
        try:
            data = json.loads(zf.read(names[0]))
        except json.JSONDecodeError as e:
            raise GlmvError(f"{z}!{names[0]}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise GlmvError(f"{z}!{names[0]}: expected a JSON list of row objects")
    template = spec.get("image_template")
    if template:  # OmniSpatial names no image: it is <task_type>/<id before "_">.png
        data = [{**r, "image": template.format(**r, id_head=str(r.get("id", "")).split("_")[0])}
                if "task_type" in r else r for r in data]
    ds = datasets.Dataset.from_list([{"_glmv_json": json.dumps(r, ensure_ascii=False)} for r in data])
    return _rows_of(spec, ds, split, None, MediaRoot("zip", str(z), prefix), 0)


def _hub_file(spec: TaskSpec, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(spec.hub["path"], filename, repo_type="dataset")
    except Exception as e:  # noqa: BLE001
        why = ("it is not in the local Hugging Face cache and the network is off" if _offline()
               else f"download failed ({type(e).__name__}: {str(e)[:200]})")
        raise GlmvError(missing_message(spec, f"{filename}: {why}")) from None


def load_rows(spec: TaskSpec, data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[EvalRow]:
    """Every row of the task (each config and split in spec order), at most ``limit``."""
    ddir = Path(data_dir).resolve() if data_dir else None
    if spec.layout == "zip_json":
        rows = [r for s in spec.splits for r in _zip_rows(spec, ddir, s)]
        return rows[:limit] if limit else rows
    if ddir is None and not spec.hub.get("path"):
        raise GlmvError(missing_message(spec, "this task has no Hub dataset"))
    rows: list[EvalRow] = []
    seen: set[tuple[Path, ...]] = set()
    for config in spec.configs:
        for split in spec.splits:
            cfg = config
            if ddir is not None:
                files = find_local_table(ddir, spec, config, split)
                if not files:
                    where = ddir / spec.benchmark / (config or "")
                    raise GlmvError(missing_message(spec, f"no {split}.parquet/.jsonl/.json/.tsv under {where}/"))
                if tuple(files) in seen:  # one table holding every config: read once
                    continue
                seen.add(tuple(files))
                if config and config not in files[0].parts:
                    cfg = None
                ds = _from_files(files)
                root = MediaRoot("dir", str(ddir / spec.benchmark if spec.layout == "hub_folder" else files[0].parent))
            else:
                ds = _from_hub(spec, config, split)
                root = MediaRoot("hub", str(spec.hub["path"]))
            rows.extend(_rows_of(spec, _lazy_images(ds), split, cfg, root, len(rows)))
            if limit and len(rows) >= limit:
                return rows[:limit]
    return rows


def drop_unlabeled(spec: TaskSpec, rows: list[EvalRow]) -> tuple[list[EvalRow], int]:
    """Rows whose gold is a placeholder the spec names (MotionBench's unlabelled ``NA``) are not asked;
    their count is reported."""
    rule = spec.get("unlabeled") or {}
    if not rule:
        return rows, 0
    kept = [er for er in rows if not any(str(er.row.get(c)) in map(str, vals) for c, vals in rule.items())]
    for i, er in enumerate(kept):
        er.index = i
    return kept, len(rows) - len(kept)


# ------------------------------------------------------------------------------------- media


def image_cells(spec: TaskSpec, row: dict[str, Any]) -> list[tuple[str, Any]]:
    """(column, cell) for every non-empty image cell of the row, in column order."""
    out = []
    for c in spec.cols("images"):
        v = row.get(c)
        for cell in (v if isinstance(v, (list, tuple)) else [v]):
            if not is_missing(cell) and not (isinstance(cell, dict) and not cell.get("bytes") and not cell.get("path")):
                out.append((c, cell))
    return out


def _b64(s: str) -> bytes | None:
    if len(s) < 64 or "/" in s[:8] and "." in s[-8:]:
        return None
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def media_bytes(cell: Any, root: MediaRoot) -> tuple[bytes | None, str | None]:
    """(bytes, None) when the cell holds its data, (None, location) when it names a file."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"]), None
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell), None
    if not isinstance(cell, str):
        raise GlmvError(f"cannot read media from a {type(cell).__name__} cell")
    data = _b64(cell)
    return (data, None) if data is not None else (None, cell)


def resolve_file(rel: str, root: MediaRoot) -> Path | bytes:
    """A local path, or the member's bytes for a zip; raises FileNotFoundError with the location."""
    if root.kind == "zip":
        with zipfile.ZipFile(root.location) as zf:
            try:
                return zf.read(root.prefix + rel)
            except KeyError:
                raise FileNotFoundError(root.describe(rel)) from None
    if root.kind == "hub":
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(root.location, rel, repo_type="dataset"))
        except Exception:  # noqa: BLE001 - offline or absent: the same message
            raise FileNotFoundError(root.describe(rel)) from None
    p = Path(rel)
    p = p if p.is_absolute() else Path(root.location) / p
    if not p.is_file():
        raise FileNotFoundError(str(p))
    return p


def open_image(cell: Any, root: MediaRoot):
    """A PIL RGB image from any image cell; GlmvError when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    data, rel = media_bytes(cell, root)
    try:
        if data is None:
            found = resolve_file(str(rel), root)
            data = found if isinstance(found, bytes) else Path(found).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise GlmvError(f"image '{e.args[0]}' does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise GlmvError(f"image cell is not a readable image ({type(e).__name__})") from None


def video_file(spec: TaskSpec, row: dict[str, Any], root: MediaRoot, data_dir: str | None) -> Path:
    """The local video file a row names (``columns.video`` + ``video_dir``/``video_ext``)."""
    name = str(row.get(spec.col("video")))
    p = Path(name)
    if not p.suffix:
        p = p.with_suffix(spec.get("video_ext", ".mp4"))
    if p.is_absolute():
        return p
    bases = ([Path(root.location)] if root.kind == "dir" else []) + ([Path(data_dir) / spec.benchmark] if data_dir else [])
    if not bases:
        raise GlmvError(f"{spec.benchmark} videos are read from local files: put them under DATA_DIR/"
                        f"{spec.benchmark}/{spec.get('video_dir', '')} and pass --data-dir DATA_DIR")
    cands = [b / spec.get("video_dir", "") / p for b in bases]
    return next((c for c in cands if c.is_file()), cands[-1])
