"""``glmv pack`` end to end on the tiny model: packs, determinism, accounting, bad input, the reader."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from glmv_cli.artifacts import ArtifactWriter, read_manifest, sha256_file
from glmv_cli.data.packed import PackedDataset
from glmv_cli.data.storage import ShardReader
from glmv_cli.main import app
from glmv_cli.stages.pack import PackOptions, pack

runner = CliRunner()

SIZES = [(112, 112), (300, 160), (50, 90), (64, 200), (224, 96), (40, 40)]


def _answer(x):
    return f"<think>look at it</think><answer>it is <|begin_of_box|>{x}<|end_of_box|></answer>"


def make_records(d: Path, n: int = 12) -> Path:
    """n records mixing 0, 1 and 2 images, one system prompt, one pretraining-style multi-turn."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(SIZES):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"img{k}.png")
    recs = []
    for i in range(n):
        nimg = i % 3
        imgs = [f"img{(i + j) % len(SIZES)}.png" for j in range(nimg)]
        user = " ".join(["<image>"] * nimg) + f" question {i}: what is shown? " + "word " * (i % 5)
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": _answer(i)}]
        if i % 4 == 1:
            msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        if i % 5 == 2:
            msgs += [{"role": "user", "content": "are you sure?"}, {"role": "assistant", "content": _answer(i + 1)}]
        recs.append({"id": f"r{i}", "messages": msgs, "images": imgs, "domain": "counting", "answer": str(i)})
    f = d / "data.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return f


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("src"))


def _opts(data, out, **kw):
    base = dict(model="tiny", inputs=[str(data)], out=out, mode="sft", seq_len=256)
    base.update(kw)
    return PackOptions(**base)


def _all_sources(directory):
    r = ShardReader(directory)
    return [tuple(s) for i in range(len(r)) for s in r.pack(i).sources.tolist()]


def test_pack_accounting_and_limits(data, tmp_path):
    m = pack(_opts(data, tmp_path / "p"))
    x = m.metrics
    assert x["records_in"] == 12 and x["records_out"] == 12 and x["dropped"] == {}
    assert x["max_pack_tokens"] <= 256 and x["packs"] >= x["packs_lower_bound"]
    assert x["fill_efficiency"] == pytest.approx(x["tokens"] / (x["packs"] * 256), abs=1e-6)
    srcs = _all_sources(m.path)
    assert sorted(srcs) == [(0, i) for i in range(1, 13)]  # every record exactly once
    ds = PackedDataset(m.path)
    assert len(ds) == x["packs"] and ds.seq_len == 256 and ds.mode == "sft"
    total = 0
    for i in range(len(ds)):
        raw = ds.raw(i)
        assert raw.input_ids.shape[0] <= 256
        # row 0 restarts at 0 at every sample boundary
        starts = np.concatenate(([0], np.cumsum(raw.sample_lengths)[:-1]))
        assert (raw.position_ids[0][starts] == 0).all() and (raw.labels[starts] == -100).all()
        total += raw.input_ids.shape[0]
    assert total == x["tokens"]
    assert m.data["tokenizer"]["vocab_size"] == 2048 and m.data["seq_len"] == 256 and m.data["mode"] == "sft"
    assert (m.path / "preprocessor_config.json").is_file()


def test_deterministic_for_seed_and_any_worker_count(data, tmp_path):
    a = pack(_opts(data, tmp_path / "a", seq_len=128, seed=3))
    b = pack(_opts(data, tmp_path / "b", seq_len=128, seed=3, workers=2))
    c = pack(_opts(data, tmp_path / "c", seq_len=128, seed=4))
    shard = "packs-00000.safetensors"
    assert sha256_file(a.path / shard) == sha256_file(b.path / shard)
    assert a.metrics["packs"] == c.metrics["packs"] >= 3
    assert sha256_file(a.path / shard) != sha256_file(c.path / shard)  # the seed orders the packs
    assert sorted(_all_sources(a.path)) == sorted(_all_sources(c.path))


