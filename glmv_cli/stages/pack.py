"""``glmv pack``: tokenise JSONL records and pack them into fixed-length rows for training.

Parse -> resolve inputs (JSONL files with optional ``:weight``, or artifact directories) -> validate
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


@dataclass
class PackOptions:
    model: str = opt(help="Model whose tokenizer and image processor are used: a glmv model artifact, a Hugging "
                          "Face directory or Hub id, or a preset (tiny).")
    inputs: list[str] = opt(help="JSONL file, FILE.jsonl:WEIGHT, or artifact directory; repeatable.", flag="--input")
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
    files: list[InputFile] = field(default_factory=list, repr=False, init=False)

    def check(self) -> None:
        if not self.inputs:
            raise GlmvError("--input is required (a JSONL file, FILE:WEIGHT, or an artifact directory)")
        self.files = [f for spec in self.inputs for f in resolve_input(spec, self.mode)]

    def validate(self) -> "PackOptions":
        from glmv_cli import options

        return options.validate(self)


def resolve_input(spec: str, mode: str) -> list[InputFile]:
    """``A.jsonl``, ``A.jsonl:0.5`` or an artifact directory -> the JSONL files it names.

    A directory must be an artifact; it contributes ``<mode>.jsonl`` when it has one (the layout of
    ``glmv synth``), else every ``.jsonl`` its manifest lists.
    """
    path, weight = spec, 1.0
    m = _WEIGHT.match(spec)
    if m and not Path(spec).exists():
        path, weight = m.group("path"), float(m.group("w"))
        if not math.isfinite(weight):
            raise GlmvError(f"--input '{spec}': weight must be a finite number >= 0")
    p = Path(path)
    if not p.exists():
        raise GlmvError(f"--input '{path}' does not exist")
    if p.is_dir():
        art = read_manifest(p, what="--input")
        names = sorted(f for f in art.files if f.endswith(".jsonl"))
        if f"{mode}.jsonl" in names:  # a glmv synth artifact: pretrain.jsonl / sft.jsonl / rl.jsonl / ...
            names = [f"{mode}.jsonl"]
        if not names:
            raise GlmvError(f"--input '{path}': the artifact has no .jsonl files")
        return [InputFile(str(p / n), weight, art) for n in names]
    art = read_manifest(p.parent, what="--input artifact") if (p.parent / MANIFEST).is_file() else None
    return [InputFile(str(p), weight, art)]


def model_format(model: str, processor: Any, style: str = "auto") -> Any:
    """The ``ChatFormat`` of ``model`` (a preset, directory or Hub id): its own chat template when it
    ships one, the style from that template (else from the model type) unless ``style`` is given."""
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.modeling import model_type

    return ChatFormat.of(processor, model_type(model), style)


# -- workers -------------------------------------------------------------------------------------

_ENCODER = None


def _make_encoder(model: str, mode: str, style: str, train_on: str):
    """(encoder, processor, chat format) for ``model``; ``style`` auto follows the model."""
    from glmv_cli.data.encode import Encoder
    from glmv_cli.modeling import load_processor

    proc = load_processor(model)
    fmt = model_format(model, proc, style)
    enc = Encoder(proc.tokenizer, proc.image_processor, mode=mode, style=fmt.style, train_on=train_on,
                  template=fmt.template)
    return enc, proc, fmt


def _init_worker(model: str, mode: str, style: str, train_on: str) -> None:
    global _ENCODER
    _ENCODER, _, _ = _make_encoder(model, mode, style, train_on)


def _work(items: list) -> list:
    from glmv_cli.data.encode import encode_lines

    return encode_lines(_ENCODER, items)


def _read_items(files: list[InputFile]) -> list[tuple[int, str, int, str]]:
    items = []
    for idx, f in enumerate(files):
        with open(f.path, encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if text.strip():
                    items.append((idx, f.path, line, text.rstrip("\r\n")))
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
                  initargs=(opts.model, opts.mode, style, opts.train_on)) as pool:
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
    """Runs the pack stage; returns the written artifact's manifest."""
    from glmv_cli.data.packed import PROCESSOR_CONFIG, tokenizer_identity
    from glmv_cli.data.packing import best_fit_decreasing, check_packing, pack_stats, repeat_counts, shuffle_packs
    from glmv_cli.data.schema import REASONS, RecordError
    from glmv_cli.data.storage import INDEX, write_index

    opts.validate()
    encoder, proc, fmt = _make_encoder(opts.model, opts.mode, opts.style, opts.train_on)
    style = fmt.style
    t0 = time.perf_counter()
    items = _read_items(opts.files)
    results = encode_all(items, opts, opts.style, encoder)
    t_encode = time.perf_counter() - t0

    dropped = {r: 0 for r in REASONS}
    per_input = [{"path": f.path, "weight": f.weight, "records_in": 0, "records_ok": 0, "records_out": 0}
                 for f in opts.files]
    kept: list[list[Any]] = [[] for _ in opts.files]
    for (idx, path, line, _), (status, value) in zip(items, results):
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

    with ArtifactWriter(opts.out, "pack", options=options, inputs=inputs, overwrite=opts.overwrite) as art:
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


DOC = """Tokenise JSONL records and pack them into rows of --seq-len tokens for pretrain / sft.

Records, one JSON object per line. Fields read: "id" (optional), "messages": [{"role":
system|user|assistant, "content": text with <image> / <video> placeholders, or [{"type": "text",
"text"}, {"type": "image"}, {"type": "video"}]; an assistant message may give its thinking apart
in "reasoning_content" (or "thinking"), trained as the <think> part}], "images" and "videos"
(paths relative to the file), or for pretraining {"text", "images", "videos"}; other fields
(domain, answer, difficulty, ...) are not read by pack. Conversations are rendered
with the model's own chat template when it ships one (glmv checks that the tokens it trains line
up with that rendering) and answers in the other model family's form are converted (GLM-4.1V
<answer> tags for a GLM-4.5V model and back). Each --input
is a JSONL file, optionally FILE:WEIGHT (a repeat / subsample factor, drawn with --seed), or an
artifact directory (its <mode>.jsonl, e.g. from glmv synth). Samples are never split;
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
