"""Disk weight sync cost per RL step: write the policy snapshot + every server reloads it, in one run.

    OMP_NUM_THREADS=1 python benchmarks/weight_sync_bench.py [--models tiny,14m] [--servers 1]
        [--steps 3] [--project-gb 20]

For each model: a shared directory is written once (step 0) and ``--servers`` ``glmv serve``
processes are started on it; then ``--steps`` times the weights are perturbed (an optimizer
step's worth of change) and ``DiskWeightSync.sync`` runs: ``write_snapshot`` (safetensors via the
export code, renamed into place) then ``/collective_rpc reload_weights`` on every server, waiting
for all. Baseline in the same run: ``torch.save``-free raw copy cost = writing the same bytes with
``safetensors.torch.save_file`` alone. Reports per model the median seconds (total, write, reload),
the bytes per sync and the implied write / reload bandwidth, and projects a ``--project-gb`` sync
(GLM-4.1V-9B in bf16 is ~20 GB) from those bandwidths, as one JSON line per model on stdout.
``14m`` is the tiny preset's architecture widened to ~14 M parameters (LM 6 x 384).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(name: str):
    from transformers import Glm4vConfig

    from glmv_cli.modeling import load, load_processor
    from glmv_cli.modeling.io import build_model
    from glmv_cli.modeling.presets import tiny_config

    if name == "tiny":
        return load("tiny")
    if name != "14m":
        raise SystemExit(f"unknown model {name!r} (tiny, 14m)")
    base = tiny_config()
    text = {k: v for k, v in base.text_config.to_dict().items() if k not in ("head_dim", "model_type")}
    text.update(hidden_size=384, intermediate_size=1344, num_hidden_layers=6, num_attention_heads=6,
                num_key_value_heads=2, rope_parameters={**text["rope_parameters"], "mrope_section": [4, 6, 6]})
    vision = {k: v for k, v in base.vision_config.to_dict().items() if k != "model_type"}
    vision.update(out_hidden_size=384)
    ids = {k: getattr(base, k) for k in ("image_token_id", "video_token_id", "image_start_token_id",
                                         "image_end_token_id", "video_start_token_id", "video_end_token_id")}
    cfg = Glm4vConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return build_model(cfg, seed=0), load_processor("tiny")


def measure(name: str, servers: int, steps: int) -> dict:
    import torch
    from safetensors.torch import save_file

    from glmv_cli.generation.server import ServerEngine
    from glmv_cli.generation.weight_sync import DiskWeightSync
    from glmv_cli.serving.weights import write_snapshot
    from glmv_cli.testing.serve import start_servers

    model, proc = build(name)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / "shared"
        write_snapshot(model, proc, shared)
        procs = start_servers(str(shared), count=servers)
        try:
            eng = ServerEngine([s.url for s in procs], proc.tokenizer, config=model.config)
            sync = DiskWeightSync(eng, shared, proc)
            rows, raw = [], []
            for k in range(steps):
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(1e-3)
                rows.append(sync.sync(model))
                t0 = time.perf_counter()  # baseline: the same bytes through safetensors alone
                save_file({n: t.contiguous() for n, t in model.state_dict().items()}, str(Path(tmp) / f"raw{k}.st"))
                raw.append(time.perf_counter() - t0)
        finally:
            for s in procs:
                s.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in ("seconds", "write_seconds", "reload_seconds")}
    nbytes = rows[0]["bytes"]
    write_bw, reload_bw = nbytes / med["write_seconds"], nbytes / med["reload_seconds"]
    return {"model": name, "parameters": n_params, "servers": servers, "steps": steps, "bytes_per_sync": int(nbytes),
            "sync_s": round(med["seconds"], 4), "write_s": round(med["write_seconds"], 4),
            "reload_s": round(med["reload_seconds"], 4), "raw_safetensors_write_s": round(statistics.median(raw), 4),
            "write_MB_s": round(write_bw / 1e6, 1), "reload_MB_s": round(reload_bw / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,14m")
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--project-gb", type=float, default=20.0, help="sync size to project (GLM-4.1V-9B bf16: ~20)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    for name in a.models.split(","):
        res = measure(name.strip(), a.servers, a.steps)
        gb = a.project_gb * 1e9
        res[f"projected_{a.project_gb:g}GB_s"] = round(gb / (res["write_MB_s"] * 1e6) + gb / (res["reload_MB_s"] * 1e6), 1)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
