"""recipes/demo.sh and recipes/demo/*.yaml: the script parses, every recipe loads against its stage's
real options, and the whole pipeline runs at smoke scale (the full demo trains for ~9 minutes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

import glmv_cli.main
from glmv_cli.artifacts import read_manifest
from glmv_cli.errors import GlmvError
from glmv_cli.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "demo.sh"
RECIPES = sorted((ROOT / "recipes" / "demo").glob("*.yaml"))


def _commands() -> dict:
    return typer.main.get_command(glmv_cli.main.app).commands


def _param_names(stage: str) -> list[str]:
    return [p.name for p in _commands()[stage].params if p.name]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_demo_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_there_are_demo_recipes():
    names = {p.name for p in RECIPES}
    assert {"synth.yaml", "sft.yaml", "rlcs.yaml", "eval.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_demo_recipe_validates_against_its_stage(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and "stage" in data, f"{path.name}: needs a 'stage' key"
    stage = data["stage"]
    assert stage in _commands(), f"{path.name}: stage '{stage}' is not a glmv command"
    opts = load_recipe(path, stage=stage, valid=_param_names(stage))
    assert set(opts) == {str(k).replace("-", "_") for k in data if k != "stage"}


def test_load_recipe_rejects_a_key_the_stage_lacks(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: sft\nlearning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(GlmvError, match="unknown key 'learning_rate' for 'glmv sft'"):
        load_recipe(bad, stage="sft", valid=_param_names("sft"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_demo_pipeline_runs_end_to_end_at_smoke_scale(tmp_path):
    """The README's first command, at toy sizes (GLMV_DEMO_SCALE=smoke, ~1.5 min on 2 cores): every
    stage writes its artifact, the lineage chains synth -> ... -> rlcs, the table and the dry-run card
    come out, and a second run skips every finished stage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(GLMV_SKIP_SETUP="1", GLMV_DEMO_SCALE="smoke", GLMV_DEMO_DIR=str(tmp_path / "demo"))
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    d = tmp_path / "demo"
    stages = {"synth": "synth", "packed-pretrain": "pack", "packed-long": "pack", "packed-sft": "pack",
              "pretrain": "pretrain", "extend-context": "extend-context", "sft": "sft",
              "grades": "grade-difficulty", "rlcs": "rlcs", "eval-extend-context": "eval", "eval-sft": "eval",
              "eval-rlcs": "eval"}
    for name, stage in stages.items():
        assert read_manifest(d / name).stage == stage, name
    chain = [e["stage"] for e in read_manifest(d / "rlcs").lineage]
    for want in ("synth", "pack", "pretrain", "extend-context", "sft", "grade-difficulty"):
        assert want in chain, (want, chain)
    assert chain.index("pretrain") < chain.index("extend-context") < chain.index("sft")
    assert "held-out accuracy (greedy" in r.stdout and "rlcs held-out reward" in r.stdout
    evals = [json.loads(x) for x in (d / "rlcs" / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    card = (d / "push" / "README.md").read_text(encoding="utf-8")
    assert "glmv-demo/tiny-rlcs-counting" in card and "model-index" in card
    again = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": done (") == len(stages)
