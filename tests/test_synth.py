"""glmv synth: determinism, split disjointness, answers recomputed from scenes and pixels,
difficulty growth per level, and the CLI."""

import hashlib
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from glmv_cli.artifacts import read_manifest
from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.stages.synth import SynthOptions, parse_levels, parse_size, synth
from glmv_cli.synth import DOMAINS
from glmv_cli.synth.build import goes_to_sft, make_sample, plan, read_split
from glmv_cli.synth.common import PALETTE, extract_boxed, norm_box, rng_for

runner = CliRunner()
SPLITS = ("pretrain", "sft", "rl", "eval")


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    m = synth(SynthOptions(out=out, n_train=300, n_eval=120, seed=7))
    return m


def _records(m, split):
    return read_split(m.path / f"{split}.jsonl")


# ---------------------------------------------------------------- pure pieces

def test_norm_box_hand_values():
    assert norm_box([0, 0, 112, 112], (112, 112)) == [0, 0, 1000, 1000]
    # 7 * 1000 / 112 = 62.5 rounds half up; 56 / 112 is exactly 500
    assert norm_box([7, 56, 8, 57], (112, 112)) == [63, 500, 71, 509]
    assert norm_box([10, 10, 20, 30], (200, 100)) == [50, 100, 100, 300]


def test_rng_is_private_and_keyed():
    a = [rng_for(1, "train", "ocr", 2, 5).random() for _ in range(2)]
    assert a[0] == a[1]
    assert rng_for(1, "train", "ocr", 2, 5).random() != rng_for(1, "eval", "ocr", 2, 5).random()
    assert rng_for(1, "train", "ocr", 2, 5).random() != rng_for(1, "train", "ocr", 2, 5, attempt=1).random()


def test_plan_is_even_and_round_robin():
    p = plan(["stem", "ocr"], [1, 2], 10)
    assert p[:4] == [("stem", 1, 0), ("stem", 2, 0), ("ocr", 1, 0), ("ocr", 2, 0)]
    cells = {}
    for d, lv, i in p:
        cells[(d, lv)] = cells.get((d, lv), 0) + 1
    assert cells == {("stem", 1): 3, ("stem", 2): 3, ("ocr", 1): 2, ("ocr", 2): 2}
    assert plan(["stem"], [1], 0) == []


def test_sft_rl_interleaving():
    assert [goes_to_sft(i, 0.5) for i in range(6)] == [True, False, True, False, True, False]
    assert sum(goes_to_sft(i, 0.25) for i in range(100)) == 25
    assert not any(goes_to_sft(i, 0.0) for i in range(10))
    assert all(goes_to_sft(i, 1.0) for i in range(10))


def test_option_parsing_errors():
    assert parse_levels("1-5") == [1, 2, 3, 4, 5]
    assert parse_levels("1-2,4") == [1, 2, 4]
    assert parse_size("112") == (112, 112) and parse_size("96x128") == (96, 128)
    with pytest.raises(GlmvError, match=r"--levels must be a range like 1-5 or a list like 1,3,5 of levels 1..5, got '0-3'"):
        parse_levels("0-3")
    with pytest.raises(GlmvError, match=r"--levels range '4-2' is empty"):
        parse_levels("4-2")
    with pytest.raises(GlmvError, match=r"--image-size sides must be in 64..1024 pixels, got 32x32"):
        parse_size("32")
    with pytest.raises(GlmvError, match=r"--domains: unknown domain 'maps'; choose from stem, counting, ocr, chart, grounding, gui \(opt-in: video\)"):
        SynthOptions(out=Path("x"), domains="stem,maps").validate()
    with pytest.raises(GlmvError, match="--n-train must be >= 0, got -1"):
        SynthOptions(out=Path("x"), n_train=-1).validate()
    with pytest.raises(GlmvError, match="--workers must be >= 1, got 0"):
        SynthOptions(out=Path("x"), workers=0).validate()


def test_extract_boxed():
    assert extract_boxed("<think>a</think><answer><|begin_of_box|>12<|end_of_box|></answer>") == "12"
    assert extract_boxed("<|begin_of_box|>1<|end_of_box|><|begin_of_box|>2<|end_of_box|>") is None


