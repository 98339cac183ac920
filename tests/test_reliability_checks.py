"""The checks behind the reliability corpus, one by one: locks, --out rules, manifest integrity,
input verification (fast and full), image decoding at pack time, the pixel budget, external paths,
strict JSON out of grade-difficulty, safetensors headers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glmv_cli import locks
from glmv_cli.artifacts import ArtifactWriter, check_out, read_manifest, staging_path, verify_input
from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.testing.corpus import jsonl, png, sft_record, truncated_png

runner = CliRunner()


# ----------------------------------------------------------------------------- locks


def test_a_lock_is_held_while_its_process_runs_and_only_then():
    me = locks.holder_record()
    assert not locks.holder_gone(me)
    assert not locks.holder_gone({**me, "host": "another-node"})  # never provable from here
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert locks.holder_gone({**me, "pid": p.pid})  # that pid no longer runs
    # the pid runs, but a process younger than the lock's holder: the pid was reused
    assert locks.holder_gone({**me, "process_start": me["process_start"] - 3600})
    # the machine booted after the lock was taken
    assert locks.holder_gone({**me, "locked_at": 1.0})


def test_acquire_refuses_a_live_holder_breaks_a_dead_one_and_release_is_owner_only(tmp_path):
    d = tmp_path / ".o.incomplete"
    mine = locks.acquire(d, tmp_path / "o")
    with pytest.raises(GlmvError, match=rf"is being written by another glmv run \(pid {os.getpid()} on host "
                                        rf"{socket.gethostname()}, since "):
        locks.acquire(d, tmp_path / "o")
    locks.release(d, {**mine, "token": "not-mine"})
    assert (d / locks.LOCK).exists()
    locks.release(d, mine)
    assert not (d / locks.LOCK).exists()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (d / locks.LOCK).write_text(json.dumps({**mine, "pid": p.pid, "token": "dead"}))
    again = locks.acquire(d, tmp_path / "o")
    assert locks.read_lock(d / locks.LOCK)["token"] == again["token"]
    assert sorted(x.name for x in d.iterdir()) == [locks.LOCK]  # no temp or broken-lock files left


def test_a_writer_refuses_to_commit_after_losing_its_lock(tmp_path):
    art = ArtifactWriter(tmp_path / "o", "x").open()
    (art.path / locks.LOCK).write_text(json.dumps({"pid": 1, "host": "h", "token": "thief", "locked_at": time.time()}))
    with pytest.raises(GlmvError, match="this run lost the lock of"):
        art.commit()
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- --out


def test_out_rules(tmp_path):
    inp = tmp_path / "data"
    inp.mkdir()
    (inp / "a.jsonl").write_text("{}\n")
    for out, how in ((inp, "is"), (inp / "sub", "lies inside"), (tmp_path, "contains")):
        with pytest.raises(GlmvError, match=f"--out '{out}' {how} the input '{inp}'"):
            check_out(out, True, [inp])
    link = tmp_path / "link"
    link.symlink_to(inp)
    with pytest.raises(GlmvError, match="is the input"):  # symlinks resolved
        check_out(link, True, [inp])
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", True)  # an empty directory may be replaced
    with pytest.raises(GlmvError, match=r"already exists \(a directory, not a glmv artifact\)"):
        check_out(inp, True)
    check_out(tmp_path / "new" / "deeper" / "o", False)  # missing parents are fine when creatable


def test_an_aborted_writer_removes_the_parents_it_created(tmp_path):
    with pytest.raises(ValueError):
        with ArtifactWriter(tmp_path / "a" / "b" / "o", "x"):
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- manifests


def _art(tmp_path: Path, name: str = "a") -> Path:
    with ArtifactWriter(tmp_path / name, "s", options={"lr": 0.1}) as art:
        (art.path / "w.bin").write_bytes(b"\x00" * 64)
        art.metrics["loss"] = 1.5
    return tmp_path / name


def test_integrity_hash_catches_an_edit_and_survives_a_rewrite_of_the_same_content(tmp_path):
    d = _art(tmp_path)
    data = json.loads((d / "manifest.json").read_text())
    assert len(data["integrity"]["sha256"]) == 64
    (d / "manifest.json").write_text(json.dumps(data, sort_keys=True))  # reformatted, same fields
    read_manifest(d)
    data["metrics"]["loss"] = 0.5
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(GlmvError, match="the manifest was changed after it was written"):
        read_manifest(d)


def test_fast_input_check_sizes_and_fresh_files_full_check_everything(tmp_path):
    d = _art(tmp_path)
    m = read_manifest(d)
    f = d / "w.bin"
    old = f.stat()
    f.write_bytes(b"\x01" + b"\x00" * 63)
    os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size, same mtime: only a full hash can tell
    verify_input(m)
    with pytest.raises(GlmvError, match=r"does not match its manifest: .*w.bin: sha256 differs"):
        verify_input(m, full=True)
    f.touch()  # modified after the manifest: the fast check hashes it
    with pytest.raises(GlmvError, match="sha256 differs"):
        verify_input(m)
    f.write_bytes(b"\x00" * 10)
    with pytest.raises(GlmvError, match="size 10 != manifest 64"):
        verify_input(m)


def test_verify_inputs_flag_rehashes_the_data(tmp_path):
    """sft --verify-inputs finds a pack shard whose bytes changed behind an unchanged size and mtime."""
    recs = jsonl(tmp_path / "d" / "r.jsonl", [sft_record(i, image=None) for i in range(2)])
    assert runner.invoke(app, ["pack", "--model", "tiny", "--input", str(recs), "--out", str(tmp_path / "p"),
                               "--seq-len", "64"]).exit_code == 0
    shard = tmp_path / "p" / "packs-00000.safetensors"
    st = shard.stat()
    b = bytearray(shard.read_bytes())
    b[-1] ^= 1
    shard.write_bytes(bytes(b))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    args = ["sft", "--model", "tiny", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--max-steps", "1",
            "--global-batch", "1", "--verify-inputs"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "packs-00000.safetensors: sha256 differs from the manifest" in r.output
    assert not (tmp_path / "o").exists() and not staging_path(tmp_path / "o").exists()


# ----------------------------------------------------------------------------- images at pack time


def test_verify_images_counts_decodes_and_off_defers_the_failure_to_a_named_reader_error(tmp_path):
    from glmv_cli.data.packed import PackedDataset

    d = tmp_path / "d"
    png(d / "ok.png")
    truncated_png(d / "cut.png")
    recs = jsonl(d / "r.jsonl", [sft_record(0, image="ok.png"), sft_record(1, image="ok.png")])
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(recs), "--out", str(tmp_path / "on"),
                            "--seq-len", "256"])
    assert r.exit_code == 0 and "2 of 2 images decoded" in r.output
    assert read_manifest(tmp_path / "on").metrics["images_verified"] == 2
    cut = jsonl(d / "cut.jsonl", [sft_record(0, image="cut.png")])
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(cut), "--out", str(tmp_path / "off"),
                            "--seq-len", "256", "--verify-images", "off"])
    assert r.exit_code == 0 and "images not decoded (--verify-images off)" in r.output
    with pytest.raises(GlmvError, match=r"packed dataset '.*off' pack 0: image 0 cannot be decoded \(OSError: image "
                                        "file is truncated"):
        PackedDataset(tmp_path / "off")[0]


def test_pixel_budget_is_configurable_and_the_reader_uses_the_packs_limit(tmp_path, monkeypatch):
    from PIL import Image

    from glmv_cli.data.mediacheck import decode_image
    from glmv_cli.data.packed import PackedDataset

    d = tmp_path / "d"
    png(d / "im.png", (56, 56))
    recs = jsonl(d / "r.jsonl", [sft_record(0)])
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(recs), "--out", str(tmp_path / "p"),
                            "--max-image-pixels", "3000"])
    assert r.exit_code == 2 and "56x56 = 3,136 pixels, more than the limit 3,000 (--max-image-pixels)" in r.output
    # a limit above PIL's own bomb check: pack records it, the reader decodes with it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL now refuses anything over 2,000 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(d / "im.png")
    assert decode_image((d / "im.png").read_bytes(), 300_000_000).size == (56, 56)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    assert runner.invoke(app, ["pack", "--model", "tiny", "--input", str(recs), "--out", str(tmp_path / "big"),
                               "--max-image-pixels", "300000000"]).exit_code == 0
    assert json.loads((tmp_path / "big" / "packs.json").read_text())["max_image_pixels"] == 300_000_000
    assert PackedDataset(tmp_path / "big")[0]["pixel_values"].shape[0] > 0


def test_external_paths_need_the_flag(tmp_path):
    png(tmp_path / "shared" / "im.png")
    recs = jsonl(tmp_path / "d" / "r.jsonl", [sft_record(0, image="../shared/im.png")])
    base = ["pack", "--model", "tiny", "--input", str(recs), "--seq-len", "256"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "is outside the data directory" in r.output
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--allow-external-paths"])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------- outputs and headers


def test_grade_results_are_strict_json():
    from glmv_cli.stages.grade_difficulty import _finite

    row = {"grade": float("nan"), "per": [1.0, float("inf")], "ok": 0.5}
    assert json.loads(json.dumps(_finite(row), allow_nan=False)) == {"grade": None, "per": [1.0, None], "ok": 0.5}


def test_human_labels_that_partly_match_print_a_warning(tmp_path, capsys):
    from glmv_cli.rl.records import RLRecord
    from glmv_cli.stages.grade_difficulty import _check_labels_match

    recs = [RLRecord("a", "ocr", "x", None), RLRecord("b", "ocr", "y", None)]
    _check_labels_match({"a": {}, "zz": {}}, recs, "l.jsonl")
    assert "warning: --human-labels 'l.jsonl': 1 of 2 ids match no record of --data (e.g. 'zz')" in capsys.readouterr().out


def test_safetensors_header_checks(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from glmv_cli.modeling.weights import read_header

    f = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float16)}, str(f))
    assert {k: v["shape"] for k, v in read_header(f).items()} == {"a": [2, 3], "b": [4]}
    f.write_bytes(f.read_bytes() + b"\x00")
    with pytest.raises(GlmvError, match="has trailing bytes: the header describes 32 bytes of tensor data, the file "
                                        "holds 33"):
        read_header(f)
