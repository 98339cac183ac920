"""Benchmark: ``glmv pack`` on a parquet file with embedded images vs the same data as JSONL + PNG files.

Data: ``--records`` (default 10,000) SFT records with one or two images each (PNGs of 64..320 px,
a few filled ellipses on a plain background, ~1-5 kB; drawn from a pool of 200 pictures, but
every occurrence is its own file / its own embedded copy, so both forms hold the same bytes).
Form A, the baseline: glmv JSONL with ``images`` as relative paths, one PNG file per image.
Form B: one parquet file written by ``datasets`` (``messages`` + an HF ``Image`` list holding
the PNG bytes), read by pack through ``datasets`` streaming with ``decode=False``: image bytes
are spilled to a scratch file (glmv_cli.data.blobs), sizes come from the headers, the bytes
stored in the pack are the embedded ones.

Both are packed by the tiny model's tokenizer and processor at --seq-len 8192, one worker,
in-process, alternating A, B, A, B, ... for ``--repeats`` rounds after a warm-up of each; the
figures are the best round of each (wall seconds and CPU seconds of this process,
``time.process_time``, which a busy shared machine distorts less). Also reported: the time to
read the rows alone (JSONL lines vs parquet rows with their bytes spilled), and a check that
the two packs are identical tensor for tensor.

Run: ``OMP_NUM_THREADS=1 python benchmarks/formats_bench.py [--records 10000] [--repeats 2]``;
prints one JSON object; the figure of interest is ``ratio_wall`` / ``ratio_cpu`` (B / A).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def picture_pool(n: int = 200, seed: int = 0) -> list[bytes]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        w, h = (int(x) for x in rng.integers(64, 321, size=2))
        im = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(180, 256, size=3)))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(2, 8))):
            x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
            box = (x0, y0, x0 + int(rng.integers(4, 40)), y0 + int(rng.integers(4, 40)))
            draw.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 180, size=3)))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        pool.append(buf.getvalue())
    return pool


def make_data(d: Path, n: int, seed: int = 0) -> tuple[Path, Path, int, int]:
    """(jsonl, parquet, images, image bytes) of the same n records."""
    import datasets

    pool = picture_pool(seed=seed)
    rng = np.random.default_rng(seed + 1)
    (d / "img").mkdir()
    cols: dict[str, list] = {"id": [], "messages": [], "images": []}
    n_img = n_bytes = 0
    with open(d / "sft.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            k = 1 + (i % 2)
            blobs = [pool[int(j)] for j in rng.integers(0, len(pool), size=k)]
            names = []
            for j, b in enumerate(blobs):
                name = f"img/{i:06d}_{j}.png"
                (d / name).write_bytes(b)
                names.append(name)
            n_img += k
            n_bytes += sum(len(b) for b in blobs)
            q = "<image>" * k + f" How many red circles are there in picture {i}?"
            a = (f"<think>I count them one by one: {i % 7} circles.</think><answer><|begin_of_box|>{i % 7}"
                 "<|end_of_box|></answer>")
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"id": f"s{i}", "messages": msgs, "images": names}) + "\n")
            cols["id"].append(f"s{i}")
            cols["messages"].append(msgs)
            cols["images"].append([{"bytes": b, "path": None} for b in blobs])
    features = datasets.Features({"id": datasets.Value("string"),
                                  "messages": datasets.List({"role": datasets.Value("string"),
                                                             "content": datasets.Value("string")}),
                                  "images": datasets.List(datasets.Image())})
    datasets.Dataset.from_dict(cols, features=features).to_parquet(str(d / "sft.parquet"))
    return d / "sft.jsonl", d / "sft.parquet", n_img, n_bytes


def run_pack(src: Path, out: Path, seq_len: int) -> tuple[float, float, dict]:
    from glmv_cli.stages.pack import PackOptions, pack

    t, c = time.perf_counter(), time.process_time()
    m = pack(PackOptions(model="tiny", inputs=[str(src)], out=out, seq_len=seq_len))
    return time.perf_counter() - t, time.process_time() - c, m.metrics


def read_rows(src: Path, scratch: Path) -> tuple[float, float]:
    """Wall and CPU seconds to read every row (parquet: with its image bytes spilled)."""
    from glmv_cli.data.blobs import BlobStore
    from glmv_cli.data.formats import open_source

    t, c = time.perf_counter(), time.process_time()
    with BlobStore(scratch) as store:
        for _, payload in open_source(str(src)).rows():
            if not isinstance(payload, str):
                store.spill(payload)
        store.flush()
    return time.perf_counter() - t, time.process_time() - c


def same_packs(a: Path, b: Path) -> bool:
    from safetensors.numpy import load_file

    names = sorted(p.name for p in a.glob("packs-*.safetensors"))
    if names != sorted(p.name for p in b.glob("packs-*.safetensors")):
        return False
    for name in names:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        if sorted(x) != sorted(y) or any(not np.array_equal(x[k], y[k]) for k in x):
            return False
    return True


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=8192)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        jsonl, parquet, n_img, n_bytes = make_data(d, a.records)
        for src in (jsonl, parquet):  # warm-up: imports, tokenizer caches, page cache
            run_pack(src, d / f"warm-{src.suffix[1:]}", a.seq_len)
        best: dict[str, list[float]] = {"jsonl": [1e9, 1e9], "parquet": [1e9, 1e9]}
        metrics: dict[str, dict] = {}
        for r in range(a.repeats):
            for name, src in (("jsonl", jsonl), ("parquet", parquet)):
                wall, cpu, metrics[name] = run_pack(src, d / f"{name}-{r}", a.seq_len)
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
        read = {name: read_rows(src, d) for name, src in (("jsonl", jsonl), ("parquet", parquet))}
        identical = same_packs(d / "jsonl-0", d / "parquet-0")
    res = {
        "records": a.records, "images": n_img, "image_bytes": n_bytes, "seq_len": a.seq_len, "workers": 1,
        "repeats": a.repeats,
        "jsonl_png": {"wall_s": round(best["jsonl"][0], 3), "cpu_s": round(best["jsonl"][1], 3),
                      "read_rows_wall_s": round(read["jsonl"][0], 3), "read_rows_cpu_s": round(read["jsonl"][1], 3),
                      "packs": metrics["jsonl"]["packs"]},
        "parquet_embedded": {"wall_s": round(best["parquet"][0], 3), "cpu_s": round(best["parquet"][1], 3),
                             "read_rows_wall_s": round(read["parquet"][0], 3),
                             "read_rows_cpu_s": round(read["parquet"][1], 3), "packs": metrics["parquet"]["packs"]},
        "ratio_wall": round(best["parquet"][0] / best["jsonl"][0], 3),
        "ratio_cpu": round(best["parquet"][1] / best["jsonl"][1], 3),
        "packs_identical": identical, "load_average_1m": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
    }
    json.dump(res, sys.stdout, indent=2)
    print()
    return res


if __name__ == "__main__":
    main()
