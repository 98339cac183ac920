"""recipes/demo.sh and recipes/demo/*.yaml stay in step with the CLI (the demo itself is too slow
for CI: it trains for minutes). Checks: the script parses, every recipe loads against its stage's
real options, and every `glmv <command>` and `--recipe` the script names exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

import glmv_cli.main
from glmv_cli.errors import GlmvError
from glmv_cli.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "demo.sh"
RECIPES = sorted((ROOT / "recipes" / "demo").glob("*.yaml"))


def _commands() -> dict:
    return typer.main.get_command(glmv_cli.main.app).commands


def _param_names(stage: str) -> list[str]:
    return [p.name for p in _commands()[stage].params if p.name]


def _script_lines() -> list[str]:
    """The script with comments dropped and backslash continuations joined."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text(encoding="utf-8"))
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_demo_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_demo_script_required_preamble():
    text = SCRIPT.read_text(encoding="utf-8")
    assert 'scripts/setup.sh"' in text
    assert "set -euo pipefail" in text
    assert "HF_HUB_OFFLINE=1" in text and "HF_DATASETS_OFFLINE=1" in text
    assert "DS_ACCELERATOR=cpu" in text
    assert (ROOT / "scripts" / "setup.sh").is_file()
    # setup runs before the strict mode and the venv activation
    assert text.index("scripts/setup.sh") < text.index("set -euo pipefail") < text.index(".venv/bin/activate")


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


def test_demo_script_uses_only_existing_commands_and_recipes():
    cmds = _commands()
    used = set()
    for ln in _script_lines():
        for m in re.finditer(r"\bglmv ([a-z][a-z-]*)", ln):
            used.add(m.group(1))
        for m in re.finditer(r"--recipe \$R/([\w.-]+\.yaml)", ln):
            recipe = ROOT / "recipes" / "demo" / m.group(1)
            assert recipe.is_file(), f"demo.sh names missing recipe {recipe}"
            # the recipe belongs to the command on the same line
            stage = yaml.safe_load(recipe.read_text(encoding="utf-8"))["stage"]
            assert re.search(rf"\bglmv {re.escape(stage)}\b", ln), (recipe.name, ln)
    unknown = sorted(used - set(cmds))
    assert not unknown, f"demo.sh calls unknown glmv commands: {unknown}"
    # the whole pipeline of the issue is there
    assert {"synth", "pack", "pretrain", "extend-context", "sft", "grade-difficulty", "rlcs", "eval",
            "push"} <= used
