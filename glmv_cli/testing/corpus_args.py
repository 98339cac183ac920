"""Shared pieces of the reliability corpus's cases: command lines per stage, small input writers,
and the ``case`` decorator each case module registers with (see :mod:`glmv_cli.testing.corpus_cases`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from glmv_cli.testing.corpus import Case, Fixtures, edit_manifest, jsonl, png


def registrar(cases: list[Case]) -> Callable:
    """A ``@case(stage, what, *expect, needs=None)`` decorator appending to ``cases``."""
    def case(stage: str, what: str, *expect: str, needs: str | None = None) -> Callable:
        def deco(fn: Callable[[Path, Fixtures], Any]) -> Callable:
            cases.append(Case(stage, what, fn, tuple(expect), needs))
            return fn
        return deco
    return case


# ----------------------------------------------------------------------------- command lines

def pack_args(w: Path, inp: Any, *extra: Any) -> list:
    return ["pack", "--model", "tiny", "--input", inp, "--out", w / "out", "--seq-len", 256, *extra]


def sft_args(w: Path, fx: Fixtures, *, data: Any = None, model: Any = "tiny", out: Any = None, extra=()) -> list:
    return ["sft", "--model", model, "--data", data or fx.pack, "--out", out or w / "out", "--max-steps", 1,
            "--global-batch", 1, *extra]


def rlcs_args(w: Path, fx: Fixtures, *, data: Any = None, model: Any = "tiny", extra=()) -> list:
    return ["rlcs", "--model", model, "--data", data or fx.rl, "--out", w / "out", "--steps", 1, *extra]


def grade_args(w: Path, fx: Fixtures, *, data: Any = None, model: Any = "tiny", extra=()) -> list:
    return ["grade-difficulty", "--data", data or fx.rl, "--model", model, "--out", w / "out", "--k", 1, *extra]


def eval_args(w: Path, fx: Fixtures, *, model: Any = "tiny", data_dir: Any = None, out: Any = None,
              extra=()) -> list:
    return ["eval", "--model", model, "--tasks", "synth", "--data-dir", data_dir or fx.synth, "--limit", 1,
            "--out", out or w / "out", *extra]


def push_args(w: Path, model: Any, *extra: Any) -> list:
    return ["push", model, "--repo", "me/m", "--endpoint", "http://127.0.0.1:9", "--dry-run", "--out", w / "rec",
            *extra]


def reward_args(w: Path, inp: Any) -> list:
    return ["reward", "--input", inp, "--out", w / "out"]


def sft_data(w: Path, rows: list, name: str = "recs.jsonl") -> Path:
    """An SFT JSONL in w/data with a good image im.png beside it."""
    png(w / "data" / "im.png")
    return jsonl(w / "data" / name, rows)


def rl_data(w: Path, rows: list) -> Path:
    png(w / "data" / "im.png")
    return jsonl(w / "data" / "rl.jsonl", rows)



def reward_input(w: Path) -> Path:
    return jsonl(w / "scores.jsonl", [{"response": "<answer>2</answer>", "reference": "2", "domain": "counting"}])


def rewrite_signed(art: Path, fn: Callable[[dict], Any]) -> None:
    """Edits a manifest and re-signs its integrity hash (what a deliberate edit would do)."""
    from glmv_cli.artifacts import integrity_hash

    def edit(d: dict) -> None:
        fn(d)
        d["integrity"]["sha256"] = integrity_hash(d)
    edit_manifest(art, edit)
