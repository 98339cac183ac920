"""Bring-your-own-data readers: every layout read back field by field, packed identically to the
same records in glmv JSONL, and errors naming file, row and field."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from glmv_cli.data.formats import iter_records, open_source, read_record, resolve_format
from glmv_cli.data.schema import RecordError
from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.testing import formats as F

runner = CliRunner()
SFT_LAYOUTS = ["finetune", "sharegpt", "trl", "openai", "saved"]
EXPECTED_FORMAT = {"glmv": "messages", "finetune": "messages", "sharegpt": "sharegpt", "trl": "messages",
                   "openai": "messages", "saved": "messages", "verl": "verl", "easyr1": "easyr1"}


@pytest.fixture(scope="module")
def truth():
    return F.truth_records()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, truth):
    root = tmp_path_factory.mktemp("layouts")
    return {name: write(root / name, truth) for name, write in F.WRITERS.items()}


def _records(spec, fmt="auto", mode="sft"):
    src = open_source(str(spec))
    fmt = resolve_format(src, fmt)
    out = []
    for _, r in iter_records(src, fmt, mode):
        if isinstance(r, RecordError):
            raise r
        out.append(r)
    return fmt, out


def _image_bytes(src):
    from glmv_cli.data.images import source_bytes

    return source_bytes(src)


# ----------------------------------------------------------------------------- field by field


@pytest.mark.parametrize("layout", list(F.WRITERS))
def test_every_layout_reads_back_field_by_field(layouts, truth, layout):
    mode = "pretrain" if layout in ("verl", "easyr1") else "sft"
    fmt, recs = _records(layouts[layout], mode=mode)
    assert fmt == EXPECTED_FORMAT[layout]
    assert len(recs) == len(truth)
    for rec, t in zip(recs, truth):
        k = len(t["images"])
        user = next(m for m in rec.messages if m["role"] == "user")
        assert user["content"] == [{"type": "image"}] * k + [{"type": "text", "text": t["question"][7 * k:]}]
        # the same encoded bytes, in placeholder order: never decoded or re-encoded on the way
        assert [_image_bytes(s) for s in rec.images] == t["images"]
        roles = [m["role"] for m in rec.messages]
        if layout in ("verl", "easyr1"):
            assert roles[-1] == "user" and rec.meta["answer"] == t["reference"]
        else:
            assert roles == (["system"] if "system" in t else []) + ["user", "assistant"]
            assert rec.messages[-1]["content"] == [{"type": "text", "text": t["reply"]}]
            assert rec.id == t["id"] and rec.meta["domain"] == "ocr" and rec.meta["answer"] == t["reference"]
        if "system" in t and layout != "easyr1":
            assert rec.messages[0]["content"] == [{"type": "text", "text": t["system"]}]
    if layout == "verl":
        r = recs[2]
        assert r.meta["domain"] == F.VERL_SOURCE and r.id.endswith("verl.parquet:3")
        assert r.meta["extra"] == {"split": "train", "index": 2, "question": truth[2]["question"],
                                   "data_source": F.VERL_SOURCE, "ability": "ocr"}


def test_openai_image_urls_resolve_to_bytes_and_paths(layouts, truth):
    _, recs = _records(layouts["openai"])
    r = recs[4]  # two images: (4+0)%3 = 1 -> file:// URL (absolute path), (4+1)%3 = 2 -> a relative path
    assert all(isinstance(s, str) and Path(s).is_absolute() for s in r.images)
    assert isinstance(recs[2].images[1], bytes)  # (2+1)%3 = 0 -> data URL, decoded once


def test_content_keys_beyond_role_and_content_pass_through(tmp_path):
    row = {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "ok", "reasoning_content": "think"}]}
    rec = read_record(row, "messages", path="x.json", line=1, mode="sft")
    assert rec.messages[1]["content"] == [{"type": "text", "text": "ok"}]


# ----------------------------------------------------------------------------- pack parity


def _pack(tmp_path, name, spec, **kw):
    from glmv_cli.stages.pack import PackOptions, pack

    base = dict(model="tiny", inputs=[str(spec)], out=tmp_path / name, mode="sft", seq_len=512)
    base.update(kw)
    return pack(PackOptions(**base))


def _shard(m):
    return load_file(str(Path(m.path) / "packs-00000.safetensors"))


@pytest.fixture(scope="module")
def truth_pack(tmp_path_factory, layouts):
    return _pack(tmp_path_factory.mktemp("truthpack"), "p", layouts["glmv"])


@pytest.mark.parametrize("layout", SFT_LAYOUTS)
def test_pack_of_each_layout_equals_the_glmv_jsonl_pack(tmp_path, layouts, truth_pack, layout):
    m = _pack(tmp_path, layout, layouts[layout])
    assert m.metrics["records_in"] == 6 and m.metrics["records_out"] == 6 and m.metrics["dropped"] == {}
    assert m.metrics["images"] == truth_pack.metrics["images"] == 6
    assert m.data["per_input"][0]["format"] == EXPECTED_FORMAT[layout]
    a, b = _shard(truth_pack), _shard(m)
    assert sorted(a) == sorted(b)
    for key in a:  # tokens, labels, positions, grids, sources and the stored image bytes, all equal
        assert np.array_equal(a[key], b[key]), key


def test_pack_reads_hub_ids_from_the_local_cache(tmp_path, layouts, truth_pack, monkeypatch):
    import datasets.config

    F.hub_cache_entry(tmp_path / "cache", "acme/vqa", layouts["trl"])
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    m = _pack(tmp_path, "hub", "hf:acme/vqa", source=_src(split="train"))
    assert m.data["per_input"][0]["container"] == "hub"
    a, b = _shard(truth_pack), _shard(m)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    with pytest.raises(GlmvError, match=r"--input 'hf:acme/vqa': cannot load it \(ValueError: Unknown split \"test\""):
        _pack(tmp_path, "hub2", "hf:acme/vqa", source=_src(split="test"))


def _src(**kw):
    from glmv_cli.data.formats.options import DataFormatConfig

    return DataFormatConfig(**kw)


def test_pack_spills_embedded_images_and_removes_the_scratch_file(tmp_path, layouts):
    m = _pack(tmp_path, "w", layouts["trl"], workers=2)
    assert m.metrics["records_out"] == 6
    assert not list(tmp_path.glob(".glmv-images-*"))


def test_rl_layouts_refuse_sft_packing_with_the_row_and_field(tmp_path, layouts):
    with pytest.raises(RecordError, match=r"verl\.parquet:1: field 'messages': no assistant turn"):
        _pack(tmp_path, "v", layouts["verl"])
    m = _pack(tmp_path, "v2", layouts["verl"], mode="pretrain")
    assert m.metrics["records_out"] == 6 and m.data["per_input"][0]["format"] == "verl"


# ----------------------------------------------------------------------------- errors and --on-bad


BAD_ROWS = {
    "sharegpt": ({"conversations": [{"from": "human", "value": "hi"}, {"from": "tool", "value": "x"}]},
                 "field 'conversations[1].from': tool turn 'tool' is not supported", "unknown_role"),
    "messages": ({"messages": [{"role": "user", "content": [{"type": "audio"}]}, {"role": "assistant", "content": "a"}]},
                 "field 'messages[0].content[0].type': unknown content part type 'audio'", "bad_field"),
    "verl": ({"prompt": [{"role": "user", "content": "q"}], "reward_model": {"ground_truth": {"a": 1}}},
             "field 'reward_model.ground_truth': expected the reference answer as a string", "bad_field"),
    "easyr1": ({"problem": ["q"], "answer": "a"}, "field 'problem': expected the prompt as a string", "bad_field"),
}


@pytest.mark.parametrize("fmt", list(BAD_ROWS))
def test_malformed_rows_name_file_row_and_field(fmt):
    row, msg, reason = BAD_ROWS[fmt]
    with pytest.raises(RecordError) as e:
        read_record(row, fmt, path="d.json", line=4, mode="sft")
    assert str(e.value).startswith(f"d.json:4: {msg}") and e.value.reason == reason


def test_image_values_errors():
    from glmv_cli.data.formats.media import image_source

    with pytest.raises(RecordError, match=r"d:2: field 'images\[0\]': remote image URL 'https://x/a.png'"):
        image_source("https://x/a.png", "d", 2, "images[0]")
    with pytest.raises(RecordError, match=r"field 'images\[1\].bytes': empty image bytes"):
        image_source({"bytes": b"", "path": None}, "d", 2, "images[1]")
    with pytest.raises(RecordError, match="data URL of type 'text/plain'"):
        image_source("data:text/plain;base64,aGk=", "d", 2, "img")
    png = F.png_bytes(8, 8, 0)
    assert image_source("data:image/png;base64," + base64.b64encode(png).decode(), "d", 1, "x") == png
    assert image_source({"bytes": None, "path": "a/b.png"}, "d", 1, "x") == "a/b.png"
    assert image_source("file:///abs/c%20d.png", "d", 1, "x") == "/abs/c d.png"


def test_column_and_placeholder_counts_disagree():
    row = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image_url", "image_url": "a.png"},
                                                      {"type": "text", "text": "q"}]},
                        {"role": "assistant", "content": "a"}], "images": []}
    with pytest.raises(RecordError, match=r"field 'messages\[0\].content\[0\]': refers to image 1 of the row's "
                                          r"'images' column, which has 0"):
        read_record(row, "messages", path="d", line=1, mode="sft")


def test_on_bad_skip_counts_bad_rows_of_every_container(tmp_path):
    import datasets

    good = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    bad = {"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]}
    (tmp_path / "s.json").write_text(json.dumps([good, bad, good]))
    datasets.Dataset.from_list([good, bad, good, good]).to_parquet(str(tmp_path / "s.parquet"))
    for name, n in (("s.json", 3), ("s.parquet", 4)):
        with pytest.raises(RecordError, match=rf"{name}:2: field 'conversations\[1\].from': unknown speaker 'bot'"):
            _pack(tmp_path, f"o-{name}", tmp_path / name, seq_len=64)
        m = _pack(tmp_path, f"k-{name}", tmp_path / name, seq_len=64, on_bad="skip")
        assert m.metrics["records_in"] == n and m.metrics["records_out"] == n - 1
        assert m.metrics["dropped"] == {"unknown_role": 1}


def test_container_level_errors(tmp_path):
    (tmp_path / "a.json").write_text('[{"messages": 1},\n  {oops}]')
    with pytest.raises(GlmvError, match=r"a\.json:2: malformed JSON \(Expecting property name"):
        _records(tmp_path / "a.json")
    (tmp_path / "b.csv").write_text("x\n")
    with pytest.raises(GlmvError, match="unknown file type '.csv'"):
        open_source(str(tmp_path / "b.csv"))
    (tmp_path / "c.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(GlmvError, match=r"c\.jsonl:1: cannot tell the row format \(columns: question\); pass "
                                        "--format"):
        resolve_format(open_source(str(tmp_path / "c.jsonl")))
    with pytest.raises(GlmvError, match="expected hf:owner/name"):
        open_source("hf:nope")


def test_json_file_with_one_object_per_line_is_jsonl(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                                              {"role": "assistant", "content": "b"}]}) + "\n")
    src = open_source(str(tmp_path / "d.json"))
    assert src.kind == "jsonl" and resolve_format(src) == "messages"


# ----------------------------------------------------------------------------- glmv convert


def test_convert_shows_how_rows_were_read(layouts):
    r = runner.invoke(app, ["convert", "--input", str(layouts["verl"]), "--start", "3", "--rows", "1", "--mode", "rl",
                            "--domain-map", f"{F.VERL_SOURCE}=ocr"])
    assert r.exit_code == 0, r.output
    head, body = r.output.split("\n", 1)
    assert head == f"{layouts['verl']}: parquet container, format verl (detected)"
    assert body.startswith("row 3: ")
    view = json.loads(body[len("row 3: "):])
    assert view["messages"] == [{"role": "user", "content": "<image><image>Spell item 2."}]
    assert view["images"] == ["embedded PNG 40x96, %d bytes" % len(F.truth_records()[2]["images"][0]),
                              "embedded PNG 112x70, %d bytes" % len(F.truth_records()[2]["images"][1])]
    assert view["domain"] == "ocr" and view["answer"] == "abc2"
    r = runner.invoke(app, ["convert", "--input", str(layouts["verl"]), "--rows", "1", "--mode", "rl"])
    assert r.exit_code == 0 and "field 'domain': unknown domain 'acme/ocr-set'" in r.output
    assert f"map it with --domain-map '{F.VERL_SOURCE}=DOMAIN' (the row's ability is 'ocr')" in r.output


def test_binary_data_under_a_text_suffix_is_named(tmp_path, layouts):
    import shutil

    shutil.copy(layouts["verl"], tmp_path / "rl.jsonl")
    with pytest.raises(GlmvError, match=r"rl\.jsonl:1: not UTF-8 text .*; it is a parquet file: give it the "
                                        r"\.parquet suffix"):
        _records(tmp_path / "rl.jsonl")


def test_a_single_arrow_file_is_read_as_a_table(layouts, truth):
    arrow = next(Path(layouts["saved"]).glob("*.arrow"))
    fmt, recs = _records(arrow)
    assert fmt == "messages" and [r.id for r in recs] == [t["id"] for t in truth]
    assert [_image_bytes(s) for s in recs[2].images] == truth[2]["images"]
