"""grade-difficulty: pass@k on hand-computed cases, tiers on hand-built pass rates, human labels,
Spearman, and the stage end to end on the tiny preset (interrupt + rerun = uninterrupted run)."""

import hashlib
import json

import pytest
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.rl.difficulty import (
    apply_human_label,
    combine,
    grade_sample,
    level_of,
    pass_at_k,
    read_human_labels,
    spearman,
    tier_histograms,
    tier_interval,
    tier_name,
)

runner = CliRunner()


# ----------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("n,c,k,want", [
    (8, 2, 1, 0.25),
    (8, 2, 4, 1 - 15 / 70),          # C(6,4) / C(8,4)
    (10, 3, 5, 1 - 21 / 252),        # C(7,5) / C(10,5)
    (8, 0, 3, 0.0),
    (8, 8, 1, 1.0),
    (5, 4, 2, 1.0),                  # n - c < k: every 2-subset holds a correct one
    (8, 1, 8, 1.0),
    (100, 1, 1, 0.01),
])
def test_pass_at_k_hand_computed(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="need 1 <= k <= n, got k=9, n=8"):
        pass_at_k(8, 1, 9)
    with pytest.raises(ValueError, match="need 0 <= c <= n, got c=9, n=8"):
        pass_at_k(8, 9, 1)


@pytest.mark.parametrize("p,tier", [(0.0, "impossible"), (0.049, "impossible"), (0.05, "hard"), (0.25, "hard"),
                                    (0.3, "medium"), (0.69, "medium"), (0.7, "easy"), (0.94, "easy"),
                                    (0.95, "trivial"), (1.0, "trivial")])
def test_tiers_from_pass_rates(p, tier):
    assert tier_name(p) == tier


def test_levels_and_tier_intervals():
    # bands of width 0.2; a boundary belongs to the harder level
    assert [level_of(g) for g in (1.0, 0.81, 0.8, 0.5, 0.21, 0.2, 0.0)] == [1, 1, 2, 3, 4, 5, 5]
    assert tier_interval("medium") == (0.3, 0.7) and tier_interval("trivial") == (0.95, 1.0)


def test_grade_sample_two_models():
    g = grade_sample([[1, 1, 0, 0, 0, 0, 0, 0], [1] * 8], pass_ks=(1, 4))
    assert [m["pass_rate"] for m in g["models"]] == [0.25, 1.0]
    assert g["models"][0]["pass_at"] == {"1": 0.25, "4": pytest.approx(1 - 15 / 70)}
    assert g["grade"] == pytest.approx(0.625) and g["tier"] == "medium" and g["level"] == 2
    assert g["difficulty"] == pytest.approx(0.375) and g["human_rule"] == "none"
    # graded rewards: the pass rate is the mean score; correctness uses the threshold
    g = grade_sample([[0.6, 0.4, 0.2, 0.0]], threshold=0.5, pass_ks=(1, 2))
    assert g["models"][0]["pass_rate"] == pytest.approx(0.3) and g["models"][0]["correct"] == 1
    assert g["models"][0]["pass_at"]["2"] == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert combine([0.2, 0.8], [3, 1]) == pytest.approx(0.35)


def test_human_labels_shift_and_override():
    g, t, rule = apply_human_label(0.75, 16, {"difficulty": 5})
    assert g == pytest.approx((16 * 0.75 + 8 * 0.1) / 24) and t == "medium" and rule == "shift"
    g, t, rule = apply_human_label(0.75, 16, {"tier": "hard"})
    assert (g, t, rule) == (pytest.approx(0.175), "hard", "override")
    g, t, rule = apply_human_label(0.2, 16, {"tier": "hard"})
    assert (g, t) == (0.2, "hard")  # already inside: kept
    g, t, rule = apply_human_label(1.0, 8, {"difficulty": 1, "tier": "trivial"})
    assert g == pytest.approx((8 + 8 * 0.9) / 16) and t == "trivial" and rule == "shift+override"  # 0.95: inside
    g, t, rule = apply_human_label(0.9, 8, {"tier": "trivial"})
    assert g == pytest.approx(0.975) and t == "trivial"  # outside [0.95, 1]: moved to its centre
    assert apply_human_label(0.5, 8, None) == (0.5, "medium", "none")


