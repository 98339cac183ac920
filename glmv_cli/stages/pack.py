"""``glmv pack``: tokenise records and pack them into fixed-length rows for training.

Parse -> resolve inputs (any container and row format of :mod:`glmv_cli.data.formats` -- glmv
JSONL, JSON arrays, parquet / Arrow, ``datasets`` folders, ``hf:`` ids; ShareGPT, HF / TRL /
OpenAI messages, verl, EasyR1 rows -- with optional ``:weight``, or artifact directories) -> validate
and encode every record (image headers, tokens, labels, 4-row position ids; ``--workers``
processes, output identical for any count) -> stop on the first bad record (``--on-bad fail``,
nothing written) or count it -> drop or reject samples over ``--seq-len`` -> apply the input
weights (seeded) -> best-fit-decreasing packing -> seeded pack order -> safetensors shards,
``packs.json``, ``preprocessor_config.json`` and the manifest (records in/out, drops by reason,
packs, tokens, fill efficiency, tokenizer identity).

Cost: packing itself is ~1.5 us per sample (glmv_cli/data/packing.py); the run is dominated by
tokenising and image headers, 2-4k small multimodal records/s per worker measured on the loaded
shared dev machine (benchmarks/pack_bench.py), plus reading the image bytes into the shards.

Videos (``"videos": [file or frame folder]`` with ``<video>`` placeholders) cost a container
header read (~10 ms on the loaded dev box) at pack time; their files are stored as read and
decoded by the reader.
Unusable videos are bad records (reasons ``bad_video``, ``missing_video``, ``video_too_long``,
``video_count``); clips spread over the 300 s cap or paired from one frame are counted under
``video_handling`` in the manifest.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import MANIFEST, ArtifactWriter, Manifest, read_manifest
from glmv_cli.data.formats.options import DataFormatConfig
from glmv_cli.data.images import ImageSizeConfig
from glmv_cli.errors import GlmvError
from glmv_cli.names import STYLE_CHOICES
from glmv_cli.options import opt

MODES = ("pretrain", "sft")
SHARD_PACKS = 4096           # packs per shard at most ...
SHARD_BYTES = 1 << 30        # ... and about this many bytes of images
CHUNK = 256                  # records per worker task: amortises IPC, keeps order cheap to restore
_WEIGHT = re.compile(r"^(?P<path>.+):(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


@dataclass
class InputFile:
    path: str
    weight: float
    artifact: Optional[Manifest] = None
    source: Any = None   # glmv_cli.data.formats.Source (opened by PackOptions.check)
    format: str = ""     # the row format, forced or detected


@dataclass
class PackOptions:
    model: str = opt(help="Model whose tokenizer and image processor are used: a glmv model artifact, a Hugging "
                          "Face directory or Hub id, or a preset (tiny).")
    inputs: list[str] = opt(help="Data: a JSONL / JSON / parquet / Arrow file, a datasets folder, hf:owner/name, or a "
                                 "glmv artifact directory; SPEC:WEIGHT repeats or subsamples it; repeatable.",
                            flag="--input")
    out: Path = opt(help="Output artifact directory.")
    mode: str = opt("sft", "pretrain (all text tokens trained) or sft (assistant turns only).", choices=MODES)
    seq_len: int = opt(8192, "Tokens per packed row.", min=1)
    workers: int = opt(1, "Tokenising processes (does not change the output).", min=1)
    seed: int = opt(0, "Seed for :WEIGHT sampling and the pack order.")
    on_bad: str = opt("fail", "fail: stop before writing anything; skip: count bad records and go on.",
                      choices=("fail", "skip"))
    on_overlong: str = opt("drop", "drop (counted in the manifest) or fail on samples longer than --seq-len.",
                           choices=("drop", "fail"))
    style: str = opt("auto", "Answer format: auto (from the model's chat template, else its type), glm41v "
                             "(<answer> tags) or glm45v (none). Records in the other family's form are converted.",
                     choices=STYLE_CHOICES)
    train_on: str = opt("last", "sft: train the assistant turns after the last user turn (last) or all of them "
                                "(all).", choices=("last", "all"))
    overwrite: bool = opt(False, "Replace an existing --out.")
    source: DataFormatConfig = field(default_factory=DataFormatConfig)
    images: ImageSizeConfig = field(default_factory=ImageSizeConfig)
    files: list[InputFile] = field(default_factory=list, repr=False, init=False)

    def check(self) -> None:
        if not self.inputs:
            raise GlmvError("--input is required (a data file, FILE:WEIGHT, hf:owner/name, or an artifact directory)")
        self.source.check()
        self.files = [f for spec in self.inputs for f in resolve_input(spec, self.mode, self.source)]

    def validate(self) -> "PackOptions":
        from glmv_cli import options

        return options.validate(self)


def resolve_input(spec: str, mode: str, source: DataFormatConfig | None = None) -> list[InputFile]:
    """An ``--input`` spec (optionally ``SPEC:WEIGHT``) -> the inputs it names, each opened as a
    :class:`glmv_cli.data.formats.Source` with its row format.

    A directory with a manifest is a glmv artifact; it contributes ``<mode>.jsonl`` when it has one
    (the layout of ``glmv synth``), else every ``.jsonl`` its manifest lists. A ``save_to_disk``
    folder or one holding parquet / Arrow files is a ``datasets`` folder; files and
    ``hf:owner/name`` are read by their container.
    """
    from glmv_cli.data.formats.containers import HUB_PREFIX, is_dataset_folder

    source = source or DataFormatConfig()
    path, weight = spec, 1.0
    m = _WEIGHT.match(spec)
    if m and not Path(spec).exists():
        path, weight = m.group("path"), float(m.group("w"))
        if not math.isfinite(weight):
            raise GlmvError(f"--input '{spec}': weight must be a finite number >= 0")

    def opened(name: str, art: Optional[Manifest] = None) -> InputFile:
        src = source.open(name)
        return InputFile(name, weight, art, src, source.format_of(src))

    if path.startswith(HUB_PREFIX):
        return [opened(path)]
    p = Path(path)
    if not p.exists():
        raise GlmvError(f"--input '{path}' does not exist")
    if p.is_dir() and (p / MANIFEST).is_file():
        art = read_manifest(p, what="--input")
        names = sorted(f for f in art.files if f.endswith(".jsonl"))
        if f"{mode}.jsonl" in names:  # a glmv synth artifact: pretrain.jsonl / sft.jsonl / rl.jsonl / ...
            names = [f"{mode}.jsonl"]
        if not names:
            raise GlmvError(f"--input '{path}': the artifact has no .jsonl files")
        return [opened(str(p / n), art) for n in names]
    if p.is_dir():
        if not is_dataset_folder(p):
            read_manifest(p, what="--input")  # says what a glmv artifact directory lacks
        return [opened(str(p))]
    art = read_manifest(p.parent, what="--input artifact") if (p.parent / MANIFEST).is_file() else None
    return [opened(str(p), art)]


def model_format(model: str, processor: Any, style: str = "auto") -> Any:
    """The ``ChatFormat`` of ``model`` (a preset, directory or Hub id): its own chat template when it
    ships one, the style from that template (else from the model type) unless ``style`` is given."""
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.modeling import model_type

    return ChatFormat.of(processor, model_type(model), style)


# -- workers -------------------------------------------------------------------------------------

_ENCODER = None


def _make_encoder(model: str, mode: str, style: str, train_on: str, limits: ImageSizeConfig | None = None):
    """(encoder, processor, chat format) for ``model``; ``style`` auto follows the model."""
    from glmv_cli.data.encode import Encoder
    from glmv_cli.data.images import apply_pixel_limits
    from glmv_cli.modeling import load_processor

    proc = load_processor(model)
    apply_pixel_limits(proc.image_processor, limits)  # before the Encoder reads the processor's size
    fmt = model_format(model, proc, style)
    enc = Encoder(proc.tokenizer, proc.image_processor, mode=mode, style=fmt.style, train_on=train_on,
                  template=fmt.template)
    return enc, proc, fmt


def _init_worker(model: str, mode: str, style: str, train_on: str, limits: ImageSizeConfig | None) -> None:
    global _ENCODER
    _ENCODER, _, _ = _make_encoder(model, mode, style, train_on, limits)


def _work(items: list) -> list:
    from glmv_cli.data.encode import encode_lines

    return encode_lines(_ENCODER, items)


def _read_items(files: list[InputFile], store: Any = None) -> list[tuple]:
    """``(input index, name, row, payload, format, base dir)`` per row of every input, in order.

    Row dicts of containers have their image bytes moved into ``store`` (a BlobStore) when one is
    given, so the item list and the worker traffic hold only references."""
    from glmv_cli.data.formats import open_source, resolve_format

    items = []
    for idx, f in enumerate(files):
        src = f.source if f.source is not None else open_source(f.path)
        fmt = f.format or resolve_format(src)
        for line, payload in src.rows():
            if store is not None and not isinstance(payload, str):
                payload = store.spill(payload)
            items.append((idx, src.name, line, payload, fmt, src.base_dir))
    if store is not None:
        store.flush()
    return items


def encode_all(items: list, opts: PackOptions, style: str, encoder=None) -> list:
    """Encodes every item in order; in ``opts.workers`` processes when > 1."""
    from glmv_cli.data.encode import encode_lines

    if opts.workers == 1:
        return encode_lines(encoder, items)
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    out: list = []
    with ctx.Pool(opts.workers, initializer=_init_worker,
                  initargs=(opts.model, opts.mode, style, opts.train_on, opts.images)) as pool:
        for part in pool.imap(_work, chunks):
            out.extend(part)
    return out


# -- the stage -----------------------------------------------------------------------------------

def _write_shards(directory: Path, packs: list[list[Any]]) -> list[dict]:
    from glmv_cli.data.storage import Sample, shard_name, write_shard

    shards, cur, cur_bytes = [], [], 0

    def flush():
        nonlocal cur, cur_bytes
        if cur:
            shards.append(write_shard(directory / shard_name(len(shards)), cur))
        cur, cur_bytes = [], 0

    from glmv_cli.data.encode import media_bytes

    for members in packs:
        pack = []
        for e in members:
            blobs = media_bytes(e)
            cur_bytes += sum(len(b) for b in blobs)
            pack.append(Sample(e.input_ids, e.labels, e.positions, blobs, e.grids, e.source, list(e.kinds)))
        cur.append(pack)
        if len(cur) >= SHARD_PACKS or cur_bytes >= SHARD_BYTES:
            flush()
    flush()
    return shards


def pack(opts: PackOptions) -> Manifest:
    """Runs the pack stage; returns the written artifact's manifest. Image bytes of container rows
    are spilled to a scratch file next to --out while the stage runs (glmv_cli.data.blobs)."""
    from glmv_cli.data.blobs import BlobStore

    opts.validate()
    encoder, proc, fmt = _make_encoder(opts.model, opts.mode, opts.style, opts.train_on, opts.images)
    containers = any(f.source.kind not in ("jsonl", "json") for f in opts.files)
    store = BlobStore(Path(opts.out).resolve().parent) if containers else None
    try:
        return _pack(opts, fmt, encoder, proc, store)
    finally:
        if store is not None:
            store.close()


def _tally(items: list, results: list, opts: PackOptions) -> tuple[dict, list[dict], list[list[Any]]]:
    """(drops by reason, per-input counts, kept samples per input); raises on the first bad or
    overlong record when told to fail."""
    from glmv_cli.data.schema import REASONS, RecordError

    dropped = {r: 0 for r in REASONS}
    per_input = [{"path": f.path, "weight": f.weight, "format": f.format, "container": f.source.kind,
                  "records_in": 0, "records_ok": 0, "records_out": 0} for f in opts.files]
    kept: list[list[Any]] = [[] for _ in opts.files]
    for (idx, path, line, *_), (status, value) in zip(items, results):
        per_input[idx]["records_in"] += 1
        if status == "bad":
            err = RecordError.from_tuple(value)
            if opts.on_bad == "fail":
                raise err
            dropped[err.reason] += 1
            continue
        if len(value) > opts.seq_len:
            if opts.on_overlong == "fail":
                raise GlmvError(f"{path}:{line}: the sample has {len(value)} tokens, more than --seq-len "
                                f"{opts.seq_len} (pass --on-overlong drop to skip such samples)")
            dropped["overlong"] += 1
            continue
        per_input[idx]["records_ok"] += 1
        kept[idx].append(value)
    return dropped, per_input, kept


def _lineage(opts: PackOptions) -> list[Manifest]:
    """The input artifacts and the model artifact (when --model is one), each once."""
    inputs, seen = [], set()
    for f in opts.files:
        if f.artifact is not None and str(f.artifact.path) not in seen:
            seen.add(str(f.artifact.path))
            inputs.append(f.artifact)
    model_dir = Path(opts.model)
    for cand in ((model_dir, model_dir.parent) if model_dir.is_dir() else ()):
        if (cand / MANIFEST).is_file() and str(cand.resolve()) not in seen:
            seen.add(str(cand.resolve()))
            inputs.append(read_manifest(cand, what="--model artifact"))
            break
    return inputs


def _pack(opts: PackOptions, fmt: Any, encoder: Any, proc: Any, store: Any) -> Manifest:
    from glmv_cli.data.packed import PROCESSOR_CONFIG, tokenizer_identity
    from glmv_cli.data.packing import best_fit_decreasing, check_packing, pack_stats, repeat_counts, shuffle_packs
    from glmv_cli.data.storage import INDEX, write_index

    style = fmt.style
    t0 = time.perf_counter()
    items = _read_items(opts.files, store)
    results = encode_all(items, opts, style, encoder)
    t_encode = time.perf_counter() - t0
    dropped, per_input, kept = _tally(items, results, opts)

    samples = []
    for idx, (f, recs) in enumerate(zip(opts.files, kept)):
        counts = repeat_counts(len(recs), f.weight, opts.seed, idx)
        for e, c in zip(recs, counts.tolist()):
            samples.extend([e] * c)
        per_input[idx]["records_out"] = int(counts.sum())

    if not samples:
        drops = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none"
        raise GlmvError(f"nothing to pack: {len(items)} record(s) read from {len(opts.files)} input file(s), "
                        f"0 left (dropped: {drops}; weights: {', '.join(str(f.weight) for f in opts.files)})")
    lengths = [len(s) for s in samples]
    order = best_fit_decreasing(lengths, opts.seq_len)
    check_packing(lengths, order, opts.seq_len)
    order = shuffle_packs(order, opts.seed)
    stats = pack_stats(lengths, order, opts.seq_len)
    t_pack = time.perf_counter() - t0 - t_encode

    ident = tokenizer_identity(proc.tokenizer)
    from glmv_cli import options as O

    options = O.flat_dict(opts)
    options["style"] = style
    with ArtifactWriter(opts.out, "pack", options=options, inputs=_lineage(opts), overwrite=opts.overwrite) as art:
        packs = [[samples[i] for i in members] for members in order]
        shards = _write_shards(art.path, packs)
        proc.image_processor.to_json_file(str(art.path / PROCESSOR_CONFIG))
        n_videos = int(sum(sum(s.kinds) for s in samples))
        video_extra = {"video_settings": asdict(encoder.video)} if n_videos else {}
        write_index(art.path, shards, seq_len=opts.seq_len, mode=opts.mode, style=style,
                    image_token_id=encoder.image_token_id, tokenizer=ident,
                    image_settings=encoder.settings.as_dict(), seed=opts.seed, inputs=per_input, **video_extra)
        n_in = len(items)
        label_tokens = int(sum(int((s.labels != -100).sum()) for s in samples))
        seconds = time.perf_counter() - t0
        art.metrics.update({
            "records_in": n_in,
            "records_ok": sum(p["records_ok"] for p in per_input),
            "records_out": len(samples),
            "dropped": {k: v for k, v in dropped.items() if v},
            "packs": stats.packs,
            "tokens": stats.tokens,
            "label_tokens": label_tokens,
            "images": int(sum(len(s.grids) for s in samples)) - n_videos,
            "fill_efficiency": round(stats.fill, 6),
            "packs_lower_bound": stats.lower_bound,
            "max_pack_tokens": int(max((sum(lengths[i] for i in m) for m in order), default=0)),
            "shards": len(shards),
            "seconds": round(seconds, 3),
            "seconds_encode": round(t_encode, 3),
            "seconds_pack": round(t_pack, 3),
            "records_per_s": round(n_in / t_encode, 1) if t_encode > 0 else None,
        })
        notes: dict[str, int] = {}
        for s in samples:
            for n in s.notes:
                notes[n] = notes.get(n, 0) + 1
        # records whose answers were rewritten into the model's family's form, and whose labels were
        # carried over to the model's own chat template (its text differs from glmv's rendering)
        art.metrics["answers_converted"] = notes.pop("answer_converted", 0)
        art.metrics["template_realigned"] = notes.pop("template_realigned", 0)
        if n_videos:  # only then: image-only manifests are unchanged
            art.metrics["videos"] = n_videos
            art.metrics["video_handling"] = notes
        art.extra.update({"tokenizer": ident, "seq_len": opts.seq_len, "mode": opts.mode,
                          "index": INDEX, "per_input": per_input, "chat_template": fmt.source})
    return read_manifest(opts.out)


DOC = """Tokenise records and pack them into rows of --seq-len tokens for pretrain / sft.