# ---------------------------------------------------------------- the artifact

def test_layout_and_counts(art):
    for sp in SPLITS:
        assert (art.path / f"{sp}.jsonl").is_file()
    r = art.metrics["records"]
    assert r == {"pretrain": 300, "sft": 150, "rl": 150, "eval": 120}
    assert art.metrics["records_total"] == 720
    assert art.metrics["per_domain"]["eval"] == {d: 20 for d in DOMAINS}
    assert art.metrics["per_domain"]["sft"] == {d: 25 for d in DOMAINS}
    assert art.metrics["per_level"]["rl"] == {str(lv): 30 for lv in range(1, 6)}
    assert len(list((art.path / "images" / "train").glob("*.png"))) == 300
    assert len(list((art.path / "images" / "eval").glob("*.png"))) == 120
    assert art.data["splits"]["rl"] == "rl.jsonl"
    for sp in SPLITS:
        for rec in _records(art, sp):
            assert (art.path / rec["images"][0]).is_file()
            assert isinstance(rec["difficulty"], int) and 1 <= rec["difficulty"] <= 5
            if sp == "pretrain":
                assert rec["text"].startswith("<image>\n")
            else:
                assert isinstance(rec["answer"], str) and rec["answer"]
                assert rec["messages"][0]["role"] == "user"
                assert rec["messages"][0]["content"].startswith("<image>\n")
                assert "final answer in a box" in rec["messages"][0]["content"]


def test_records_pass_the_schema(art):
    schema = pytest.importorskip("glmv_cli.data.schema")
    for sp in SPLITS:
        path = art.path / f"{sp}.jsonl"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            rec = schema.parse_record(line, path=str(path), line=i, mode="sft" if sp == "sft" else "pretrain")
            assert len(rec.images) == 1


def test_deterministic_and_workers_do_not_change_output(art, tmp_path):
    m2 = synth(SynthOptions(out=tmp_path / "w2", n_train=300, n_eval=120, seed=7, workers=2))
    assert m2.files == art.files  # every JSONL and PNG byte-identical (sha256 of each)
    m3 = synth(SynthOptions(out=tmp_path / "s8", n_train=300, n_eval=120, seed=8))
    assert m3.files["sft.jsonl"]["sha256"] != art.files["sft.jsonl"]["sha256"]


def test_splits_are_disjoint(art):
    def sha(p):
        return hashlib.sha256((art.path / p).read_bytes()).hexdigest()

    train_imgs = {sha(r["images"][0]) for sp in ("pretrain", "sft", "rl") for r in _records(art, sp)}
    ev = _records(art, "eval")
    eval_imgs = {sha(r["images"][0]) for r in ev}
    assert len(eval_imgs) == len(ev) == 120  # no duplicate image inside eval either
    assert not train_imgs & eval_imgs
    # pixel-level: decoded pixels differ too (not only the PNG bytes)
    pix = lambda p: hashlib.sha256(Image.open(art.path / p).convert("RGB").tobytes()).hexdigest()  # noqa: E731
    assert not {pix(r["images"][0]) for r in _records(art, "sft") + _records(art, "rl")} & \
        {pix(r["images"][0]) for r in ev}
    scene = lambda r: json.dumps(r["scene"], sort_keys=True)  # noqa: E731
    qa = lambda r: (sha(r["images"][0]), r["messages"][0]["content"])  # noqa: E731
    train = _records(art, "sft") + _records(art, "rl")
    assert not {scene(r) for r in train} & {scene(r) for r in ev}
    assert not {qa(r) for r in train} & {qa(r) for r in ev}
    # sft and rl are different scenes of the train pool; pretrain describes all of them
    assert not {r["scene_id"] for r in _records(art, "sft")} & {r["scene_id"] for r in _records(art, "rl")}
    assert {r["scene_id"] for r in _records(art, "pretrain")} == {r["scene_id"] for r in train}


# ---------------------------------------------------------------- answers vs scene and pixels

