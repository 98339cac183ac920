"""glmv rlcs over 2 processes (torchrun, gloo, ZeRO-2) follows the 1-process run.

Records mix image prompts and text-only prompts, so some micro batches of some rank carry no image
(the vision-probe row keeps the collectives aligned). Rewards: gate-free OCR edit similarity on a
random tiny model (graded, so groups are informative). What must match: the prompts each step
samples and their rewards (exactly: rollouts are seeded per prompt and index, not per batch),
the held-out per-prompt rewards, and the losses (1e-4 relative: the gradient reduction order
differs). Expected and measured: identical prompt ids and rewards; loss differences ~1e-7.
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
    import sys, torch
    from glmv_cli import options as O
    from glmv_cli.stages.rlcs import RlcsOptions, rlcs
    from glmv_cli.training import dist
    work, out, zero = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = O.build(RlcsOptions, {
        "model": "tiny", "style": "glm45v", "forced_answering": False, "max_new_tokens": 6,
        "group_size": 4, "batch_prompts": 3, "lr": 1e-3, "micro_batch": 2, "steps": 3, "seed": 5,
        "data": f"{work}/rl.jsonl", "reward_config": f"{work}/rewards.yaml", "eval_data": f"{work}/rl.jsonl",
        "eval_limit": 5, "eval_every": 2, "eval_samples": 2, "eval_temperature": 1.0,
        "checkpoint_every": 2, "zero_stage": zero, "out": out})
    try:
        rlcs(opts)
    finally:
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


def _torchrun(script: Path, args: list[str], timeout: int = 300) -> tuple[int, str]:
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the launcher and both workers
        out, err = p.communicate()
    return p.returncode, out + err


def test_two_processes_follow_one_process(tmp_path):
    _data(tmp_path)
    script = tmp_path / "rl.py"
    script.write_text(SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "one"), "0"], env=_env(),
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert one.returncode == 0, one.stderr[-3000:]
    rc, log = _torchrun(script, [str(tmp_path), str(tmp_path / "two"), "2"])
    assert rc == 0, log[-3000:]
    a, b = _lines(tmp_path / "one" / "metrics.jsonl"), _lines(tmp_path / "two" / "metrics.jsonl")
    assert [m["step"] for m in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert x["prompt_ids"] == y["prompt_ids"]
        assert x["reward"] == y["reward"] and x["groups_all_equal"] == y["groups_all_equal"]
        assert x["loss_tokens"] == y["loss_tokens"] and x["loss_tokens"] > 0
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-7)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
        assert y["behaviour_logp_gap"] < 1e-4
    ea, eb = _lines(tmp_path / "one" / "eval.jsonl"), _lines(tmp_path / "two" / "eval.jsonl")
    assert [e["step"] for e in eb] == [0, 2, 3]
    assert eb[0]["per_prompt"] == ea[0]["per_prompt"] and len(eb[0]["per_prompt"]) == 5
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert man["metrics"]["world_size"] == 2 and man["metrics"]["zero_stage"] == 2
    assert not (tmp_path / "two" / "checkpoints").exists()