Records in glmv's layout (JSONL, one object per line) or the layouts other tools write -- HF /
TRL / OpenAI messages, ShareGPT (LLaMA-Factory), verl, EasyR1 -- in JSONL, JSON arrays (GLM-V's
finetune.json), parquet, Arrow, datasets folders or hf:owner/name (docs/data-formats.md; glmv
convert shows how rows are read). glmv fields read: "id" (optional), "messages": [{"role":
system|user|assistant, "content": text with <image> / <video> placeholders, or [{"type": "text",
"text"}, {"type": "image"}, {"type": "video"}]; an assistant message may give its thinking apart
in "reasoning_content" (or "thinking"), trained as the <think> part}], "images" and "videos"
(paths relative to the file), or for pretraining {"text", "images", "videos"}; other fields
(domain, answer, difficulty, ...) are not read by pack. Conversations are rendered
with the model's own chat template when it ships one (glmv checks that the tokens it trains line
up with that rendering) and answers in the other model family's form are converted (GLM-4.1V
<answer> tags for a GLM-4.5V model and back). Each --input
may be SPEC:WEIGHT (a repeat / subsample factor, drawn with --seed) or an artifact directory (its
<mode>.jsonl, e.g. from glmv synth). --image-max-pixels / --image-min-pixels bound each image.
Samples are never split;
best-fit-decreasing packing fills ~99.9 % of the slots. Each row carries 4-row position ids (text
positions restarting per sample + 3D-RoPE ids) so packed samples do not see each other. A bad
record stops the run before anything is written (--on-bad fail) or is counted and skipped
(--on-bad skip); errors name file:line and the field. Read the result with
glmv_cli.data.packed.PackedDataset(DIR).
"""


def report(m: Manifest) -> None:
    x = m.metrics
    drops = ", ".join(f"{k} {v}" for k, v in x["dropped"].items()) or "none"
    print(f"wrote {m.path}: {x['records_out']} samples from {x['records_in']} records in {x['packs']} packs, "
          f"{x['tokens']} tokens, fill {x['fill_efficiency'] * 100:.2f} %, dropped: {drops}")


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "pack", pack, PackOptions, doc=DOC, report=report)
