"""glmv eval as a command: listing, refusals with reasons, offline data messages, and the tiny
model end to end on the synth eval split (its accuracy equals glmv reward on the same generations)."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.stages.eval import EvalOptions, resolve_tasks, run_eval

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
runner = CliRunner()


def _plain(s: str) -> str:
    return re.sub(r"\s+", " ", s)


def test_list_shows_every_benchmark_and_what_external_ones_need():
    r = runner.invoke(app, ["eval", "--list"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    out = _plain(r.output)
    for key in ("mmstar", "mathvista", "videomme", "synth", "osworld", "androidworld", "webvoyager", "geobench",
                "ref_l4", "all_angles", "flame_react", "design2code", "mmlongbench_doc"):
        assert key in out
    assert "OSWorld virtual-machine environment" in out
    assert "Lin-Chen/MMStar" in out and "fixture-tested" in out


def test_asking_for_an_agent_benchmark_is_a_clear_error():
    r = runner.invoke(app, ["eval", "--model", "tiny", "--tasks", "osworld", "--out", "x"])
    assert r.exit_code == 2
    assert "OSWorld (osworld) cannot run in glmv eval: it needs an agent environment or an external harness" in _plain(r.output)
    with pytest.raises(GlmvError, match="Design2Code .* needs components glmv does not carry: rendering"):
        resolve_tasks("design2code", None)
    with pytest.raises(GlmvError, match="unknown benchmark 'nope'"):
        resolve_tasks("mmstar,nope", None)


def test_suite_lists_what_it_cannot_run_instead_of_skipping_silently():
    run, not_run = resolve_tasks(None, "glm41v-28")
    assert "glmv_mmstar" in run and "glmv_videomme" in run
    assert not_run["osworld"].startswith("needs an OSWorld")
    assert "mmlongbench_doc" in not_run and "glmv_mmlongbench_doc" not in run
    assert resolve_tasks(None, "synth") == (["glmv_synth"], {})


@pytest.mark.parametrize("opts, msg", [
    (dict(tasks=None, suite=None), "pass exactly one of --tasks a,b and --suite NAME (see glmv eval --list)"),
    (dict(tasks=None, suite="glm99"), "--suite must be one of glm41v-28, glm45v-42, synth, got 'glm99'"),
    (dict(limit=0), "--limit must be >= 1, got 0"),
    (dict(thinking_budget=0), "--thinking-budget must be >= 1, got 0"),
    (dict(top_p=0.0), "--top-p must be in (0, 1], got 0.0"),
])
def test_option_validation(tmp_path, opts, msg):
    base = dict(model="tiny", out=tmp_path / "o", tasks="mmstar")
    base.update(opts)
    with pytest.raises(GlmvError) as e:
        EvalOptions(**base).validate()
    assert str(e.value) == msg


def test_missing_dataset_offline_says_how_to_provide_it(tmp_path, monkeypatch):
    from glmv_cli.evaluation.adapter import ScriptedGenerator

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(GlmvError) as e:
        run_eval(EvalOptions(model="m", out=tmp_path / "o", tasks="mmstar"), generator=ScriptedGenerator({}))
    msg = str(e.value)
    assert "not in the local Hugging Face cache and the network is off" in msg
    assert "`hf download Lin-Chen/MMStar --repo-type dataset`" in msg
    assert "DATA_DIR/mmstar/val.parquet" in msg and "--data-dir DATA_DIR" in msg
    with pytest.raises(GlmvError, match=r"no val.parquet/.jsonl/.json/.tsv under .*/mmstar/"):
        run_eval(EvalOptions(model="m", out=tmp_path / "o", tasks="mmstar", data_dir=tmp_path),
                 generator=ScriptedGenerator({}))
    assert not (tmp_path / "o").exists()


def test_tiny_model_on_synth_matches_glmv_reward(tmp_path):
    """Real generation: the tiny model (random weights) through the rollout engine with a thinking
    budget, on a glmv synth artifact; the model artifact is an input of the eval manifest."""
    import torch

    from glmv_cli.artifacts import ArtifactWriter
    from glmv_cli.modeling import load, save
    from glmv_cli.stages.reward import RewardOptions, reward
    from glmv_cli.stages.synth import SynthOptions, synth

    synth(SynthOptions(out=tmp_path / "syn", n_train=6, n_eval=6, image_size="64"))
    model, proc = load("tiny")
    with ArtifactWriter(tmp_path / "model", "sft") as art:
        save(model, proc, art.path)
    r = runner.invoke(app, ["eval", "--model", str(tmp_path / "model"), "--suite", "synth", "--data-dir",
                            str(tmp_path / "syn"), "--limit", "4", "--thinking-budget", "6", "--answer-budget", "3",
                            "--batch-size", "4", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert man["inputs"][0]["stage"] == "sft"
    res = man["metrics"]["results"]["glmv_synth"]
    assert res["n"] == 4 and res["failed_generations"] == 0
    lines = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "glmv_synth.jsonl").read_text().splitlines()]
    assert all(ln["finish_reason"] in ("stop", "length", "forced") for ln in lines)
    # budget 6 + forced "</think><answer>" (2) + answer 3: no response exceeds 11 tokens
    assert all(ln["num_tokens"] <= 11 for ln in lines)
    inp = tmp_path / "resp.jsonl"
    inp.write_text("".join(json.dumps({"response": ln["response"], "reference": ln["doc"]["answer"],
                                       "domain": ln["doc"]["domain"]}) + "\n" for ln in lines))
    rm = reward(RewardOptions(input=inp, out=tmp_path / "rw"))
    assert res["acc"] == pytest.approx(rm.metrics["domains"]["all"]["pass_rate"])
    assert res["mean_reward"] == pytest.approx(rm.metrics["domains"]["all"]["mean_reward"])


def test_existing_out_fails_before_any_generation(tmp_path):
    from glmv_cli.evaluation.adapter import ScriptedGenerator

    (tmp_path / "o").mkdir()
    gen = ScriptedGenerator({})
    with pytest.raises(GlmvError, match="--out '.*o' already exists .*pass --overwrite"):
        run_eval(EvalOptions(model="m", out=tmp_path / "o", tasks="mmstar", data_dir=FIXTURES), generator=gen)
    assert gen.seen == []


def test_engine_server_equals_engine_hf_on_a_real_glmv_serve(tmp_path):
    """--engine server through a real `glmv serve` subprocess on 127.0.0.1 gives the same responses as
    the in-process engine (greedy; glmv serve runs the same decode loop), and the server path loads no
    weights in the eval process."""
    from glmv_cli.artifacts import ArtifactWriter
    from glmv_cli.modeling import load, save
    from glmv_cli.stages.synth import SynthOptions, synth
    from glmv_cli.testing.serve import start_servers

    synth(SynthOptions(out=tmp_path / "syn", n_train=6, n_eval=6, image_size="64"))
    model, proc = load("tiny", seed=3)
    with ArtifactWriter(tmp_path / "model", "sft") as art:
        save(model, proc, art.path)
    common = ["eval", "--model", str(tmp_path / "model"), "--suite", "synth", "--data-dir", str(tmp_path / "syn"),
              "--limit", "6", "--thinking-budget", "6", "--answer-budget", "3", "--batch-size", "6"]
    r = runner.invoke(app, [*common, "--out", str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    srv = start_servers(str(tmp_path / "model"))[0]
    try:
        r = runner.invoke(app, [*common, "--engine", "server", "--server-url", srv.url, "--out", str(tmp_path / "srv")])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    rows = {}
    for name in ("hf", "srv"):
        lines = (tmp_path / name / "samples" / "glmv_synth.jsonl").read_text().splitlines()
        rows[name] = [(x["key"], x["response"], x["finish_reason"], x["score"]) for x in map(json.loads, lines)]
    assert len(rows["hf"]) == 6 and rows["srv"] == rows["hf"]
    r = runner.invoke(app, [*common, "--engine", "server", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--engine server needs at least one --server-url" in r.output
