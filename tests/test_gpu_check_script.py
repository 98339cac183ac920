"""scripts/gpu_check.sh --dry-run: the GPU check's own code at toy sizes on the CPU (~40 s).

Run as CI has it (no .whl: glmv's wheel is built and installed alone into a target dir that
becomes PYTHONPATH), it must write every figure of benchmarks/gpu_check.py's FIGURES with no
error, import glmv from the installed wheel, train on the torch backend (as on the DeepSpeed-less
GPU machine), and report pytest -m gpu as all skipped.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_check import FIGURES, SFT_CONFIGS  # noqa: E402


def _errors(x, path=""):
    if isinstance(x, dict):
        return [e for k, v in x.items() for e in _errors(v, f"{path}.{k}")] + (
            [f"{path}: {x['error']}"] if "error" in x else [])
    return []


def test_dry_run_writes_every_figure(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GLMV_TRAIN_BACKEND", "GPU_CHECK_PARTS")}
    env.update(OUT=str(tmp_path / "out"), WHEEL_DIR=str(tmp_path / "no-wheels"), GLMV_TARGET=str(tmp_path / "target"),
               PYTHON=sys.executable, OMP_NUM_THREADS="1")
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert p.returncode == 0, log[-3000:] + p.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert json.loads(p.stdout.strip().splitlines()[-1]) == data  # the figures also end the output
    assert set(data) == set(FIGURES)
    for part, keys in FIGURES.items():
        missing = [k for k in keys if k not in data[part]]
        assert not missing, (part, missing)
        assert data[part]["dry_run"] is True
    assert _errors(data) == []
    assert data["meta"]["glmv_cli"].startswith(str(tmp_path / "target"))
    assert data["meta"]["train_backend"] == "torch"
    assert data["pytest"]["failed"] == 0 and data["pytest"]["errors"] == 0 and data["pytest"]["skipped"] >= 10
    sft = data["sft"]
    assert set(sft["configs"]) == set(SFT_CONFIGS)
    for c in ("packed_flex", "packed_sdpa", "padded_sdpa"):
        r = sft["configs"][c]
        assert r["train_backend"] == "torch" and r["tokens_per_s"] > 0 and 0 < r["mfu"]
        assert r["real_tokens"] == sft["real_tokens_per_step"]  # the same samples in every layout
    assert sft["configs"]["padded_sdpa"]["row_tokens"] > sft["real_tokens_per_step"]  # padding
    assert sft["configs"]["packed_flex"]["row_tokens"] == sft["real_tokens_per_step"]  # full rows
    assert data["exact"]["packed_ok"] is True and data["exact"]["packed_flex_rel"] < 0.05
    for op in ("logprobs", "ce"):
        assert data["kernels"][op]["chunked_over_naive"]["loss_abs_diff"] < 1e-4
    assert data["rollout"]["hf_engine_tokens"] > 0 and data["rollout"]["generate_tokens"] > 0
    assert "done in" in log and not (tmp_path / "out" / "sft.out").exists()
