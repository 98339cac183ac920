"""Every recipe under recipes/ is valid for its stage; every launch script parses and builds valid commands.

For each YAML: its stage comes from the ``stage:`` key (required in recipes/glm41v-9b/) or, for other
recipes without one, from the file name (``demo/rlcs.yaml`` -> rlcs). Then
  1. ``load_recipe`` accepts every key (unknown keys are errors naming the key);
  2. each value converts with its option's own type (Typer's Click: 1.5 is no integer, a string is
     no list for a repeatable option, ...), and the error names the key;
  3. the whole command line ``--recipe FILE`` (+ placeholders for required flags) parses through the
     real Click command, exactly as ``glmv <stage> --recipe FILE`` would;
  4. the stage's own options dataclass is built from the parsed values and validated (training stages
     also at the data-parallel world size launch.sh gives them, so the global batch divides).
The launch script is run with DRY_RUN=1 and every glmv command it prints is parsed the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

import glmv_cli.main
from glmv_cli import options as O
from glmv_cli.cli import COMMANDS as STAGES
from glmv_cli.cli import options_from_kwargs
from glmv_cli.errors import GlmvError
from glmv_cli.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
PAPER = RECIPES / "glm41v-9b"
LAUNCH = PAPER / "launch.sh"
COMMANDS: dict[str, Any] = typer.main.get_command(glmv_cli.main.app).commands
YAMLS = sorted([*RECIPES.rglob("*.yaml"), *RECIPES.rglob("*.yml")])
SCRIPTS = sorted(RECIPES.rglob("*.sh"))
PAPER_FILES = ["pack-pretrain.yaml", "pretrain.yaml", "pack-long.yaml", "extend-context.yaml", "pack-sft.yaml",
               "sft.yaml", "grade-difficulty.yaml", "rlcs.yaml", "eval.yaml"]
TRAINING = ("pretrain", "extend-context", "sft")
DISTRIBUTED = (*TRAINING, "rlcs", "grade-difficulty")  # launched with torchrun by launch.sh
# flags that are optional for Click but required by the stage's own validation (launch.sh passes them)
CHECKED_LATER = {"eval": ("model", "out"), "pretrain": ("model",)}


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def stage_of(path: Path) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "stage" in data:
        return str(data["stage"])
    names = [n for n in COMMANDS if path.stem == n or path.stem.startswith(n + "-")]
    if not names:
        pytest.fail(f"{_rel(path)}: no 'stage:' key and the file name names no glmv command")
    return max(names, key=len)


def _params(stage: str) -> dict[str, Any]:
    return {p.name: p for p in COMMANDS[stage].params if p.name and p.name != "recipe"}


def _leaves(stage: str) -> dict[str, Any]:
    return {leaf.name: leaf for leaf in O.leaves(STAGES[stage][1])}


def convert(stage: str, name: str, value: Any) -> Any:
    """``value`` converted by option ``name``'s own type, as the command's ``--recipe`` handling does."""
    return O.coerce(_leaves(stage)[name], value, f"key '{name}'")


def check_values(path: Path, stage: str) -> dict[str, Any]:
    """Steps 1 and 2; returns the recipe's mapping."""
    recipe = load_recipe(path, stage=stage, valid=_leaves(stage))
    return {name: O.coerce(_leaves(stage)[name], value, f"{_rel(path)}: key '{name}'")
            for name, value in recipe.items()}


def parse(stage: str, args: list[str]) -> dict[str, Any]:
    """The parsed, type-converted parameters of ``glmv <stage> ARGS`` (the command is not run)."""
    with COMMANDS[stage].make_context(stage, list(args)) as ctx:
        return dict(ctx.params)


def placeholders(stage: str, recipe: dict[str, Any], tmp: Path) -> list[str]:
    """A value for each required flag the recipe does not set (launch.sh passes the real ones)."""
    f = tmp / "placeholder.jsonl"
    f.write_text('{"id": "x", "text": "x"}\n', encoding="utf-8")
    args: list[str] = []
    for p in COMMANDS[stage].params:
        if (p.required or p.name in CHECKED_LATER.get(stage, ())) and p.name not in recipe:
            args += [p.opts[0], str(f)]
    return args


