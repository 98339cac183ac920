"""A corpus of bad inputs for every glmv stage, and the runner that classifies what each one does.

The standard (issue 23): whatever a careless or hostile user feeds a stage ends in exit code 2
with a one-line ``error: ...`` that names the file, line or field at fault, within a time limit,
and leaves the file system as it was. Each :class:`Case` builds its bad input in a fresh work
directory (from shared, read-only :class:`Fixtures`) and returns the command line; :func:`run_case`
runs it in-process through Typer's ``CliRunner`` under a wall-clock alarm and classifies it:

- ``clear``: exit 2, the message contains every expected fragment, nothing left behind;
- ``traceback``: an exception escaped (a bug);
- ``hang``: the alarm fired (a FIFO read, a runaway loop);
- ``silent``: exit 0 -- the bad input was accepted;
- ``unclear``: exit 2 but the message does not name what it should;
- ``leftover``: a clear error, but files were created or changed (a staging dir, an edited input).

Cases live in :mod:`glmv_cli.testing.corpus_cases`. ``tests/test_reliability_corpus.py`` asserts
every case is ``clear``; ``scripts/reliability_corpus.py`` writes the table of
``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

STATUSES = ("clear", "traceback", "hang", "silent", "unclear", "leftover", "skipped")


@dataclass
class Fixtures:
    """Good inputs the cases start from (built once; cases copy before they damage)."""

    root: Path
    synth: Path      # a glmv synth artifact (sft.jsonl, rl.jsonl, eval.jsonl, images/)
    rl: Path         # an RL JSONL file with its images beside it
    pack: Path       # an sft pack artifact of the tiny model
    pt_pack: Path    # a pretrain pack artifact
    model: Path      # an sft model artifact (1 step)
    hf: Path         # a Hugging Face model directory without a manifest (the tiny preset saved)


@dataclass
class Case:
    stage: str
    what: str
    make: Callable[[Path, Fixtures], Any]  # -> argv, or (argv, env)
    expect: tuple[str, ...]                # fragments of the error, formatted with w=<work dir>
    needs: str | None = None               # "mount": a read-only tmpfs the case mounts at w/ro


@dataclass
class Outcome:
    case: Case
    status: str
    exit_code: int | None
    message: str
    seconds: float
    leftovers: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- files the cases use


def png(path: Path, size: tuple[int, int] = (56, 56), color: tuple[int, int, int] = (20, 120, 200)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def truncated_png(path: Path) -> Path:
    """A PNG whose header is intact and whose pixel data stops halfway (a copy cut short)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG header claiming ``width x height`` 1-bit pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    path.write_bytes(body)
    return path


def sft_record(i: int = 0, image: str | None = "im.png", **over: Any) -> dict[str, Any]:
    q = "<image>How many dots?" if image else "What is 1 plus 1?"
    r: dict[str, Any] = {"id": f"r{i}", "messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": "<think>two</think><answer>2</answer>"}]}
    if image:
        r["images"] = [image]
    r.update(over)
    return r


