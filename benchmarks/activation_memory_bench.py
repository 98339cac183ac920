"""Activation memory vs step time: --activation-checkpointing off / llm / every-2 / full and
full + --vision-chunk-images, each as a ratio of ``off`` measured in the same run.

Model: GLM-4V-shaped (transformers' Glm4vForConditionalGeneration: GQA, partial 3D RoPE, vision
tower with Conv3d patches, learned position table, 2x2 downsample, merger), scaled to CPU size by
default (LM 6 x 384, vision 4 x 192) and given one packed micro batch of ``--seq-len`` tokens
with ``--images`` images of different sizes, as glmv's packed reader yields it. One step is a
forward + backward through the engine's loss (chunked LM head); gradients are allocated before
the measurement, so the peak is what the step's activations add on top of weights + gradients.

Each configuration runs in a fresh subprocess (no allocator state carries over). Peak memory:
on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before the step; on CPU the
process's resident high-water mark (``VmHWM``, reset through /proc/self/clear_refs before the
step) minus the resident size before it, with glibc's mmap threshold lowered so freed tensors go
back to the OS. Time: the fastest of ``--steps`` steps after the measured one; on CPU with one
thread it is the process's CPU time (on a shared machine the wall clock mostly measures the
neighbours), on CUDA the wall time.

    python benchmarks/activation_memory_bench.py                     # CPU, ~3 min
    python benchmarks/activation_memory_bench.py --configs off,vision,vision+chunks   # the vision side
    python benchmarks/activation_memory_bench.py --seq-len 32768 --images 32 --scale 4   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CONFIGS = {"off": ("off", 0), "llm": ("llm", 0), "every-2": ("every-2", 0), "full": ("full", 0),
           "full+chunks": ("full", 2), "vision": ("vision", 0), "vision+chunks": ("vision", 2)}
DEFAULT = "off,llm,every-2,full,full+chunks"


def build_config(scale: int):
    from transformers import Glm4vConfig

    h = 128 * scale
    text = dict(vocab_size=2048, hidden_size=h, intermediate_size=int(h * 2.75), num_hidden_layers=6,
                num_attention_heads=h // 64, num_key_value_heads=2, head_dim=64, max_position_embeddings=65536,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                 "mrope_section": [4, 6, 6]})
    vision = dict(depth=4, hidden_size=64 * scale, num_heads=scale, image_size=224, patch_size=14,
                  out_hidden_size=h, intermediate_size=int(64 * scale * 2.75), spatial_merge_size=2,
                  temporal_patch_size=2)
    return Glm4vConfig(text_config=text, vision_config=vision, image_token_id=2000, video_token_id=2001,
                       image_start_token_id=2002, image_end_token_id=2003, video_start_token_id=2004,
                       video_end_token_id=2005, tie_word_embeddings=False)


def image_grids(n: int) -> list[tuple[int, int, int]]:
    """``n`` images of different sizes (patch grids 8x8 .. 28x20), as a document's figures vary."""
    sides = [(8, 8), (16, 12), (20, 28), (12, 24), (28, 20), (10, 14), (24, 16), (14, 10)]
    return [(1, *sides[i % len(sides)]) for i in range(n)]


def packed_batch(cfg, seq_len: int, n_images: int, seed: int = 0) -> dict:
    """One packed row: samples of two images + text each, ``seq_len`` tokens in all; 4-row positions."""
    from glmv_cli.testing.tiny import multimodal_pack

    merge = cfg.vision_config.spatial_merge_size
    grids = image_grids(n_images)
    samples = [grids[i:i + 2] for i in range(0, len(grids), 2)]
    image_tokens = [sum(t * h * w // merge ** 2 + 2 for t, h, w in s) for s in samples]
    text_each = max(8, (seq_len - sum(image_tokens)) // max(1, len(samples)))
    texts = [text_each] * (len(samples) - 1)
    texts.append(seq_len - sum(image_tokens) - sum(texts))  # the last sample fills the row
    return multimodal_pack(cfg, list(zip(samples, texts)), seed=seed, vocab=1900)


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(name: str, args: argparse.Namespace) -> dict:
    import torch

    from glmv_cli.training import memory
    from glmv_cli.training.loss import chunked_lm_loss_sum

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    from transformers import Glm4vForConditionalGeneration

    cfg = build_config(args.scale)
    model = Glm4vForConditionalGeneration(cfg).to(dev, dtype)
    model.config.use_cache = False
    batch = packed_batch(cfg, args.seq_len, args.images)
    batch = {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev)) for k, v in batch.items()}
    mode, chunk = CONFIGS[name]
    memory.install(model, mode, chunk)
    model.train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)

    # CPU with one thread: the process's CPU time, which other processes on a shared machine
    # disturb far less than the wall clock; CUDA: wall time after a synchronize.
    clock = time.perf_counter if cuda or args.threads > 1 else time.process_time

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        chunked_lm_loss_sum(model, batch).backward()
        if cuda:
            torch.cuda.synchronize()
        return clock() - t0

    if cuda:
        step()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        times = [step()]
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _status("VmRSS")
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # reset VmHWM to the current RSS
        times = [step()]  # the first step: nothing of an earlier step is cached
        peak = _status("VmHWM") - base
    times += [step() for _ in range(args.steps)]
    n_params = sum(p.numel() for p in model.parameters())
    return {"config": name, "peak_bytes": peak, "step_s": min(times[1:] or times),
            "device": "cuda" if cuda else "cpu", "params": n_params,
            "tokens": int(batch["input_ids"].shape[1]), "patches": int(batch["pixel_values"].shape[0]),
            "images": int(batch["image_grid_thw"].shape[0]), "wrapped": len(memory.wrapped(model))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--scale", type=int, default=3, help="width multiplier (LM hidden 128 x scale)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the measured first one")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu", action="store_true", help="stay on CPU even where CUDA exists")
    ap.add_argument("--configs", default=DEFAULT, help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "65536",
           "MALLOC_TRIM_THRESHOLD_": "65536"}
    rows = []
    for name in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--seq-len", str(args.seq_len), "--images",
               str(args.images), "--scale", str(args.scale), "--steps", str(args.steps), "--threads",
               str(args.threads)] + (["--cpu"] if args.cpu else [])
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
        if res.returncode or not line:
            sys.exit(f"{name} failed:\n{res.stderr[-3000:]}")
        rows.append(json.loads(line[-1][7:]))
    r0 = next((r for r in rows if r["config"] == "off"), rows[0])
    print(f"device {r0['device']}, {r0['params'] / 1e6:.1f} M params, one micro batch of {r0['tokens']} tokens "
          f"with {r0['images']} images ({r0['patches']} patches); ratios vs {r0['config']}")
    print(f"{'config':<13} {'wrapped':>7} {'peak MiB':>9} {'peak x':>7} {'step s':>8} {'time x':>7}")
    for r in rows:
        print(f"{r['config']:<13} {r['wrapped']:>7} {r['peak_bytes'] / 2**20:>9.1f} "
              f"{r['peak_bytes'] / r0['peak_bytes']:>7.2f} {r['step_s']:>8.3f} {r['step_s'] / r0['step_s']:>7.2f}")


if __name__ == "__main__":
    main()