def test_read_human_labels_errors(tmp_path):
    f = tmp_path / "l.jsonl"
    f.write_text('{"id": "a", "difficulty": 3}\n{"id": "b", "tier": "easy"}\n')
    assert read_human_labels(f) == {"a": {"difficulty": 3, "tier": None}, "b": {"difficulty": None, "tier": "easy"}}
    for body, msg in [('{"id": "a", "difficulty": 6}', "l.jsonl:1: field 'difficulty': expected an integer 1..5, got 6"),
                      ('{"id": "a", "tier": "meh"}', "l.jsonl:1: field 'tier': expected one of impossible, hard, "
                                                      "medium, easy, trivial, got 'meh'"),
                      ('{"difficulty": 2}', "l.jsonl:1: field 'id': expected a non-empty string"),
                      ('{"id": "a"}', "l.jsonl:1: a label needs 'difficulty' (1..5) or 'tier'"),
                      ('{"id": "a", "tier": "easy"}\n{"id": "a", "tier": "hard"}', "l.jsonl:2: field 'id': id 'a' is labelled twice"),
                      ("{nope", "l.jsonl:1: invalid JSON")]:
        f.write_text(body + "\n")
        with pytest.raises(GlmvError) as e:
            read_human_labels(f)
        assert msg in str(e.value)


def test_spearman_hand_computed():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1, 2.5, 2.5, 4; y ranks 1, 3, 2, 4 -> 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_tier_histograms():
    rows = [{"domain": "ocr", "tier": "hard"}, {"domain": "ocr", "tier": "hard"}, {"domain": "chart", "tier": "trivial"}]
    h = tier_histograms(rows)
    assert h["ocr"] == {"impossible": 0, "hard": 2, "medium": 0, "easy": 0, "trivial": 0}
    assert h["all"]["hard"] == 2 and h["all"]["trivial"] == 1 and list(h) == ["all", "chart", "ocr"]


# ----------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("rl")
    lines = []
    for i in range(7):
        Image.new("RGB", (112, 112), (30 * i, 100, 200)).save(d / f"img{i}.png")
        dom = "counting" if i % 2 else "ocr"
        lines.append(json.dumps({"id": f"s{i}", "messages": [{"role": "user", "content": f"<image>Question {i}?"}],
                                 "images": [f"img{i}.png"], "domain": dom, "answer": str(i), "difficulty": 1 + i % 5}))
    (d / "rl.jsonl").write_text("\n".join(lines) + "\n")
    return d / "rl.jsonl"


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    from glmv_cli.modeling import load, save

    d = tmp_path_factory.mktemp("m2") / "tiny-seed1"
    model, proc = load("tiny", seed=1)
    save(model, proc, d)
    return d


def _fake_score(prompt, response, reference, domain, extra=None, *, config=None):
    """A deterministic stand-in reward (a random tiny model never passes the format gate)."""
    return float(int(hashlib.sha256(response.encode()).hexdigest(), 16) % 3 == 0)


def _args(data, out, models, extra=()):
    a = ["grade-difficulty", "--data", str(data), "--out", str(out), "--k", "3", "--batch-size", "2",
         "--max-new-tokens", "6", "--thinking-budget", "3", "--answer-budget", "2", "--pass-at", "1", "--pass-at", "3"]
    for m in models:
        a += ["--model", str(m)]
    return a + list(extra)