def rl_record(i: int = 0, image: str | None = "im.png", **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"id": f"q{i}", "domain": "counting", "answer": "2",
                         "messages": [{"role": "user", "content": ("<image>" if image else "") + "How many?"}]}
    if image:
        r["images"] = [image]
    r.update(over)
    return r


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_manifest(art: Path, fn: Callable[[dict], Any], raw: bool = False) -> Path:
    """Edits an artifact's manifest in place (``raw``: ``fn`` gets and returns the text)."""
    mf = art / "manifest.json"
    if raw:
        mf.write_text(fn(mf.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        data = json.loads(mf.read_text(encoding="utf-8"))
        fn(data)
        mf.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return art


def flip_byte(path: Path, at: int = -1) -> Path:
    """Flips one bit (same size, newer mtime): only a hash can tell."""
    b = bytearray(path.read_bytes())
    b[at] ^= 0x01
    path.write_bytes(bytes(b))
    return path


def weight_file(model_dir: Path) -> Path:
    return sorted(Path(model_dir).glob("*.safetensors"))[0]


# ----------------------------------------------------------------------------- fixtures


def build_fixtures(root: Path) -> Fixtures:
    """Synth data, an RL file, sft and pretrain packs, a 1-step sft model artifact, an HF model dir."""
    from typer.testing import CliRunner

    from glmv_cli.main import app
    from glmv_cli.modeling import load, save

    root = Path(root)
    runner = CliRunner()

    def run(*args: Any) -> None:
        r = runner.invoke(app, [str(a) for a in args])
        if r.exit_code != 0:
            raise RuntimeError(f"fixture command failed: {args}\n{r.output}") from r.exception

    run("synth", "--out", root / "synth", "--n-train", 12, "--n-eval", 4, "--image-size", 64,
        "--domains", "counting,stem")
    rl_dir = root / "rl"
    png(rl_dir / "im.png")
    jsonl(rl_dir / "rl.jsonl", [rl_record(i) for i in range(4)])
    run("pack", "--model", "tiny", "--input", root / "synth", "--out", root / "pack", "--seq-len", 256)
    run("pack", "--model", "tiny", "--input", root / "synth", "--out", root / "pt_pack", "--seq-len", 256,
        "--mode", "pretrain")
    run("sft", "--model", "tiny", "--data", root / "pack", "--out", root / "model", "--max-steps", 1,
        "--global-batch", 1)
    model, proc = load("tiny")
    save(model, proc, root / "hf")
    return Fixtures(root, root / "synth", rl_dir / "rl.jsonl", root / "pack", root / "pt_pack", root / "model",
                    root / "hf")


# ----------------------------------------------------------------------------- running a case


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every entry under ``roots`` (symlinks not followed)."""
    out = {}
    for r in roots:
        if not r.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(r):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns if not p.is_dir() else 0)
    return out


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm()


def _mount_ro(d: Path) -> str | None:
    d.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot mount a read-only tmpfs ({e})"
    return None if p.returncode == 0 else f"cannot mount a read-only tmpfs ({p.stderr.strip() or p.returncode})"


def _umount(d: Path) -> None:
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=10)


def run_case(case: Case, fx: Fixtures, w: Path, limit_s: float = 60.0) -> Outcome:
    """Builds the case in ``w`` (fresh), runs it under an alarm, classifies the result."""
    from typer.testing import CliRunner

    from glmv_cli.main import app

    w.mkdir(parents=True, exist_ok=True)
    if case.needs == "mount":
        why = _mount_ro(w / "ro")
        if why:
            return Outcome(case, "skipped", None, why, 0.0)
    try:
        made = case.make(w, fx)
    except BaseException:
        if case.needs == "mount":
            _umount(w / "ro")
        raise
    argv, env = made if isinstance(made, tuple) else (made, {})
    argv = [str(a) for a in argv]
    before = snapshot(w, fx.root)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    t0 = time.perf_counter()
    try:
        r = CliRunner().invoke(app, argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if case.needs == "mount":
            _umount(w / "ro")
    secs = time.perf_counter() - t0
    msg = r.output.strip()
    after = snapshot(w, fx.root)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not k.startswith(str(w / "ro")))
    if isinstance(r.exception, _Alarm):
        return Outcome(case, "hang", None, f"no result after {limit_s:.0f} s", secs)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(type(r.exception), r.exception, r.exception.__traceback__))
        return Outcome(case, "traceback", r.exit_code, tb.strip().splitlines()[-1], secs)
    if r.exit_code == 0:
        return Outcome(case, "silent", 0, msg.splitlines()[-1] if msg else "", secs, changed)
    wants = [e.format(w=w, fx=fx) for e in case.expect]
    lines = msg.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.startswith("error: ")), None)
    err = "\n".join(lines[first:]) if first is not None else ""
    status = "clear" if r.exit_code == 2 and err and all(x in msg for x in wants) else "unclear"
    if status == "clear" and changed:
        status = "leftover"
    return Outcome(case, status, r.exit_code, err or msg, secs, changed)


def run_corpus(fx: Fixtures, work: Path, cases: list[Case] | None = None, limit_s: float = 60.0) -> list[Outcome]:
    from glmv_cli.testing.corpus_cases import CASES

    out = []
    for i, case in enumerate(CASES if cases is None else cases):
        out.append(run_case(case, fx, Path(work) / f"c{i:03d}", limit_s))
    return out


def table(outcomes: list[Outcome], root: Path | None = None) -> str:
    """The corpus as a Markdown table (paths shortened), then the counts by status."""
    def short(s: str) -> str:
        s = s.replace("\n", " ").replace("|", "\\|")
        if root is not None:
            s = s.replace(str(root), "…")
        return s if len(s) <= 150 else s[:150].rsplit(" ", 1)[0] + " …"  # whole words: flags stay whole

    lines = ["| # | stage | input | outcome | message |", "|---|---|---|---|---|"]
    for i, o in enumerate(outcomes):
        lines.append(f"| {i + 1} | {o.case.stage} | {short(o.case.what)} | {o.status} | `{short(o.message)}` |")
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in STATUSES}
    lines += ["", "Counts: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + f" (of {len(outcomes)})"]
    return "\n".join(lines)
