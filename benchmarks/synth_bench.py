"""Throughput of ``glmv synth``: wall time for a dataset of a given record count.

Records = pretrain (one per train scene) + sft + rl (one per train scene together) + eval, so
``--records 10000`` with the default ``--eval-share 0.1`` is 4,500 train and 1,000 eval scenes.

    python benchmarks/synth_bench.py --records 10000 --workers 1 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from glmv_cli.stages.synth import SynthOptions, synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--eval-share", type=float, default=0.1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--image-size", default="112")
    args = ap.parse_args()
    n_eval = int(args.records * args.eval_share)
    n_train = (args.records - n_eval) // 2
    root = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        hashes = set()
        for w in args.workers:
            t = time.perf_counter()
            m = synth(SynthOptions(out=root / f"w{w}", n_train=n_train, n_eval=n_eval, workers=w,
                                   image_size=args.image_size))
            secs = time.perf_counter() - t
            total = m.metrics["records_total"]
            hashes.add(tuple(sorted((k, v["sha256"]) for k, v in m.files.items())))
            print(f"workers {w}: {total} records ({n_train} train + {n_eval} eval scenes) in {secs:.1f} s "
                  f"= {total / secs:.0f} records/s (incl. manifest hashing)")
        print("outputs identical across worker counts:", len(hashes) == 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
