"""The bad inputs of the reliability corpus (see :mod:`glmv_cli.testing.corpus`), by stage.

Families repeat one fault over every stage that reads that kind of input (a FIFO as a data file,
a damaged model directory, a hand-edited manifest ...); single cases cover what only one stage
reads. ``expect`` fragments name the file, line or field the message must point at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from glmv_cli.testing.corpus import (Case, Fixtures, bomb_png, copy_tree, edit_manifest, flip_byte, jsonl, png,
                                     rl_record, sft_record, truncated_png, weight_file)

CASES: list[Case] = []


def case(stage: str, what: str, *expect: str, needs: str | None = None) -> Callable:
    def deco(fn: Callable[[Path, Fixtures], Any]) -> Callable:
        CASES.append(Case(stage, what, fn, tuple(expect), needs))
        return fn
    return deco


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


def _reward_input(w: Path) -> Path:
    return jsonl(w / "scores.jsonl", [{"response": "<answer>2</answer>", "reference": "2", "domain": "counting"}])


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
    ("reward", lambda w, fx, out, ex: ["reward", "--input", _reward_input(w), "--out", out, *ex]),
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

# ----------------------------------------------------------------------------- model directories (every model reader)


def _bad_header_len(d: Path) -> None:
    f = weight_file(d)
    b = bytearray(f.read_bytes())
    b[:8] = (2 ** 40).to_bytes(8, "little")
    f.write_bytes(bytes(b))


def _garbage_header(d: Path) -> None:
    f = weight_file(d)
    b = bytearray(f.read_bytes())
    b[8:16] = b"\xff" * 8
    f.write_bytes(bytes(b))


def _truncate(d: Path) -> None:
    f = weight_file(d)
    f.write_bytes(f.read_bytes()[:-64])


def _other_shape(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = cfg["text_config"]["intermediate_size"] * 2
    (d / "config.json").write_text(json.dumps(cfg))


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


MODEL_FAULTS: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("--model: safetensors header length beyond the file", _bad_header_len,
     ("model-00001-of-00001.safetensors: not a safetensors file (header length 1,099,511,627,776 exceeds",)),
    ("--model: safetensors header not JSON", _garbage_header, ("safetensors: not a safetensors file (its header is "
                                                               "not JSON)",)),
    ("--model: truncated weight file", _truncate, ("model-00001-of-00001.safetensors: truncated",)),
    ("--model: weights of another config", _other_shape, ("has shape", "config.json gives", "another model "
                                                          "configuration")),
    ("--model: no config.json", _no_config, ("{w}/m", "config.json")),
]
_MODEL_READERS: list[tuple[str, Callable[[Path, Fixtures, Path], list]]] = [
    ("sft", lambda w, fx, m: sft_args(w, fx, model=m)),
    ("rlcs", lambda w, fx, m: rlcs_args(w, fx, model=m)),
    ("grade-difficulty", lambda w, fx, m: grade_args(w, fx, model=m)),
    ("eval", lambda w, fx, m: eval_args(w, fx, model=m)),
]
for _stage, _build in _MODEL_READERS:
    for _what, _damage, _expect in MODEL_FAULTS:
        def _fn(w: Path, fx: Fixtures, damage=_damage, build=_build) -> list:
            copy_tree(fx.hf, w / "m")
            damage(w / "m")
            return build(w, fx, w / "m")
        CASES.append(Case(_stage, _what, _fn, _expect))

    def _tampered(w: Path, fx: Fixtures, build=_build) -> list:
        copy_tree(fx.model, w / "m")
        flip_byte(weight_file(w / "m"))
        return build(w, fx, w / "m")
    CASES.append(Case(_stage, "--model artifact whose weights no longer match its manifest", _tampered,
                      ("'{w}/m' does not match its manifest", "sha256 differs")))

# ----------------------------------------------------------------------------- rlcs / grade-difficulty specifics


@case("rlcs", "--grades of another dataset", "--grades", "grades another dataset")
def _(w, fx):
    from glmv_cli.artifacts import ArtifactWriter

    with ArtifactWriter(w / "grades", "grade-difficulty") as art:
        jsonl(art.path / "results.jsonl", [{"id": "other-1", "domain": "counting", "grade": 0.5}])
    return rlcs_args(w, fx, extra=("--grades", w / "grades"))


@case("rlcs", "--eval-data missing", "--eval-data '{w}/nope.jsonl' does not exist")
def _(w, fx):
    return rlcs_args(w, fx, extra=("--eval-data", w / "nope.jsonl"))


@case("rlcs", "--eval-every -1", "--eval-every must be >= 0, got -1")
def _(w, fx):
    return rlcs_args(w, fx, extra=("--eval-every", -1))


@case("grade-difficulty", "--human-labels matching no record", "--human-labels '{w}/l.jsonl': none of its 2 ids")
def _(w, fx):
    jsonl(w / "l.jsonl", [{"id": "x1", "difficulty": 2}, {"id": "x2", "tier": "hard"}])
    return grade_args(w, fx, extra=("--human-labels", w / "l.jsonl"))


@case("grade-difficulty", "--human-labels difficulty 9", "{w}/l.jsonl:1: field 'difficulty': expected an integer 1..5")
def _(w, fx):
    jsonl(w / "l.jsonl", [{"id": "q0", "difficulty": 9}])
    return grade_args(w, fx, extra=("--human-labels", w / "l.jsonl"))


@case("grade-difficulty", "--human-labels with NaN", "{w}/l.jsonl:1: invalid JSON (NaN is not a JSON number)")
def _(w, fx):
    jsonl(w / "l.jsonl", ['{"id": "q0", "difficulty": NaN}'])
    return grade_args(w, fx, extra=("--human-labels", w / "l.jsonl"))


@case("grade-difficulty", "the same --model twice", "--model lists the same model twice")
def _(w, fx):
    return grade_args(w, fx, extra=("--model", "tiny"))


@case("grade-difficulty", "--pass-at above --k", "--pass-at values must be in 1..--k (1), got 4")
def _(w, fx):
    return grade_args(w, fx, extra=("--pass-at", 4))

# ----------------------------------------------------------------------------- eval specifics


@case("eval", "unknown task", "--tasks: unknown benchmark 'nosuch'")
def _(w, fx):
    return ["eval", "--model", "tiny", "--tasks", "nosuch", "--out", w / "out"]


@case("eval", "--data-dir missing", "--data-dir '{w}/nope' is not a directory")
def _(w, fx):
    return eval_args(w, fx, data_dir=w / "nope")


@case("eval", "both --tasks and --suite", "pass exactly one of --tasks a,b and --suite NAME")
def _(w, fx):
    return eval_args(w, fx, extra=("--suite", "synth"))

# ----------------------------------------------------------------------------- push


@case("push", "a listed file replaced by a symlink out of the artifact", "{w}/m/tokenizer.json: is a symbolic link")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    (w / "secret").write_text((w / "m" / "tokenizer.json").read_text())
    (w / "m" / "tokenizer.json").unlink()
    (w / "m" / "tokenizer.json").symlink_to(w / "secret")
    return push_args(w, w / "m")


@case("push", "--include-checkpoints: checkpoints/ is a symlink out of the artifact",
      "{w}/m/checkpoints: is a symbolic link")
def _(w, fx):
    from glmv_cli.artifacts import sha256_file

    copy_tree(fx.model, w / "m")
    (w / "elsewhere").mkdir()
    (w / "elsewhere" / "state.json").write_text('{"step": 1}')
    (w / "m" / "checkpoints").symlink_to(w / "elsewhere")
    f = w / "elsewhere" / "state.json"
    entry = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
    _rewrite_signed(w / "m", lambda d: d.update(checkpoint_files={"checkpoints/state.json": entry}))
    return push_args(w, w / "m", "--include-checkpoints")


@case("push", "--include-checkpoints with none kept", "--include-checkpoints: the manifest of '{w}/m' lists no "
      "checkpoint files")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    return push_args(w, w / "m", "--include-checkpoints")


@case("push", "the token over plain http to a non-local host", "--endpoint 'http://hub.example.org' is plain http "
      "to a non-local host")
def _(w, fx):
    return ["push", fx.model, "--repo", "me/m", "--endpoint", "http://hub.example.org", "--dry-run",
            "--out", w / "rec"]


@case("push", "a weight file with one flipped bit", "model '{w}/m' is damaged, nothing was uploaded",
      "sha256 differs from the manifest")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    flip_byte(weight_file(w / "m"))
    return push_args(w, w / "m")


@case("push", "manifest listing '../outside'", "malformed manifest: field 'files' lists '../outside'")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    _rewrite_signed(w / "m", lambda d: d["files"].update({"../outside": {"bytes": 1, "sha256": "0" * 64}}))
    return push_args(w, w / "m")


@case("push", "a directory that is not an artifact", "model '{fx.hf}' has no manifest.json")
def _(w, fx):
    return push_args(w, fx.hf)


def _rewrite_signed(art: Path, fn: Callable[[dict], Any]) -> None:
    """Edits a manifest and re-signs its integrity hash (what a deliberate edit would do)."""
    from glmv_cli.artifacts import integrity_hash

    def edit(d: dict) -> None:
        fn(d)
        d["integrity"]["sha256"] = integrity_hash(d)
    edit_manifest(art, edit)

# ----------------------------------------------------------------------------- info --verify


INFO_FAULTS: list[tuple[str, Callable[[dict], Any], tuple[str, ...]]] = [
    ("manifest 'files' is a list", lambda d: d.update(files=[]), ("malformed manifest: field 'files'",)),
    ("manifest 'stage' is a number", lambda d: d.update(stage=3), ("malformed manifest: field 'stage'",)),
    ("manifest 'schema_version' is text", lambda d: d.update(schema_version="1"),
     ("malformed manifest: field 'schema_version'",)),
    ("manifest 'lineage' is an object", lambda d: d.update(lineage={}), ("malformed manifest: field 'lineage'",)),
    ("manifest sha256 not hex", lambda d: d["files"]["metrics.jsonl"].update(sha256="xyz"),
     ("malformed manifest: field 'files.metrics.jsonl.sha256'",)),
    ("manifest 'options' is a list", lambda d: d.update(options=[]), ("malformed manifest: field 'options'",)),
]
for _what, _edit, _expect in INFO_FAULTS:
    def _fn(w: Path, fx: Fixtures, edit=_edit) -> list:
        copy_tree(fx.model, w / "m")
        _rewrite_signed(w / "m", edit)
        return ["info", w / "m", "--verify"]
    CASES.append(Case("info", _what, _fn, ("{w}/m/manifest.json",) + _expect))


@case("info", "hand-edited metrics (final_loss)", "{w}/m/manifest.json: the manifest was changed after it was written")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    edit_manifest(w / "m", lambda d: d["metrics"].update(final_loss=0.01))
    return ["info", w / "m", "--verify"]


@case("info", "integrity hash removed", "no integrity hash")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    edit_manifest(w / "m", lambda d: d.pop("integrity"))
    return ["info", w / "m", "--verify"]


@case("info", "a file changed after the manifest", "artifact is damaged", "metrics.jsonl: sha256 differs")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    flip_byte(w / "m" / "metrics.jsonl", 3)
    return ["info", w / "m", "--verify"]


@case("info", "manifest that is not UTF-8", "{w}/m/manifest.json: malformed manifest (not UTF-8 text)")
def _(w, fx):
    copy_tree(fx.model, w / "m")
    (w / "m" / "manifest.json").write_bytes(b"\xff\xfe{}")
    return ["info", w / "m", "--verify"]

# ----------------------------------------------------------------------------- synth


@case("synth", "unknown domain", "--domains: unknown domain 'maps'")
def _(w, fx):
    return ["synth", "--out", w / "out", "--domains", "maps"]


@case("synth", "levels out of range", "--levels")
def _(w, fx):
    return ["synth", "--out", w / "out", "--levels", "0-9"]
