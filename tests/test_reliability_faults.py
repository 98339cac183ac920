"""Faults: kill -9 of pack, sft, rlcs, grade-difficulty and eval mid-run (and again during a checkpoint
write, the export and the final hashing), two concurrent runs on one --out, a full disk.

Every scenario asserts that (1) no partial artifact is ever readable as complete, (2) the newest
complete checkpoint stays usable, and (3) the resumed (or re-run) result equals the uninterrupted
run's: the same weight files (sha256), the same per-step losses / rewards / grades (exact: one
thread, CPU fp32, the same op sequence). Killed runs are subprocesses (glmv_cli.testing.faults);
reference and final runs go through CliRunner in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glmv_cli.artifacts import read_manifest, staging_path
from glmv_cli.errors import GlmvError
from glmv_cli.lifecycle import complete_checkpoints
from glmv_cli.main import app
from glmv_cli.testing.corpus import jsonl, png, rl_record

runner = CliRunner()
ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def killed(point: str, n: int, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "glmv_cli.testing.faults", point, str(n), "--", *map(str, args)],
                       env=ENV, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


def assert_not_complete(out: Path) -> None:
    """Nothing at --out, and nothing a stage would accept as an artifact."""
    assert not out.exists()
    with pytest.raises(GlmvError, match="has no manifest.json|does not exist"):
        read_manifest(out)
    stage = staging_path(out)
    if stage.exists():
        assert not (stage / "manifest.json").exists()
        with pytest.raises(GlmvError, match="has no manifest.json"):
            read_manifest(stage)


def assert_usable(ckpt: Path) -> None:
    """A complete checkpoint: state.json last, every safetensors file whole (headers vs sizes)."""
    from glmv_cli.modeling.weights import read_header

    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == int(ckpt.name.split("-")[1])
    files = sorted(ckpt.glob("*.safetensors"))
    assert any(f.name == "model.safetensors" for f in files) and any("optim-rank" in f.name for f in files)
    for f in files:
        assert read_header(f)


def ckpt_names(out: Path) -> list[str]:
    return [c.name for c in complete_checkpoints(staging_path(out))]


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def weight_hashes(m) -> dict:
    return {k: v["sha256"] for k, v in m.files.items() if k.endswith(".safetensors")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    invoke("synth", "--out", root / "synth", "--n-train", 12, "--n-eval", 4, "--image-size", 64, "--domains",
           "counting,stem")
    invoke("pack", "--model", "tiny", "--input", root / "synth", "--out", root / "pack", "--seq-len", 256)
    rl = root / "rl"
    png(rl / "im.png")
    jsonl(rl / "rl.jsonl", [rl_record(i, answer="abc"[: 1 + i % 3], domain="ocr") for i in range(6)])
    (rl / "rewards.yaml").write_text("style: glm45v\ngates: {require_think: false, require_box: false, "
                                     "language_mix: false}\n")
    return {"root": root, "synth": root / "synth", "pack": root / "pack", "rl": rl / "rl.jsonl",
            "rewards": rl / "rewards.yaml"}


# ----------------------------------------------------------------------------- pack


def test_pack_killed_while_writing_a_shard_reruns_to_the_same_artifact(data, tmp_path):
    args = ["pack", "--model", "tiny", "--input", data["synth"], "--seq-len", 256, "--out", tmp_path / "p"]
    killed("pack-shard", 1, *args)
    assert_not_complete(tmp_path / "p")
    invoke(*args)  # pack has no resume: a re-run breaks the dead run's lock and starts over
    ref, got = read_manifest(data["pack"]), read_manifest(tmp_path / "p")
    assert got.files == ref.files and not staging_path(tmp_path / "p").exists()


# ----------------------------------------------------------------------------- sft


def test_sft_killed_in_a_checkpoint_write_the_export_and_the_hashing_resumes_to_the_same_model(data, tmp_path):
    common = ["sft", "--model", "tiny", "--data", data["pack"], "--max-steps", 4, "--global-batch", 2, "--lr", "1e-3",
              "--checkpoint-every", 2]
    invoke(*common, "--out", tmp_path / "ref")
    out = tmp_path / "o"
    run = [*common, "--out", out, "--resume", "auto"]

    killed("ckpt-write", 2, *run)  # the step-4 checkpoint's optimizer file half written
    assert_not_complete(out)
    assert ckpt_names(out) == ["step-00000002"]
    assert (staging_path(out) / "checkpoints" / ".step-00000004.partial").is_dir()
    assert_usable(staging_path(out) / "checkpoints" / "step-00000002")

    killed("export", 1, *run)  # resumed from step 2, trained 3-4, died with a half-written shard
    assert_not_complete(out)
    assert ckpt_names(out) == ["step-00000002", "step-00000004"]
    assert_usable(staging_path(out) / "checkpoints" / "step-00000004")

    killed("hash", 3, *run)  # nothing left to train: export, then died hashing the artifact
    assert_not_complete(out)
    assert ckpt_names(out) == ["step-00000004"]  # the commit keeps the newest, deletes it only after the rename
    assert_usable(staging_path(out) / "checkpoints" / "step-00000004")

    invoke(*run)
    ref, got = read_manifest(tmp_path / "ref"), read_manifest(out)
    assert got.metrics["resumed_from_step"] == 4 and got.metrics["steps"] == 4
    assert weight_hashes(got) == weight_hashes(ref) and len(weight_hashes(got)) == 1
    assert [(r["step"], r["loss"]) for r in rows(out / "metrics.jsonl")] == \
        [(r["step"], r["loss"]) for r in rows(tmp_path / "ref" / "metrics.jsonl")]
    assert not (out / "checkpoints").exists() and not staging_path(out).exists()


# ----------------------------------------------------------------------------- rlcs


def test_rlcs_killed_mid_run_and_in_the_export_resumes_without_repeating_an_eval(data, tmp_path):
    common = ["rlcs", "--model", "tiny", "--data", data["rl"], "--reward-config", data["rewards"], "--style", "glm45v",
              "--no-forced-answering", "--max-new-tokens", 4, "--group-size", 2, "--batch-prompts", 2, "--lr", "1e-3",
              "--micro-batch", 8, "--steps", 4, "--checkpoint-every", 2, "--eval-data", data["rl"], "--eval-limit", 2,
              "--eval-every", 2, "--keep-final-checkpoint"]
    invoke(*common, "--out", tmp_path / "ref")
    out = tmp_path / "o"
    run = [*common, "--out", out, "--resume", "auto"]

    killed("rl-step", 3, *run)  # steps 1-3 done, checkpoint at 2
    assert_not_complete(out)
    assert ckpt_names(out) == ["step-00000002"]
    assert_usable(staging_path(out) / "checkpoints" / "step-00000002")

    killed("export", 1, *run)  # the final checkpoint is complete, the export half written
    assert_not_complete(out)
    final = staging_path(out) / "checkpoints" / "step-00000004"
    assert_usable(final)
    before = {f.name: f.stat().st_mtime_ns for f in final.iterdir()}

    invoke(*run)
    ref, got = read_manifest(tmp_path / "ref"), read_manifest(out)
    assert got.metrics["resumed_from_step"] == 4
    assert weight_hashes(got) == weight_hashes(ref)
    # the complete final checkpoint was kept as it was, never rewritten in place, and is hash-listed
    assert {f.name: f.stat().st_mtime_ns for f in (out / "checkpoints" / "step-00000004").iterdir()} == before
    # weights, optimizer state and sampler state equal the uninterrupted run's; the rng-rank files hold the
    # process's global RNG states, which rlcs does not seed or draw from for results (rollouts have their
    # own seeds): they differ between two uninterrupted runs too
    kept = lambda m: {k: v for k, v in m.data["checkpoint_files"].items() if "/rng-rank-" not in k}  # noqa: E731
    assert kept(got) == kept(ref) and len(kept(got)) == 3
    ev, ev_ref = rows(out / "eval.jsonl"), rows(tmp_path / "ref" / "eval.jsonl")
    assert [e["step"] for e in ev] == [0, 2, 4]
    assert [(e["step"], e["reward"]) for e in ev] == [(e["step"], e["reward"]) for e in ev_ref]
    assert [(r["step"], r["loss"], r["reward"]) for r in rows(out / "metrics.jsonl")] == \
        [(r["step"], r["loss"], r["reward"]) for r in rows(tmp_path / "ref" / "metrics.jsonl")]


# ----------------------------------------------------------------------------- grade-difficulty


def test_grade_difficulty_killed_in_a_chunk_write_resumes_to_the_same_grades(data, tmp_path):
    common = ["grade-difficulty", "--data", data["rl"], "--model", "tiny", "--k", 2, "--batch-size", 2,
              "--max-new-tokens", 4, "--thinking-budget", 2, "--answer-budget", 2]
    invoke(*common, "--out", tmp_path / "ref")
    out = tmp_path / "o"
    killed("grade-chunk", 2, *common, "--out", out)  # chunk 1 on disk, chunk 2 torn
    assert_not_complete(out)
    lines = (staging_path(out) / "rollouts.jsonl").read_bytes()
    assert not lines.endswith(b"\n")  # the torn tail is there ...
    invoke(*common, "--out", out)
    assert (out / "results.jsonl").read_bytes() == (tmp_path / "ref" / "results.jsonl").read_bytes()
    got, ref = read_manifest(out), read_manifest(tmp_path / "ref")
    assert got.metrics["resumed_pairs"] == 2  # ... and only the whole first chunk was kept
    assert got.files["results.jsonl"] == ref.files["results.jsonl"]


# ----------------------------------------------------------------------------- eval


def test_eval_killed_in_a_batch_write_resumes_to_the_same_scores(data, tmp_path):
    common = ["eval", "--model", "tiny", "--tasks", "synth", "--data-dir", data["synth"], "--limit", 4,
              "--thinking-budget", 3, "--answer-budget", 2, "--batch-size", 2]
    invoke(*common, "--out", tmp_path / "ref")
    out = tmp_path / "o"
    killed("eval-batch", 2, *common, "--out", out)  # batch 1 on disk, batch 2 torn
    assert_not_complete(out)
    assert not (staging_path(out) / "samples" / "glmv_synth.jsonl").read_bytes().endswith(b"\n")
    invoke(*common, "--out", out)  # --resume auto (eval's default): breaks the dead run's lock
    got, ref = read_manifest(out), read_manifest(tmp_path / "ref")
    assert got.files["samples/glmv_synth.jsonl"] == ref.files["samples/glmv_synth.jsonl"]
    run_counts = ("generated_this_run", "reused")  # how much this process generated: the only difference
    strip = lambda r: {t: {k: v for k, v in m.items() if k not in run_counts} for t, m in r.items()}  # noqa: E731
    assert strip(got.metrics["results"]) == strip(ref.metrics["results"])
    assert got.metrics["results"]["glmv_synth"]["reused"] == 2


# ----------------------------------------------------------------------------- concurrency


def _start_holding(args: list, ready: Path, go: Path) -> subprocess.Popen:
    env = {**ENV, "GLMV_FAULT_READY": str(ready), "GLMV_FAULT_GO": str(go)}
    p = subprocess.Popen([sys.executable, "-m", "glmv_cli.testing.faults", "hold", "1", "--", *map(str, args)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ready.exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 120, "the holding run never took the lock"
        time.sleep(0.1)
    return p


def test_two_concurrent_runs_on_one_out(data, tmp_path):
    """Run A holds --out; run B (another process, same --out) is refused naming A and touches nothing;
    A then finishes into a clean artifact. A lock left by a killed run is broken; one from another
    host is not."""
    out = tmp_path / "o"
    args = ["sft", "--model", "tiny", "--data", data["pack"], "--max-steps", 2, "--global-batch", 1, "--out", out]
    a = _start_holding([*args, "--seed", 1], tmp_path / "ready", tmp_path / "go")
    stage = staging_path(out)
    before = {p.name: p.stat().st_mtime_ns for p in stage.iterdir()}
    b = subprocess.run([sys.executable, "-m", "glmv_cli.main", *map(str, [*args, "--seed", 2])], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert b.returncode == 2, b.stderr[-2000:]
    assert (f"error: --out '{out}' is being written by another glmv run (pid {a.pid} on host "
            f"{socket.gethostname()}, since ") in b.stderr
    assert {p.name: p.stat().st_mtime_ns for p in stage.iterdir()} == before
    (tmp_path / "go").write_text("")
    assert a.wait(timeout=300) == 0, a.communicate()
    m = read_manifest(out)
    assert m.options["seed"] == 1 and [r["step"] for r in rows(out / "metrics.jsonl")] == [1, 2]
    assert json.loads((out / "run.json").read_text())["train"]["seed"] == 1
    assert runner.invoke(app, ["info", str(out), "--verify"]).exit_code == 0
    assert not (out / ".lock").exists()

    # a run killed while holding the lock: provably gone (same host, pid dead), so the lock is broken
    out2 = tmp_path / "o2"
    args2 = [*args[:-1], out2]
    dead = _start_holding(args2, tmp_path / "ready2", tmp_path / "never")
    dead.kill()
    dead.wait()
    assert (staging_path(out2) / ".lock").exists()
    invoke(*args2)
    assert read_manifest(out2).metrics["steps"] == 2

    # a lock from another host is never broken automatically
    out3 = tmp_path / "o3"
    staging_path(out3).mkdir()
    lock = staging_path(out3) / ".lock"
    lock.write_text(json.dumps({"pid": 1, "host": "other-node", "locked_at": time.time(), "token": "t"}))
    r = runner.invoke(app, [str(x) for x in [*args[:-1], out3]])
    assert r.exit_code == 2
    assert "is being written by another glmv run (pid 1 on host other-node" in r.output
    assert f"if that run is gone, delete {lock}" in r.output and lock.exists()


# ----------------------------------------------------------------------------- full disk


def _mount_tmpfs(d: Path, size: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {p.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "disk"
    mounted = []

    def mount(size: str) -> Path:
        _mount_tmpfs(d, size)
        mounted.append(d)
        return d
    yield mount
    for m in mounted:  # lazily: a file this process still holds open there must not keep it mounted
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_full_disk_is_one_line_naming_the_path_and_the_run_resumes_once_space_is_freed(data, tmp_path, small_disk):
    disk = small_disk("30m")  # room for one checkpoint of the tiny model (~20 MB), not two
    common = ["sft", "--model", "tiny", "--data", data["pack"], "--max-steps", 4, "--global-batch", 2, "--lr", "1e-3",
              "--checkpoint-every", 2]
    out = disk / "o"
    r = runner.invoke(app, [str(x) for x in [*common, "--out", out, "--resume", "auto"]])
    assert r.exit_code == 2, r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "no space left on the device writing" in line[0]
    assert "/checkpoints/.step-00000004.partial/optim-rank-00000.safetensors' (needed " in line[0]
    assert " MiB free); free some space and run again" in line[0]
    assert_not_complete(out)
    assert ckpt_names(out) == ["step-00000002"]
    assert_usable(staging_path(out) / "checkpoints" / "step-00000002")

    subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
    invoke(*common, "--out", out, "--resume", "auto")
    invoke(*common, "--out", tmp_path / "ref")
    got, ref = read_manifest(out), read_manifest(tmp_path / "ref")
    assert got.metrics["resumed_from_step"] == 2 and weight_hashes(got) == weight_hashes(ref)


def test_full_disk_in_pack_and_in_a_plain_write(data, tmp_path, small_disk):
    from glmv_cli.oserrors import writing

    disk = small_disk("64k")
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(data["synth"]), "--seq-len", "256",
                            "--out", str(disk / "p")])
    assert r.exit_code == 2, r.output
    assert f"error: no space left on the device writing '{staging_path(disk / 'p')}/packs-00000.safetensors' " \
           "(needed " in r.output
    assert list(disk.iterdir()) == []  # the staging dir went with the error
    f = disk / "big.bin"
    with pytest.raises(GlmvError, match=f"no space left on the device writing '{f}'"):
        with writing(f):  # no size given: the OS's ENOSPC itself is translated
            f.write_bytes(b"x" * (1 << 20))


def test_os_errors_reach_the_user_as_one_line(monkeypatch):
    import errno

    import glmv_cli.stages.info as info_stage

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x")

    monkeypatch.setattr(info_stage, "info", erofs)
    r = runner.invoke(app, ["info", "/nowhere"])
    assert r.exit_code == 2 and r.output.strip() == "error: '/mnt/ro/x' is on a read-only file system; choose a " \
                                                    "writable path"

    class SafetensorError(Exception):
        pass

    def rust(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No "
                              "space left on device\" })")

    monkeypatch.setattr(info_stage, "info", rust)
    r = runner.invoke(app, ["info", "/nowhere"])
    assert r.exit_code == 2 and r.output.startswith("error: no space left on the device writing '?'")