def _eval_expr(text):
    """Independent evaluator of the rendered problem text (no eval of data)."""
    toks = re.findall(r"\d+|[+\-×/]", text)
    vals, ops = [Fraction(int(toks[0]))], []
    for op, num in zip(toks[1::2], toks[2::2]):
        n = Fraction(int(num))
        if op in "×/":
            vals[-1] = vals[-1] * n if op == "×" else vals[-1] / n
        else:
            vals.append(n)
            ops.append(op)
    total = vals[0]
    for op, v in zip(ops, vals[1:]):
        total = total + v if op == "+" else total - v
    return total


def _half_up(v):
    return int(math.floor(v + 0.5))


def _nbox(b, size):
    w, h = size
    return [_half_up(b[0] * 1000 / w), _half_up(b[1] * 1000 / h), _half_up(b[2] * 1000 / w), _half_up(b[3] * 1000 / h)]


def recompute(scene):
    """The reference answer, recomputed by this test from the scene alone."""
    d = scene["domain"]
    if d == "stem":
        m = re.fullmatch(r"(\d+)x([+-])(\d+)=(-?\d+)", scene["text"])
        if m:
            a, b, c = int(m[1]), int(m[3]) * (1 if m[2] == "+" else -1), int(m[4])
            v = Fraction(c - b, a)
        else:
            assert scene["text"].endswith("=?")
            v = _eval_expr(scene["text"][:-2])
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    if d == "counting":
        q = scene["query"]
        return str(sum((q["shape"] in (None, o["shape"])) and (q["color"] in (None, o["color"]))
                       for o in scene["objects"]))
    if d == "ocr":
        return scene["texts"][scene["target"]]["text"]
    if d == "chart":
        vals = {it["label"]: it["value"] for it in scene["items"]}
        q = scene["query"]
        if q["type"] == "value":
            return str(vals[q["label"]])
        if q["type"] == "argmax":
            return max(vals, key=vals.get)
        if q["type"] == "range":
            return str(max(vals.values()) - min(vals.values()))
        return str(vals[q["a"]] - vals[q["b"]])
    if d == "grounding":
        (o,) = [o for o in scene["objects"] if all(o[k] == v for k, v in scene["query"].items())]
        return str(_nbox(o["box"], scene["size"]))
    if d == "gui":
        t = scene["widgets"][scene["target"]]
        act = {"action": scene["task"]["action"], "box_2d": [_nbox(t["box"], scene["size"])]}
        if act["action"] == "type":
            act["text"] = scene["task"]["text"]
        return json.dumps(act)
    raise AssertionError(d)


def test_every_answer_recomputes_from_its_scene(art):
    n = 0
    for sp in ("sft", "rl", "eval"):
        for rec in _records(art, sp):
            scene = rec["scene"]
            assert scene["domain"] == rec["domain"] and scene["level"] == rec["difficulty"]
            assert rec["answer"] == recompute(scene), rec["id"]
            assert rec["answer"] == DOMAINS[rec["domain"]].solve(scene)
            if sp == "sft":
                reply = rec["messages"][1]["content"]
                assert re.fullmatch(r"<think>[^<]+</think><answer><\|begin_of_box\|>.+<\|end_of_box\|></answer>",
                                    reply, re.S)
                assert extract_boxed(reply) == rec["answer"]
            n += 1
    assert n == 420


def test_scene_fully_describes_the_image(art):
    """Re-rendering the stored scene reproduces the PNG's pixels exactly."""
    for sp in ("sft", "rl", "eval"):
        for rec in _records(art, sp)[::3]:
            img = Image.open(art.path / rec["images"][0]).convert("RGB")
            again = DOMAINS[rec["domain"]].render(rec["scene"])
            assert img.size == tuple(rec["scene"]["size"]) == (112, 112)
            assert img.tobytes() == again.tobytes(), rec["id"]


def _components(mask):
    """Number of 4-connected components of a boolean mask (iterative flood fill)."""
    seen = np.zeros_like(mask, dtype=bool)
    n = 0
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return n


