"""glmv rlcs over 2 processes (torchrun, gloo) follows the 1-process run, under ZeRO-2 and ZeRO-3.

Records mix image prompts and text-only prompts, so some packs of some rank carry no image (the
probe image keeps the collectives aligned). Rewards: gate-free OCR edit similarity on a random
tiny model (graded, so groups are informative). What must match: the prompts each step samples
and their rewards (exactly: rollouts are seeded per prompt and index, not per batch), the held-out
per-prompt rewards, and the losses (1e-4 relative: the gradient reduction order differs; measured
~1e-7). Under ZeRO-3 the ranks decode in lock-step -- with --rollout-batch 4 (one prompt's group
per decode batch) a rank rolling 2 prompts runs 2 decode batches while the other runs 1 and then
an idle one -- and the chunked head gathers its weight in its own module call; the export must load
in plain transformers.

The update's micro batches: every rank runs the same number whatever the kept-group count. The
case that used to crash (2 ranks, ZeRO-2, group size 3, one kept group, --micro-batch 1: rank 0
had 2 micro batches, rank 1 one) runs end to end, and a sweep over kept counts 1..2*world drives the
update directly under ZeRO-2 and ZeRO-3 against the 1-process update of the same rows.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GATE_FREE = "style: glm45v\ngates: {require_think: false, require_box: false, language_mix: false}\n"

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from glmv_cli import options as O
    from glmv_cli.stages.rlcs import RlcsOptions, rlcs
    from glmv_cli.training import dist
    work, out, zero, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    opts = O.build(RlcsOptions, {
        "model": "tiny", "style": "glm45v", "forced_answering": False, "max_new_tokens": 6,
        "group_size": 4, "batch_prompts": 3, "lr": 1e-2, "micro_batch": 2, "steps": 3, "seed": 5,
        "mini_batches": 2, "rollout_batch": 4, "data": f"{work}/rl.jsonl", "reward_config": f"{work}/rewards.yaml",
        "eval_data": f"{work}/rl.jsonl", "eval_limit": 5, "eval_every": 2, "eval_samples": 2,
        "eval_temperature": 1.0, "checkpoint_every": 2, "zero_stage": zero, "out": out, **extra})
    try:
        rlcs(opts)
    finally:
        dist.shutdown()
""")

