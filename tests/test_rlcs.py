"""glmv rlcs: option plumbing, input checks, the step loop on the tiny preset, resume, judge failures.

The end-to-end runs use a random tiny model. Its responses never pass the real format gate, so
they are scored with a gate-free reward config (glm45v style, OCR edit similarity of the whole
response): rewards are graded and differ within a group, which gives informative groups and a
real policy update. Responses are kept to a few tokens so each run takes seconds.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app

runner = CliRunner()

GATE_FREE = "style: glm45v\ngates: {require_think: false, require_box: false, language_mix: false}\n"
FAST = ["--model", "tiny", "--style", "glm45v", "--no-forced-answering", "--max-new-tokens", "6",
        "--group-size", "4", "--batch-prompts", "3", "--lr", "1e-3", "--micro-batch", "8"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rec(i: int, domain: str = "ocr", answer: str | None = "abc", **kw) -> dict:
    r = {"id": f"r{i}", "messages": [{"role": "user", "content": f"Spell item {i}."}], "domain": domain, **kw}
    if answer is not None:
        r["answer"] = answer
    return r


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("rlcs")
    (d / "rewards.yaml").write_text(GATE_FREE, encoding="utf-8")
    _write(d / "rl.jsonl", [_rec(i, answer="abc" + "xyz"[i % 3]) for i in range(10)])
    return d


def _run(args: list[str]):
    res = runner.invoke(app, ["rlcs", *args], catch_exceptions=False)
    return res


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- pure pieces


def test_mean_se_hand_values():
    from glmv_cli.rl.groups import mean_se

    m, se = mean_se([0.0, 1.0, 1.0, 0.0])
    assert m == 0.5 and se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
    assert mean_se([0.7]) == (0.7, 0.0) and mean_se([]) == (0.0, 0.0)


def options_from_kwargs(kw):
    from glmv_cli import options as O
    from glmv_cli.stages.rlcs import RlcsOptions

    return O.build(RlcsOptions, {"model": "tiny", "data": "rl.jsonl", "out": "o", **kw})


def test_rl_options_from_flags_and_recipe_forms():
    o = options_from_kwargs({"steps": 3, "tier_boundaries": "[0.1, 0.2, 0.6, 0.9]", "domain_weights": "{stem: 2, ocr: 1}",
                             "clip_eps_high": 0.3, "expansion": False})
    o.validate()
    assert o.rl.curriculum.tier_boundaries == (0.1, 0.2, 0.6, 0.9)
    assert o.rl.curriculum.domain_weights == {"stem": 2.0, "ocr": 1.0}
    assert o.rl.loss.clip_eps_high == 0.3 and o.rl.expansion.expansion is False and o.steps == 3
    assert o.validate().optim.lr == 1e-6  # RL's own defaults for the shared optimizer group
    with pytest.raises(GlmvError, match=r"--clip-eps-high must be >= --clip-eps-low \(0.2\), got 0.1"):
        options_from_kwargs({"clip_eps_high": 0.1}).validate()


def test_zero3_is_accepted_and_unfillable_mini_batches_are_refused():
    assert options_from_kwargs({"zero_stage": 3}).validate(world=2).engine.zero_stage == 3
    assert options_from_kwargs({"zero_stage": 2}).validate(world=4).batch.global_batch == 4
    o = options_from_kwargs({"batch_prompts": 2, "group_size": 4, "mini_batches": 3, "micro_batch": 4})
    with pytest.raises(GlmvError, match=re.escape(
            "--mini-batches 3 x --micro-batch 4 needs at least 12 rows per step, but --batch-prompts 2 x "
            "--group-size 4 keeps 8; lower --mini-batches or --micro-batch")):
        o.validate()
    # one mini-batch takes every kept row, however few
    assert options_from_kwargs({"batch_prompts": 1, "group_size": 2, "micro_batch": 4}).validate().batch.global_batch == 1


def test_recipe_unknown_key_is_an_error_and_known_keys_apply(tmp_path, work):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 2\nclip_eps_hgh: 0.3\n")
    res = runner.invoke(app, ["rlcs", "--model", "tiny", "--recipe", str(bad), "--data", str(work / "rl.jsonl"), "--out",
                              str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "unknown key 'clip_eps_hgh' for 'glmv rlcs'" in res.output and "clip_eps_high" in res.output
    good = tmp_path / "good.yaml"
    good.write_text("steps: 0\ntier_boundaries: [0.05, 0.3, 0.7, 0.95]\n")
    res = runner.invoke(app, ["rlcs", "--model", "tiny", "--recipe", str(good), "--data", str(work / "rl.jsonl"), "--out",
                              str(tmp_path / "o")])
    assert res.exit_code == 2 and "--steps must be >= 1, got 0" in res.output


# ----------------------------------------------------------------------------- bad input


def test_record_without_reference_is_refused(tmp_path, work):
    data = _write(tmp_path / "rl.jsonl", [_rec(0), _rec(1, answer=None)])
    res = _run(["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert res.exit_code == 2
    assert f"{data}:2: field 'answer': missing reference answer" in res.output


def test_unknown_domain_lists_the_known_ones(tmp_path):
    data = _write(tmp_path / "rl.jsonl", [_rec(0, domain="astrology")])
    res = _run(["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert res.exit_code == 2
    assert f"{data}:1: field 'domain': unknown domain 'astrology'; known: chart, chemistry, counting, grounding, gui, math, mcq, ocr, stem, video, yesno" in res.output


def test_unreadable_reference_is_refused_naming_the_record(tmp_path):
    data = _write(tmp_path / "rl.jsonl", [_rec(0), _rec(1, domain="counting", answer="one")])
    res = _run(["--model", "tiny", "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert res.exit_code == 2
    assert (f"{data}:2: field 'answer': domain 'counting': counting reference 'one' is not a non-negative "
            "integer in digits") in res.output


def _grade_artifact(path: Path, rows: list[dict]) -> Path:
    from glmv_cli.artifacts import ArtifactWriter

    with ArtifactWriter(path, "grade-difficulty", options={}) as art:
        _write(art.path / "results.jsonl", rows)
    return path


def test_grades_of_another_dataset_are_refused(tmp_path, work):
    from glmv_cli.rewards import default_config
    from glmv_cli.rl.records import load_data, load_grades

    data = load_data(work / "rl.jsonl", default_config())
    other = _grade_artifact(tmp_path / "g1", [{"id": "q1", "domain": "ocr", "grade": 0.5}])
    with pytest.raises(GlmvError, match=r"grades another dataset: none of its 1 ids \(e.g. 'q1'\) is in --data"):
        load_grades(other, data)
    clash = _grade_artifact(tmp_path / "g2", [{"id": "r1", "domain": "stem", "grade": 0.5}])
    with pytest.raises(GlmvError, match="record 'r1' has domain 'stem' there but 'ocr' in --data"):
        load_grades(clash, data)
    ok = _grade_artifact(tmp_path / "g3", [{"id": "r1", "domain": "ocr", "grade": 0.25},
                                           {"id": "extra", "domain": "ocr", "grade": 1.0}])
    assert load_grades(ok, data) == {"r1": 0.25}
    res = _run(["--model", "tiny", "--data", str(work / "rl.jsonl"), "--grades", str(other), "--out",
                str(tmp_path / "o")])
    assert res.exit_code == 2 and "grades another dataset" in res.output


# ----------------------------------------------------------------------------- end to end


def test_run_writes_model_metrics_plots_and_updates(tmp_path, work):
    g = _grade_artifact(tmp_path / "grades", [{"id": f"r{i}", "domain": "ocr", "grade": 0.5} for i in range(5)])
    out = tmp_path / "run"
    res = _run([*FAST, "--data", str(work / "rl.jsonl"), "--reward-config", str(work / "rewards.yaml"),
                "--grades", str(g), "--eval-data", str(work / "rl.jsonl"), "--eval-limit", "3", "--eval-every", "1",
                "--steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "step 2/2 | loss" in res.output and "| informative" in res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "rlcs" and man["metrics"]["steps"] == 2 and man["metrics"]["grades_matched"] == 5
    assert man["options"]["clip_eps_high"] == 0.28 and man["options"]["group_size"] == 4
    assert "model.safetensors.index.json" in man["files"] and "plots/eval_reward.png" in man["files"]
    for name in ("reward", "informative_frac", "expansion_ratio", "tiers", "clip_frac", "response_length"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ms = _lines(out / "metrics.jsonl")
    assert [m["step"] for m in ms] == [1, 2]
    for m in ms:
        assert m["batch_groups"] >= 1 and m["optimizer_steps"] == 1.0 and m["grad_norm"] > 0
        # the learner's recomputed old log-probs are the rollout engine's, token for token
        assert m["behaviour_logp_gap"] < 1e-4
        assert 0 < m["informative_frac"] <= 1 and m["expansion_ratio"] >= 1
        assert set(m["domains"]["ocr"]["tier_histogram"]) == {"impossible", "hard", "medium", "easy", "trivial", "unseen"}
        assert sum(m["domains"]["ocr"]["tier_histogram"].values()) == 10
        for k in ("reward", "pass_rate", "response_length", "truncated_rate", "forced_rate", "clip_frac", "tokens_per_s"):
            assert k in m
    # the graded prompts start in the medium tier (prior 0.5), the rest unseen
    assert ms[0]["sampler_tier_unseen"] <= 5
    ev = _lines(out / "eval.jsonl")
    assert [e["step"] for e in ev] == [0, 1, 2] and all(e["prompts"] == 3 for e in ev)
    assert all(sorted(e["per_prompt"]) == ["r0", "r1", "r2"] for e in ev)
    assert "eval_gain_paired_se" in man["metrics"] and len(man["metrics"]["eval_curve"]) == 3
    # the update moved the weights
    from safetensors.torch import load_file

    from glmv_cli.modeling import load

    ref, _ = load("tiny")
    new = load_file(str(out / "model-00001-of-00001.safetensors"))
    k = "model.language_model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(new[k], ref.state_dict()[k])


def test_resume_reproduces_prompts_and_losses(tmp_path, work, monkeypatch):
    common = [*FAST, "--data", str(work / "rl.jsonl"), "--reward-config", str(work / "rewards.yaml"),
              "--steps", "4", "--checkpoint-every", "2", "--seed", "3"]
    full = tmp_path / "full"
    assert _run([*common, "--out", str(full)]).exit_code == 0

    from glmv_cli.rl import trainer as tr

    orig = tr.RLCSTrainer.train_step

    def dying(self):
        if self.step == 3:
            raise RuntimeError("killed")
        return orig(self)

    monkeypatch.setattr(tr.RLCSTrainer, "train_step", dying)
    cut = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="killed"):
        _run([*common, "--out", str(cut)])
    monkeypatch.setattr(tr.RLCSTrainer, "train_step", orig)
    # a resume with other algorithm options is refused (before any model is built)
    res = _run([*common, "--out", str(cut), "--resume", "auto", "--clip-eps-high", "0.3"])
    assert res.exit_code == 2 and "holds a run with other options (--clip-eps-high: 0.28 != 0.3)" in res.output
    res = _run([*common, "--out", str(cut), "--resume", "auto"])
    assert res.exit_code == 0, res.output
    assert "(step 2)" in res.output
    a, b = _lines(full / "metrics.jsonl"), _lines(cut / "metrics.jsonl")
    assert [m["step"] for m in b] == [1, 2, 3, 4]
    for x, y in zip(a[2:], b[2:]):
        assert x["prompt_ids"] == y["prompt_ids"]
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6) and x["reward"] == pytest.approx(y["reward"], abs=1e-9)
    assert json.loads((cut / "manifest.json").read_text())["metrics"]["resumed_from_step"] == 2


def test_unreachable_judge_drops_groups_or_fails(tmp_path, work):
    cfg = tmp_path / "rewards.yaml"
    cfg.write_text(GATE_FREE + "domains:\n  open:\n    verifier: judge\n    timeout_s: 0.5\n    retries: 0\n"
                   "    endpoints: [{url: 'http://127.0.0.1:9/v1/chat/completions', model: m}]\n")
    data = _write(tmp_path / "rl.jsonl", [_rec(i, domain="open" if i % 2 else "ocr", answer="abc") for i in range(8)])
    args = [*FAST, "--data", str(data), "--reward-config", str(cfg), "--steps", "1", "--batch-prompts", "2"]
    res = _run([*args, "--out", str(tmp_path / "drop")])
    assert res.exit_code == 0, res.output
    m = _lines(tmp_path / "drop" / "metrics.jsonl")[0]
    assert m["judge_dropped_groups"] >= 1 and m["groups_valid"] >= 1
    assert set(m["domains"]) == {"ocr"}
    assert json.loads((tmp_path / "drop" / "manifest.json").read_text())["metrics"]["judge_dropped_groups"] >= 1
    res = _run([*args, "--on-judge-error", "fail", "--out", str(tmp_path / "fail")])
    assert res.exit_code == 2 and "the LLM judge gave no verdict for record" in res.output


def test_collect_expands_tops_up_and_drops_judge_failures(monkeypatch):
    """The step's rollout logic with a fake rollout: odd ids give informative groups, even ids
    all-equal ones, and r5 a judge failure."""
    import types

    from glmv_cli.modeling import load
    from glmv_cli.rewards import default_config
    from glmv_cli.rl.config import RLCSConfig
    from glmv_cli.rl.records import RLRecord
    from glmv_cli.rl.groups import ScoredGroup
    from glmv_cli.rl.trainer import RLCSTrainer, TrainerOptions

    model, proc = load("tiny")
    recs = [RLRecord(f"r{i}", "ocr", "abc", record=None) for i in range(20)]
    cfg = RLCSConfig.from_flat({"batch_prompts": 4, "group_size": 4, "curriculum": "uniform"})
    tr = RLCSTrainer(types.SimpleNamespace(module=model), proc, recs, cfg, default_config(), TrainerOptions(seed=1))
    calls = []

    def fake_roll(self, ids, step, rnd):
        calls.append((step, rnd, list(ids)))
        out = []
        for i in ids:
            k = int(i[1:])
            rewards = [0.0, 1.0, 0.0, 0.0] if k % 2 else [0.0] * 4
            out.append(ScoredGroup(self.by_id[i], None, [], rewards, judge_failed=(k == 5)))
        return out

    monkeypatch.setattr(RLCSTrainer, "roll", fake_roll)
    kept, valid, info = tr.collect(0)
    rolled = [i for _, _, ids in calls for i in ids]
    assert len(rolled) == len(set(rolled)) == info["prompts_rolled"]  # no prompt twice in a step
    assert calls[0][2] and len(calls[0][2]) == 4 and info["topup_rounds_used"] == len(calls) - 1 <= 2
    assert all(g.informative for g in kept) and len(kept) == min(4, sum(g.informative for g in valid))
    assert info["judge_dropped_groups"] == ("r5" in rolled)
    assert tr.sampler.visits[tr.sampler.index["r5"]] == 0  # a dropped group teaches the sampler nothing
    frac = info["groups_all_equal"] / info["groups_valid"]
    assert tr.controller.ema == pytest.approx(frac)
    calls.clear()
    tr.collect(1)
    assert len(calls[0][2]) == min(16, math.ceil(4 / (1 - frac) - 1e-9))  # expanded first round


def _trainer(work, **flat):
    import types

    from glmv_cli.modeling import load
    from glmv_cli.rewards.scoring import load_config
    from glmv_cli.rl.config import RLCSConfig
    from glmv_cli.rl.records import load_rl_records
    from glmv_cli.rl.trainer import RLCSTrainer, TrainerOptions

    model, proc = load("tiny")
    cfg = load_config(work / "rewards.yaml")
    recs, _ = load_rl_records(work / "rl.jsonl", cfg)
    tr = RLCSTrainer(types.SimpleNamespace(module=model), proc, recs, RLCSConfig.from_flat(flat), cfg,
                     TrainerOptions(style="glm45v"))
    return tr, model


def test_a_rollout_round_is_scored_in_one_call_and_judge_failures_mark_groups(work):
    from glmv_cli.rewards import config_from_dict, score_detailed
    from glmv_cli.rl.trainer import group_outcome

    tr, _ = _trainer(work, group_size=3, max_new_tokens=4, forced_answering=False)
    calls = []
    real = tr.rewards.score_many
    tr.rewards.score_many = lambda items: calls.append(list(items)) or real(items)
    groups = tr.roll(["r0", "r1", "r2"], step=0, rnd=0)
    assert len(calls) == 1 and len(calls[0]) == 9  # 3 prompts x 3 responses, one call
    for g in groups:
        ref = [score_detailed(None, r.text, g.record.answer, g.record.domain, g.record.extra,
                              config=tr.reward_config).reward for r in g.rollouts]
        assert g.rewards == ref
    tr.close()
    cfg = config_from_dict({"style": "glm45v", "gates": {"require_think": False, "require_box": False},
                            "domains": {"open": {"verifier": "judge", "timeout_s": 0.5, "retries": 0,
                                                 "endpoints": [{"url": "http://127.0.0.1:9/v1/chat/completions",
                                                                "model": "m"}]}}})
    res = [score_detailed("What is it?", t, "a cat", "open", config=cfg) for t in ("a cat", "a dog")]
    rewards, failed, gates = group_outcome(res)
    assert failed and rewards == [0.0, 0.0] and gates == 0
    ok = [score_detailed("", t, "abc", "ocr", config=cfg) for t in ("abc", "abd")]
    rewards, failed, _ = group_outcome(ok)
    assert not failed and rewards[0] == 1.0 and 0 < rewards[1] < 1


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
def test_learner_scores_the_tempered_distribution_the_rollout_sampled(temperature, work):
    """Behaviour log-probs (rollout engine, KV-cache decode at T) equal the learner's packed forward
    at T; an untempered learner would be off by far more than the tolerance (except at T = 1)."""
    from glmv_cli.rl.update import forward_logp

    tr, model = _trainer(work, temperature=temperature, group_size=3, max_new_tokens=8, forced_answering=False)
    groups = tr.roll(["r0", "r1"], step=0, rnd=0)
    rows = tr.build_rows(groups)
    b = tr.updater.collate(rows, [[[list(range(len(rows)))]]])[0][0]
    with torch.no_grad():
        at_t, _ = forward_logp(model, b, temperature=temperature, banned=tr.banned_ids)
        at_1, _ = forward_logp(model, b, temperature=1.0, banned=tr.banned_ids)
    m = b["loss_mask"]
    gap = ((at_t - b["behaviour_logp"]).abs() * m).max().item()
    gap_untempered = ((at_1 - b["behaviour_logp"]).abs() * m).max().item()
    assert m.sum() > 10 and gap < 1e-4  # fp32: KV-cache decode vs packed forward, measured ~1e-6
    if temperature != 1.0:
        assert gap_untempered > 0.1


def test_ratio_starts_at_one_and_mini_batches_are_exact(tmp_path, work):
    """--mini-batches 3 makes 3 optimizer steps per RL step (old log-probs recomputed: ratio exactly
    1 on the first); one mini-batch reuses the rollout's log-probs (ratio 1 to ~1e-6). The LR
    schedule is indexed by the real count: warmup over 6 optimizer steps ends at step 2's last."""
    out = tmp_path / "mb"
    res = _run([*FAST, "--data", str(work / "rl.jsonl"), "--reward-config", str(work / "rewards.yaml"), "--steps",
                "2", "--temperature", "0.7", "--mini-batches", "3", "--micro-batch", "1", "--warmup-steps", "6",
                "--schedule", "constant", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert re.search(r"\| s: rollout \d+\.\d reward \d+\.\d gather \d+\.\d old-logp \d+\.\d update \d+\.\d",
                     res.output)
    ms = _lines(out / "metrics.jsonl")
    for m in ms:
        assert m["optimizer_steps"] == 3.0 and m["mini_batches_run"] == 3.0 and m["old_logp_recomputed"] == 1.0
        assert m["ratio_first_min"] == 1.0 and m["ratio_first_max"] == 1.0
        assert m["behaviour_logp_gap"] < 1e-4 and m["padding_ratio"] >= 1.0
        for k in ("rollout_s", "reward_s", "gather_s", "old_logp_s", "update_s"):
            assert m[k] >= 0.0
    assert ms[0]["lr"] == pytest.approx(1e-3 * 3 / 6) and ms[1]["lr"] == pytest.approx(1e-3)
    one = tmp_path / "one"
    res = _run([*FAST, "--data", str(work / "rl.jsonl"), "--reward-config", str(work / "rewards.yaml"), "--steps",
                "1", "--temperature", "0.7", "--out", str(one)])
    m = _lines(one / "metrics.jsonl")[0]
    assert m["old_logp_recomputed"] == 0.0 and m["old_logp_s"] < 0.5 and m["optimizer_steps"] == 1.0
    assert abs(m["ratio_first_min"] - 1) < 1e-4 and abs(m["ratio_first_max"] - 1) < 1e-4


def test_activation_memory_options_leave_the_run_unchanged(tmp_path):
    """Checkpointing every layer and running the vision tower one image at a time change neither the
    rollouts nor the losses (checkpointing is bitwise neutral; chunks change fp32 rounding only)."""
    from PIL import Image

    rows = []
    for i in range(6):
        Image.new("RGB", (56 + 8 * i, 56), (40 * i, 90, 160)).save(tmp_path / f"img{i}.png")
        rows.append(_rec(i, answer="abc" + "xyz"[i % 3], images=[f"img{i}.png"],
                         messages=[{"role": "user", "content": f"<image>\nSpell item {i}."}]))
    data = _write(tmp_path / "rl.jsonl", rows)
    (tmp_path / "rewards.yaml").write_text(GATE_FREE, encoding="utf-8")
    runs = []
    for name, extra in (("plain", []), ("lean", ["--activation-checkpointing", "full", "--vision-chunk-images", "1"])):
        out = tmp_path / name
        res = _run([*FAST, "--data", str(data), "--reward-config", str(tmp_path / "rewards.yaml"), "--steps", "2",
                    "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        runs.append(_lines(out / "metrics.jsonl"))
        assert json.loads((out / "manifest.json").read_text())["options"]["vision_chunk_images"] == (1 if extra else 0)
    for a, b in zip(*runs):
        assert a["prompt_ids"] == b["prompt_ids"] and a["reward"] == b["reward"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-7)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


def test_records_are_checked_like_pack_before_any_model(tmp_path):
    """A 1000x2 image (aspect 500:1) and an unreadable image are refused at load with file:line, not
    at step 1; a numeric answer reads as its text; a wrong-typed answer says what it got."""
    from PIL import Image

    from glmv_cli.rewards import default_config
    from glmv_cli.rl.records import load_rl_records

    Image.new("RGB", (1000, 2)).save(tmp_path / "thin.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = [_rec(0, images=["thin.png"]), _rec(1, images=["broken.png"]), _rec(2, answer=None),
            {**_rec(3), "answer": 3}, {**_rec(4), "answer": ["a"]}]
    rows[0]["messages"][0]["content"] = "<image>" + rows[0]["messages"][0]["content"]
    rows[1]["messages"][0]["content"] = "<image>" + rows[1]["messages"][0]["content"]
    want = [("images[0]", "aspect ratio 500.0:1 (1000x2) is over 200:1"), ("images[0]", "not a readable image"),
            ("answer", "missing reference answer"), (None, None),
            ("answer", "expected a non-empty string (or a number), got list ['a']")]
    for i, (field, msg) in enumerate(want):
        f = _write(tmp_path / f"rl{i}.jsonl", [rows[i]])
        if field is None:
            recs, _ = load_rl_records(f, default_config())
            assert recs[0].answer == "3"
            continue
        with pytest.raises(GlmvError) as e:
            load_rl_records(f, default_config())
        assert f"rl{i}.jsonl:1: field '{field}'" in str(e.value) and msg in str(e.value), str(e.value)
    recs, bad = load_rl_records(_write(tmp_path / "all.jsonl", rows), default_config(), on_bad="skip")
    assert [r.id for r in recs] == ["r3"] and bad == {"aspect_ratio": 1, "bad_image": 1, "bad_field": 2}