def test_counts_and_boxes_match_the_pixels(art):
    checked = {"counting": 0, "grounding": 0}
    for sp in ("sft", "rl", "eval"):
        for rec in _records(art, sp):
            s = rec["scene"]
            if rec["domain"] not in ("counting", "grounding"):
                continue
            checked[rec["domain"]] += 1
            px = np.asarray(Image.open(art.path / rec["images"][0]).convert("RGB"))
            if rec["domain"] == "counting":
                # per colour, the connected blobs equal the scene's objects of that colour
                for cname in {o["color"] for o in s["objects"]}:
                    mask = np.all(px == PALETTE[cname], axis=-1)
                    assert _components(mask) == sum(o["color"] == cname for o in s["objects"]), rec["id"]
            else:
                o = s["objects"][s["target"]]
                mask = np.zeros(px.shape[:2], dtype=bool)
                x0, y0, x1, y1 = o["box"]
                mask[y0:y1, x0:x1] = np.all(px[y0:y1, x0:x1] == PALETTE[o["color"]], axis=-1)
                ys, xs = np.nonzero(mask)
                # the drawn object spans exactly its stored box
                assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1], rec["id"]
    assert min(checked.values()) >= 5, checked  # both domains were really looked at


def test_reasoning_is_derived_from_the_scene(art):
    seen = set()
    for rec in _records(art, "sft"):
        s, think = rec["scene"], rec["messages"][1]["content"].split("</think>")[0]
        d = rec["domain"]
        seen.add(d)
        if d == "counting":
            listed = re.findall(r"\d+\. (\w+) (circle|square|triangle)", think)
            order = sorted(s["objects"], key=lambda o: o["color"] + o["shape"])
            assert sorted(c + sh for c, sh in listed) == [o["color"] + o["shape"] for o in order]
        elif d == "grounding":
            x0, y0, x1, y1 = s["objects"][s["target"]]["box"]
            assert f"x from {x0} to {x1} and y from {y0} to {y1} pixels" in think
        elif d == "chart":
            for it in s["items"]:
                assert f"{it['label']} " in think and str(it["value"]) in think
        elif d == "ocr":
            text = s["texts"][s["target"]]["text"]
            spelled = re.findall(r"(\S) \((?:capital|small|digit)\)", think)
            assert "".join(spelled[-len(text):]) == text and think.endswith(f": {text}.")
        elif d == "stem":
            assert f"= {rec['answer']}" in think
        elif d == "gui":
            x0, y0, x1, y1 = s["widgets"][s["target"]]["box"]
            assert f"x {x0}-{x1} and y {y0}-{y1} px" in think
    assert seen >= {"counting", "grounding", "chart", "ocr", "stem", "gui"}, seen


# ---------------------------------------------------------------- difficulty

GROWS = {"stem": ("steps", +1), "counting": ("objects", +1), "ocr": ("chars", +1), "chart": ("items", +1),
         "grounding": ("target_area", -1), "gui": ("target_area", -1)}
ALSO = {"counting": ("object_px", -1), "grounding": ("objects", +1), "gui": ("widgets", +1),
        "ocr": ("glyph_px", 0), "chart": ("printed", 0)}


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_difficulty_grows_with_level(domain):
    mod = DOMAINS[domain]
    means = {}
    for lv in range(1, 6):
        feats = [mod.features(mod.make_scene(rng_for(3, "train", domain, lv, i), lv, (112, 112))) for i in range(150)]
        means[lv] = {k: sum(f[k] for f in feats) / len(feats) for k in feats[0]}
    for key, sign in [GROWS[domain]] + ([ALSO[domain]] if domain in ALSO else []):
        seq = [means[lv][key] for lv in range(1, 6)]
        if sign == 0:  # non-increasing
            assert all(a >= b for a, b in zip(seq, seq[1:])), (key, seq)
            assert seq[0] > seq[-1], (key, seq)
        else:
            assert all(sign * (b - a) > 0 for a, b in zip(seq, seq[1:])), (key, seq)


