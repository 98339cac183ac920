"""Training engine: schedule, batching, loss arithmetic, real learning, exact resume after a kill."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from glmv_cli.errors import GlmvError
from glmv_cli import options as O
from glmv_cli.lifecycle import truncate_rows
from glmv_cli.training.config import BatchConfig, EngineConfig, OptimConfig, TrainConfig, lr_at, total_steps
from glmv_cli.training.loop import batch_indices, complete_checkpoints, rank_micro_batches, step_line
from glmv_cli.training.loss import concat_packs, sample_lengths, shifted_targets, step_flops

REPO = Path(__file__).resolve().parents[1]


def test_lr_schedule_hand_values():
    o = OptimConfig(lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    # warmup 0.5, 1.0; cosine over steps 2..10 (span 8) from 1.0 to 0.1
    assert [lr_at(s, o, 11) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_at(6, o, 11) == pytest.approx(0.55)  # half-way: 0.1 + 0.9 * 0.5
    assert lr_at(10, o, 11) == pytest.approx(0.1)
    o.schedule = "linear"
    assert lr_at(4, o, 11) == pytest.approx(1.0 - 0.9 * 0.25)
    o.schedule = "constant"
    assert lr_at(9, o, 11) == 1.0


@pytest.mark.parametrize("cfg,world,msg", [
    (TrainConfig(optim=OptimConfig(lr=0)), 1, "--lr must be > 0, got 0"),
    (TrainConfig(batch=BatchConfig(micro_batch=2, global_batch=6)), 2,
     "--global-batch 6 must be a multiple of --micro-batch 2 x 2 data-parallel process(es) = 4"),
    (TrainConfig(engine=EngineConfig(zero_stage=4)), 1, "--zero-stage must be one of 0, 1, 2, 3, got '4'"),
    (TrainConfig(optim=OptimConfig(schedule="step")), 1, "--schedule must be one of cosine, linear, constant, got 'step'"),
    (TrainConfig(engine=EngineConfig(train=("llm", "text"))), 1, "--train must be a comma list of vision, merger, llm, got 'llm,text'"),
    (TrainConfig(optim=OptimConfig(betas=(0.9, 1.0))), 1, "--betas must be two numbers in [0, 1), got [0.9, 1.0]"),
])
def test_config_messages_name_the_flag(cfg, world, msg):
    with pytest.raises(GlmvError) as e:
        cfg.validate(world)
    assert str(e.value) == msg


def test_total_steps_and_data_order():
    cfg = TrainConfig(batch=BatchConfig(global_batch=4, epochs=2.0))
    assert total_steps(cfg, 10, 1) == 4  # 2 full global batches per epoch
    with pytest.raises(GlmvError, match=r"--global-batch 4 is larger than the data \(3 packs\)"):
        total_steps(cfg, 3, 1)
    e0 = batch_indices(0, 10, 4, seed=1) + batch_indices(1, 10, 4, seed=1)
    assert len(set(e0)) == 8  # no pack twice within an epoch
    assert batch_indices(2, 10, 4, seed=1) != batch_indices(0, 10, 4, seed=1)  # a new permutation
    assert batch_indices(2, 10, 4, seed=1) == batch_indices(2, 10, 4, seed=1)
    # the same global batch, dealt to 2 ranks in micro batches of 1, covers it exactly
    idx = [7, 3, 5, 1]
    assert rank_micro_batches(idx, 1, 2, 0) == [[7], [5]]
    assert rank_micro_batches(idx, 1, 2, 1) == [[3], [1]]
    assert rank_micro_batches(idx, 2, 1, 0) == [[7, 3], [5, 1]]


def test_shift_masks_sample_starts_and_flops():
    labels = torch.tensor([[10, 11, 12, -100, 21, 22]])
    pos = torch.tensor([0, 1, 2, 0, 1, 2]).view(1, 1, 6).expand(4, 1, 6)
    # target of position 2 is token 3, which starts a new sample: never predicted
    assert shifted_targets(labels, pos).tolist() == [[11, 12, -100, 21, 22]]
    assert sample_lengths(pos) == [3, 3]
    # 6*N*T + 12*L*h*sum(s^2)/2 + 6*Nv*patches
    assert step_flops(100, 2, 8, [[3, 3]], 10, 4) == 6 * 100 * 6 + 12 * 2 * 8 * 9 + 6 * 10 * 4
    a = {"input_ids": torch.tensor([[1, 2]]), "labels": torch.tensor([[1, 2]]),
         "position_ids": torch.zeros(4, 1, 2, dtype=torch.long), "mm_token_type_ids": torch.zeros(1, 2, dtype=torch.long)}
    b = dict(a, pixel_values=torch.ones(4, 6), image_grid_thw=torch.tensor([[1, 2, 2]]))
    c = concat_packs([a, b])
    assert c["input_ids"].shape == (1, 4) and c["position_ids"].shape == (4, 1, 4)
    assert c["pixel_values"].shape == (4, 6) and c["image_grid_thw"].tolist() == [[1, 2, 2]]
    line = step_line(120, 1000, {"loss": 1.23456, "lr": 3e-4, "tok_s": 12345.6, "mfu": 0.4123})
    assert line == "step 120/1000 | loss 1.2346 | lr 3.000e-04 | tok/s 12,346 | mfu 41.23%"


def test_vision_probe_changes_no_real_logit():
    from glmv_cli.training.loss import lm_loss_sum, with_vision_probe
    from glmv_cli.testing.tiny import TINY_IDS, synthetic_packs, tiny_glm4v

    model = tiny_glm4v()
    for pack in synthetic_packs(2, 32, image_every=2):  # one pack with an image, one without
        probed = with_vision_probe(pack, image_token_id=TINY_IDS["image_token_id"], patch_dim=3 * 2 * 14 * 14, merge=2)
        assert probed["input_ids"].shape[1] == 33 and probed["labels"][0, -1] == -100
        assert probed["position_ids"][:, 0, -1].tolist() == [0, 0, 0, 0]
        assert probed["image_grid_thw"][-1].tolist() == [1, 2, 2]
        with torch.no_grad():
            a = model(**{k: v for k, v in pack.items() if k != "labels"}).logits
            b = model(**{k: v for k, v in probed.items() if k != "labels"}).logits
            assert (a - b[:, :32]).abs().max().item() < 1e-5
            assert torch.allclose(lm_loss_sum(model, pack), lm_loss_sum(model, probed), rtol=1e-6)


def _engine(steps, **kw):
    from glmv_cli.training.engine import Engine
    from glmv_cli.testing.tiny import tiny_glm4v

    cfg = O.build(TrainConfig, {"lr": 1e-2, "warmup_steps": 3, "weight_decay": 0.0, "micro_batch": 1,
                                "global_batch": 4, "max_steps": steps, **kw})
    return Engine(tiny_glm4v(), cfg, total_steps=steps)


def test_overfits_a_handful_of_packs(tmp_path, capsys):
    """Real learning: 4 packs (2 with an image), 25 steps cut the loss by >= 90 % (CPU, ~10 s)."""
    from glmv_cli.training.loop import fit
    from glmv_cli.testing.tiny import synthetic_packs

    packs = synthetic_packs(4, 64, image_every=2)
    eng = _engine(25, log_every=5)
    s = fit(eng, packs, tmp_path)
    assert s["steps"] == 25
    assert s["final_loss"] <= 0.1 * s["first_loss"], s
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 26))
    assert rows[0]["label_tokens"] == 4 * 63 - 4 - 2  # shifted, minus sample starts and image tokens
    assert all(r["grad_norm"] > 0 and r["tok_s"] > 0 and r["mfu"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "step 25/25 | loss " in out and out.count("step ") == 5
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step-00000025"]


def test_chunked_loss_trains_like_the_full_logits_loss(tmp_path):
    """--chunked-loss (default) and --no-chunked-loss give the same loss trajectory (fp32, 1e-5 rel)."""
    from glmv_cli.training.loop import fit
    from glmv_cli.testing.tiny import synthetic_packs

    packs = synthetic_packs(4, 64, image_every=2)
    runs = {}
    for chunked in (True, False):
        out = tmp_path / str(chunked)
        fit(_engine(4, chunked_loss=chunked), packs, out)
        runs[chunked] = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(runs[True]) == 4
    for a, b in zip(runs[True], runs[False]):
        assert a == pytest.approx(b, rel=1e-5)
    assert runs[True][-1] < runs[True][0]


CRASH = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_training import _engine
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loop import fit
    from glmv_cli.testing.tiny import synthetic_packs
    orig = Engine.train_step
    def train_step(self, *a, **k):
        if self.step == {crash_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, after the step-{ckpt} checkpoint
        return orig(self, *a, **k)
    Engine.train_step = train_step
    fit(_engine(6, checkpoint_every={ckpt}, zero_stage={zero}), synthetic_packs(8, 64, image_every=3), {run!r})
""")


