"""Reliability corpus, inputs: bad input files, bad records, RL records, --out paths, recipes and
training data, on every stage that reads them (see :mod:`glmv_cli.testing.corpus`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from glmv_cli.testing.corpus import (Case, Fixtures, bomb_png, copy_tree, edit_manifest, flip_byte, jsonl, png,
                                     rl_record, sft_record, truncated_png)
from glmv_cli.testing.corpus_args import (eval_args, grade_args, pack_args, registrar, reward_args, reward_input,
                                          rl_data, rlcs_args, sft_args, sft_data)

CASES: list[Case] = []
case = registrar(CASES)

# ----------------------------------------------------------------------------- input-file faults


def _fifo(w: Path) -> Path:
    os.mkfifo(w / "fifo.jsonl")
    return w / "fifo.jsonl"


def _dir_no_manifest(w: Path) -> Path:
    (w / "plain").mkdir()
    (w / "plain" / "x.jsonl").write_text("{}\n")
    return w / "plain"


def _long_line(w: Path) -> tuple[Path, dict]:
    jsonl(w / "long.jsonl", [json.dumps(sft_record(0, image=None, note="x" * 5000))])
    return w / "long.jsonl", {"GLMV_MAX_LINE_BYTES": "4096"}


def _binary(w: Path) -> Path:
    (w / "bin.jsonl").write_bytes(b"PAR1\x00\xff\xfe binary")
    return w / "bin.jsonl"


FILE_FAULTS: list[tuple[str, Callable[[Path], Any], tuple[str, ...]]] = [
    ("missing file", lambda w: w / "nope.jsonl", ("'{w}/nope.jsonl' does not exist",)),
    ("a FIFO (would hang)", _fifo, ("'{w}/fifo.jsonl' is a FIFO",)),
    ("/dev/zero (would fill memory)", lambda w: Path("/dev/zero"), ("'/dev/zero' is a device",)),
    ("a line over the line limit", _long_line, ("{w}/long.jsonl:1: the line has", "more than the limit 4,096")),
    ("binary (parquet-like) bytes", _binary, ("{w}/bin.jsonl:1: not UTF-8 text",)),
]


def _family(stage: str, build: Callable[[Path, Fixtures, Any], list], faults=FILE_FAULTS) -> None:
    for what, make, expect in faults:
        def fn(w: Path, fx: Fixtures, make=make) -> Any:
            made = make(w)
            inp, env = made if isinstance(made, tuple) else (made, {})
            return build(w, fx, inp), env
        CASES.append(Case(stage, what, fn, expect))


_family("pack", lambda w, fx, inp: pack_args(w, inp))
_family("rlcs", lambda w, fx, inp: rlcs_args(w, fx, data=inp))
_family("grade-difficulty", lambda w, fx, inp: grade_args(w, fx, data=inp))
_family("reward", lambda w, fx, inp: reward_args(w, inp))
_family("grade-difficulty --human-labels", lambda w, fx, inp: grade_args(w, fx, extra=("--human-labels", inp)))
_family("pack --recipe", lambda w, fx, inp: pack_args(w, fx.synth, "--recipe", inp), FILE_FAULTS[:3])

# ----------------------------------------------------------------------------- record faults (pack, rlcs, grade)

RECORD_FAULTS: list[tuple[str, Callable[[Path], list], tuple[str, ...]]] = [
    ("invalid JSON line", lambda w: ['{"id": "r0", "messages": [}'], (":1: ", "JSON")),
    ("a JSON array, not an object", lambda w: ["[1, 2, 3]"], (":1: ", "expected a JSON object, got list")),
    ("NaN in a numeric field", lambda w: ['{"id": "r0", "difficulty": NaN, "messages": []}'],
     (":1: ", "NaN is not a JSON number")),
    ("missing image file", lambda w: [{"images": ["gone.png"]}], ("field 'images[0]'", "gone.png", "does not exist")),
    ("truncated PNG", lambda w: (truncated_png(w / "data" / "cut.png"), [{"images": ["cut.png"]}])[1],
     ("field 'images[0]'", "cut.png", "cannot be decoded")),
    ("20000x20000 PNG (decompression bomb)", lambda w: (bomb_png(w / "data" / "bomb.png"),
                                                        [{"images": ["bomb.png"]}])[1],
     ("field 'images[0]'", "bomb.png", "400,000,000 pixels, more than the limit 178,956,970")),
    ("1000x2 image (aspect ratio)", lambda w: (png(w / "data" / "thin.png", (1000, 2)), [{"images": ["thin.png"]}])[1],
     ("field 'images[0]'", "aspect ratio 500.0:1")),
    ("image path with ../../ out of the data dir", lambda w: (png(w / "outside.png"), [{"images": ["../outside.png"]}])[1],
     ("field 'images[0]'", "outside the data directory", "--allow-external-paths")),
    ("absolute image path elsewhere", lambda w: (png(w / "abs.png"), [{"images": [str(w / "abs.png")]}])[1],
     ("field 'images[0]'", "outside the data directory")),
    ("a text file named .png", lambda w: ((w / "data").mkdir(exist_ok=True), (w / "data" / "t.png").write_text("hi"),
                                          [{"images": ["t.png"]}])[2], ("field 'images[0]'", "t.png")),
    ("two <image> placeholders, one image", lambda w: [{"messages": [
        {"role": "user", "content": "<image><image>?"}, {"role": "assistant", "content": "a"}]}],
     ("field 'images'", "2 <image> placeholder(s) but 1 image(s)")),
    ("unknown role", lambda w: [{"messages": [{"role": "robot", "content": "<image>x"},
                                              {"role": "assistant", "content": "a"}]}],
     ("field 'messages[0].role'", 'unknown role "robot"')),
    ("content of the wrong type", lambda w: [{"messages": [{"role": "user", "content": 7},
                                                           {"role": "assistant", "content": "a"}]}],
     ("field 'messages[0].content'", "expected a string or a list of parts")),
]


def _record_family(stage: str, base: Callable[..., dict], build: Callable[[Path, Fixtures, Path], list],
                   writer: Callable[[Path, list], Path]) -> None:
    for what, rows, expect in RECORD_FAULTS:
        def fn(w: Path, fx: Fixtures, rows=rows) -> list:
            out = []
            for r in rows(w):
                if isinstance(r, dict):
                    rec = base(0)
                    rec.update(r)
                    out.append(rec)
                else:
                    out.append(r)
            return build(w, fx, writer(w, out))
        CASES.append(Case(stage, what, fn, expect))


_record_family("pack", sft_record, lambda w, fx, f: pack_args(w, f), sft_data)
_record_family("rlcs", rl_record, lambda w, fx, f: rlcs_args(w, fx, data=f), rl_data)
_record_family("grade-difficulty", rl_record, lambda w, fx, f: grade_args(w, fx, data=f), rl_data)

# ----------------------------------------------------------------------------- RL-only record faults

RL_FAULTS: list[tuple[str, dict, tuple[str, ...]]] = [
    ("no reference answer", {"answer": None}, ("field 'answer'", "missing reference answer")),
    ("answer is a list", {"answer": [1, 2]}, ("field 'answer'", "expected a non-empty string (or a number)")),
    ("unknown domain", {"domain": "astrology"}, ("field 'domain'", "unknown domain 'astrology'")),
    ("no user turn", {"messages": [{"role": "system", "content": "<image>be brief"}]}, ("no user turn",)),
]
for _stage, _build in (("rlcs", lambda w, fx, f: rlcs_args(w, fx, data=f)),
                       ("grade-difficulty", lambda w, fx, f: grade_args(w, fx, data=f))):
    for _what, _over, _expect in RL_FAULTS:
        def _fn(w: Path, fx: Fixtures, over=_over, build=_build) -> list:
            rec = rl_record(0)
            rec.update(over)
            rec = {k: v for k, v in rec.items() if v is not None}
            return build(w, fx, rl_data(w, [rec]))
        CASES.append(Case(_stage, _what, _fn, _expect))

    def _dup(w: Path, fx: Fixtures, build=_build) -> list:
        return build(w, fx, rl_data(w, [rl_record(0), rl_record(0)]))
    CASES.append(Case(_stage, "the same id twice", _dup, ("rl.jsonl:2: field 'id'", "appears twice")))

# ----------------------------------------------------------------------------- --out faults (every writing stage)


def _out_file(w: Path) -> Path:
    (w / "out").write_text("not a dir")
    return w / "out"


def _parent_file(w: Path) -> Path:
    (w / "afile").write_text("x")
    return w / "afile" / "out"


def _full_dir(w: Path) -> Path:
    (w / "mine").mkdir()
    (w / "mine" / "thesis.tex").write_text("precious")
    return w / "mine"


OUT_FAULTS: list[tuple[str, Callable[[Path], Path], tuple[str, ...], tuple, str | None]] = [
    ("--out is an existing file", _out_file, ("--out '{w}/out' already exists (a file)",), (), None),
    ("--out under a parent that is a file", _parent_file, ("'{w}/afile' is a file, not a directory",), (), None),
    ("--out in a read-only directory", lambda w: w / "ro" / "out", ("'{w}/ro'", "read-only file system"), (),
     "mount"),
    ("--out a non-artifact directory, --overwrite", _full_dir,
     ("--out '{w}/mine' already exists (a directory, not a glmv artifact)",), ("--overwrite",), None),
]
_WRITERS: list[tuple[str, Callable[[Path, Fixtures, Path, tuple], list]]] = [
    ("pack", lambda w, fx, out, ex: ["pack", "--model", "tiny", "--input", fx.synth, "--out", out, *ex]),
    ("sft", lambda w, fx, out, ex: sft_args(w, fx, out=out, extra=ex)),
    ("rlcs", lambda w, fx, out, ex: ["rlcs", "--model", "tiny", "--data", fx.rl, "--out", out, *ex]),
    ("grade-difficulty", lambda w, fx, out, ex: ["grade-difficulty", "--data", fx.rl, "--model", "tiny",
                                                 "--out", out, *ex]),
    ("eval", lambda w, fx, out, ex: eval_args(w, fx, out=out, extra=ex)),
    ("synth", lambda w, fx, out, ex: ["synth", "--out", out, "--n-train", 2, "--n-eval", 0, *ex]),
    ("reward", lambda w, fx, out, ex: ["reward", "--input", reward_input(w), "--out", out, *ex]),
]
for _stage, _build in _WRITERS:
    for _what, _out, _expect, _extra, _needs in OUT_FAULTS:
        if _needs and _stage not in ("pack", "sft"):
            continue  # one mount per stage kind is enough

        def _fn(w: Path, fx: Fixtures, out=_out, extra=_extra, build=_build) -> list:
            return build(w, fx, out(w), extra)
        CASES.append(Case(_stage, _what, _fn, _expect, _needs))

# ----------------------------------------------------------------------------- --out against the inputs


@case("pack", "--out is the input artifact, --overwrite", "--out '{w}/syn' is the input '{w}/syn'")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    return ["pack", "--model", "tiny", "--input", w / "syn", "--out", w / "syn", "--overwrite"]


@case("pack", "--out inside the input artifact", "--out '{w}/syn/packed' lies inside the input")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    return ["pack", "--model", "tiny", "--input", w / "syn", "--out", w / "syn" / "packed"]


@case("pack", "--out contains the input file, --overwrite", "--out '{w}' contains the input '{w}/data/recs.jsonl'")
def _(w, fx):
    f = sft_data(w, [sft_record(0)])
    return ["pack", "--model", "tiny", "--input", f, "--out", w, "--overwrite"]


@case("sft", "--out equal to --data, --overwrite", "--out '{w}/pk' is the input '{w}/pk'")
def _(w, fx):
    copy_tree(fx.pack, w / "pk")
    return sft_args(w, fx, data=w / "pk", out=w / "pk", extra=("--overwrite",))


@case("rlcs", "--out equal to the --data file", "--out '{w}/data/rl.jsonl' is the input")
def _(w, fx):
    f = rl_data(w, [rl_record(0)])
    return ["rlcs", "--model", "tiny", "--data", f, "--out", f, "--overwrite"]


@case("eval", "--out inside --data-dir", "--out '{w}/syn/results' lies inside the input '{w}/syn'")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    return eval_args(w, fx, data_dir=w / "syn", out=w / "syn" / "results")


@case("push", "--out inside the model artifact", "--out '{w}/m/card' lies inside the input '{w}/m'")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    return ["push", w / "m", "--repo", "me/m", "--dry-run", "--out", w / "m" / "card"]

# ----------------------------------------------------------------------------- pack-only


@case("pack", "weight ':-1'", "--input '{w}/data/recs.jsonl:-1': the weight after ':' must be a finite number >= 0")
def _(w, fx):
    return pack_args(w, f"{sft_data(w, [sft_record(0)])}:-1")


@case("pack", "weight ':nan'", "the weight after ':' must be a finite number >= 0, got 'nan'")
def _(w, fx):
    return pack_args(w, f"{sft_data(w, [sft_record(0)])}:nan")


@case("pack", "a 50 MB single line (would cost GBs in the tokenizer)", "nothing to pack", "overlong 1")
def _(w, fx):
    rec = sft_record(0, image=None)
    rec["messages"][0]["content"] = "x" * (50 << 20)
    return pack_args(w, sft_data(w, [rec]))


@case("pack", "50 MB line with --on-overlong fail", "recs.jsonl:1: field 'messages'", "cannot fit --seq-len 256")
def _(w, fx):
    rec = sft_record(0, image=None)
    rec["messages"][0]["content"] = "x" * (50 << 20)
    return pack_args(w, sft_data(w, [rec]), "--on-overlong", "fail")


@case("pack", "empty assistant turn", "field 'messages[1].content'", "empty assistant turn")
def _(w, fx):
    rec = sft_record(0)
    rec["messages"][1]["content"] = "  "
    return pack_args(w, sft_data(w, [rec]))


@case("pack", "no assistant turn in sft mode", "field 'messages'", "no assistant turn")
def _(w, fx):
    rec = sft_record(0)
    rec["messages"] = rec["messages"][:1]
    return pack_args(w, sft_data(w, [rec]))


@case("pack", "missing video", "field 'videos[0]'", "gone.mp4")
def _(w, fx):
    rec = sft_record(0, image=None, videos=["gone.mp4"])
    rec["messages"][0]["content"] = "<video>What happens?"
    return pack_args(w, sft_data(w, [rec]))


@case("pack", "every record bad, --on-bad skip", "nothing to pack: 2 record(s) read", "missing_image 2")
def _(w, fx):
    return pack_args(w, sft_data(w, [sft_record(0, image="a.png"), sft_record(1, image="b.png")]),
                     "--on-bad", "skip")


@case("pack", "input artifact with a file changed after its manifest", "does not match its manifest",
      "{w}/syn/sft.jsonl: sha256 differs")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    flip_byte(w / "syn" / "sft.jsonl", 5)
    return pack_args(w, w / "syn")


@case("pack", "input artifact with a malformed manifest", "{w}/syn/manifest.json: malformed manifest",
      "field 'files'")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    edit_manifest(w / "syn", lambda d: d.update(files=["sft.jsonl"]))
    return pack_args(w, w / "syn")


@case("pack", "input artifact with hand-edited options", "{w}/syn/manifest.json: the manifest was changed after it "
      "was written")
def _(w, fx):
    copy_tree(fx.synth, w / "syn")
    edit_manifest(w / "syn", lambda d: d["options"].update(seed=99))
    return pack_args(w, w / "syn")


@case("pack", "interrupted pack staging dir as --input", "has no manifest.json",
      "an interrupted run left '{w}/.half.incomplete': run the stage that writes '{w}/half' again")
def _(w, fx):
    (w / ".half.incomplete").mkdir()
    (w / "half").mkdir()
    return pack_args(w, w / "half")


@case("pack", "--max-image-pixels 0", "--max-image-pixels must be >= 1, got 0")
def _(w, fx):
    return pack_args(w, fx.synth, "--max-image-pixels", 0)


@case("pack", "--model a directory of something else", "{w}/junk", "no config.json")
def _(w, fx):
    (w / "junk").mkdir()
    return ["pack", "--model", w / "junk", "--input", fx.synth, "--out", w / "out"]

# ----------------------------------------------------------------------------- recipes (type-checked, file + key named)

RECIPE_FAULTS = [
    ("recipe seq_len: \"abc\"", "seq_len: abc\n", ("key 'seq_len': expected an integer, got 'abc'",)),
    ("recipe seq_len: 1.5", "seq_len: 1.5\n", ("key 'seq_len': expected an integer, got 1.5",)),
    ("recipe seq_len: [1]", "seq_len: [1]\n", ("key 'seq_len': expected an integer, got [1]",)),
    ("recipe seq_len: true (was read as 1)", "seq_len: true\n", ("key 'seq_len': expected an integer, got True",)),
    ("recipe with an unknown key", "seq_lenn: 8\n", ("unknown key 'seq_lenn' for 'glmv pack'",)),
    ("recipe that is not YAML", "seq_len: [1\n", ("invalid YAML",)),
    ("recipe for another stage", "stage: sft\n", ("field 'stage' is 'sft' but this command is 'pack'",)),
    ("recipe that is a list", "- 1\n- 2\n", ("a recipe must be a mapping",)),
]
for _what, _text, _expect in RECIPE_FAULTS:
    def _fn(w: Path, fx: Fixtures, text=_text) -> list:
        (w / "r.yaml").write_text(text)
        return pack_args(w, fx.synth, "--recipe", w / "r.yaml")
    CASES.append(Case("pack --recipe", _what, _fn, ("{w}/r.yaml",) + _expect))


@case("sft --recipe", "recipe lr: \"fast\"", "{w}/r.yaml: key 'lr': expected a number, got 'fast'")
def _(w, fx):
    (w / "r.yaml").write_text("lr: fast\n")
    return sft_args(w, fx, extra=("--recipe", w / "r.yaml"))

# ----------------------------------------------------------------------------- training data (sft)


@case("sft", "--data missing", "packed dataset '{w}/nope' does not exist")
def _(w, fx):
    return sft_args(w, fx, data=w / "nope")


@case("sft", "--data a synth artifact, not a pack", "written by stage 'synth', expected one of: pack")
def _(w, fx):
    return sft_args(w, fx, data=fx.synth)


@case("sft", "--data packed in pretrain mode", "was packed in 'pretrain' mode; glmv sft needs assistant-only labels")
def _(w, fx):
    return sft_args(w, fx, data=fx.pt_pack)


@case("sft", "--data with a truncated shard", "packed dataset '{w}/pk' does not match its manifest",
      "packs-00000.safetensors: size")
def _(w, fx):
    copy_tree(fx.pack, w / "pk")
    f = w / "pk" / "packs-00000.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    return sft_args(w, fx, data=w / "pk")


@case("sft", "--data whose manifest is not JSON", "{w}/pk/manifest.json:1: invalid JSON in manifest")
def _(w, fx):
    copy_tree(fx.pack, w / "pk")
    edit_manifest(w / "pk", lambda t: "{" + t, raw=True)
    return sft_args(w, fx, data=w / "pk")


@case("sft", "--data manifest with a string byte count", "malformed manifest", "field 'files.packs.json.bytes'")
def _(w, fx):
    copy_tree(fx.pack, w / "pk")
    edit_manifest(w / "pk", lambda d: d["files"]["packs.json"].update(bytes="12"))
    return sft_args(w, fx, data=w / "pk")


@case("sft", "--data manifest with hand-edited metrics", "the manifest was changed after it was written")
def _(w, fx):
    copy_tree(fx.pack, w / "pk")
    edit_manifest(w / "pk", lambda d: d["metrics"].update(fill_efficiency=1.0))
    return sft_args(w, fx, data=w / "pk")


@case("sft", "--lr nan", "--lr must be a number, got nan")
def _(w, fx):
    return sft_args(w, fx, extra=("--lr", "nan"))


@case("sft", "--global-batch 0", "--global-batch must be >= 1, got 0")
def _(w, fx):
    return sft_args(w, fx)[:-2] + ["--global-batch", 0]