def test_level_one_is_small(tmp_path):
    """Level 1 stays learnable: 1-3 shapes, single-digit sums, 3 glyphs, 2-3 bars, 1 object/button."""
    for i in range(60):
        c = make_sample(0, "train", "counting", 1, i, 0, (112, 112)).scene
        assert 1 <= len(c["objects"]) <= 3
        s = make_sample(0, "train", "stem", 1, i, 0, (112, 112)).scene
        assert re.fullmatch(r"\d\+\d=\?", s["text"]) and s["scale"] == 2
        assert len(make_sample(0, "train", "ocr", 1, i, 0, (112, 112)).scene["texts"][0]["text"]) == 3


@pytest.mark.parametrize("size,wh", [("160x128", (160, 128)), ("256", (256, 256))])
def test_other_image_sizes(tmp_path, size, wh):
    m = synth(SynthOptions(out=tmp_path / "big", n_train=30, n_eval=30, image_size=size, seed=1))
    for rec in read_split(m.path / "rl.jsonl") + read_split(m.path / "eval.jsonl"):
        img = Image.open(m.path / rec["images"][0])
        assert img.size == wh
        assert rec["answer"] == recompute(rec["scene"])
        assert img.convert("RGB").tobytes() == DOMAINS[rec["domain"]].render(rec["scene"]).tobytes()


def test_redraws_until_distinct_and_fails_when_exhausted(tmp_path, monkeypatch):
    """A domain with only 3 possible scenes: 3 fit after redraws, a 4th is a clear error."""
    stem = DOMAINS["stem"]
    real = stem.make_scene

    def tiny(rng, level, size):
        s = real(rng, level, size)
        a = rng.randrange(3)
        s.update(problem={"kind": "expr", "terms": [a, 1], "ops": ["+"]}, text=f"{a}+1=?", xy=[4, 4])
        return s

    monkeypatch.setattr(stem, "make_scene", tiny)
    m = synth(SynthOptions(out=tmp_path / "ok", domains="stem", levels="1", n_train=2, n_eval=1))
    assert m.metrics["redrawn_duplicates"] > 0
    texts = [r["scene"]["text"] for sp in ("sft", "rl", "eval") for r in read_split(m.path / f"{sp}.jsonl")]
    assert sorted(texts) == ["0+1=?", "1+1=?", "2+1=?"]
    with pytest.raises(GlmvError, match=r"--n-eval: domain 'stem' level 1 cannot produce 2 distinct scenes "
                                        r"at --image-size 112x112"):
        synth(SynthOptions(out=tmp_path / "bad", domains="stem", levels="1", n_train=2, n_eval=2))
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.incomplete").exists()


def test_too_small_image_is_a_clear_error(tmp_path):
    with pytest.raises(GlmvError, match=r"^--image-size 64x64 is too small for gui level 5: no layout found in 300 "
                                        r"tries; use a larger size or other --levels$"):
        synth(SynthOptions(out=tmp_path / "s", domains="gui", levels="5", n_train=1, n_eval=0, image_size="64"))
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- CLI

def test_cli_help_documents_levels():
    r = runner.invoke(app, ["synth", "--help"])
    assert r.exit_code == 0, r.output
    for d in DOMAINS:
        assert f"{d}:" in r.output
    assert "--n-train" in r.output and "--workers" in r.output and "--image-size" in r.output


def test_cli_runs_and_reports_errors(tmp_path):
    out = tmp_path / "cli"
    r = runner.invoke(app, ["synth", "--out", str(out), "--domains", "counting,gui", "--n-train", "20",
                            "--n-eval", "10", "--levels", "1-2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "pretrain 20, sft 12, rl 8, eval 10 records" in r.output
    m = read_manifest(out)
    assert m.stage == "synth" and m.options["domains"] == ["counting", "gui"] and m.options["levels"] == [1, 2]
    assert set(m.metrics["per_domain"]["eval"]) == {"counting", "gui"}
    r = runner.invoke(app, ["synth", "--out", str(out), "--n-train", "5"])
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--levels", "7"])
    assert r.exit_code == 2
    assert "error: --levels must be a range like 1-5 or a list like 1,3,5 of levels 1..5, got '7'" in r.output
    r = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--n-train", "0", "--n-eval", "0"])
    assert r.exit_code == 2 and "error: --n-train and --n-eval are both 0: nothing to generate" in r.output
    assert not (tmp_path / "x").exists()
