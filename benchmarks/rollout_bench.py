"""Generated tokens/s of the rollout engines on the same prompts, in one run: in-process HF
(batched and one rollout at a time) and the ``server`` engine over 1 and 2 ``glmv serve`` processes.

    OMP_NUM_THREADS=1 python benchmarks/rollout_bench.py [--model tiny] [--prompts 8] [--n 8]
        [--max-new-tokens 64] [--image 112] [--device cpu] [--repeats 2] [--servers 1,2]

Every mode decodes the same prompts with the same per-rollout seeds, so they generate the same
tokens (checked: ``identical_tokens``, ``server_identical_tokens``) and the comparison is
work-for-work: "batched" runs every prompt x n rollout as rows of one KV-cache decode loop (prefill
once per distinct prompt, cache repeated n times), "sequential" runs each rollout alone (batch of one
row), "serverK" sends every rollout as its own HTTP request (vLLM dialect: text prompts as token ids
to /v1/completions, image prompts as chat messages) to K local servers (one thread each), which batch
what arrives together. Rollouts end naturally (stop token or ``--max-new-tokens``); the token count
is what was generated. Reports tokens/s of each (best of ``--repeats``) and the speed-ups as one
JSON line on stdout. The servers' start-up is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_prompts(processor, count: int, image_px: int, seed: int):
    import numpy as np
    from PIL import Image

    from glmv_cli.data.chat import encode_chat
    from glmv_cli.generation import Prompt

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        msgs = [{"role": "user", "content": f"<image>How many shapes are in picture {i}? Think step by step."}]
        if image_px:
            img = Image.fromarray((rng.random((image_px, image_px + 28 * (i % 3), 3)) * 255).astype("uint8"))
            enc = processor.image_processor(images=[img], return_tensors="pt")
            grid = enc["image_grid_thw"]
            counts = [int(grid[0].prod()) // 4]
            ids = encode_chat(processor.tokenizer, msgs, image_token_counts=counts, add_generation_prompt=True)["input_ids"]
            out.append(Prompt(f"q{i}", ids, enc["pixel_values"], grid, messages=msgs, images=[img]))
        else:
            msgs = [{"role": "user", "content": f"How many shapes are in picture {i}? Think step by step."}]
            ids = encode_chat(processor.tokenizer, msgs, add_generation_prompt=True)["input_ids"]
            out.append(Prompt(f"q{i}", ids, messages=msgs))
    return out


def run(engine, prompts, params, n: int, seed: int) -> tuple[float, int, list]:
    import torch

    t0 = time.perf_counter()
    with torch.no_grad():
        out = engine.generate(prompts, params, n=n, seed=seed)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    toks = sum(r.num_tokens for rs in out for r in rs)
    return dt, toks, [[r.token_ids for r in rs] for rs in out]


def server_runs(a, model, processor, prompts, params, counts, best, tokens, outs) -> None:
    """The server engine over 1..max(counts) local servers started once from a saved copy of the model."""
    import tempfile

    from glmv_cli.generation import ServerEngine
    from glmv_cli.modeling import save
    from glmv_cli.testing.serve import start_servers

    with tempfile.TemporaryDirectory() as tmp:
        save(model.to("cpu"), processor, tmp)
        model.to(a.device)
        procs = start_servers(tmp, count=max(counts), args=["--max-batch-rows", str(a.prompts * a.n),
                                                            "--device", a.device])
        try:
            for k in counts:
                eng = ServerEngine([s.url for s in procs[:k]], processor.tokenizer, config=model.config,
                                   generation_config=model.generation_config)
                run(eng, prompts[:1], params, 1, a.seed)  # warm-up
                for _ in range(a.repeats):
                    dt, toks, ids = run(eng, prompts, params, a.n, a.seed)
                    best[f"server{k}"] = min(best.get(f"server{k}", float("inf")), dt)
                    tokens[f"server{k}"], outs[f"server{k}"] = toks, ids
        finally:
            for s in procs:
                s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="preset or model directory")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--image", type=int, default=112, help="image side in pixels (0: text-only prompts)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--servers", default="1,2", help="server counts to run ('' for none)")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from glmv_cli.modeling import load
    from glmv_cli.generation import HFEngine, SamplingParams

    model, processor = load(a.model)
    model.to(a.device).eval()
    prompts = build_prompts(processor, a.prompts, a.image, a.seed)
    params = SamplingParams(max_new_tokens=a.max_new_tokens)
    batched = HFEngine(model, processor, batch_size=a.prompts * a.n)
    single = HFEngine(model, processor, batch_size=1)
    run(batched, prompts[:1], params, 1, a.seed)  # warm-up (allocator, kernels)
    best = {}
    tokens = {}
    outs = {}
    for _ in range(a.repeats):
        for name, eng in (("batched", batched), ("sequential", single)):
            dt, toks, ids = run(eng, prompts, params, a.n, a.seed)
            best[name] = min(best.get(name, float("inf")), dt)
            tokens[name], outs[name] = toks, ids
    counts = [int(x) for x in a.servers.split(",") if x.strip()]
    if counts:
        server_runs(a, model, processor, prompts, params, counts, best, tokens, outs)
    same = outs["batched"] == outs["sequential"]
    res = {
        "model": a.model, "device": a.device, "threads": torch.get_num_threads(), "prompts": a.prompts, "n": a.n,
        "max_new_tokens": a.max_new_tokens, "image_px": a.image, "generated_tokens": tokens["batched"],
        "identical_tokens": same,
        "batched_tok_s": round(tokens["batched"] / best["batched"], 1),
        "sequential_tok_s": round(tokens["sequential"] / best["sequential"], 1),
        "speedup": round(best["sequential"] / best["batched"], 2),
    }
    for k in counts:
        res[f"server{k}_tok_s"] = round(tokens[f"server{k}"] / best[f"server{k}"], 1)
        res[f"server{k}_vs_batched"] = round(best["batched"] / best[f"server{k}"], 2)
    if counts:
        res["server_identical_tokens"] = all(outs[f"server{k}"] == outs["batched"] for k in counts)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
