"""Benchmark of the LM-head losses: peak memory and time, chunked (glmv_kernels) vs naive, one run.

Workload (the paper's head): vocab 151,552, hidden 4096, ``--tokens`` tokens (8192 on a GPU).
Two ops, each as one training step (forward + backward into hidden AND the head weight):

- ``logprobs`` (RL): per-token log-probs of chosen tokens, backward of sum(logp * a) with random
  per-token a; naive = ``log_softmax(F.linear(h, W).float()).gather`` (glmv's grpo.token_logprobs);
- ``ce`` (SFT / pretrain): mean cross-entropy; naive = ``F.cross_entropy(F.linear(h, W).float(), t)``.

Each (op, impl) runs in its own subprocess so peaks do not mix. Peak memory:
- GPU: ``torch.cuda.max_memory_allocated`` minus the allocation before the inputs exist;
- CPU: ``ru_maxrss`` (the process's high-water RSS) minus the RSS before the inputs exist. glibc
  returns large blocks to the OS at free, so RSS tracks live tensors; tracemalloc would not see them.
``peak_total`` includes the inputs (hidden, W) and their gradients, which any implementation must
hold (on CPU in fp32 W + grad W alone are 4.6 GiB); ``peak_extra`` = peak_total minus those, i.e.
what the loss itself needs. Ratios chunked / naive are reported for both.

dtype: bf16 on GPU (as training), fp32 on CPU. Time: GPU median of ``--repeats`` steps after a
warm-up; CPU one step (a CPU step at 1024 tokens is ~4 x 1.3 TFLOP of matmuls).

CPU default is ``--tokens 1024``: at 8192 the naive fp32 path peaks near 20 GiB (four [8192, 151552]
fp32 tensors of 4.6 GiB plus W and grad W) and one step takes minutes on one core.

``--impls naive,chunked,recompute,triton`` adds the CE variant without fused gradients and the
Triton forward (GPU with triton installed).

``--sft`` (the GPU part): optimizer steps (plain torch AdamW, bf16) of a ~1.2 B GLM-4V-shaped model
(12 layers, hidden 2048, GQA 16/2, vocab 151,552) on ``--sft-tokens`` real tokens of log-normal
sample lengths, packed into ``--seq-len`` rows vs dynamically padded micro-batches of 4, with the
kernels on (selected packed attention backend + chunked CE) vs off (sdpa + full-logits CE).
Reports tokens/s of real tokens, MFU (glmv's FLOPs convention, training.loss.step_flops) and peak
memory, each configuration in its own subprocess.

Measured (CPU, fp32, one thread on a shared 2-core machine, so times are +-30 %):
- ``--tokens 8192 --hidden 256`` (vocab 151,552): naive peak 14.05 GiB (three [8192, 151552] fp32
  tensors), chunked 0.57 GiB = 4.1 % (peak_extra 2.0 %); time 0.53x (log-probs) and 0.47x (CE).
- ``--tokens 1024`` (hidden 4096): W and grad W (4.6 GiB fp32) dominate: total 0.91x / 0.94x,
  peak_extra 0.108 vs 0.603 GiB (log-probs) and 0.275 vs 0.602 GiB (CE); time 1.17x / 0.52x.
The full 8192 x 4096 fp32 case (naive ~18.6 GiB, ~10 TFLOP per step) is not run on CPU.

Run: ``OMP_NUM_THREADS=1 python benchmarks/kernel_bench.py [--tokens N] [--device cpu|cuda]``, or
``python benchmarks/kernel_bench.py --sft`` on a GPU; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB, HIDDEN = 151_552, 4096


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(op: str, impl: str, tokens: int, vocab: int, hidden: int, device: str, repeats: int,
           chunk_size: int | None, threads: int) -> dict:
    import torch

    try:
        import glmv_kernels as K
    except ImportError:  # not installed yet: use the source tree
        sys.path.insert(0, str(ROOT / "kernels"))
        import glmv_kernels as K

    torch.set_num_threads(threads)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        torch.cuda.init()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    g = torch.Generator(device=dev).manual_seed(0)
    h = (torch.randn(tokens, hidden, generator=g, device=dev, dtype=dtype)).requires_grad_(True)
    w = (torch.randn(vocab, hidden, generator=g, device=dev, dtype=dtype) * 0.02).requires_grad_(True)
    tgt = torch.randint(0, vocab, (tokens,), generator=g, device=dev)
    adv = torch.randn(tokens, generator=g, device=dev)
    esize = torch.finfo(dtype).bits // 8
    inputs_and_grads = 2 * (tokens * hidden + vocab * hidden) * esize

    def step():
        h.grad = None
        w.grad = None
        kimpl = "triton" if impl == "triton" else "torch"
        if op == "logprobs":
            logp = (torch.log_softmax(torch.nn.functional.linear(h, w).float(), -1).gather(-1, tgt[:, None]).squeeze(-1)
                    if impl == "naive" else K.linear_logprobs(h, w, tgt, chunk_size=chunk_size, impl=kimpl))
            loss = (logp * adv).sum() / tokens
        elif impl == "naive":
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w).float(), tgt)
        else:  # "chunked": fused gradients in the forward; "recompute"/"triton": log-probs + recompute backward
            loss = K.linear_cross_entropy(h, w, tgt, chunk_size=chunk_size, impl=kimpl, fused=impl == "chunked")
        loss.backward()
        return float(loss)

    times = []
    n_runs = repeats + 1 if cuda else repeats
    for i in range(n_runs):
        if cuda:
            torch.cuda.synchronize()
            if i == n_runs - 1:
                torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        if not cuda or i > 0:
            times.append(time.perf_counter() - t)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"op": op, "impl": impl, "loss": loss, "grad_w_norm": float(w.grad.float().norm()),
            "grad_h_norm": float(h.grad.float().norm()), "seconds": statistics.median(times),
            "peak_total_bytes": peak, "peak_extra_bytes": peak - inputs_and_grads,
            "inputs_and_grads_bytes": inputs_and_grads}


def _gib(b: float) -> float:
    return round(b / 2**30, 3)


# ----------------------------------------------------------------------------- packed SFT (GPU part)
def glm4v_1b_config(attn: str, layers: int = 12, hidden: int = 2048, vocab: int = VOCAB, *,
                    vision: dict | None = None, token_ids: dict | None = None, eos: list | None = None):
    """A GLM-4V-shaped ~1.2 B model (GLM-4 text stack: GQA 16 q / 2 kv heads, head_dim 128,
    partial rotary 0.5, mrope; vocab 151,552 untied: 0.62 B of it is embedding + head).
    ``vision`` overrides vision-tower fields; ``token_ids`` / ``eos`` the multimodal and stop ids
    (default: the last six ids of the vocabulary, no stop ids)."""
    from transformers import Glm4vConfig

    ids = token_ids or dict(image_token_id=vocab - 6, video_token_id=vocab - 5, image_start_token_id=vocab - 4,
                            image_end_token_id=vocab - 3, video_start_token_id=vocab - 2,
                            video_end_token_id=vocab - 1)
    vis = dict(depth=2, hidden_size=256, num_heads=2, image_size=112, patch_size=14, out_hidden_size=hidden,
               intermediate_size=512, spatial_merge_size=2, temporal_patch_size=2)
    vis.update(vision or {})
    return Glm4vConfig(
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 128, num_key_value_heads=2,
                         head_dim=128, max_position_embeddings=32768, attention_bias=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [8, 12, 12], "partial_rotary_factor": 0.5},
                         **({"eos_token_id": eos} if eos else {})),
        vision_config=vis, attn_implementation=attn, **ids)


def sft_lengths(total: int, seq_len: int, seed: int = 0) -> list[int]:
    """Sample lengths (log-normal, median seq_len / 8, clipped to 32..seq_len) summing to ~total."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[int] = []
    while sum(out) < total:
        out.append(int(np.clip(round(rng.lognormal(np.log(seq_len / 8), 0.8)), 32, seq_len)))
    return out