SWEEP = textwrap.dedent("""
    import json, sys, torch
    from glmv_cli.modeling import load
    from glmv_cli.rl.config import LossOptions
    from glmv_cli.rl.rows import PackSpec, Row
    from glmv_cli.rl.update import PolicyUpdate, UpdateSetup
    from glmv_cli.training import dist
    from glmv_cli.training.config import BatchConfig, EngineConfig, OptimConfig, TrainConfig
    from glmv_cli.training.engine import Engine
    out, world, model_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def rows(kept, cfg, group=3):
        g = torch.Generator().manual_seed(kept)
        out = []
        for k in range(kept):
            img = k % 3 != 1  # image prompts and text prompts: packs with 0, 1 or 2 distinct images
            prompt = ([cfg.image_start_token_id] + [cfg.image_token_id] * 16 + [cfg.image_end_token_id] if img else [])
            prompt = prompt + torch.randint(0, 1000, (5,), generator=g).tolist()
            pv = torch.randn(64, 1176, generator=g) if img else None
            for j in range(group):
                n = 2 + (k + 2 * j) % 5
                resp = torch.randint(0, 1000, (n,), generator=g).tolist()
                out.append(Row(prompt + resp, len(prompt), [False] * n, [-1.0] * n, float(j) - 1.0,
                               pv, torch.tensor([[1, 8, 8]]) if img else None, "ocr", f"p{k}"))
        return out

    res = {}
    for zero in (2, 3):
        model, _ = load(model_dir, dtype="fp32")
        # lr 1e-9: every kept count meets (almost exactly) the initial weights, so 1 and 2 processes
        # compare gradients of the same weights, not Adam-amplified reduction noise of earlier steps
        cfg = TrainConfig(optim=OptimConfig(lr=1e-9, warmup_steps=0, weight_decay=0.0, schedule="constant"),
                          batch=BatchConfig(1, world, max_steps=8),
                          engine=EngineConfig(zero_stage=zero, vision_chunk_images=1)).validate(world)
        eng = Engine(model, cfg, total_steps=8)
        c = model.config
        spec = PackSpec(0, c.image_token_id, 2, 1176)
        # ZeRO-2 at micro batch 1: the configuration that crashed (one rank 2 micro batches, the other
        # 1). ZeRO-3 at micro batch 2: a pack may hold rows of two prompts and the vision tower runs
        # per image (--vision-chunk-images 1), so every rank's pack k must hold as many images
        micro = 1 if zero == 2 else 2
        upd = PolicyUpdate(eng, LossOptions(), UpdateSetup(spec, micro, 1.0, (c.image_token_id,), False, world > 1))
        res[zero] = [dict(kept=k, **{m: upd.run(rows(k, c), step)[m] for m in ("loss", "grad_norm", "optimizer_steps",
                                                                               "loss_tokens", "update_forwards")})
                     for step, k in enumerate(range(1, 5))]
        eng.close()
    if dist.rank() == 0:
        json.dump(res, open(out, "w"))
    dist.shutdown()
""")


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def _data(d: Path) -> None:
    from PIL import Image

    rows = []
    for i in range(10):
        r = {"id": f"r{i}", "domain": "ocr", "answer": "abc" + "xyz"[i % 3]}
        if i % 2 == 0:
            Image.new("RGB", (56 + 8 * i, 56), (40 * i % 255, 90, 160)).save(d / f"img{i}.png")
            r["images"] = [f"img{i}.png"]
            r["messages"] = [{"role": "user", "content": f"<image>\nSpell item {i}."}]
        else:
            r["messages"] = [{"role": "user", "content": f"Spell item {i}."}]
        rows.append(r)
    (d / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (d / "rewards.yaml").write_text(GATE_FREE, encoding="utf-8")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return env


def _one(script: Path, args: list[str]) -> None:
    one = subprocess.run([sys.executable, str(script), *args], env=_env(), capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert one.returncode == 0, one.stderr[-3000:]


def _torchrun(script: Path, args: list[str], timeout: int = 300) -> None:
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the launcher and both workers
        out, err = p.communicate()
    assert p.returncode == 0, (out + err)[-3000:]


def _wide_vision_model(d: Path) -> Path:
    """The tiny preset with a 320-wide vision tower. DeepSpeed ZeRO-3 keeps parameters under 1e5
    elements whole on every rank (no collective), which in the tiny preset is every vision weight:
    at width 320 the vision blocks are partitioned and gathered per call, as in a real model, so
    ranks calling the tower a different number of times would fail here."""
    import torch
    from transformers import Glm4vForConditionalGeneration

    from glmv_cli.modeling import load, save
    from glmv_cli.modeling.presets import tiny_config

    cfg = tiny_config()
    cfg.vision_config.hidden_size, cfg.vision_config.num_heads, cfg.vision_config.intermediate_size = 320, 4, 704
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(cfg)
    save(model, load("tiny")[1], d / "wide")
    return d / "wide"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    d = tmp_path_factory.mktemp("rlcs_dist")
    _data(d)
    (d / "rl.py").write_text(SCRIPT)
    model = _wide_vision_model(d)
    _one(d / "rl.py", [str(d), str(d / "one"), "0", json.dumps({"model": str(model)})])
    return d


def _same_run(a: list[dict], b: list[dict]) -> None:
    assert [m["step"] for m in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert x["prompt_ids"] == y["prompt_ids"]
        assert x["reward"] == y["reward"] and x["groups_all_equal"] == y["groups_all_equal"]
        assert x["loss_tokens"] == y["loss_tokens"] and x["loss_tokens"] > 0
        assert x["optimizer_steps"] == y["optimizer_steps"] == 2.0
        assert abs(x["loss"]) > 1e-6  # the second mini-batch moved off ratio 1: a real comparison
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-7)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
        assert y["behaviour_logp_gap"] < 1e-4


@pytest.mark.parametrize("zero", [2, 3])
def test_two_processes_follow_one_process(one_process, zero):
    d = one_process
    # ZeRO-3 also runs the vision tower one image at a time (exact up to fp32 rounding): every
    # rank must then hold the same number of images per prefill and per pack (probe images fill up)
    extra = json.dumps({"model": str(d / "wide"), **({"vision_chunk_images": 1} if zero == 3 else {})})
    _torchrun(d / "rl.py", [str(d), str(d / f"two-z{zero}"), str(zero), extra])
    _same_run(_lines(d / "one" / "metrics.jsonl"), _lines(d / f"two-z{zero}" / "metrics.jsonl"))
    ea, eb = _lines(d / "one" / "eval.jsonl"), _lines(d / f"two-z{zero}" / "eval.jsonl")
    assert [e["step"] for e in eb] == [0, 2, 3]
    assert all(x["per_prompt"] == y["per_prompt"] for x, y in zip(ea, eb)) and len(eb[0]["per_prompt"]) == 5
    man = json.loads((d / f"two-z{zero}" / "manifest.json").read_text())
    assert man["metrics"]["world_size"] == 2 and man["metrics"]["zero_stage"] == zero
    assert not (d / f"two-z{zero}" / "checkpoints").exists()
    if zero == 3:  # the gathered export is a plain transformers model with the trained weights
        import torch
        from safetensors.torch import load_file
        from transformers import Glm4vForConditionalGeneration

        m = Glm4vForConditionalGeneration.from_pretrained(str(d / "two-z3"))
        ref = load_file(str(d / "one" / "model-00001-of-00001.safetensors"))
        got = m.state_dict()
        assert set(ref) <= set(got)
        # lr 1e-2, 6 AdamW steps: reduction-order noise on near-zero gradients moves weights ~1e-4
        assert max((got[n] - ref[n]).abs().max().item() for n in ref) < 2e-3
        init = load_file(str(d / "wide" / "model-00001-of-00001.safetensors"))
        k = "model.language_model.layers.0.mlp.down_proj.weight"
        assert (got[k] - init[k]).abs().max().item() > 1e-3  # trained, not the initial weights
        with torch.no_grad():
            assert torch.isfinite(m(input_ids=torch.tensor([[5, 6, 7]])).logits).all()


def test_formerly_crashing_configuration_runs(tmp_path):
    """2 ranks, ZeRO-2, group size 3, B = 1, --micro-batch 1: 3 rows (one rank holds 2, the other 1)."""
    _data(tmp_path)
    (tmp_path / "rl.py").write_text(SCRIPT)
    extra = json.dumps({"group_size": 3, "batch_prompts": 1, "micro_batch": 1, "mini_batches": 1,
                        "eval_every": 0, "eval_data": None, "checkpoint_every": 0})
    _one(tmp_path / "rl.py", [str(tmp_path), str(tmp_path / "one"), "0", extra])
    _torchrun(tmp_path / "rl.py", [str(tmp_path), str(tmp_path / "two"), "2", extra])
    a, b = _lines(tmp_path / "one" / "metrics.jsonl"), _lines(tmp_path / "two" / "metrics.jsonl")
    assert [m["batch_groups"] for m in b] == [1, 1, 1]
    for x, y in zip(a, b):
        assert x["prompt_ids"] == y["prompt_ids"] and x["reward"] == y["reward"]
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4) and y["optimizer_steps"] == 1.0


def test_kept_count_sweep_over_ranks(tmp_path):
    """The update alone over kept counts 1..4 (2 ranks, group size 3, ZeRO-2 and ZeRO-3 with the
    vision tower partitioned and run per image): equal micro batches and image counts on every
    rank, losses and gradient norms of the 1-process update."""
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    model = _wide_vision_model(tmp_path)
    _one(script, [str(tmp_path / "one.json"), "1", str(model)])
    _torchrun(script, [str(tmp_path / "two.json"), "2", str(model)])
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    for zero in ("2", "3"):
        assert [r["kept"] for r in two[zero]] == [1, 2, 3, 4]
        for x, y in zip(one[zero], two[zero]):
            assert y["optimizer_steps"] == 1.0 and y["loss_tokens"] == x["loss_tokens"]
            assert y["update_forwards"] >= x["update_forwards"]  # dead packs pad the short rank
            assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-7), (zero, x, y)
            assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4), (zero, x, y)


