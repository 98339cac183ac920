"""A pack gives the same logits and loss as its samples run one by one on the tiny model (fp32)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from glmv_cli.data.packed import PackedDataset
from glmv_cli.stages.pack import PackOptions, pack


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    rng = np.random.default_rng(1)
    sizes = [(112, 112), (200, 84), (60, 150), (140, 140)]
    for k, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(d / f"i{k}.png")
    ans = "<think>count them</think><answer>there are <|begin_of_box|>{}<|end_of_box|></answer>"
    recs = [
        {"messages": [{"role": "user", "content": "<image>How many dots?"},
                      {"role": "assistant", "content": ans.format(3)}], "images": ["i0.png"]},
        {"messages": [{"role": "system", "content": "Be careful."},
                      {"role": "user", "content": "Compare <image> with <image>."},
                      {"role": "assistant", "content": ans.format(7)}], "images": ["i1.png", "i2.png"]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Read it:"}, {"type": "image"}]},
                      {"role": "assistant", "content": ans.format("hello")}], "images": ["i3.png"]},
        {"messages": [{"role": "user", "content": "<image>What is it?"},
                      {"role": "assistant", "content": ans.format(12)},
                      {"role": "user", "content": "Sure?"},
                      {"role": "assistant", "content": ans.format(12)}], "images": ["i2.png"]},
    ]
    f = d / "sft.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    m = pack(PackOptions(model="tiny", inputs=[str(f)], out=d / "packed", seq_len=1024))
    assert m.metrics["packs"] == 1 and m.metrics["records_out"] == 4
    return d, recs


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_pack_logits_and_loss_equal_separate_runs(packed, attn):
    from glmv_cli.modeling import load

    d, recs = packed
    model, proc = load("tiny", seed=0)
    model.set_attn_implementation(attn)
    ds = PackedDataset(d / "packed")
    item, raw = ds[0], ds.raw(0)
    assert len(raw.sample_lengths) == 4 and int((item["image_grid_thw"][:, 0] == 1).sum()) == 5
    with torch.no_grad():
        # use_cache=False: with a KV cache transformers does not look for packed positions
        out = model(**{k: v for k, v in item.items() if k != "labels"}, attention_mask=None, use_cache=False)
    logits = out.logits[0]
    pack_loss = F.cross_entropy(logits[:-1], item["labels"][0, 1:], ignore_index=-100, reduction="sum")

    sample_loss = torch.zeros((), dtype=torch.float64)
    start = 0
    ip = proc.image_processor
    for n, (inp, line) in zip(raw.sample_lengths.tolist(), raw.sources.tolist()):
        ids = item["input_ids"][:, start:start + n]
        labels = item["labels"][:, start:start + n]
        files = [d / p for p in recs[line - 1]["images"]]
        vis = ip(images=[Image.open(f) for f in files], return_tensors="pt")
        tt = (ids == model.config.image_token_id).long()
        with torch.no_grad():
            alone = model(input_ids=ids, pixel_values=vis["pixel_values"], image_grid_thw=vis["image_grid_thw"],
                          mm_token_type_ids=tt)
            ref_pos, _ = model.model.get_rope_index(ids, tt, image_grid_thw=vis["image_grid_thw"])
        # rows 1-3 of the stored positions equal transformers' get_rope_index for the sample alone
        assert torch.equal(item["position_ids"][1:, :, start:start + n], ref_pos)
        assert item["position_ids"][0, 0, start:start + n].tolist() == list(range(n))
        delta = (logits[start:start + n] - alone.logits[0]).abs().max().item()
        assert delta <= 1e-5, f"sample from line {line}: max |dlogit| {delta}"
        sample_loss += F.cross_entropy(alone.logits[0, :-1], labels[0, 1:], ignore_index=-100,
                                       reduction="sum").double()
        start += n
    assert start == item["input_ids"].shape[1]
    assert int((item["labels"] != -100).sum()) > 0
    assert pack_loss.item() == pytest.approx(sample_loss.item(), rel=1e-6, abs=1e-4)


def test_three_rope_rows_alone_leak_between_samples(packed):
    """The 4th (text) row is what separates the samples: without it the logits change."""
    from glmv_cli.modeling import load

    d, _ = packed
    model, _ = load("tiny", seed=0)
    item = PackedDataset(d / "packed")[0]
    inputs = {k: v for k, v in item.items() if k != "labels"}
    with torch.no_grad():
        good = model(**inputs, use_cache=False).logits
        leaky = model(**{**inputs, "position_ids": item["position_ids"][1:]}, use_cache=False).logits
        cached = model(**inputs).logits  # a KV cache (eval default) also disables the packed mask
    first = int(PackedDataset(d / "packed").raw(0).sample_lengths[0])
    assert torch.allclose(good[0, :first], leaky[0, :first], atol=1e-5)  # the first sample sees nothing before
    assert (good[0, first:] - leaky[0, first:]).abs().max().item() > 1e-3
    assert torch.equal(cached, leaky)
