"""CLI shell: --help for every command, --version, info, recipe handling."""

from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from glmv_cli import options as O
from glmv_cli.artifacts import ArtifactWriter
from glmv_cli.cli import add_command
from glmv_cli.main import app
from glmv_cli.options import opt

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


@dataclass
class _DemoOptions:
    seq_len: int = opt(8, "Tokens per row.", min=0)
    lr: float = opt(1e-3, "Learning rate.", gt=0)
    name: str = opt("x", "A name.")
    tags: list[str] = opt([], "A tag (repeatable).", flag="--tag")
    mode: str = opt("a", "A mode.", choices=("a", "b"))


def _recipe_app():
    a = typer.Typer()
    seen = {}

    def run(o: _DemoOptions) -> None:
        O.validate(o)
        seen.update(seq_len=o.seq_len, lr=o.lr, name=o.name, tags=o.tags, mode=o.mode)

    add_command(a, "demo", run, _DemoOptions, doc="A demo command.")

    @a.command("other")
    def other() -> None:
        pass

    return a, seen


def test_recipe_defaults_and_flag_override(tmp_path):
    a, seen = _recipe_app()
    rec = tmp_path / "r.yaml"
    rec.write_text("stage: demo\nseq-len: 64\nlr: 0.5\ntags: [p, q]\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 0, r.output
    assert seen == {"seq_len": 64, "lr": 0.5, "name": "x", "tags": ["p", "q"], "mode": "a"}
    r = runner.invoke(a, ["demo", "--seq-len", "7", "--tag", "z", "--recipe", str(rec)])
    assert r.exit_code == 0, r.output
    assert seen["seq_len"] == 7 and seen["lr"] == 0.5 and seen["tags"] == ["z"]


def test_recipe_unknown_key_and_stage_mismatch(tmp_path):
    a, _ = _recipe_app()
    rec = tmp_path / "r.yaml"
    rec.write_text("seq_lenn: 64\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2
    assert "unknown key 'seq_lenn' for 'glmv demo'; valid keys: lr, mode, name, seq_len, tags" in r.output
    rec.write_text("stage: rlcs\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "field 'stage' is 'rlcs' but this command is 'demo'" in r.output
    rec.write_text("seq_len: [1, 2\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "invalid YAML" in r.output
    rec.write_text("seq_len: -3\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2 and "error: --seq-len must be >= 0, got -3" in r.output


@pytest.mark.parametrize("yaml_text, message", [
    ('seq_len: "abc"', "key 'seq_len': expected an integer, got 'abc' (str)"),
    ("seq_len: 1.5", "key 'seq_len': expected an integer, got 1.5 (float)"),
    ("seq_len: true", "key 'seq_len': expected an integer, got True (bool)"),
    ("seq_len: [1, 2]", "key 'seq_len': expected an integer, got [1, 2] (list)"),
    ("lr: .nan", "key 'lr': expected a number, got nan (float)"),
    ("name: {a: 1}", "key 'name': expected a string, got {'a': 1} (dict)"),
    ("mode: c", "--mode must be one of a, b, got 'c'"),
])
def test_recipe_values_are_type_checked_naming_file_and_key(tmp_path, yaml_text, message):
    a, _ = _recipe_app()
    rec = tmp_path / "r.yaml"
    rec.write_text(yaml_text + "\n")
    r = runner.invoke(a, ["demo", "--recipe", str(rec)])
    assert r.exit_code == 2, r.output
    assert message in r.output
    if "key '" in message:
        assert str(rec) in r.output


def test_bad_flag_value_names_the_flag():
    a, _ = _recipe_app()
    r = runner.invoke(a, ["demo", "--lr", "0"])
    assert r.exit_code == 2 and "error: --lr must be > 0, got 0.0" in r.output
    r = runner.invoke(a, ["demo", "--mode", "z"])
    assert r.exit_code == 2 and "error: --mode must be one of a, b, got 'z'" in r.output
