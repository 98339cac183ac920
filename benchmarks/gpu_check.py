"""The GPU check's benchmarks, each against a baseline measured in the same run; figures to one JSON.

    python benchmarks/gpu_check.py --part PART --out figures.json [--dry-run]

Parts (``scripts/gpu_check.sh`` runs them in this order, each under its own time limit; each
merges its figures into ``--out`` under its name, so a part that runs out of time loses only its
own figures):

- ``meta``: versions, device, which attention backends and kernels are usable, the train backend.
- ``exact``: packed vs per-sample logits of the benchmark model in bf16, for each packed attention
  path (glmv's registered flex attention, transformers' sdpa), against the bf16-vs-fp32 error of
  the per-sample forward as the scale of bf16 noise; pass: max |diff| <= 5 % of max |logit| (the
  tolerance of tests/test_kernels_gpu.py). The Triton log-prob kernel vs the plain-torch reference:
  fp32 forward and gradients (atol 2e-5, rtol 1e-4) and bf16 at the paper's head size.
- ``sft``: optimizer steps of glmv's Engine (bf16, fp32 masters; the torch ZeRO-0 backend where
  DeepSpeed is absent) on the ~1.2 B model: packed rows with flex attention, packed rows with sdpa,
  and the baseline, padded micro batches with sdpa (flash-attn varlen when it is installed).
  Real (non-filler, non-pad) tokens/s, MFU (training.loss.step_flops / the device's bf16 peak),
  the step's peak ``max_memory_allocated``. Each configuration in its own process.
- ``kernels``: benchmarks/kernel_bench.py at 8K tokens x 4096 x 151,552 vocab: naive full logits
  vs chunked, recompute and Triton, peak memory and time (its own subprocess per run).
- ``rollout``: glmv's HFEngine in bf16, ``group`` rollouts per prompt of up to ``new_tokens``
  tokens, vs transformers' ``generate`` on the same prompts (sampling, same banned tokens).

``--dry-run``: the same code at the toy sizes of gpu_workloads.DRY on whatever device there is
(CPU here), so CI tests the check itself. ``FIGURES`` lists the keys every part writes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FIGURES = {
    "meta": ("device", "torch", "transformers", "triton", "deepspeed", "train_backend", "attention_backends"),
    "exact": ("packed_flex_max_abs", "packed_flex_rel", "packed_sdpa_max_abs", "packed_sdpa_rel",
              "bf16_vs_fp32_max_abs", "tolerance_rel", "packed_ok", "triton"),
    "sft": ("model_params", "seq_len", "real_tokens_per_step", "configs", "packed_flex_over_padded",
            "packed_flex_over_packed_sdpa", "mfu_packed_flex"),
    "kernels": ("tokens", "hidden", "vocab", "logprobs", "ce"),
    "rollout": ("rows", "group", "max_new_tokens", "hf_engine_tok_s", "generate_tok_s", "hf_engine_over_generate",
                "hf_engine_tokens", "generate_tokens"),
    "pytest": ("passed", "failed", "errors", "skipped", "failures"),
}
SFT_CONFIGS = ("packed_flex", "packed_sdpa", "padded_sdpa", "packed_flash")


def _size(dry: bool) -> dict:
    import gpu_workloads as W

    return W.DRY if dry else W.FULL


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def source_hash(root: Path = HERE.parent) -> str:
    """sha256 over glmv's packaged sources (paths and bytes): the stamp that ties .whl's glmv
    wheel to the working tree it was built from."""
    import hashlib

    h = hashlib.sha256()
    files = [root / "pyproject.toml"] + sorted(
        f for d in ("glmv_cli", "kernels/glmv_kernels") for f in (root / d).rglob("*")
        if f.is_file() and f.suffix in (".py", ".yaml", ".jinja", ".json", ".typed"))
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def merge(out: Path, part: str, figures: dict) -> None:
    """Adds ``figures`` under ``part`` to the JSON file ``out`` (written atomically)."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data[part] = figures
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(out)