@pytest.mark.parametrize("zero", [0, 2])
def test_resume_after_kill_gives_identical_losses(tmp_path, zero):
    """Kill after step 3 (checkpoint at 2); --resume from it: steps 3..6 equal the uninterrupted run
    exactly (tolerance 0 on CPU fp32: same data order, weights, AdamW moments, RNG)."""
    from glmv_cli.training.loop import fit
    from glmv_cli.testing.tiny import synthetic_packs

    packs = synthetic_packs(8, 64, image_every=3)
    ref_dir = tmp_path / "ref"
    fit(_engine(6, checkpoint_every=2, zero_stage=zero), packs, ref_dir)
    ref = [json.loads(x)["loss"] for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]

    run = tmp_path / "run"
    script = CRASH.format(tests=str(REPO / "tests"), crash_at=3, ckpt=2, zero=zero, run=str(run))
    env = dict(os.environ)  # the same thread count as this process (conftest), so runs are comparable bitwise
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert [c.name for c in complete_checkpoints(run)] == ["step-00000002"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # steps 1-3 ran, 3 is lost

    eng = _engine(6, checkpoint_every=2, zero_stage=zero)
    truncate_rows(run / "metrics.jsonl", 2)  # what the run lifecycle does on resume
    fit(eng, packs, run, resume_from=complete_checkpoints(run)[-1])
    got = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [g["step"] for g in got] == [1, 2, 3, 4, 5, 6]
    assert [g["loss"] for g in got] == ref
    assert math.isfinite(ref[-1]) and ref[-1] < ref[0]


def test_step_api_with_a_caller_loss_on_padded_rows():
    """The RL update's use: padded multi-row batches, its own per-token loss and unit count."""
    eng = _engine(3)
    ids = torch.randint(0, 280, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "weights": mask[:, 1:].float()}
    seen = []

    def loss_fn(model, b):
        seen.append(b["input_ids"].shape)  # passed unchanged: no probe on non-packed batches
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       mm_token_type_ids=torch.zeros_like(b["input_ids"])).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b["input_ids"][:, 1:], reduction="none")
        return (nll * b["weights"]).sum()

    m = eng.train_step([batch, batch], loss_fn=loss_fn, count_fn=lambda b: float(b["weights"].sum()))
    assert seen == [(2, 9), (2, 9)]
    assert m["label_tokens"] == 2 * 13 and m["tokens"] == 36 and eng.step == 1
    assert 4.0 < m["loss"] < 7.0 and m["grad_norm"] > 0


def test_checkpoint_of_another_layout_is_refused(tmp_path):
    from glmv_cli.testing.tiny import synthetic_packs

    eng = _engine(2)
    eng.train_step([concat_packs(synthetic_packs(1, 32))])
    eng.save_checkpoint(tmp_path / "ck", {"cursor": {"step": 1}})
    other = _engine(2, zero_stage=1)
    with pytest.raises(GlmvError, match=r"different layout \(zero_stage 0 -> 1\); resume with the same number"):
        other.load_checkpoint(tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["model.safetensors", "optim-rank-00000.safetensors", "rng-rank-00000.json",
                     "rng-rank-00000.safetensors", "state.json"]