def world_sizes() -> dict[str, int]:
    """Data-parallel processes per training stage, from launch.sh's defaults."""
    text = LAUNCH.read_text(encoding="utf-8")
    gpus = int(re.search(r'GPUS_PER_NODE="\$\{GPUS_PER_NODE:-(\d+)\}"', text).group(1))
    nodes = {k: int(v) for k, v in re.findall(r'^(\w+)_NODES="\$\{\1_NODES:-(\d+)\}"', text, re.M)}
    return {"pretrain": nodes["PRETRAIN"] * gpus, "extend-context": nodes["LONG"] * gpus, "sft": nodes["SFT"] * gpus,
            "rlcs": nodes["RL"] * gpus, "grade-difficulty": nodes["GRADE"] * gpus}


def validate_stage(stage: str, kw: dict[str, Any], world: int = 1, monkeypatch=None) -> Any:
    """Builds the stage's options dataclass from parsed values and validates it (as the stage does)."""
    kw = {k: v for k, v in kw.items() if k != "recipe"}
    if kw.get("engine") == "vllm" and monkeypatch is not None:  # the recipe, not this machine, is under test
        import glmv_cli.generation.vllm

        monkeypatch.setattr(glmv_cli.generation.vllm, "vllm_available", lambda: True)
    opts = options_from_kwargs(STAGES[stage][1], kw)
    if stage == "rlcs":
        return opts.validate(world)
    return O.validate(opts, world)


# ------------------------------------------------------------------------------------------ recipes


def test_paper_recipe_files_exist_with_stage_key():
    for name in PAPER_FILES:
        data = yaml.safe_load((PAPER / name).read_text(encoding="utf-8"))
        assert isinstance(data, dict), name
        assert data.get("stage") in COMMANDS, f"{name}: stage {data.get('stage')!r}"
    assert stage_of(PAPER / "pack-long.yaml") == "pack"
    assert stage_of(PAPER / "extend-context.yaml") == "extend-context"


@pytest.mark.parametrize("path", YAMLS, ids=[_rel(p) for p in YAMLS])
def test_recipe_valid_for_its_stage(path: Path, tmp_path: Path, monkeypatch):
    stage = stage_of(path)
    assert stage in COMMANDS, f"{_rel(path)}: stage '{stage}' is not a glmv command"
    recipe = check_values(path, stage)
    kw = parse(stage, ["--recipe", str(path), *placeholders(stage, recipe, tmp_path)])
    for name, value in recipe.items():  # the recipe's values reached the command (flags win, none given)
        assert kw[name] == value or list(kw[name]) == value, name
    validate_stage(stage, kw, monkeypatch=monkeypatch)
    if stage in TRAINING and path.parent == PAPER:
        validate_stage(stage, kw, world=world_sizes()[stage])


def uncited_keys(text: str) -> list[str]:
    """Keys whose nearest comment block above (or own line) cites neither 'paper §N' nor 'chosen'."""
    out: list[str] = []
    block: list[str] = []
    prev_comment = False
    for line in text.splitlines():
        if line.startswith("#"):
            block = (block if prev_comment else []) + [line]
            prev_comment = True
            continue
        prev_comment = False
        if not line.strip():
            continue
        key = line.split(":", 1)[0]
        if key == "stage":  # the file's header comment cites nothing by itself
            block = []
        elif not re.search(r"paper §\d|chosen", " ".join(block) + line):
            out.append(key)
    return out


def test_every_paper_knob_has_a_source_comment():
    for name in PAPER_FILES:
        assert uncited_keys((PAPER / name).read_text(encoding="utf-8")) == [], name
    text = "# header, chosen\nstage: sft\n# paper §4.2\nglobal_batch: 32\nmicro_batch: 1\n# why not\nlr: 1.0e-5\n"
    assert uncited_keys(text) == ["lr"]
    assert uncited_keys("# chosen: header\nstage: sft\nlr: 1.0e-5\n") == ["lr"]
    assert uncited_keys("stage: sft\nseed: 0\nclip: 1.0  # chosen: the usual\n") == ["seed"]


