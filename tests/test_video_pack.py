"""Videos through ``glmv pack`` and ``PackedDataset``: records with videos (files and frame folders)
mixed with image records, the pack's logits against each sample run alone (the video through
transformers' own video path), and bad or long videos counted in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glmv_cli.data.encode import Encoder
from glmv_cli.data.packed import PackedDataset
from glmv_cli.data.schema import RecordError, parse_record
from glmv_cli.data.video import VideoSettings
from glmv_cli.stages.pack import PackOptions, pack
from glmv_cli.synth.video import encode_mp4


ANSWER = "<think>t</think><answer><|begin_of_box|>{}<|end_of_box|></answer>"


def _frames(n, w=112, h=112, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("vsrc")
    (d / "clip.mp4").write_bytes(encode_mp4(_frames(12), 4))                  # 3 s -> 6 frames, grid (3, 8, 8)
    (d / "frames").mkdir()
    for k, a in enumerate(_frames(4, 56, 56, seed=1)):                          # 2 s at 2 fps
        Image.fromarray(a).save(d / "frames" / f"{k}.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (84, 112, 3), dtype=np.uint8)).save(d / "img.png")
    (d / "bad.mp4").write_bytes(b"not a video" * 20)
    recs = [
        {"id": "v", "videos": ["clip.mp4"], "messages": [{"role": "user", "content": "<video>\nWhen does it turn red?"},
                                                         {"role": "assistant", "content": ANSWER.format(1)}]},
        {"id": "i", "images": ["img.png"], "messages": [{"role": "user", "content": "<image>\nWhat colour?"},
                                                        {"role": "assistant", "content": ANSWER.format("red")}]},
        {"id": "m", "images": ["img.png"], "videos": ["frames"],
         "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "and"}, {"type": "image"}]},
                      {"role": "assistant", "content": ANSWER.format(2)}]},
    ]
    (d / "ok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    bad = recs[:2] + [{"id": "b", "videos": ["bad.mp4"], "messages": recs[0]["messages"]}]
    (d / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    return d


def test_schema_accepts_videos(src):
    rec = parse_record((src / "ok.jsonl").read_text().splitlines()[2], path=str(src / "ok.jsonl"), line=3, mode="sft")
    assert rec.media == ["video", "image"] and rec.videos == [str(src / "frames")]
    with pytest.raises(RecordError, match="field 'videos\\[0\\]': video '.*nope.mp4' does not exist") as e:
        parse_record(json.dumps({"videos": ["nope.mp4"], "messages": [{"role": "user", "content": "<video>"},
                                                                      {"role": "assistant", "content": "x"}]}),
                     path=str(src / "ok.jsonl"), line=1, mode="sft")
    assert e.value.reason == "missing_video"


def test_pack_with_videos_equals_samples_alone(src, tmp_path):
    from glmv_cli.modeling import image_to_patches, load
    from glmv_cli.modeling.video_processor import video_processor_for

    m = pack(PackOptions(model="tiny", inputs=[str(src / "ok.jsonl")], out=tmp_path / "p", mode="sft", seq_len=1024))
    assert m.metrics["videos"] == 2 and m.metrics["images"] == 2 and m.metrics["records_out"] == 3
    assert m.metrics["video_handling"] == {}
    ds = PackedDataset(tmp_path / "p")
    assert len(ds) == 1 and ds.video_settings["fps"] == 2.0
    item = ds[0]
    types = item["mm_token_type_ids"][0]
    # clip: 3 pairs x 16 tokens; folder: 4 frames of 56 px -> 4*56*56 = 12544 = min: (2, 4, 4), 2 pairs x 4
    assert int((types == 2).sum()) == 48 + 8 and int((types == 1).sum()) == 2 * 12
    grids = item["image_grid_thw"].tolist()
    assert sorted(map(tuple, grids)) == sorted([(1, 8, 8)] * 3 + [(1, 4, 4)] * 2 + [(1, 6, 8)] * 2)
    assert item["pixel_values"].shape[0] == sum(t * h * w for t, h, w in grids)

    model, proc = load("tiny", seed=0)
    vp = video_processor_for(proc)
    with torch.no_grad():
        packed = model(**{k: v for k, v in item.items() if k != "labels"}, attention_mask=None, use_cache=False).logits[0]
    raw = ds.raw(0)
    starts = np.concatenate([[0], np.cumsum(raw.sample_lengths)])
    from glmv_cli.data.video import load_video

    clip_pv, clip_grid = vp.preprocess(load_video(src / "clip.mp4").frames)
    img_pv, img_grid = image_to_patches(Image.open(src / "img.png").convert("RGB"), proc)
    fr_pv, fr_grid = vp.preprocess(load_video(src / "frames").frames)
    checked = 0
    for k in range(len(raw.sample_lengths)):
        s0, s1 = int(starts[k]), int(starts[k + 1])
        ids = item["input_ids"][:, s0:s1]
        tt = item["mm_token_type_ids"][:, s0:s1]
        n_vid, n_img = int((tt == 2).sum()), int((tt == 1).sum())
        kw = {}
        if n_vid == 48:
            kw = dict(pixel_values_videos=torch.from_numpy(clip_pv), video_grid_thw=torch.tensor([clip_grid]))
        elif n_vid == 0:
            kw = dict(pixel_values=torch.from_numpy(img_pv), image_grid_thw=torch.tensor([img_grid]))
        else:
            # image + video in one sample: transformers cannot take both inputs, so compare against
            # the video fed as frame-pair images in its token order (the video comes first)
            from glmv_cli.modeling.video_processor import split_video_grid

            kw = dict(pixel_values=torch.from_numpy(np.concatenate([fr_pv, img_pv])),
                      image_grid_thw=torch.tensor(split_video_grid(fr_grid) + [tuple(img_grid)]),
                      position_ids=item["position_ids"][:, :, s0:s1])
        with torch.no_grad():
            alone = model(input_ids=ids, mm_token_type_ids=tt, **kw).logits[0]
        assert (packed[s0:s1] - alone).abs().max().item() < 1e-5, k
        checked += 1
    assert checked == 3


def test_rope_rows_of_stored_positions_equal_get_rope_index(src, tmp_path):
    from glmv_cli.modeling import load

    model, proc = load("tiny", seed=0)
    enc = Encoder(proc.tokenizer, proc.image_processor, mode="sft", style="glm41v")
    rec = parse_record((src / "ok.jsonl").read_text().splitlines()[0], path=str(src / "ok.jsonl"), line=1, mode="sft")
    e = enc.encode(rec)
    assert e.kinds == [1] and e.grids == [(3, 8, 8)]
    ids = torch.tensor([e.input_ids.astype(np.int64)])
    types = ids == proc.image_token_id
    ref, _ = model.model.get_rope_index(ids, (types.long() * 2), video_grid_thw=torch.tensor([[3, 8, 8]]))
    assert np.array_equal(e.positions[1:], ref[:, 0].numpy())
    # labels: nothing inside the video block, the answer is trained
    labels = e.labels
    bov = int(np.flatnonzero(e.input_ids == proc.video_start_id)[0])
    eov = int(np.flatnonzero(e.input_ids == proc.video_end_id)[0])
    assert np.all(labels[bov:eov + 1] == -100) and (labels != -100).sum() > 5


def test_bad_and_long_videos_are_counted(src, tmp_path):
    with pytest.raises(Exception, match=r"bad\.jsonl:3: field 'videos\[0\]': '.*bad\.mp4': cannot read the video"):
        pack(PackOptions(model="tiny", inputs=[str(src / "bad.jsonl")], out=tmp_path / "f", seq_len=1024))
    m = pack(PackOptions(model="tiny", inputs=[str(src / "bad.jsonl")], out=tmp_path / "s", seq_len=1024,
                         on_bad="skip"))
    assert m.metrics["dropped"] == {"bad_video": 1} and m.metrics["records_out"] == 2
    # over the duration cap: spread (counted) or refused (a reason of its own)
    from glmv_cli.modeling import load_processor

    proc = load_processor("tiny")
    rec = parse_record((src / "ok.jsonl").read_text().splitlines()[0], path=str(src / "ok.jsonl"), line=1, mode="sft")
    spread = Encoder(proc.tokenizer, proc.image_processor, mode="sft", style="glm41v",
                     video=VideoSettings(max_duration=2)).encode(rec)
    assert spread.notes == ["video_over_cap"] and spread.grids == [(2, 8, 8)]
    refuse = Encoder(proc.tokenizer, proc.image_processor, mode="sft", style="glm41v",
                     video=VideoSettings(max_duration=2, on_long="error"))
    with pytest.raises(RecordError, match=r"lasts 3\.00 s, over the cap of 2 s") as e:
        refuse.encode(rec)
    assert e.value.reason == "video_too_long"
