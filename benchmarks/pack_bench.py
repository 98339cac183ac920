"""Benchmark of ``glmv pack``: the bin packer alone, and the whole stage on small multimodal records.

Part 1 -- packing algorithm. 100,000 sample lengths drawn from a long-tailed log-normal mix:
``round(exp(N(log 600, 1.0)))`` clipped to 16..8192 tokens (median 600, mean ~990, ~0.3 % of
samples over 8k before clipping), seed 0, packed into --seq-len 8192 rows by glmv's
best-fit-decreasing packer and by a plain first-fit-decreasing baseline (linear scan of the open
packs, numpy-vectorised), in the same run. Reports fill efficiency (tokens / (packs * seq_len)),
packs over the lower bound ceil(tokens / seq_len), and samples/s.

Part 2 -- end to end. 10,000 small multimodal SFT records (one or two images each, 64..320 px
PNGs of a few coloured circles, ~1-5 kB, from a pool of 200 files; short question + GLM-4.1V
answer) packed with the tiny model's
tokenizer and processor at --seq-len 8192, one worker, in-process, with ``--verify-images off``:
image sizes come from headers and no pixel is decoded (benchmarks/image_verify_bench.py measures
what the default full decode adds). Reports records/s of the encode phase (validate + header + tokenise +
positions), of the whole stage (incl. writing shards with the image bytes), and the fill. Rates
are given per wall second and per CPU second of this process (``time.process_time``): on a
shared machine the second is the honest "per core" figure.

Run: ``OMP_NUM_THREADS=1 python benchmarks/pack_bench.py [--records 100000] [--e2e 10000]``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
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

from glmv_cli.data.packing import best_fit_decreasing, check_packing, first_fit_decreasing, pack_stats  # noqa: E402


def lognormal_lengths(n: int, seq_len: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(600), 1.0, n)), 16, seq_len).astype(int).tolist()


def bench_packer(n: int, seq_len: int) -> dict:
    lengths = lognormal_lengths(n, seq_len)
    out = {"records": n, "seq_len": seq_len, "length_mix": "lognormal(log 600, 1.0) clipped to 16..seq_len",
           "mean_length": round(float(np.mean(lengths)), 1)}
    for name, fn in (("bfd", best_fit_decreasing), ("ffd_baseline", first_fit_decreasing)):
        t, c = time.perf_counter(), time.process_time()
        packs = fn(lengths, seq_len)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        check_packing(lengths, packs, seq_len)
        s = pack_stats(lengths, packs, seq_len)
        out[name] = {"fill_efficiency": round(s.fill, 6), "packs": s.packs, "packs_lower_bound": s.lower_bound,
                     "seconds": round(dt, 3), "records_per_s": round(n / dt),
                     "records_per_cpu_s": round(n / dc)}
    return out


def make_multimodal(d: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pool = []
    for k in range(200):  # synth-like pictures: a few filled shapes on a plain background (~1-5 kB PNGs)
        w, h = (int(x) for x in rng.integers(64, 321, size=2))
        im = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(180, 256, size=3)))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(2, 8))):
            x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
            box = (x0, y0, x0 + int(rng.integers(4, 40)), y0 + int(rng.integers(4, 40)))
            draw.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 180, size=3)))
        name = f"img{k:03d}.png"
        im.save(d / name)
        pool.append(name)
    with open(d / "sft.jsonl", "w") as f:
        for i in range(n):
            k = 1 + (i % 2)
            imgs = [pool[int(j)] for j in rng.integers(0, len(pool), size=k)]
            q = " ".join(["<image>"] * k) + f" How many red circles are there in picture {i}?"
            a = f"<think>I count them one by one: {i % 7} circles.</think><answer><|begin_of_box|>{i % 7}<|end_of_box|></answer>"
            rec = {"id": f"s{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                   "images": imgs, "domain": "counting", "answer": str(i % 7)}
            f.write(json.dumps(rec) + "\n")
    return d / "sft.jsonl"


def bench_end_to_end(n: int, seq_len: int) -> dict:
    from glmv_cli.data.encode import encode_lines
    from glmv_cli.data.mediacheck import MediaChecks
    from glmv_cli.stages.pack import InputFile, PackOptions, _make_encoder, _read_items, pack

    def opts(out: Path) -> PackOptions:
        o = PackOptions(model="tiny", inputs=[str(src)], out=out, seq_len=seq_len)
        o.media = MediaChecks(verify_images="off")
        return o

    with tempfile.TemporaryDirectory() as tmp:
        src = make_multimodal(Path(tmp), n)
        pack(opts(Path(tmp) / "warm"))  # imports, caches
        t, c = time.perf_counter(), time.process_time()
        m = pack(opts(Path(tmp) / "out"))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        # the encode phase alone (validate + image headers + tokenise + positions), in CPU seconds,
        # which a busy shared machine distorts far less than wall time
        encoder, _ = _make_encoder("tiny", "sft", "glm41v", "last", MediaChecks(verify_images="off"))
        items = _read_items([InputFile(str(src), 1.0)])
        c = time.process_time()
        encode_lines(encoder, items)
        enc_cpu = time.process_time() - c
        x = m.metrics
        return {"records": n, "images": x["images"], "seq_len": seq_len, "workers": 1,
                "stage_wall_s": round(wall, 3), "stage_records_per_s": round(n / wall),
                "stage_records_per_cpu_s": round(n / cpu),
                "encode_records_per_s": x["records_per_s"], "encode_records_per_cpu_s": round(n / enc_cpu),
                "fill_efficiency": x["fill_efficiency"], "packs": x["packs"],
                "packs_lower_bound": x["packs_lower_bound"], "load_average_1m": round(os.getloadavg()[0], 2),
                "cores": os.cpu_count()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--e2e", type=int, default=10_000, help="records for the end-to-end run (0 skips it)")
    ap.add_argument("--seq-len", type=int, default=8192)
    a = ap.parse_args(argv)
    res = {"packer": bench_packer(a.records, a.seq_len)}
    if a.e2e:
        res["end_to_end"] = bench_end_to_end(a.e2e, a.seq_len)
    json.dump(res, sys.stdout, indent=2)
    print()
    return res


if __name__ == "__main__":
    main()