def test_reader_items_are_model_ready(data, tmp_path):
    from glmv_cli.modeling import load_processor

    m = pack(_opts(data, tmp_path / "p"))
    ds = PackedDataset(m.path)
    proc = load_processor("tiny")
    ds.check_tokenizer(proc.tokenizer)
    for i in range(len(ds)):
        item = ds[i]
        raw = ds.raw(i)
        L = raw.input_ids.shape[0]
        assert item["input_ids"].shape == (1, L) and item["labels"].shape == (1, L)
        assert item["position_ids"].shape == (4, 1, L) and item["mm_token_type_ids"].shape == (1, L)
        n_img = int((item["mm_token_type_ids"] == 1).sum())
        if raw.images:
            grid = item["image_grid_thw"]
            assert n_img == int((grid.prod(-1) // 4).sum())
            assert item["pixel_values"].shape == (int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
        else:
            assert n_img == 0 and "pixel_values" not in item


def test_reader_pixels_match_transformers_processor(data, tmp_path):
    """Decoded + preprocessed images equal what the model's processor gives on the same file."""
    from glmv_cli.modeling import load_processor

    m = pack(_opts(data, tmp_path / "p"))
    ds = PackedDataset(m.path)
    ip = load_processor("tiny").image_processor
    recs = [json.loads(line) for line in Path(data).read_text().splitlines()]
    checked = 0
    for i in range(len(ds)):
        raw = ds.raw(i)
        files = [data.parent / p for inp, line in raw.sources.tolist() for p in recs[line - 1]["images"]]
        assert [f.read_bytes() for f in files] == raw.images
        if files:
            ref = ip(images=[Image.open(f) for f in files], return_tensors="np")
            item = ds[i]
            assert np.array_equal(item["pixel_values"].numpy(), ref["pixel_values"])
            assert item["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist()
            checked += len(files)
    assert checked == 12  # 0+1+2 images per 3 records


def test_tokenizer_mismatch_is_detected(data, tmp_path):
    from glmv_cli.errors import GlmvError
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    m = pack(_opts(data, tmp_path / "p"))
    tok = offline_tokenizer()
    tok.add_tokens(["<extra_token>"])
    with pytest.raises(GlmvError, match="was tokenised with a different tokenizer: vocab_size 2048 in its packs.json, 2049"):
        PackedDataset(m.path).check_tokenizer(tok)


def test_weights_and_overlong(data, tmp_path):
    m = pack(_opts(data, tmp_path / "w", inputs=[f"{data}:2", f"{data}:0.5"], seed=1))
    per = m.data["per_input"]
    assert per[0]["records_out"] == 24 and 0 < per[1]["records_out"] < 12
    assert m.metrics["records_out"] == 24 + per[1]["records_out"]
    srcs = _all_sources(m.path)
    assert sorted(s for s in srcs if s[0] == 0) == sorted([(0, i) for i in range(1, 13)] * 2)
    again = pack(_opts(data, tmp_path / "w2", inputs=[f"{data}:2", f"{data}:0.5"], seed=1))
    assert again.data["per_input"] == per

    lengths = [int(n) for i in range(len(ShardReader(m.path))) for n in ShardReader(m.path).pack(i).sample_lengths]
    cut = sorted(set(lengths))[-2]  # drops the longest sample(s)
    d = pack(_opts(data, tmp_path / "o", seq_len=cut))
    n_long = len({n for n in lengths if n > cut})
    assert d.metrics["dropped"]["overlong"] >= n_long >= 1
    assert d.metrics["records_out"] + d.metrics["dropped"]["overlong"] == 12
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(data), "--out", str(tmp_path / "of"),
                            "--seq-len", "16", "--on-overlong", "fail"])
    assert r.exit_code == 2
    assert f"error: {data}:1: the sample has " in r.output and "more than --seq-len 16" in r.output
    assert not (tmp_path / "of").exists()


# -- bad input: exact messages, nothing written ----------------------------------------------------

def _write(d: Path, lines):
    f = d / "bad.jsonl"
    f.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return f


GOOD = {"messages": [{"role": "user", "content": "<image> hi"}, {"role": "assistant", "content": "ok"}],
        "images": ["img0.png"]}


def _bad_cases(d: Path):
    Image.new("RGB", (8040, 40)).save(d / "wide.png")
    return [
        ('{"messages": [', "{f}:2: malformed JSON (Expecting value at column 15)"),
        ({**GOOD, "images": ["gone.png"]}, "{f}:2: field 'images[0]': image file '{d}/gone.png' does not exist"),
        ({**GOOD, "images": ["img0.png", "img1.png"]},
         "{f}:2: field 'images': 1 <image> placeholder(s) but 2 image(s) listed"),
        ({"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}]},
         "{f}:2: field 'messages[0].role': unknown role \"human\" (expected system, user or assistant)"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
         "{f}:2: field 'messages[1].content': empty assistant turn"),
        ({**GOOD, "images": ["wide.png"]},
         "{f}:2: field 'images[0]': '{d}/wide.png': aspect ratio 201.0:1 (8040x40) is over 200:1"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_record_fails_with_exact_message_and_writes_nothing(data, tmp_path, case):
    d = data.parent
    line, msg = _bad_cases(d)[case]
    f = _write(d, [GOOD, line, GOOD])
    out = tmp_path / "out"
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(f), "--out", str(out), "--seq-len", "256"])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == "error: " + msg.format(f=f, d=d)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_on_bad_skip_counts_by_reason(data, tmp_path):
    d = data.parent
    cases = _bad_cases(d)
    f = _write(d, [GOOD] + [c[0] for c in cases] + [GOOD])
    m = pack(_opts(f, tmp_path / "s", on_bad="skip"))
    assert m.metrics["records_in"] == 8 and m.metrics["records_out"] == 2
    assert m.metrics["dropped"] == {"malformed_json": 1, "missing_image": 1, "image_count": 1, "unknown_role": 1,
                                    "empty_assistant": 1, "aspect_ratio": 1}
    assert sorted(_all_sources(m.path)) == [(0, 1), (0, 8)]


def test_unreadable_image_is_a_bad_record(data, tmp_path):
    d = data.parent
    (d / "fake.png").write_text("this is text, not a PNG")
    f = _write(d, [GOOD, {**GOOD, "images": ["fake.png"]}])
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip() == (f"error: {f}:2: field 'images[0]': '{d}/fake.png': "
                                "not a readable image (unknown or damaged format)")
    m = pack(_opts(f, tmp_path / "s", on_bad="skip"))
    assert m.metrics["dropped"] == {"bad_image": 1} and m.metrics["records_out"] == 1


def test_input_directory_must_be_an_artifact(data, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.jsonl").write_text(json.dumps(GOOD) + "\n")
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(plain), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip() == f"error: --input '{plain}' has no manifest.json: it is not a complete glmv artifact"
    assert not (tmp_path / "o").exists()


def test_artifact_inputs_and_lineage(data, tmp_path):
    import shutil

    src = tmp_path / "syn"
    with ArtifactWriter(src, "synth", options={"seed": 0}) as art:
        for p in data.parent.glob("img*.png"):
            shutil.copy(p, art.path / p.name)
        shutil.copy(data, art.path / "sft.jsonl")
        # rl records have no assistant turn: a directory input in sft mode must read sft.jsonl only
        (art.path / "rl.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    m = pack(_opts(src, tmp_path / "a"))
    m2 = pack(_opts(src / "sft.jsonl", tmp_path / "b"))
    assert m.metrics["records_out"] == m2.metrics["records_out"] == 12
    for mm in (m, m2):
        assert [e["stage"] for e in mm.lineage] == ["synth"]
        assert mm.data["inputs"][0]["manifest_sha256"] == read_manifest(src).sha256


def test_option_errors(data, tmp_path):
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(data), "--out", str(tmp_path / "o"),
                            "--seq-len", "0"])
    assert r.exit_code == 2 and r.output.strip() == "error: --seq-len must be >= 1, got 0"
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(tmp_path / "nope.jsonl"), "--out",
                            str(tmp_path / "o")])
    assert r.output.strip() == f"error: --input '{tmp_path}/nope.jsonl' does not exist"
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(data), "--out", str(tmp_path / "o"),
                            "--mode", "rl"])
    assert r.output.strip() == "error: --mode must be one of pretrain, sft, got 'rl'"


