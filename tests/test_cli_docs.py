"""The command line agrees with its documentation and with the options dataclasses.

- Every flag the README and docs/ mention for a command exists on that command (the flags are
  parsed out of the docs: a ``glmv <command>`` in a code line or inline code span owns the flags
  after it; any other ``--flag`` in prose must exist on some glmv command or be one of the few
  external tools' flags listed below).
- For every command, the CLI default of every flag equals the dataclass default (so a stage called
  from Python behaves as from the shell), and every flag has exactly one non-empty help text.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import typer

import glmv_cli.main
from glmv_cli import options as O
from glmv_cli.cli import COMMANDS as STAGES
from glmv_cli.cli import options_from_kwargs

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CLICK = typer.main.get_command(glmv_cli.main.app).commands
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*")
CMD = re.compile(r"\bglmv(?:_cli\.main)?\s+([a-z][a-z-]*)")
# flags of other programs that the docs show (launchers, pip, pytest, benchmark scripts, the server CLIs)
EXTERNAL = {"--nproc_per_node", "--nnodes", "--standalone", "--hostfile", "--no-deps", "--only-binary",
            "--python-version", "--implementation", "--platform", "--target", "--no-index", "--upgrade",
            "--version", "--help", "--dry-run", "--fresh", "--records", "--workers", "--tensor-parallel-size",
            "--port", "--host", "--model-path", "--tp", "--ep", "--enable-expert-parallel", "--served-model-name",
            "--trust-remote-code", "--max-model-len", "--limit-mm-per-prompt", "--synth", "--seq-len",
            "--steps", "--out", "--model", "--extra-index-url", "--index-url", "--quiet", "-q"}
NON_GLMV = re.compile(r"^\s*(?:\$\s*)?(python3?|torchrun|deepspeed|pip|pytest|bash|vllm|sglang|curl|hf|huggingface-cli)\b")


def _flags_of(cmd: str) -> set[str]:
    out = {"--help", "--recipe"}
    for p in CLICK[cmd].params:
        for o in (*p.opts, *p.secondary_opts):
            out.add(o)
    return out


ALL_FLAGS = set().union(*(_flags_of(c) for c in CLICK))


def _spans(text: str) -> list[str]:
    """Code lines (backslash continuations joined) and inline code spans."""
    spans: list[str] = []
    in_block = False
    buf = ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            buf += line.rstrip("\\") + " "
            if not line.rstrip().endswith("\\"):
                spans.append(buf)
                buf = ""
        else:
            spans.extend(re.findall(r"`([^`]+)`", line))
            spans.append(re.sub(r"`[^`]+`", " ", line))  # the prose around the spans
    return spans


def mentions() -> list[tuple[str, str | None, str]]:
    """(doc, command or None, flag) for every flag the docs mention."""
    out = []
    for doc in DOCS:
        for span in _spans(doc.read_text(encoding="utf-8")):
            cmds = list(CMD.finditer(span))
            if not cmds and NON_GLMV.match(span):
                continue
            for f in FLAG.finditer(span):
                owner = None
                for c in cmds:  # the nearest glmv command before the flag owns it
                    if c.end() <= f.start() and c.group(1) in CLICK:
                        owner = c.group(1)
                out.append((doc.name, owner, f.group(0)))
    return out


def test_docs_mention_flags():
    found = mentions()
    assert len([m for m in found if m[1]]) >= 40  # the parser finds the commands' flags
    assert ("README.md", "sft", "--resume") in found or any(c == "sft" for _, c, _ in found)


@pytest.mark.parametrize("doc, cmd, flag", sorted(set(mentions()), key=lambda m: (m[0], m[1] or "", m[2])), ids=str)
def test_every_documented_flag_exists(doc, cmd, flag):
    if cmd is not None:
        assert flag in _flags_of(cmd), f"{doc}: 'glmv {cmd} {flag}' is documented but glmv {cmd} has no {flag}"
    else:
        assert flag in ALL_FLAGS or flag in EXTERNAL, f"{doc}: {flag} is documented but no glmv command has it"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cli_defaults_equal_dataclass_defaults(name):
    """Parse the command with only its required flags; the options built from it equal the dataclass
    defaults field by field (groups included)."""
    _, cls, _ = STAGES[name]
    required = {}
    argv = []
    for leaf in O.leaves(cls):
        if O.default_of(cls, leaf) is dataclasses.MISSING:
            value = "x" if O.list_item(O.unwrap_optional(leaf.type)[0]) is None else ["x"]
            required[leaf.name] = value
            if leaf.meta.get("argument"):
                argv.append("x")
            else:
                for v in (value if isinstance(value, list) else [value]):
                    argv += [leaf.flag, v]
    with CLICK[name].make_context(name, argv) as ctx:
        params = {k: v for k, v in ctx.params.items() if k != "recipe"}
    from_cli = options_from_kwargs(cls, params)
    from_py = O.build(cls, required)
    for leaf in O.leaves(cls):
        a, b = leaf.get(from_cli), leaf.get(from_py)
        if leaf.meta.get("parse") is not None:  # text on the command line, a value in Python
            a, b = leaf.meta["parse"](a), leaf.meta["parse"](b)
        assert a == b or (isinstance(b, Path) and str(a) == str(b)), f"glmv {name} {leaf.flag}: CLI {a!r} != Python {b!r}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_option_has_one_help_text(name):
    _, cls, _ = STAGES[name]
    helps = {}
    for p in CLICK[name].params:
        if p.name == "recipe":
            continue
        assert p.help and p.help.strip(), f"glmv {name} {p.opts}: no help"
        helps[p.name] = p.help
    leaves = {leaf.name: leaf for leaf in O.leaves(cls)}
    assert set(helps) == set(leaves)  # every flag is a field, every field a flag
    for n, h in helps.items():
        assert h.startswith(leaves[n].help), (name, n)  # the field's own text (plus its choices)
    dup = [n for n in helps if list(helps.values()).count(helps[n]) > 1]
    assert dup == [], f"glmv {name}: flags with the same help text {dup}"
