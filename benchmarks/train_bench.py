"""Training throughput: glmv's engine on packed rows vs a plain transformers loop on padded batches.

Same model (a preset, random init), same SFT samples, same run. Three measurements, each over
``--steps`` optimizer steps after ``--warmup`` untimed ones, counting only REAL tokens (padding
excluded) per second of training time:

  glmv-packed    the glmv engine (DeepSpeed, ``Engine.train_step``) on ``glmv pack`` rows
  plain-packed   a plain torch loop (AdamW, same model) on the same packed rows
  plain-padded   the usual transformers loop: samples batched by arrival, right-padded,
                 ``model(..., attention_mask, labels)``

glmv-packed / plain-padded is the end-to-end gain; plain-packed / plain-padded isolates packing;
glmv-packed / plain-packed is the engine's overhead (DeepSpeed bookkeeping, the vision probe).
Every loop sees about the same number of real tokens per step (``--global-batch`` packs vs as many
samples as those packs hold on average).

    python benchmarks/train_bench.py --steps 8             # CPU, tiny preset, ~2 min
    python benchmarks/train_bench.py --model glm-4.1v-9b --seq-len 8192 --records 2000   # GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = ("the a cat dog sees two three red blue chart shows value year of in on and is are "
         "count boxes left right top answer because first then so total").split()


def make_records(d: Path, n: int, seed: int, image_every: int) -> Path:
    from PIL import Image

    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        q_len = max(4, int(rng.lognormvariate(math.log(30), 0.6)))
        a_len = max(4, int(rng.lognormvariate(math.log(80), 0.7)))
        r = {"id": f"b{i}", "domain": "stem", "answer": "1"}
        q = " ".join(rng.choice(WORDS) for _ in range(q_len))
        if image_every and i % image_every == 0:
            w, h = rng.choice([(112, 112), (168, 112), (224, 168)])
            Image.new("RGB", (w, h), (rng.randrange(256), 90, 30)).save(d / f"im{i}.png")
            r["images"] = [f"im{i}.png"]
            q = "<image>" + q
        a = " ".join(rng.choice(WORDS) for _ in range(a_len))
        r["messages"] = [{"role": "user", "content": q},
                         {"role": "assistant", "content": f"<think>{a}</think><answer><|begin_of_box|>1<|end_of_box|></answer>"}]
        lines.append(json.dumps(r))
    (d / "records.jsonl").write_text("\n".join(lines) + "\n")
    return d / "records.jsonl"


def unpack(ds) -> list[dict]:
    """The packed samples one by one (input_ids, labels, and their own images)."""
    import torch

    out = []
    for i in range(len(ds)):
        p = ds[i]
        row = p["position_ids"][0, 0]
        starts = torch.nonzero(row == 0).flatten().tolist() + [row.numel()]
        grids = p.get("image_grid_thw", torch.zeros(0, 3, dtype=torch.long))
        pv = p.get("pixel_values")
        gi, pi = 0, 0
        for s, e in zip(starts[:-1], starts[1:]):
            ids = p["input_ids"][0, s:e]
            n_img = int((ids == ds.image_token_id).sum())
            sample = {"input_ids": ids, "labels": p["labels"][0, s:e]}
            if n_img:
                k, toks = 0, 0
                while toks < n_img:
                    toks += int(grids[gi + k].prod()) // 4
                    k += 1
                n_patch = int(grids[gi:gi + k].prod(-1).sum())
                sample["pixel_values"] = pv[pi:pi + n_patch]
                sample["image_grid_thw"] = grids[gi:gi + k]
                gi, pi = gi + k, pi + n_patch
            out.append(sample)
    return out


def padded_batches(samples: list[dict], per_batch: int, pad_id: int, image_token_id: int) -> list[dict]:
    import torch

    batches = []
    for b in range(0, len(samples) - per_batch + 1, per_batch):
        group = samples[b:b + per_batch]
        L = max(s["input_ids"].numel() for s in group)
        ids = torch.full((len(group), L), pad_id, dtype=torch.long)
        labels = torch.full((len(group), L), -100, dtype=torch.long)
        mask = torch.zeros((len(group), L), dtype=torch.long)
        for j, s in enumerate(group):
            n = s["input_ids"].numel()
            ids[j, :n], labels[j, :n], mask[j, :n] = s["input_ids"], s["labels"], 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask,
                 "mm_token_type_ids": (ids == image_token_id).long(), "real_tokens": int(mask.sum())}
        pv = [s["pixel_values"] for s in group if "pixel_values" in s]
        if pv:
            batch["pixel_values"] = torch.cat(pv)
            batch["image_grid_thw"] = torch.cat([s["image_grid_thw"] for s in group if "image_grid_thw" in s])
        batches.append(batch)
    return batches


def _timed(steps: int, warmup: int, fn) -> tuple[float, int]:
    tokens, t = 0, 0.0
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        n = fn(k)
        dt = time.perf_counter() - t0
        if k >= warmup:
            tokens, t = tokens + n, t + dt
    return tokens / t, tokens


def bench_glmv(model, ds, args) -> tuple[float, int]:
    from glmv_cli.training.config import BatchConfig, EngineConfig, OptimConfig, TrainConfig
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loop import batch_indices
    from glmv_cli.training.loss import concat_packs

    G = args.global_batch
    cfg = TrainConfig(optim=OptimConfig(lr=1e-4), batch=BatchConfig(micro_batch=1, global_batch=G),
                      engine=EngineConfig(zero_stage=args.zero_stage,
                                          activation_checkpointing=args.activation_checkpointing))
    total = args.steps + args.warmup
    eng = Engine(model, cfg, total_steps=total)
    packs = [ds[i] for i in range(len(ds))]

    def step(k: int) -> int:
        mbs = [concat_packs([packs[i]]) for i in batch_indices(k, len(packs), G, 0)]
        return int(eng.train_step(mbs)["tokens"])

    return _timed(args.steps, args.warmup, step)


def bench_plain(model, batches: list[dict], args, packed: bool) -> tuple[float, int]:
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model.to(dev, dtype).train()
    if args.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=dev.type == "cuda")
    accum = args.global_batch if packed else 1

    def step(k: int) -> int:
        n = 0
        for j in range(accum):
            b = batches[(k * accum + j) % len(batches)]
            kw = {key: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev))
                  for key, v in b.items() if key != "real_tokens" and hasattr(v, "to")}
            if packed:
                kw["attention_mask"] = None
            out = model(**kw, use_cache=False)
            (out.loss / accum).backward()
            n += b["real_tokens"]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return n

    return _timed(args.steps, args.warmup, step)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--records", type=int, default=240)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--global-batch", type=int, default=2, help="packs per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--zero-stage", type=int, default=0)
    ap.add_argument("--image-every", type=int, default=3, help="every k-th record has an image (0: none)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from glmv_cli.data.packed import PackedDataset
    from glmv_cli.modeling import load
    from glmv_cli.stages.pack import PackOptions, pack

    with tempfile.TemporaryDirectory() as tmp:
        recs = make_records(Path(tmp) / "raw", args.records, 0, args.image_every)
        pack(PackOptions(model=args.model, inputs=[str(recs)], out=Path(tmp) / "packed", mode="sft",
                         seq_len=args.seq_len).validate())
        ds = PackedDataset(Path(tmp) / "packed")
        samples = unpack(ds)
        packs = [ds[i] for i in range(len(ds))]
        if len(packs) < args.global_batch:
            raise SystemExit(f"only {len(packs)} packs; raise --records or lower --seq-len")
        per_batch = max(1, round(len(samples) * args.global_batch / len(packs)))
        _, proc = load(args.model)
        pad = proc.tokenizer.pad_token_id
        padded = padded_batches(samples, per_batch, pad, ds.image_token_id)
        packed_batches = [dict(p, real_tokens=int(p["input_ids"].numel())) for p in packs]

        results = {}
        m, _ = load(args.model, seed=0, dtype="fp32")
        results["glmv-packed"] = bench_glmv(m, ds, args)
        from glmv_cli.training import dist

        dist.shutdown()
        m, _ = load(args.model, seed=0, dtype="fp32")
        results["plain-packed"] = bench_plain(m, packed_batches, args, packed=True)
        m, _ = load(args.model, seed=0, dtype="fp32")
        results["plain-padded"] = bench_plain(m, padded, args, packed=False)

    pad_frac = 1 - sum(b["real_tokens"] for b in padded) / sum(b["input_ids"].numel() for b in padded)
    report = {
        "model": args.model, "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": args.threads,
        "seq_len": args.seq_len, "packs": len(packs), "samples": len(samples),
        "padded_batch_samples": per_batch, "padding_fraction": round(pad_frac, 4),
        "tok_s": {k: round(v[0], 1) for k, v in results.items()},
        "ratio_glmv_vs_plain_padded": round(results["glmv-packed"][0] / results["plain-padded"][0], 3),
        "ratio_packed_vs_padded": round(results["plain-packed"][0] / results["plain-padded"][0], 3),
        "ratio_glmv_vs_plain_packed": round(results["glmv-packed"][0] / results["plain-packed"][0], 3),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