def test_pretrain_mode_labels_every_text_token(data, tmp_path):
    d = data.parent
    f = d / "pt.jsonl"
    f.write_text(json.dumps({"text": "a red square <image> on white", "images": ["img0.png"]}) + "\n"
                 + json.dumps(GOOD) + "\n")
    m = pack(_opts(f, tmp_path / "pt", mode="pretrain"))
    ds = PackedDataset(m.path)
    raw = ds.raw(0)
    ids, labels = raw.input_ids, raw.labels
    trained = labels != -100
    assert (labels[trained] == ids[trained]).all()
    image = ids == ds.image_token_id
    assert not trained[image].any()
    # all text tokens except [gMASK] <sop> and the image markers carry a label
    assert trained.sum() == len(ids) - image.sum() - 2 * 2 - 2 * 2


def test_nothing_left_to_pack_is_an_error(data, tmp_path):
    d = data.parent
    f = _write(d, ['{"broken', {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}])
    r = runner.invoke(app, ["pack", "--model", "tiny", "--input", str(f), "--out", str(tmp_path / "o"),
                            "--on-bad", "skip"])
    assert r.exit_code == 2
    assert r.output.strip() == ("error: nothing to pack: 2 record(s) read from 1 input file(s), 0 left "
                                "(dropped: malformed_json 1, unknown_role 1; weights: 1.0)")
    assert not (tmp_path / "o").exists()
