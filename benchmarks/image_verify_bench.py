"""Cost of ``glmv pack --verify-images on`` (a full decode of every image) against ``off`` (headers only).

Data: ``glmv synth`` SFT records (--records scenes, every one an SFT record with one PNG of
--image-size px; synth's default domain mix), packed with the tiny model's tokenizer at
--seq-len 8192, one worker, in-process. Each repeat packs the same records twice, ``off`` then
``on`` (order alternating between repeats so drift of a shared machine hits both), after one
warm-up pack. Reports per mode the best and mean wall seconds and CPU seconds of this process
(``time.process_time``; on a loaded shared machine the CPU figure is the honest per-core cost),
and the added CPU microseconds per decoded image.

Run: ``OMP_NUM_THREADS=1 python benchmarks/image_verify_bench.py [--records 10000] [--repeats 2]``;
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


def _pack(src: Path, out: Path, verify: str, seq_len: int) -> tuple[float, float, dict]:
    from glmv_cli.data.mediacheck import MediaChecks
    from glmv_cli.stages.pack import PackOptions, pack

    opts = PackOptions(model="tiny", inputs=[str(src)], out=out, seq_len=seq_len)
    opts.media = MediaChecks(verify_images=verify)
    t, c = time.perf_counter(), time.process_time()
    m = pack(opts)
    return time.perf_counter() - t, time.process_time() - c, m.metrics


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--seq-len", type=int, default=8192)
    a = ap.parse_args(argv)
    from glmv_cli.stages.synth import SynthOptions, synth

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        synth(SynthOptions(out=root / "synth", n_train=a.records, n_eval=0, sft_fraction=1.0,
                           image_size=str(a.image_size)))
        synth_s = time.perf_counter() - t
        src = root / "synth" / "sft.jsonl"
        _pack(src, root / "warm", "on", a.seq_len)
        runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        metrics: dict[str, dict] = {}
        for r in range(a.repeats):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                wall, cpu, m = _pack(src, root / f"{mode}{r}", mode, a.seq_len)
                runs[mode].append((wall, cpu))
                metrics[mode] = m
    res: dict = {"records": metrics["on"]["records_in"], "images": metrics["on"]["images"],
                 "images_verified": metrics["on"]["images_verified"], "image_size": a.image_size,
                 "seq_len": a.seq_len, "workers": 1, "repeats": a.repeats, "synth_seconds": round(synth_s, 1)}
    for mode, xs in runs.items():
        walls, cpus = [w for w, _ in xs], [c for _, c in xs]
        res[mode] = {"wall_s_best": round(min(walls), 3), "wall_s_mean": round(sum(walls) / len(walls), 3),
                     "cpu_s_best": round(min(cpus), 3), "cpu_s_mean": round(sum(cpus) / len(cpus), 3)}
    res["cpu_overhead"] = round(res["on"]["cpu_s_best"] / res["off"]["cpu_s_best"] - 1, 4)
    res["wall_overhead"] = round(res["on"]["wall_s_best"] / res["off"]["wall_s_best"] - 1, 4)
    res["decode_cpu_us_per_image"] = round(
        (res["on"]["cpu_s_best"] - res["off"]["cpu_s_best"]) / max(res["images_verified"], 1) * 1e6, 1)
    res["load_average_1m"] = round(os.getloadavg()[0], 2)
    res["cores"] = os.cpu_count()
    json.dump(res, sys.stdout, indent=2)
    print()
    return res


if __name__ == "__main__":
    main()