def sft_batches(lengths: list[int], seq_len: int, packed: bool, vocab: int, device, pad_batch: int = 4):
    """Packed: rows of seq_len holding whole samples (greedy, in order), positions restart per sample,
    no attention mask. Padded: micro-batches of ``pad_batch`` samples right-padded to their longest,
    with attention_mask (dynamic padding)."""
    import torch

    g = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, vocab - 16, (n,), generator=g) for n in lengths]
    rows: list[list[torch.Tensor]] = []
    if packed:
        cur: list[torch.Tensor] = []
        for smp in samples:
            if cur and sum(len(x) for x in cur) + len(smp) > seq_len:
                rows.append(cur)
                cur = []
            cur.append(smp)
        rows.append(cur)
        batches = []
        for r in rows:
            ids = torch.cat(r)[None]
            pos = torch.cat([torch.arange(len(x)) for x in r])
            batches.append({"input_ids": ids.to(device), "labels": ids.to(device),
                            "position_ids": pos.view(1, 1, -1).expand(4, 1, -1).contiguous().to(device)})
        return batches
    batches = []
    for i in range(0, len(samples), pad_batch):  # dataset order, padded to the group's longest
        group = samples[i:i + pad_batch]
        L = max(len(x) for x in group)
        ids = torch.zeros(len(group), L, dtype=torch.long)
        mask = torch.zeros(len(group), L, dtype=torch.long)
        for j, smp in enumerate(group):
            ids[j, :len(smp)] = smp
            mask[j, :len(smp)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        pos = torch.arange(L).view(1, 1, -1).expand(4, len(group), -1).contiguous()
        batches.append({"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device),
                        "position_ids": pos.to(device)})
    return batches


def sft_run(layout: str, kernels: bool, tokens: int, seq_len: int, steps: int, device: str, layers: int,
            hidden: int, vocab: int) -> dict:
    """Optimizer steps of a ~1B GLM-4V-shaped model; kernels on = packed attention backend +
    chunked CE, off = sdpa + full-logits CE. tokens/s counts real (non-pad) tokens."""
    import torch

    try:
        import glmv_kernels as K
        from glmv_kernels.model_loss import causal_lm_loss
    except ImportError:
        sys.path.insert(0, str(ROOT / "kernels"))
        import glmv_kernels as K
        from glmv_kernels.model_loss import causal_lm_loss
    from transformers import Glm4vForConditionalGeneration

    from glmv_cli.training.loss import default_peak_tflops, shifted_targets, step_flops

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    backend = K.select_attention_backend(dev) if kernels else "sdpa"
    if layout == "padded" and backend == "flex":
        backend = "sdpa"  # a padded batch has no packing to exploit; flex would only add compile time
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(glm4v_1b_config(K.hf_attn_implementation(backend), layers, hidden, vocab))
    model.to(device=dev, dtype=torch.bfloat16 if cuda else torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    n_params = sum(p.numel() for p in model.parameters())
    n_vision = sum(p.numel() for p in model.model.visual.parameters())
    lengths = sft_lengths(tokens, seq_len)
    batches = sft_batches(lengths, seq_len, layout == "packed", vocab, dev)

    def loss_of(b):
        if kernels:
            kw = {k: b[k] for k in ("input_ids", "position_ids", "attention_mask") if k in b}
            kw.setdefault("attention_mask", None)
            return causal_lm_loss(model, kw, b["labels"])
        out = model(input_ids=b["input_ids"], position_ids=b["position_ids"],
                     attention_mask=b.get("attention_mask"), use_cache=False)
        tgt = shifted_targets(b["labels"], b["position_ids"] if layout == "packed" else None)
        return torch.nn.functional.cross_entropy(out.logits[:, :-1].float().flatten(0, 1), tgt.flatten(),
                                                 ignore_index=-100, reduction="sum")

    def step():
        for b in batches:  # one optimizer step over all rows (gradient accumulation)
            loss_of(b).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (compiles flex kernels, allocator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    real = sum(lengths)
    flops = step_flops(n_params - n_vision, layers, hidden, [[n] for n in lengths])
    peak = default_peak_tflops(dev) * 1e12
    return {"layout": layout, "kernels": kernels, "attention": backend, "params": n_params, "rows": len(batches),
            "row_len": int(max(b["input_ids"].shape[1] for b in batches)), "real_tokens": real,
            "step_s": round(dt, 4), "tokens_per_s": round(real / dt, 1), "mfu": round(flops / dt / peak, 4),
            "peak_mem_gib": _gib(torch.cuda.max_memory_allocated()) if cuda else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--tokens", type=int, default=None, help="default 8192 on cuda, 1024 on cpu")
    ap.add_argument("--vocab", type=int, default=VOCAB)
    ap.add_argument("--hidden", type=int, default=None, help="default 4096 (head bench), 2048 (--sft)")
    ap.add_argument("--chunk-size", type=int, default=None, help="tokens per chunk (default 2^26 / vocab)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default 5 on cuda, 1 on cpu)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ops", default="logprobs,ce")
    ap.add_argument("--impls", default="naive,chunked",
                    help="naive first, then any of chunked, recompute (CE without fused gradients; for "
                         "logprobs the same as chunked), triton (Triton forward; needs triton + CUDA)")
    ap.add_argument("--sft", action="store_true",
                    help="instead: packed vs padded SFT steps of a ~1B GLM-4V-shaped model, kernels on vs off")
    ap.add_argument("--sft-tokens", type=int, default=32768, help="real tokens per optimizer step")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.device is None:
        import torch

        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = a.device.startswith("cuda")
    a.hidden = a.hidden or (2048 if (a.sft or (a.worker or "").startswith("sft:")) else HIDDEN)
    tokens = a.tokens or (8192 if cuda else 1024)
    repeats = a.repeats or (5 if cuda else 1)
    if a.worker and a.worker.startswith("sft:"):
        _, layout, on = a.worker.split(":")
        print(json.dumps(sft_run(layout, on == "on", a.sft_tokens, a.seq_len, a.steps, a.device, a.layers,
                                 a.hidden, a.vocab)))
        return
    if a.sft:
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
        runs = []
        for layout in ("packed", "padded"):
            for on in ("on", "off"):
                cmd = [sys.executable, __file__, "--worker", f"sft:{layout}:{on}", "--device", a.device,
                       "--sft-tokens", str(a.sft_tokens), "--seq-len", str(a.seq_len), "--layers", str(a.layers),
                       "--steps", str(a.steps), "--hidden", str(a.hidden), "--vocab", str(a.vocab),
                       "--threads", str(a.threads)]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                runs.append(json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else
                            {"layout": layout, "kernels": on == "on",
                             "error": (p.stderr or p.stdout).strip().splitlines()[-3:]})
        print(json.dumps({"device": a.device, "sft_tokens": a.sft_tokens, "seq_len": a.seq_len, "runs": runs},
                         indent=1))
        return
    if a.worker:
        op, impl = a.worker.split(":")
        print(json.dumps(worker(op, impl, tokens, a.vocab, a.hidden, a.device, repeats, a.chunk_size, a.threads)))
        return
    out = {"device": a.device, "tokens": tokens, "vocab": a.vocab, "hidden": a.hidden,
           "dtype": "bf16" if cuda else "fp32", "chunk_size": a.chunk_size or max(1, (1 << 26) // a.vocab),
           "repeats": repeats}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    for op in a.ops.split(","):
        res = {}
        for impl in a.impls.split(","):
            cmd = [sys.executable, __file__, "--worker", f"{op}:{impl}", "--device", a.device, "--tokens",
                   str(tokens), "--vocab", str(a.vocab), "--hidden", str(a.hidden), "--repeats", str(repeats),
                   "--threads", str(a.threads)] + (["--chunk-size", str(a.chunk_size)] if a.chunk_size else [])
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                res[impl] = {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            res[impl] = {"seconds": round(r["seconds"], 4), "peak_total_gib": _gib(r["peak_total_bytes"]),
                         "peak_extra_gib": _gib(r["peak_extra_bytes"]), "loss": r["loss"],
                         "grad_w_norm": r["grad_w_norm"], "grad_h_norm": r["grad_h_norm"]}
        n = res.get("naive", {})
        for impl in [i for i in a.impls.split(",") if i != "naive"]:
            c = res.get(impl, {})
            if "seconds" in n and "seconds" in c:
                res[f"{impl}_over_naive"] = {
                    "peak_total": round(c["peak_total_gib"] / n["peak_total_gib"], 3),
                    "peak_extra": round(c["peak_extra_gib"] / n["peak_extra_gib"], 3),
                    "time": round(c["seconds"] / n["seconds"], 3),
                    "loss_abs_diff": abs(c["loss"] - n["loss"]),
                    "grad_w_norm_rel_diff": abs(c["grad_w_norm"] - n["grad_w_norm"]) / max(n["grad_w_norm"], 1e-30)}
        out[op] = res
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