def test_grade_difficulty_end_to_end_and_resume(rl_data, second_model, tmp_path, monkeypatch):
    import glmv_cli.rewards.scoring as scoring
    from glmv_cli.generation import HFEngine

    monkeypatch.setattr(scoring, "score", _fake_score)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "s0", "tier": "hard"}\n{"id": "s1", "difficulty": 5}\n{"id": "zz", "difficulty": 1}\n')
    models = ["tiny", second_model]
    calls = []
    real = HFEngine.generate

    def counting(self, prompts, params, n=1, seed=0):
        calls.append((self.model_tag, tuple(p.id for p in prompts)))
        return real(self, prompts, params, n, seed)

    monkeypatch.setattr(HFEngine, "generate", counting)
    full = tmp_path / "full"
    r = runner.invoke(app, _args(rl_data, full, models, ["--human-labels", str(labels)]))
    assert r.exit_code == 0, r.output
    assert len(calls) == 8  # 4 chunks (2+2+2+1 samples) x 2 models
    res = [json.loads(x) for x in (full / "results.jsonl").read_text().splitlines()]
    assert [x["id"] for x in res] == [f"s{i}" for i in range(7)]
    for x in res:
        assert [m["n"] for m in x["models"]] == [3, 3] and x["models"][1]["model"] == str(second_model)
        assert set(x["models"][0]["pass_at"]) == {"1", "3"}
        assert x["grade"] == pytest.approx(sum(m["pass_rate"] for m in x["models"]) / 2) or x["human_rule"] != "none"
    assert res[0]["tier"] == "hard" and res[0]["human_rule"] == "override"
    assert res[1]["human_rule"] == "shift"
    man = json.loads((full / "manifest.json").read_text())
    met = man["metrics"]
    assert met["samples"] == 7 and met["rollouts"] == 42
    assert sum(met["tier_histograms"]["all"].values()) == 7 and set(met["tier_histograms"]) == {"all", "counting", "ocr"}
    assert met["human_labels"] == {"given": 3, "matched": 2}
    assert set(met["spearman_data_difficulty"]) == {"counting", "ocr"}
    assert set(man["files"]) == {"results.jsonl", "rollouts.jsonl", "run.json"}
    assert "graded 7 samples x 2 model(s) x 3 rollouts" in r.output
    from glmv_cli.rl.difficulty import load_grades

    assert load_grades(full) == {x["id"]: x["grade"] for x in res}
    with pytest.raises(GlmvError, match="does not exist"):
        load_grades(tmp_path / "nope")

    # interrupted run: dies on the 3rd chunk of the 1st model
    calls.clear()

    def dying(self, prompts, params, n=1, seed=0):
        if len(calls) == 2:
            raise RuntimeError("killed")
        return counting(self, prompts, params, n, seed)

    monkeypatch.setattr(HFEngine, "generate", dying)
    part = tmp_path / "part"
    r = runner.invoke(app, _args(rl_data, part, models, ["--human-labels", str(labels)]))
    assert r.exit_code != 0 and not part.exists()
    stage = tmp_path / ".part.incomplete"
    assert len((stage / "rollouts.jsonl").read_text().splitlines()) == 4
    with open(stage / "rollouts.jsonl", "a") as f:
        f.write('{"model": 0, "chunk": 2, "id": "s4", "rew')  # a torn write from the kill

    # a rerun with other rollout options is refused, naming the option
    r = runner.invoke(app, _args(rl_data, part, models, ["--seed", "5"]))
    assert r.exit_code == 2 and "holds a run with other options (--seed: 0 != 5)" in r.output

    calls.clear()
    monkeypatch.setattr(HFEngine, "generate", counting)
    r = runner.invoke(app, _args(rl_data, part, models, ["--human-labels", str(labels)]))
    assert r.exit_code == 0, r.output
    assert len(calls) == 6  # 2 chunks of model 0 were kept; nothing is graded twice
    assert ("model-0", ("s0", "s1")) not in calls and ("model-0", ("s2", "s3")) not in calls
    assert (part / "results.jsonl").read_bytes() == (full / "results.jsonl").read_bytes()
    ro_lines = [json.loads(x) for x in (part / "rollouts.jsonl").read_text().splitlines()]
    assert sorted((d["model"], d["id"]) for d in ro_lines) == sorted((m, f"s{i}") for m in (0, 1) for i in range(7))
    assert json.loads((part / "manifest.json").read_text())["metrics"]["resumed_pairs"] == 4

    r = runner.invoke(app, _args(rl_data, part, models))
    assert r.exit_code == 2 and "already exists (an artifact); choose a new path or pass --overwrite" in r.output


