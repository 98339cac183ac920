import json
from pathlib import Path

import pytest

from glmv_cli.artifacts import ArtifactWriter, read_manifest, staging_path, verify_files
from glmv_cli.errors import GlmvError


def _make(out: Path, stage: str = "s1", inputs=()) -> None:
    with ArtifactWriter(out, stage, options={"seed": 3, "path": Path("/x")}, inputs=inputs) as art:
        (art.path / "a.txt").write_text("hello")
        (art.path / "sub").mkdir()
        (art.path / "sub" / "b.bin").write_bytes(b"\x00\x01")
        art.metrics["n"] = 2


def test_atomic_write_manifest_and_hashes(tmp_path):
    out = tmp_path / "art"
    _make(out)
    assert not staging_path(out).exists()
    m = read_manifest(out)
    assert m.stage == "s1"
    assert m.options == {"seed": 3, "path": "/x"}
    assert m.metrics == {"n": 2}
    assert set(m.files) == {"a.txt", "sub/b.bin"}
    assert m.files["a.txt"]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert m.files["a.txt"]["bytes"] == 5
    assert verify_files(m) == []
    (out / "a.txt").write_text("HELLO")
    assert verify_files(m) == [f"{out.resolve() / 'a.txt'}: sha256 differs from the manifest"]


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "art"
    with pytest.raises(ValueError):
        with ArtifactWriter(out, "s1") as art:
            (art.path / "a.txt").write_text("x")
            raise ValueError("boom")
    assert not out.exists()
    assert not staging_path(out).exists()


def test_existing_out_is_refused(tmp_path):
    out = tmp_path / "art"
    _make(out)
    with pytest.raises(GlmvError, match=r"already exists \(an artifact\); choose a new path or pass --overwrite"):
        _make(out)


def test_lineage_chains(tmp_path):
    _make(tmp_path / "a", "s1")
    a = read_manifest(tmp_path / "a")
    _make(tmp_path / "b", "s2", inputs=[a])
    b = read_manifest(tmp_path / "b")
    _make(tmp_path / "c", "s3", inputs=[b])
    c = read_manifest(tmp_path / "c")
    assert [e["stage"] for e in c.lineage] == ["s1", "s2"]
    assert c.data["inputs"][0]["manifest_sha256"] == b.sha256


def test_directory_without_manifest_is_not_an_input(tmp_path):
    d = tmp_path / "half"
    d.mkdir()
    (d / "x").write_text("1")
    with pytest.raises(GlmvError, match=r"has no manifest.json: it is not a complete glmv artifact"):
        read_manifest(d)
    with pytest.raises(GlmvError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    _make(tmp_path / "ok", "pack")
    with pytest.raises(GlmvError, match=r"written by stage 'pack', expected one of: sft, pretrain"):
        read_manifest(tmp_path / "ok", expect_stage=["sft", "pretrain"])


def test_bad_manifest_json(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "manifest.json").write_text("{\n  'x': 1\n}")
    with pytest.raises(GlmvError, match=r"manifest.json:2: invalid JSON in manifest"):
        read_manifest(d)
    (d / "manifest.json").write_text(json.dumps({"stage": "x"}))
    with pytest.raises(GlmvError, match=r"field 'schema_version' is missing"):
        read_manifest(d)