def part_pytest(junit: Path) -> dict:
    """Counts and failing test ids from pytest's JUnit XML (written by ``pytest --junitxml``)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
           if c.find("failure") is not None or c.find("error") is not None]
    return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"], "failed": n["failures"],
            "errors": n["errors"], "skipped": n["skipped"], "failures": bad}


# ----------------------------------------------------------------------------- meta
def part_meta(size: dict) -> dict:
    import torch
    import transformers

    import glmv_kernels as K
    from glmv_cli.training import backend as B

    dev = _device()
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "transformers": transformers.__version__,
            "triton": _version("triton"), "deepspeed": _version("deepspeed"), "flash_attn": _version("flash_attn"),
            "train_backend": B.resolve(0, 1), "attention_backends": K.attention.available_backends(dev),
            "glmv_cli": str(Path(sys.modules["glmv_cli"].__file__).parent)}


def _version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name.replace("_", "-"))
    except PackageNotFoundError:
        return "installed"


# ----------------------------------------------------------------------------- exactness
def part_exact(size: dict) -> dict:
    import torch

    import gpu_workloads as W
    import glmv_kernels as K

    dev = _device()
    model = W.build_model(size, "sdpa", dev, torch.bfloat16).eval()
    cfg = model.config
    L = size["seq_len"] // 4
    g = size["grids"]
    samples = [([g[0]], L // 4), ([], L // 3), ([g[-1]], L // 8), ([], L // 5)]
    pack = W.packed_rows(cfg, [samples])[0]
    parts = W.sample_slices(pack, samples)

    def fwd(m, b, dtype):
        kw = {k: v.to(dev) for k, v in b.items() if k in ("input_ids", "mm_token_type_ids", "position_ids",
                                                          "pixel_values", "image_grid_thw")}
        if "pixel_values" in kw:
            kw["pixel_values"] = kw["pixel_values"].to(dtype)
        with torch.no_grad():
            return m(**kw, attention_mask=None, use_cache=False).logits[0].float()

    per_sample = [fwd(model, p, torch.bfloat16) for p in parts]
    res: dict[str, Any] = {"tokens": int(pack["input_ids"].shape[1]), "samples": len(samples),
                           "flex_backend": K.select_attention_backend(dev)}
    for name, impl in (("packed_flex", K.hf_attn_implementation("flex")), ("packed_sdpa", "sdpa")):
        model.set_attn_implementation(impl)
        full = fwd(model, pack, torch.bfloat16)
        diffs = [(full[p["span"][0]:p["span"][1]] - ref).abs().max().item() for p, ref in zip(parts, per_sample)]
        top = max(r.abs().max().item() for r in per_sample)
        res[f"{name}_max_abs"], res[f"{name}_rel"] = max(diffs), max(diffs) / top
    model.set_attn_implementation("sdpa")
    ref32 = model.float()
    res["bf16_vs_fp32_max_abs"] = max((fwd(ref32, p, torch.float32) - b).abs().max().item()
                                      for p, b in zip(parts, per_sample))
    res["tolerance_rel"] = 0.05
    res["packed_ok"] = res["packed_flex_rel"] <= 0.05 and res["packed_sdpa_rel"] <= 0.05
    del model, ref32
    res["triton"] = _triton_parity(size, dev)
    return res


def _triton_parity(size: dict, dev) -> dict:
    """Triton forward (+ the shared backward) vs the full-logits reference, fp32 and bf16."""
    import torch

    from glmv_kernels import linear_logprobs, reference_linear_logprobs
    from glmv_kernels.triton_logprobs import triton_available

    if not triton_available():
        return {"skipped": "triton is not installed"}
    if dev.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return {"skipped": "no CUDA device (TRITON_INTERPRET=1 runs it on the CPU)"}
    out = {}
    for name, dtype, (n, h, v) in (("fp32", torch.float32, size["triton_fp32"]),
                                   ("bf16", torch.bfloat16, size["triton_bf16"])):
        torch.backends.cuda.matmul.allow_tf32 = False
        gen = torch.Generator(device=dev).manual_seed(0)
        hid = torch.randn(n, h, generator=gen, device=dev).to(dtype)
        w = (torch.randn(v, h, generator=gen, device=dev) * 0.02).to(dtype)
        tgt = torch.randint(0, v, (n,), generator=gen, device=dev)
        up = torch.randn(n, generator=gen, device=dev)
        got = []
        for fn in (lambda a, b: linear_logprobs(a, b, tgt, impl="triton"), lambda a, b: reference_linear_logprobs(a, b, tgt)):
            a, b = hid.clone().requires_grad_(True), w.clone().requires_grad_(True)
            lp = fn(a, b)
            (lp * up).sum().backward()
            got.append((lp.detach().float(), a.grad.float(), b.grad.float()))
            del a, b, lp
        (l1, h1, w1), (l2, h2, w2) = got
        out[name] = {"tokens": n, "hidden": h, "vocab": v, "logp_max_abs": (l1 - l2).abs().max().item(),
                     "logp_excess": ((l1 - l2).abs() - 1e-4 * l2.abs()).max().item(),  # assert_close's form
                     "grad_h_rel": ((h1 - h2).norm() / h2.norm()).item(),
                     "grad_w_rel": ((w1 - w2).norm() / w2.norm()).item()}
        del got
    f = out["fp32"]
    out["fp32_ok"] = f["logp_excess"] <= 2e-5 and f["grad_h_rel"] < 1e-4 and f["grad_w_rel"] < 1e-4
    return out


# ----------------------------------------------------------------------------- SFT steps
def sft_worker(size: dict, config: str) -> dict:
    """One SFT configuration in this process: warm-up steps, then timed steps through Engine."""
    import gpu_workloads as W
    import glmv_kernels as K
    from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loss import chunked_lm_loss_sum, count_label_tokens, default_peak_tflops, step_flops
    from glmv_kernels.model_loss import causal_lm_loss

    dev = _device()
    layout, attn = config.split("_")
    impl = K.hf_attn_implementation({"flex": "flex", "sdpa": "sdpa", "flash": "flash_varlen"}[attn])
    model = W.build_model(size, impl, dev)
    cfg = model.config
    groups = W.sft_samples(size)
    rows = W.packed_rows(cfg, groups) if layout == "packed" else W.padded_rows(cfg, [s for g in groups for s in g])
    meta = [(r.pop("real_lengths"), r.pop("n_patches")) for r in rows]
    o = OptimConfig(lr=1e-5, warmup_steps=0, weight_decay=0.1, clip=1.0)
    tc = TrainConfig(optim=o, batch=BatchConfig(1, 1, max_steps=size["warmup"] + size["steps"]))
    eng = Engine(model, tc, total_steps=tc.batch.max_steps)

    def padded_loss(m, b):
        kw = {k: b[k] for k in ("input_ids", "attention_mask", "position_ids", "mm_token_type_ids",
                                "pixel_values", "image_grid_thw") if k in b}
        return causal_lm_loss(m, kw, b["labels"])

    loss_fn = chunked_lm_loss_sum if layout == "packed" else padded_loss
    n_vis = sum(p.numel() for p in eng.module.model.visual.parameters())
    flops = step_flops(eng.n_params - n_vis, cfg.text_config.num_hidden_layers, cfg.text_config.hidden_size,
                       [m[0] for m in meta], n_vis, sum(m[1] for m in meta))
    steps = []
    for i in range(tc.batch.max_steps):
        m = eng.train_step(rows, loss_fn=loss_fn, count_fn=count_label_tokens)
        if i >= size["warmup"]:
            steps.append(m)
    dt = sum(m["time_s"] for m in steps) / len(steps)
    real = sum(sum(m[0]) for m in meta)
    peak = default_peak_tflops(dev) * 1e12
    return {"layout": layout, "attention": attn if attn != "flex" or dev.type == "cuda" else "flex->sdpa (cpu)",
            "train_backend": eng.backend, "bf16": eng.bf16, "rows": len(rows),
            "row_len": max(int(r["input_ids"].shape[1]) for r in rows), "real_tokens": real,
            "row_tokens": sum(int(r["input_ids"].numel()) for r in rows), "step_s": round(dt, 4),
            "tokens_per_s": round(real / dt, 1), "mfu": round(flops / dt / peak, 4), "loss": steps[-1]["loss"],
            "max_memory_allocated_gb": steps[-1].get("max_memory_allocated_gb"), "n_params": eng.n_params}


def part_sft(size: dict, dry: bool, timeout: float) -> dict:
    import glmv_kernels as K

    avail = K.attention.available_backends(_device())
    configs: dict[str, Any] = {}
    t_end = time.monotonic() + timeout
    for c in SFT_CONFIGS:
        if c == "packed_flash" and "flash_varlen" not in avail:
            configs[c] = {"skipped": "flash-attn is not installed (no wheel for torch 2.11 + CUDA 13 on the index)"}
            continue
        left = t_end - time.monotonic()
        if left < 5:
            configs[c] = {"error": "no time left in the sft part"}
            continue
        cmd = [sys.executable, __file__, "--sft-worker", c] + (["--dry-run"] if dry else [])
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            configs[c] = (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else
                          {"error": (p.stderr or p.stdout).strip().splitlines()[-4:]})
        except subprocess.TimeoutExpired:
            configs[c] = {"error": f"timed out after {left:.0f} s"}
    flex, sdpa, pad = (configs[k].get("tokens_per_s") for k in ("packed_flex", "packed_sdpa", "padded_sdpa"))
    first = next((v for v in configs.values() if "real_tokens" in v), {})
    return {"model_params": first.get("n_params"), "seq_len": size["seq_len"],
            "real_tokens_per_step": first.get("real_tokens"), "configs": configs,
            "packed_flex_over_padded": round(flex / pad, 3) if flex and pad else None,
            "packed_flex_over_packed_sdpa": round(flex / sdpa, 3) if flex and sdpa else None,
            "mfu_packed_flex": configs["packed_flex"].get("mfu")}


# ----------------------------------------------------------------------------- LM-head kernels
def part_kernels(size: dict, dry: bool, timeout: float) -> dict:
    from glmv_kernels.triton_logprobs import triton_available

    dev = _device()
    triton = triton_available() and dev.type == "cuda"
    impls = "naive,chunked,recompute" + (",triton" if triton else "")
    cmd = [sys.executable, str(HERE / "kernel_bench.py"), "--device", dev.type, "--tokens", str(size["ce_tokens"]),
           "--hidden", str(size["ce_hidden"]), "--vocab", str(size["ce_vocab"]),
           "--impls", impls, "--repeats", "1" if dry else "3", "--threads", "1" if dry else "8"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError((p.stderr or p.stdout).strip().splitlines()[-4:])
    out = json.loads(p.stdout)
    if not triton:
        for op in ("logprobs", "ce"):
            out[op]["triton"] = {"skipped": "needs the triton package and a CUDA device"}
    return out


# ----------------------------------------------------------------------------- rollouts
def part_rollout(size: dict) -> dict:
    import torch

    import gpu_workloads as W
    import rollout_bench
    from glmv_cli.modeling.processor import build_processor
    from glmv_cli.modeling.tokenizer import offline_tokenizer
    from glmv_cli.generation import HFEngine, SamplingParams

    dev = _device()
    model = W.build_model(size, "sdpa", dev, torch.bfloat16).eval()
    model.generation_config.pad_token_id = model.config.text_config.pad_token_id or 0
    proc = build_processor(offline_tokenizer())
    prompts = rollout_bench.build_prompts(proc, size["prompts"], size["image_px"], seed=0)
    n, new = size["group"], size["new_tokens"]
    eng = HFEngine(model, proc, batch_size=len(prompts) * n)
    rollout_bench.run(eng, prompts[:1], SamplingParams(max_new_tokens=4), 1, 0)  # warm-up
    dt, toks, _ = rollout_bench.run(eng, prompts, SamplingParams(max_new_tokens=new), n, 0)
    gen_dt, gen_toks = _generate_baseline(model, proc, prompts, n, new, eng.banned_token_ids)
    return {"rows": len(prompts) * n, "group": n, "max_new_tokens": new, "hf_engine_tokens": toks,
            "hf_engine_s": round(dt, 3), "hf_engine_tok_s": round(toks / dt, 1), "generate_tokens": gen_toks,
            "generate_s": round(gen_dt, 3), "generate_tok_s": round(gen_toks / gen_dt, 1),
            "hf_engine_over_generate": round((toks / dt) / (gen_toks / gen_dt), 3)}


def _generate_baseline(model, proc, prompts, n: int, new: int, banned) -> tuple[float, int]:
    """transformers' ``generate`` on the same left-padded prompts, n samples each, banned ids suppressed."""
    import torch

    from glmv_cli.generation import special_ids

    dev = next(model.parameters()).device
    tok = proc.tokenizer
    pad = tok.pad_token_id or 0
    L = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), L), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, L - len(p.input_ids):] = torch.tensor(p.input_ids)
        mask[r, L - len(p.input_ids):] = 1
    kw = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev),
          "mm_token_type_ids": ((ids == model.config.image_token_id) & mask.bool()).long().to(dev)}
    if prompts[0].pixel_values is not None:
        kw["pixel_values"] = torch.cat([p.pixel_values for p in prompts]).to(dev, model.dtype)
        kw["image_grid_thw"] = torch.cat([torch.as_tensor(p.image_grid_thw).reshape(-1, 3) for p in prompts]).to(dev)
    _, _, stops = special_ids(tok, model)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**kw, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new,
                             num_return_sequences=n, suppress_tokens=list(banned), eos_token_id=sorted(stops),
                             pad_token_id=pad)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    count = 0
    for row in out[:, L:].tolist():
        ends = [i for i, t in enumerate(row) if t in stops]
        count += ends[0] + 1 if ends else len(row)
    return dt, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=tuple(FIGURES))
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on any device (CPU tests of the check)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds this part may take (subprocess parts)")
    ap.add_argument("--junit", type=Path, default=None, help="--part pytest: pytest's JUnit XML file")
    ap.add_argument("--record-error", default=None, metavar="MESSAGE",
                    help="instead of running --part, record that it failed with MESSAGE")
    ap.add_argument("--source-hash", action="store_true", help="print the stamp of glmv's sources and exit")
    ap.add_argument("--sft-worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.source_hash:
        print(source_hash())
        return
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    size = _size(a.dry_run)
    if a.sft_worker:
        print(json.dumps(sft_worker(size, a.sft_worker), default=str))
        return
    if a.part is None:
        ap.error("--part is required")
    if a.record_error is not None:
        merge(a.out, a.part, {"error": a.record_error, "dry_run": a.dry_run})
        return
    t0 = time.perf_counter()
    fn = {"meta": lambda: part_meta(size), "exact": lambda: part_exact(size),
          "sft": lambda: part_sft(size, a.dry_run, a.timeout), "kernels": lambda: part_kernels(size, a.dry_run, a.timeout),
          "rollout": lambda: part_rollout(size), "pytest": lambda: part_pytest(a.junit)}[a.part]
    figures = fn()
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    figures["dry_run"] = a.dry_run
    merge(a.out, a.part, figures)
    print(json.dumps({a.part: figures}, default=str))


if __name__ == "__main__":
    main()