def test_same_weights_at_another_path_grade_identically(rl_data, second_model, tmp_path, monkeypatch):
    """Rollout seeds hash the model's position in --model, never its path."""
    import shutil

    import glmv_cli.rewards.scoring as scoring

    monkeypatch.setattr(scoring, "score", _fake_score)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(second_model, moved)
    outs = []
    for m in (second_model, moved):
        out = tmp_path / f"g-{len(outs)}"
        r = runner.invoke(app, _args(rl_data, out, [m]))
        assert r.exit_code == 0, r.output
        outs.append([json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()])
    strip = lambda rows: [(x["id"], x["grade"], [(m["pass_rate"], m["n"]) for m in x["models"]]) for x in rows]
    assert strip(outs[0]) == strip(outs[1])


def test_limit_zero_grades_every_record(rl_data, tmp_path, monkeypatch):
    import glmv_cli.rewards.scoring as scoring

    monkeypatch.setattr(scoring, "score", _fake_score)
    for limit, want in (("2", 2), ("0", 7)):
        out = tmp_path / f"lim{limit}"
        r = runner.invoke(app, _args(rl_data, out, ["tiny"], ["--limit", limit]))
        assert r.exit_code == 0, r.output
        assert len((out / "results.jsonl").read_text().splitlines()) == want


def test_grade_difficulty_option_and_data_errors(rl_data, tmp_path):
    out = tmp_path / "o"
    for extra, msg in [(["--k", "0"], "--k must be >= 1, got 0"),
                       (["--pass-at", "9"], "--pass-at values must be in 1..--k (3), got 9"),
                       (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
                       (["--style", "x"], "--style must be one of auto, glm41v, glm45v, got 'x'"),
                       (["--model-weight", "1"], "--model-weight must be given once per --model (2), got 1"),
                       (["--engine", "x"], "--engine must be one of hf, server, vllm, got 'x'"),
                       (["--limit", "-1"], "--limit must be >= 0, got -1")]:
        r = runner.invoke(app, _args(rl_data, out, ["tiny", "tiny2"], extra))
        assert r.exit_code == 2 and f"error: {msg}" in r.output, r.output
    from glmv_cli.generation.vllm import vllm_available

    if not vllm_available():
        r = runner.invoke(app, _args(rl_data, out, ["tiny"], ["--engine", "vllm"]))
        assert r.exit_code == 2 and "--engine vllm needs the 'vllm' package and a GPU" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}], "domain": "ocr"}\n')
    r = runner.invoke(app, _args(bad, out, ["tiny"]))
    assert r.exit_code == 2 and "bad.jsonl:1: field 'answer': missing reference answer" in r.output
    (tmp_path / "plain").mkdir()
    r = runner.invoke(app, _args(tmp_path / "plain", out, ["tiny"]))
    assert r.exit_code == 2 and "has no manifest.json" in r.output
    r = runner.invoke(app, _args(tmp_path, out, ["tiny"]))  # --out inside --data
    assert r.exit_code == 2 and f"error: --out '{out}' lies inside the input '{tmp_path}'" in r.output


DP_SCRIPT = """
import hashlib, json, os, sys
import torch
import glmv_cli.rewards.scoring as scoring
from glmv_cli import options as O
from glmv_cli.generation import HFEngine
from glmv_cli.stages.grade_difficulty import GradeDifficultyOptions, grade_difficulty

data, out, log, die_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
scoring.score = lambda p, r, ref, d, e=None, *, config=None: float(int(hashlib.sha256(r.encode()).hexdigest(), 16) % 3 == 0)
real = HFEngine.generate
calls = []

def logged(self, prompts, params, n=1, seed=0):
    calls.append(1)
    if os.environ.get("RANK") == "1" and len(calls) == die_at:
        raise RuntimeError("killed")
    with open(log, "a") as f:
        f.write(json.dumps([os.environ.get("RANK", "0"), [p.id for p in prompts]]) + "\\n")
    return real(self, prompts, params, n, seed)

HFEngine.generate = logged
grade_difficulty(O.build(GradeDifficultyOptions, {
    "data": data, "out": out, "models": ["tiny"], "k": 3, "batch_size": 2, "max_new_tokens": 6,
    "thinking_budget": 3, "answer_budget": 2, "pass_at": [1, 3]}))
"""