def test_engine_server_with_two_servers_and_two_ranks_follows_engine_hf(one_process):
    """--engine server: 2 training ranks (gloo, ZeRO-2) roll out through 2 real `glmv serve` processes
    (SGLang dialect: token ids, exact continuations) and sync the policy to them by disk after every
    step; prompts, rewards and held-out rewards equal the 1-process --engine hf run, losses within 1e-4."""
    from glmv_cli.testing.serve import start_servers

    d = one_process
    servers = start_servers(str(d / "wide"), count=2)
    try:
        extra = json.dumps({"model": str(d / "wide"), "engine": "server", "server_url": [s.url for s in servers],
                            "server_dialect": "sglang"})
        _torchrun(d / "rl.py", [str(d), str(d / "two-server"), "2", extra], timeout=600)
    finally:
        for s in servers:
            s.stop()
    a, b = _lines(d / "one" / "metrics.jsonl"), _lines(d / "two-server" / "metrics.jsonl")
    _same_run(a, b)
    assert all(m["weight_sync_bytes"] > 0 and m["weight_sync_s"] > 0 for m in b)
    ea, eb = _lines(d / "one" / "eval.jsonl"), _lines(d / "two-server" / "eval.jsonl")
    assert [e["step"] for e in eb] == [0, 2, 3] and all(x["per_prompt"] == y["per_prompt"] for x, y in zip(ea, eb))
    man = json.loads((d / "two-server" / "manifest.json").read_text())
    assert not any(f.startswith("scratch/") for f in man["files"]) and not (d / "two-server" / "scratch").exists()
