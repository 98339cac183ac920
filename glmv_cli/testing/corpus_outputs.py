"""Reliability corpus, artifacts: damaged model directories on every model reader, stage-specific
inputs of rlcs / grade-difficulty / eval, push, ``info --verify`` on malformed manifests, synth
(see :mod:`glmv_cli.testing.corpus`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from glmv_cli.testing.corpus import Case, Fixtures, copy_tree, edit_manifest, flip_byte, jsonl, weight_file
from glmv_cli.testing.corpus_args import eval_args, grade_args, push_args, registrar, rewrite_signed, rlcs_args, sft_args

CASES: list[Case] = []
case = registrar(CASES)

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
    rewrite_signed(w / "m", lambda d: d.update(checkpoint_files={"checkpoints/state.json": entry}))
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
    rewrite_signed(w / "m", lambda d: d["files"].update({"../outside": {"bytes": 1, "sha256": "0" * 64}}))
    return push_args(w, w / "m")


@case("push", "a directory that is not an artifact", "model '{fx.hf}' has no manifest.json")
def _(w, fx):
    return push_args(w, fx.hf)


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
        rewrite_signed(w / "m", edit)
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