def test_paper_numbers():
    """The settings the paper states (§3.2, §4.2, §5.3) are the recipes' values."""
    r = {n: yaml.safe_load((PAPER / n).read_text(encoding="utf-8")) for n in PAPER_FILES}
    assert (r["pretrain.yaml"]["global_batch"], r["pretrain.yaml"]["max_steps"]) == (1536, 120000)
    assert r["pack-pretrain.yaml"]["seq_len"] == 8192
    assert (r["extend-context.yaml"]["seq_len"], r["extend-context.yaml"]["max_steps"],
            r["extend-context.yaml"]["global_batch"]) == (32768, 10000, 1536)
    assert r["pack-long.yaml"]["seq_len"] == r["pack-sft.yaml"]["seq_len"] == 32768
    assert r["sft.yaml"]["global_batch"] == 32 and r["sft.yaml"]["train"] == "vision,merger,llm"
    rl = r["rlcs.yaml"]
    assert (rl["top_p"], rl["kl_coef"], rl["entropy_coef"]) == (1.0, 0.0, 0.0)
    assert rl["clip_eps_high"] > rl["clip_eps_low"] and rl["forced_answering"] and rl["expansion"]
    assert rl["loss_agg"] == "seq-mean-token-mean" and rl["curriculum"] == "tiered"


def test_misspelt_key_is_rejected_naming_it(tmp_path: Path):
    bad = tmp_path / "pretrain.yaml"
    bad.write_text((PAPER / "pretrain.yaml").read_text(encoding="utf-8").replace("global_batch:", "global_bacth:"),
                   encoding="utf-8")
    with pytest.raises(GlmvError, match=r"unknown key 'global_bacth' for 'glmv pretrain'; valid keys: .*global_batch"):
        check_values(bad, "pretrain")
    res = CliRunner().invoke(glmv_cli.main.app, ["pretrain", "--recipe", str(bad)])
    assert res.exit_code == 2
    assert "unknown key 'global_bacth'" in res.output


def test_bad_values_are_rejected_naming_the_key(tmp_path: Path):
    cases = [("pretrain", "micro_batch: 1\n", "micro_batch: 1.5\n", "key 'micro_batch': expected an integer, got 1.5"),
             ("pretrain", "lr: 5.0e-5\n", "lr: fast\n", "key 'lr': expected a number, got 'fast' (str)"),
             ("pretrain", "activation_checkpointing: true\n", "activation_checkpointing: maybe\n",
              "key 'activation_checkpointing': --activation-checkpointing must be one of"),
             ("grade-difficulty", "pass_at: [1, 4, 8]\n", "pass_at: '4'\n",
              "key 'pass_at' item 0: expected an integer, got '4' (str)"),
             ("rlcs", "group_size: 8\n", "group_size: eight\n", "key 'group_size': expected an integer, got 'eight'")]
    for stage, old, new, msg in cases:
        src = PAPER / f"{stage}.yaml"
        text = src.read_text(encoding="utf-8")
        assert old in text, (stage, old)
        bad = tmp_path / src.name
        bad.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(GlmvError, match=re.escape(msg)):
            check_values(bad, stage)


def test_stage_validation_catches_inconsistent_values(tmp_path: Path, monkeypatch):
    """Values of the right type but wrong together fail in the stage's own validation."""
    text = (PAPER / "rlcs.yaml").read_text(encoding="utf-8").replace("clip_eps_high: 0.28", "clip_eps_high: 0.1")
    bad = tmp_path / "rlcs.yaml"
    bad.write_text(text, encoding="utf-8")
    kw = parse("rlcs", ["--recipe", str(bad), *placeholders("rlcs", {}, tmp_path)])
    with pytest.raises(GlmvError, match=re.escape("--clip-eps-high must be >= --clip-eps-low (0.2), got 0.1")):
        validate_stage("rlcs", kw)
    kw = parse("pretrain", ["--recipe", str(PAPER / "pretrain.yaml"), *placeholders("pretrain", {}, tmp_path)])
    with pytest.raises(GlmvError, match=r"--global-batch 1536 must be a multiple of --micro-batch 1 x 1000"):
        validate_stage("pretrain", kw, world=1000)


