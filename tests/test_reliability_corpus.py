"""The reliability corpus: every bad input of glmv_cli.testing.corpus_cases, on every stage, ends in
exit code 2 with an error naming the file / field, within the time limit, and leaves the file
system as it was (no staging directory, no changed input)."""

from __future__ import annotations

import pytest

from glmv_cli.testing.corpus import build_fixtures, run_corpus, table
from glmv_cli.testing.corpus_cases import CASES


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    fx = build_fixtures(tmp_path_factory.mktemp("fx"))
    return run_corpus(fx, tmp_path_factory.mktemp("w"), limit_s=60)


def test_the_corpus_is_large_and_covers_every_stage():
    stages = {c.stage.split()[0] for c in CASES}
    assert len(CASES) >= 100
    assert {"pack", "sft", "rlcs", "grade-difficulty", "eval", "push", "reward", "info", "synth"} <= stages


def test_every_bad_input_is_a_clear_error(outcomes):
    bad = [o for o in outcomes if o.status not in ("clear", "skipped")]
    assert not bad, table(bad)
    skipped = [o for o in outcomes if o.status == "skipped"]
    assert len(skipped) <= 2, table(skipped)  # only the read-only mounts, where mount(8) is not allowed
    assert all(o.message.startswith("error: ") for o in outcomes if o.status == "clear")


def test_no_case_comes_near_the_time_limit(outcomes):
    assert max(o.seconds for o in outcomes) < 20


def test_the_runner_tells_the_outcomes_apart(tmp_path, monkeypatch):
    """What run_case reports for an accepted input, a traceback, a hang and a leftover file."""
    import os

    import glmv_cli.stages.info as info_stage
    from glmv_cli.artifacts import ArtifactWriter
    from glmv_cli.errors import GlmvError
    from glmv_cli.testing.corpus import Case, Fixtures, run_case

    with ArtifactWriter(tmp_path / "art", "x") as art:
        (art.path / "a.txt").write_text("a")
    fx = Fixtures(*(tmp_path / "fx" for _ in range(7)))
    args = lambda w, fx: ["info", tmp_path / "art"]  # noqa: E731
    assert run_case(Case("info", "good", args, ("x",)), fx, tmp_path / "w0").status == "silent"

    def boom(*a, **k):
        raise ValueError("a bug")

    monkeypatch.setattr(info_stage, "read_manifest", boom)
    assert run_case(Case("info", "bug", args, ()), fx, tmp_path / "w1").status == "traceback"

    os.mkfifo(tmp_path / "fifo")
    monkeypatch.setattr(info_stage, "read_manifest", lambda *a, **k: open(tmp_path / "fifo").read())
    assert run_case(Case("info", "hang", args, ()), fx, tmp_path / "w2", limit_s=1).status == "hang"

    def litter(p, *a, **k):
        (tmp_path / "w3" / "junk").write_text("x")
        raise GlmvError("named")

    monkeypatch.setattr(info_stage, "read_manifest", litter)
    assert run_case(Case("info", "litter", args, ("named",)), fx, tmp_path / "w3").status == "leftover"
    monkeypatch.setattr(info_stage, "read_manifest", lambda *a, **k: (_ for _ in ()).throw(GlmvError("vague")))
    assert run_case(Case("info", "vague", args, ("a.txt",)), fx, tmp_path / "w4").status == "unclear"