def test_grade_difficulty_data_parallel_shards_resume_and_merge(rl_data, tmp_path):
    """torchrun with 2 ranks: chunk j on rank j % 2; a rank killed mid-run loses only its
    unfinished chunk; the rerun grades the rest and merges one artifact, equal to one process's."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "grade.py"
    script.write_text(DP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}

    def launch(out, log, die_at, procs):
        cmd = [sys.executable, str(script), str(rl_data), str(out), str(log), str(die_at)]
        if procs > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                   *cmd[1:]]
        p = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            o, e = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            o, e = p.communicate()
        return p.returncode, o + e

    rc, log = launch(tmp_path / "one", tmp_path / "one.log", 0, 1)
    assert rc == 0, log[-3000:]
    rc, log = launch(tmp_path / "two", tmp_path / "cut.log", 2, 2)  # rank 1 dies on its 2nd chunk
    assert rc != 0 and not (tmp_path / "two").exists()
    stage = tmp_path / ".two.incomplete"
    shard1 = [json.loads(x) for x in (stage / "rollouts.rank-00001.jsonl").read_text().splitlines()]
    assert [d["id"] for d in shard1] == ["s2", "s3"] and {d["chunk"] for d in shard1} == {1}
    committed = {json.loads(x)["id"] for f in stage.glob("rollouts.rank-*.jsonl") for x in f.read_text().splitlines()}
    rc, log = launch(tmp_path / "two", tmp_path / "resume.log", 0, 2)
    assert rc == 0, log[-3000:]
    again = [json.loads(x) for x in (tmp_path / "resume.log").read_text().splitlines()]
    assert ["1", ["s6"]] in again and all(r == str(int(ids[0][1]) // 2 % 2) for r, ids in again)  # chunk j on rank j % 2
    redone = {i for _, ids in again for i in ids}
    assert not redone & committed and redone | committed == {f"s{i}" for i in range(7)}  # each chunk once
    for name in ("results.jsonl", "rollouts.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert set(man["files"]) == {"results.jsonl", "rollouts.jsonl", "run.json"}
    assert man["metrics"]["world_size"] == 2 and man["metrics"]["resumed_pairs"] == len(committed)


def test_engine_server_grades_exactly_like_engine_hf(rl_data, second_model, tmp_path):
    """--engine server through a real `glmv serve` on 127.0.0.1 (SGLang dialect: token ids + image
    data) gives the same responses, rewards and grades as the in-process engine."""
    from glmv_cli.testing.serve import start_servers

    extra = ["--save-responses", "--temperature", "1.0"]
    r = runner.invoke(app, _args(rl_data, tmp_path / "hf", [second_model], extra))
    assert r.exit_code == 0, r.output
    srv = start_servers(str(second_model))[0]
    try:
        r = runner.invoke(app, _args(rl_data, tmp_path / "srv", [second_model],
                                     [*extra, "--engine", "server", "--server-url", srv.url,
                                      "--server-dialect", "sglang"]))
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output

    def rows(name, f):
        return [{k: v for k, v in json.loads(x).items() if k not in ("model",)}
                for x in (tmp_path / name / f).read_text().splitlines()]

    assert rows("srv", "rollouts.jsonl") == rows("hf", "rollouts.jsonl")
    assert [x["grade"] for x in rows("srv", "results.jsonl")] == [x["grade"] for x in rows("hf", "results.jsonl")]
    r = runner.invoke(app, _args(rl_data, tmp_path / "x", ["tiny", second_model],
                                 ["--engine", "server", "--server-url", "http://127.0.0.1:9"]))
    assert r.exit_code == 2 and "--engine server serves one model" in r.output