# ------------------------------------------------------------------------------------------ scripts


@pytest.mark.parametrize("script", SCRIPTS, ids=[_rel(p) for p in SCRIPTS])
def test_shell_syntax(script: Path):
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _dry_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "DRY_RUN": "1", **(env or {})}
    return subprocess.run(["bash", str(LAUNCH), *args], capture_output=True, text=True, env=full, timeout=30)


FULL = ["--work", "/shared/run", "--init-vision", "/m/aimv2", "--init-llm", "/m/glm4", "--processor", "/m/glm41v",
        "--pretrain-input", "/d/cap tions.jsonl:2", "--pretrain-input", "/d/interleaved.jsonl",
        "--long-input", "/d/video.jsonl", "--sft-input", "/d/cot.jsonl", "--rl-data", "/d/rl.jsonl",
        "--rl-eval", "/d/heldout.jsonl", "--grader", "/m/other", "--human-labels", "/d/labels.jsonl",
        "--bench-dir", "/d/bench"]


def _glmv_commands(stdout: str) -> list[tuple[list[str], str, list[str]]]:
    out = []
    for line in stdout.splitlines():
        argv = shlex.split(line)
        i = argv.index("glmv_cli.main")
        out.append((argv[:i + 1], argv[i + 1], argv[i + 2:]))
    return out


def test_launch_dry_run_commands_parse(monkeypatch):
    res = _dry_run(*FULL)
    assert res.returncode == 0, res.stderr
    cmds = _glmv_commands(res.stdout)
    assert [s for _, s, _ in cmds] == ["pack", "pretrain", "pack", "extend-context", "pack", "sft",
                                       "grade-difficulty", "rlcs", "eval"]
    world = world_sizes()
    for prefix, stage, args in cmds:
        kw = parse(stage, args)  # every flag the script passes exists and converts
        assert Path(kw["recipe"]).parent == PAPER
        if stage in DISTRIBUTED:
            assert prefix[0] == "torchrun" and "--rdzv_backend" in prefix
            assert int(prefix[prefix.index("--nnodes") + 1]) * int(prefix[prefix.index("--nproc_per_node") + 1]) \
                == world[stage]
            assert kw["resume"] == "auto"
            validate_stage(stage, kw, world=world[stage], monkeypatch=monkeypatch)
        else:  # single-process stages
            assert prefix == ["python", "-m", "glmv_cli.main"]
    by_stage = {s: kw for s, kw in ((s, parse(s, a)) for _, s, a in cmds)}
    assert by_stage["rlcs"]["resume"] == "auto"
    assert list(by_stage["grade-difficulty"]["models"]) == ["/shared/run/sft", "/m/other"]
    assert list(parse("pack", cmds[0][2])["inputs"]) == ["/d/cap tions.jsonl:2", "/d/interleaved.jsonl"]
    assert parse("pretrain", cmds[1][2])["init_vision"] == Path("/m/aimv2")


def test_launch_deepspeed_and_errors():
    res = _dry_run("--work", "/w", "sft", env={"LAUNCHER": "deepspeed", "HOSTFILE": "/etc/hosts.ds"})
    assert res.returncode == 0, res.stderr
    (prefix, stage, args), = _glmv_commands(res.stdout)
    assert stage == "sft" and prefix[0] == "deepspeed" and "--no_local_rank" in prefix
    assert prefix[prefix.index("--hostfile") + 1] == "/etc/hosts.ds"
    bad = _dry_run("--work", "/w", "pretrian")
    assert bad.returncode == 2 and "unknown stage 'pretrian'" in bad.stderr
    missing = _dry_run("--work", "/w", "pretrain")
    assert missing.returncode == 2 and "stage pretrain needs --init-vision" in missing.stderr


def test_launch_skips_complete_artifacts(tmp_path: Path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "manifest.json").write_text("{}", encoding="utf-8")
    res = _dry_run("--work", str(tmp_path), "sft", "eval")
    assert res.returncode == 0, res.stderr
    assert [s for _, s, _ in _glmv_commands(res.stdout)] == ["eval"]
    assert "skip sft: complete" in res.stderr
