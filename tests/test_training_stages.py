"""glmv pretrain / extend-context / sft end to end on tiny models and real packed data."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from glmv_cli.artifacts import read_manifest, staging_path
from glmv_cli.main import app

runner = CliRunner()


def _records(d: Path, n: int = 12) -> Path:
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        r = {"id": f"r{i}", "domain": "counting", "answer": str(i % 5)}
        if i % 3 == 0:
            Image.new("RGB", (112, 112), (i * 20 % 255, 40, 90)).save(d / f"im{i}.png")
            r["images"] = [f"im{i}.png"]
            q = "<image>How many dots are there?"
        else:
            q = f"What is {i} plus {i}?"
        r["messages"] = [{"role": "user", "content": q},
                         {"role": "assistant", "content": f"<think>count {i}</think><answer>It is "
                                                          f"<|begin_of_box|>{i % 5}<|end_of_box|></answer>"}]
        r["text"] = f"A picture {'<image> ' if 'images' in r else ''}of {i} dots and some words about them."
        lines.append(json.dumps(r))
    (d / "recs.jsonl").write_text("\n".join(lines) + "\n")
    return d / "recs.jsonl"


def _pack(recs: Path, out: Path, mode: str, seq_len: int = 128) -> Path:
    from glmv_cli.stages.pack import PackOptions, pack

    pack(PackOptions(model="tiny", inputs=[str(recs)], out=out, mode=mode, seq_len=seq_len).validate())
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    recs = _records(root / "raw")
    return {"root": root, "recs": recs, "sft": _pack(recs, root / "sft", "sft"),
            "pretrain": _pack(recs, root / "pt", "pretrain")}


def _run(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r


def test_sft_exports_a_model_that_loads_and_generates(data, tmp_path):
    out = tmp_path / "sft"
    r = _run("sft", "--model", "tiny", "--data", data["sft"], "--out", out, "--max-steps", 3,
             "--global-batch", 2, "--lr", "1e-3", "--checkpoint-every", 2)
    assert r.exit_code == 0, r.output
    assert "step 3/3 | loss " in r.output and " | tok/s " in r.output and " | mfu " in r.output
    m = read_manifest(out, expect_stage="sft")
    assert m.metrics["steps"] == 3 and m.metrics["packs"] == 5 and m.metrics["seq_len"] == 128
    assert [e["stage"] for e in m.lineage] == ["pack"]
    assert "metrics.jsonl" in m.files and "config.json" in m.files and "model.safetensors.index.json" in m.files
    assert not (out / "checkpoints").exists() and not staging_path(out).exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3

    from transformers import Glm4vForConditionalGeneration

    from glmv_cli.modeling import load

    hf = Glm4vForConditionalGeneration.from_pretrained(out)
    ours, proc = load(out)
    a, b = hf.state_dict(), ours.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ids = proc.tokenizer("[gMASK]<sop><|user|>\nhi<|assistant|>\n", return_tensors="pt").input_ids
    gen = hf.generate(ids, max_new_tokens=4, do_sample=False,
                      mm_token_type_ids=torch.zeros_like(ids))
    assert gen.shape == (1, ids.shape[1] + 4)


KILL = """
import os, signal, sys
from glmv_cli.training.engine import Engine
orig = Engine.train_step
def train_step(self, *a, **k):
    if self.step == 3:  # steps 1-3 done, checkpoint at 2: die as an OOM-killer would
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, *a, **k)
Engine.train_step = train_step
from glmv_cli.main import app
app(sys.argv[1:])
"""


def test_killed_run_resumes_exactly_and_another_run_is_refused(data, tmp_path):
    """glmv sft killed (SIGKILL) after step 3; --resume auto continues from the step-2 checkpoint and
    steps 3-6 give the uninterrupted run's losses exactly (CPU fp32, tolerance 0)."""
    import os
    import signal
    import subprocess
    import sys

    common = ["sft", "--model", "tiny", "--data", str(data["sft"]), "--max-steps", "6", "--global-batch", "2",
              "--lr", "1e-3", "--checkpoint-every", "2"]
    r = _run(*common, "--out", tmp_path / "ref")
    assert r.exit_code == 0, r.output
    ref = [json.loads(x)["loss"] for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]

    out = tmp_path / "o"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run([sys.executable, "-c", KILL, *common, "--out", str(out), "--resume", "auto"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    stage = staging_path(out)
    assert sorted(c.name for c in (stage / "checkpoints").iterdir()) == ["step-00000002"]
    assert not out.exists()

    r = _run(*common, "--out", out, "--lr", "3e-4", "--resume", "auto")
    assert r.exit_code == 2
    assert (f"error: --resume auto: '{stage}' holds a run with other options (--lr: 0.001 != 0.0003); "
            "use a new --out, or pass --resume never to start over") in r.output

    r = _run(*common, "--out", out, "--resume", "auto")
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    assert m.metrics["resumed_from_step"] == 2 and m.metrics["steps"] == 6
    assert m.metrics["first_loss"] == ref[0] and m.metrics["final_loss"] == ref[-1]
    got = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [g["step"] for g in got] == [1, 2, 3, 4, 5, 6]
    assert [g["loss"] for g in got] == ref


def test_bad_inputs_stop_before_training(data, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "packs.json").write_text("{}")
    r = _run("sft", "--model", "tiny", "--data", half, "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert f"error: packed dataset '{half}' has no manifest.json: it is not a complete glmv artifact" in r.output

    long = _pack(data["recs"], tmp_path / "long", "sft", seq_len=9000)  # tiny has 8192 positions
    r = _run("sft", "--model", "tiny", "--data", long, "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert (f"error: packed dataset '{long}' holds packs of up to 9000 tokens but the model's "
            "max_position_embeddings is 8192; repack with --seq-len <= 8192 or run glmv extend-context") in r.output

    from glmv_cli.modeling import load, save

    model, proc = load("tiny")
    proc.tokenizer.add_tokens(["<zz_extra>"])  # a different tokenizer than the data was packed with
    model.resize_token_embeddings(len(proc.tokenizer))
    save(model, proc, tmp_path / "other_tok")
    r = _run("sft", "--model", tmp_path / "other_tok", "--data", data["sft"], "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert (f"error: packed dataset '{data['sft']}' was tokenised with a different tokenizer: vocab_size "
            "2048 in its packs.json, 2049 for the model; re-run glmv pack") in r.output

    r = _run("sft", "--model", "tiny", "--data", data["pretrain"], "--out", tmp_path / "x")
    assert r.exit_code == 2 and "was packed in 'pretrain' mode; glmv sft needs assistant-only labels" in r.output
    r = _run("sft", "--model", "tiny", "--data", data["sft"], "--out", tmp_path / "x", "--global-batch", 3,
             "--micro-batch", 2)
    assert r.exit_code == 2
    assert "error: --global-batch 3 must be a multiple of --micro-batch 2 x 1 data-parallel process(es) = 2" in r.output
    assert not (tmp_path / "x").exists() and not staging_path(tmp_path / "x").exists()


def test_vocab_larger_than_the_model_is_refused():
    from types import SimpleNamespace

    from glmv_cli.errors import GlmvError
    from glmv_cli.training.run import check_data_vs_model
    from glmv_cli.testing.tiny import tiny_glm4v_config

    ds = SimpleNamespace(seq_len=64, tokenizer_info={"vocab_size": 2048}, image_token_id=290)
    model = SimpleNamespace(config=tiny_glm4v_config())
    with pytest.raises(GlmvError) as e:
        check_data_vs_model(ds, model, None, Path("D"), 1)
    assert str(e.value) == ("packed dataset 'D' was tokenised with 2048 tokens but the model's vocab_size is 300; "
                            "pack with the model's tokenizer")


def _sources(root: Path):
    from transformers import Aimv2VisionConfig, Aimv2VisionModel, Glm4Config, Glm4ForCausalLM

    from glmv_cli.modeling.tokenizer import offline_tokenizer

    tok = offline_tokenizer()
    torch.manual_seed(3)
    Aimv2VisionModel(Aimv2VisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=112, patch_size=14)).save_pretrained(root / "aimv2")
    Glm4ForCausalLM(Glm4Config(vocab_size=len(tok), hidden_size=128, intermediate_size=96, num_hidden_layers=1,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                               pad_token_id=tok.pad_token_id)).save_pretrained(root / "glm4")
    tok.save_pretrained(root / "glm4")
    return root / "aimv2", root / "glm4"


def test_pretrain_assembled_trains_only_the_merger_then_extend_context(data, tmp_path):
    from glmv_cli.modeling import load
    from glmv_cli.modeling.assemble import assemble, load_sources

    vis, llm = _sources(tmp_path)
    out = tmp_path / "pt"
    r = _run("pretrain", "--init-vision", vis, "--init-llm", llm, "--data", data["pretrain"], "--out", out,
             "--train", "merger", "--max-steps", 2, "--global-batch", 2, "--lr", "1e-2")
    assert r.exit_code == 0, r.output
    m = read_manifest(out, expect_stage="pretrain")
    trained, _ = load(out)
    init = assemble(*load_sources(vis, llm), token_ids={k: getattr(trained.config, k) for k in (
        "image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
        "video_start_token_id", "video_end_token_id")}, seed=0)
    a, b = init.state_dict(), trained.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.startswith(("model.visual.merger.", "model.visual.downsample.")) for k in changed)
    assert m.metrics["trainable_parameters"] < m.metrics["parameters"]

    out2 = tmp_path / "ext"
    r = _run("extend-context", "--model", out, "--data", data["pretrain"], "--out", out2, "--seq-len", 2048,
             "--max-steps", 1, "--global-batch", 2)
    assert r.exit_code == 0, r.output
    m2 = read_manifest(out2, expect_stage="extend-context")
    assert [e["stage"] for e in m2.lineage] == ["pack", "pretrain"]
    assert json.loads((out2 / "config.json").read_text())["text_config"]["max_position_embeddings"] == 2048
    r = _run("extend-context", "--model", out, "--data", data["pretrain"], "--out", tmp_path / "e2", "--seq-len", 64)
    assert r.exit_code == 2
    assert f"holds packs of 128 tokens, more than --seq-len 64; repack with glmv pack --seq-len 64" in r.output


def _tb_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_report_to_tensorboard_writes_the_loss_curve(data, tmp_path):
    """--report-to tensorboard: the real event files hold every metrics.jsonl scalar, loss included."""
    out = tmp_path / "sft-tb"
    r = _run("sft", "--model", "tiny", "--data", data["sft"], "--out", out, "--max-steps", 4,
             "--global-batch", 1, "--lr", "1e-3", "--report-to", "tensorboard")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    tb = _tb_scalars(out / "tensorboard")
    assert [s for s, _ in tb["loss"]] == [1, 2, 3, 4]
    assert [v for _, v in tb["loss"]] == pytest.approx([r["loss"] for r in rows], rel=1e-6)  # float32 events
    assert {"lr", "grad_norm", "tok_s", "mfu"} <= set(tb)
    m = read_manifest(out)
    assert any(f.startswith("tensorboard/") for f in m.files)  # hashed with the artifact


def test_report_to_wandb_offline_needs_no_account(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "sft-wandb"
    r = _run("sft", "--model", "tiny", "--data", data["sft"], "--out", out, "--max-steps", 2,
             "--global-batch", 1, "--report-to", "wandb")
    assert r.exit_code == 0, r.output
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    assert not any(f.startswith("wandb/") for f in read_manifest(out).files)  # tracker state, not the model
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
