"""CLI shell: --help for every command, --version, info, recipe handling."""

import json

import pytest
import typer
from typer.testing import CliRunner

from glmv_cli.artifacts import ArtifactWriter
from glmv_cli.cli import RecipeOpt, user_errors
from glmv_cli.errors import GlmvError
from glmv_cli.main import app

runner = CliRunner()


def _commands():
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.output.strip() == "glmv 0.1.0"


def test_root_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in _commands():
        assert name in r.output


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help(name):
    r = runner.invoke(app, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and name in r.output


def test_info_prints_manifest_and_lineage(tmp_path):
    with ArtifactWriter(tmp_path / "a", "synth", options={"seed": 1}) as art:
        (art.path / "x.txt").write_text("x")
        art.metrics["records"] = 5
    from glmv_cli.artifacts import read_manifest

    with ArtifactWriter(tmp_path / "b", "pack", inputs=[read_manifest(tmp_path / "a")]) as art:
        (art.path / "y.txt").write_text("y")
    r = runner.invoke(app, ["info", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "synth" in r.output and "pack" in r.output and "lineage" in r.output
    r = runner.invoke(app, ["info", "--json", "--verify", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert '"stage": "pack"' in r.output and "all hashes match" in r.output
    r = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert f"error: input '{tmp_path / 'nope'}' does not exist" in r.output


def _recipe_app():
    a = typer.Typer()
    seen = {}

    @a.command("demo")
    @user_errors
    def demo(seq_len: int = 8, lr: float = 1e-3, name: str = "x", recipe: RecipeOpt = None) -> None:
        if seq_len < 0:
            raise GlmvError("--seq-len must be >= 0")
        seen.update(seq_len=seq_len, lr=lr, name=name)

    @a.command("other")
    def other() -> None:
        pass

    return a, seen


def test_recipe_defaults_and_flag_override(tmp_path):
    a, seen = _recipe_app()
    rec = tmp_path / "r.yaml"
    rec.write_text("stage: demo\nseq-len: 64\nlr: 0.5\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 0, r.output
    assert seen == {"seq_len": 64, "lr": 0.5, "name": "x"}
    r = runner.invoke(a, ["demo", "--seq-len", "7", "--recipe", str(rec)])
    assert r.exit_code == 0, r.output
    assert seen["seq_len"] == 7 and seen["lr"] == 0.5


def test_recipe_unknown_key_and_stage_mismatch(tmp_path):
    a, _ = _recipe_app()
    rec = tmp_path / "r.yaml"
    rec.write_text("seq_lenn: 64\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2
    assert "unknown key 'seq_lenn' for 'glmv demo'; valid keys: lr, name, seq_len" in r.output
    rec.write_text("stage: rlcs\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "field 'stage' is 'rlcs' but this command is 'demo'" in r.output
    rec.write_text("seq_len: [1, 2\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "invalid YAML" in r.output
    rec.write_text("seq_len: -3\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "error: --seq-len must be >= 0" in r.output
