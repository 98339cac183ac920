"""Presets, offline tokenizer, image-only processor, load/save round trips."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image


import transformers  # noqa: E402

import glmv_cli.modeling as M  # noqa: E402
from glmv_cli.errors import GlmvError  # noqa: E402
from glmv_cli.modeling import tokenizer as T  # noqa: E402


# ------------------------------------------------------------------ presets


def test_list_presets():
    assert M.list_presets() == ["tiny", "glm-4.1v-9b", "glm-4.5v"]
    assert M.resolve_preset("GLM-4.1V-9B-Thinking") == "glm-4.1v-9b"
    with pytest.raises(GlmvError, match=r"unknown model preset 'nope' \(expected one of: tiny, glm-4.1v-9b, glm-4.5v\)"):
        M.preset_config("nope")


def test_glm41v_preset_has_checkpoint_values():
    c = M.preset_config("glm-4.1v-9b")
    assert type(c).__name__ == "Glm4vConfig"
    t, v = c.text_config, c.vision_config
    assert (t.vocab_size, t.hidden_size, t.intermediate_size) == (151552, 4096, 13696)
    assert (t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (40, 32, 2)
    assert t.max_position_embeddings == 65536
    assert t.rope_parameters == {
        "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "mrope_section": [8, 12, 12]
    }
    assert t.eos_token_id == [151329, 151336, 151338] and t.pad_token_id == 151329
    assert (c.image_token_id, c.video_token_id) == (151343, 151344)
    assert (c.image_start_token_id, c.image_end_token_id) == (151339, 151340)
    assert (c.video_start_token_id, c.video_end_token_id) == (151341, 151342)
    assert (v.depth, v.hidden_size, v.num_heads, v.out_hidden_size, v.intermediate_size) == (24, 1536, 12, 4096, 13696)
    assert (v.patch_size, v.spatial_merge_size, v.temporal_patch_size, v.image_size) == (14, 2, 2, 336)
    assert c.tie_word_embeddings is False


def test_glm45v_preset_has_checkpoint_values_and_parameter_count():
    c = M.preset_config("glm-4.5v")
    assert type(c).__name__ == "Glm4vMoeConfig"
    t = c.text_config
    assert (t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, t.head_dim) == (46, 96, 8, 128)
    assert (t.n_routed_experts, t.num_experts_per_tok, t.n_shared_experts, t.moe_intermediate_size) == (128, 8, 1, 1408)
    assert t.first_k_dense_replace == 1 and t.attention_bias is True
    assert t.rope_parameters["partial_rotary_factor"] == 0.5 and t.rope_parameters["mrope_section"] == [8, 12, 12]
    assert (c.image_token_id, c.video_token_id) == (151363, 151364)
    assert c.vision_config.intermediate_size == 10944
    model, proc = M.load("glm-4.5v", device="meta")
    assert proc is None
    # zai-org/GLM-4.5V: 107,710,933,120 stored tensors = parameters + 45 x 128 router biases (buffers).
    assert sum(p.numel() for p in model.parameters()) + 45 * 128 == 107_710_933_120


def test_tiny_builds_fast_and_is_small():
    t0 = time.perf_counter()
    model, proc = M.load("tiny")
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 5_000_000
    c = model.config
    assert c.text_config.vocab_size == len(proc.tokenizer) == 2048
    assert c.text_config.max_position_embeddings >= 4096
    assert c.text_config.num_key_value_heads < c.text_config.num_attention_heads
    assert c.image_token_id == proc.tokenizer.convert_tokens_to_ids("<|image|>")
    assert model.generation_config.eos_token_id == T.stop_token_ids(proc.tokenizer)


def test_same_seed_same_weights():
    a, _ = M.load("tiny", seed=3)
    b, _ = M.load("tiny", seed=3)
    c, _ = M.load("tiny", seed=4)
    wa = a.lm_head.weight
    assert torch.equal(wa, b.lm_head.weight)
    assert not torch.equal(wa, c.lm_head.weight)


# ------------------------------------------------------------------ tokenizer


def test_offline_tokenizer_special_tokens_are_single_tokens():
    tok = M.offline_tokenizer()
    assert len(tok) == 2048
    for s in T.SPECIAL_TOKENS:
        ids = tok.encode(s, add_special_tokens=False)
        assert len(ids) == 1, s
        assert tok.decode(ids) == s
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert [tok.convert_ids_to_tokens(i) for i in T.stop_token_ids(tok)] == ["<|endoftext|>", "<|user|>", "<|observation|>"]


def test_offline_tokenizer_round_trips_and_splits_digits():
    tok = M.offline_tokenizer()
    text = "[gMASK]<sop><|user|>\n答案是 12345？ {\"box_2d\": [[1, 2, 3, 4]]} \\frac{1}{2} é ✓<|assistant|>\n<think>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    digits = tok.convert_ids_to_tokens(tok.encode("x=90210", add_special_tokens=False))
    assert digits[-5:] == ["9", "0", "2", "1", "0"]


def test_offline_tokenizer_is_deterministic():
    a = T._train_backend().to_str()
    b = T._train_backend().to_str()
    assert a == b
    assert M.offline_tokenizer().get_vocab() == M.offline_tokenizer("glm45v").get_vocab()


# ------------------------------------------------------------------ processor


@pytest.fixture(scope="module")
def tiny():
    return M.load("tiny", seed=0)


@pytest.mark.parametrize(
    "size",
    [(112, 112), (150, 90), (28, 28), (13, 600), (600, 13), (1000, 700), (300, 5), (4000, 3000), (56, 2000)],
)
def test_grid_for_size_matches_image_processor(tiny, size):
    _, proc = tiny
    w, h = size
    img = Image.new("RGB", (w, h), (120, 30, 200))
    pixels, grid = M.image_to_patches(img, proc)
    out = proc.image_processor(images=[img], return_tensors="np")
    assert tuple(out["image_grid_thw"][0]) == grid == M.image_grid_for_size(w, h, proc)
    assert pixels.shape == (grid[0] * grid[1] * grid[2], 3 * 2 * 14 * 14) and pixels.dtype == np.float32
    assert M.image_token_count(w, h, proc) == grid[1] * grid[2] // 4


def test_grid_hand_values(tiny):
    _, proc = tiny
    # 112x112: 2*112*112 = 25088 within [12544, 100352] -> 112x112 -> 8x8 patches, 16 tokens.
    assert M.image_grid_for_size(112, 112, proc) == (1, 8, 8)
    assert M.image_token_count(112, 112, proc) == 16
    # 1000x700 -> beta = sqrt(2*700*1000/100352) = 3.735; floor(700/3.735/28)*28 = 168, floor(1000/3.735/28)*28 = 252
    assert M.resized_size(1000, 700, proc) == (252, 168)
    assert M.image_grid_for_size(1000, 700, proc) == (1, 12, 18)


def test_extreme_aspect_ratio_is_a_clear_error(tiny):
    _, proc = tiny
    with pytest.raises(M.ImageSizeError, match=r"image size 5000x20: absolute aspect ratio must be smaller than 200"):
        M.image_grid_for_size(5000, 20, proc)


def test_processor_expands_image_tokens(tiny):
    _, proc = tiny
    img = Image.new("RGB", (150, 90))
    prompt = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>hi<|assistant|>\n"
    out = proc(images=[img], text=[prompt], return_tensors="pt")
    n = M.image_token_count(150, 90, proc)
    assert int((out["input_ids"] == proc.image_token_id).sum()) == n
    assert int(out["mm_token_type_ids"].sum()) == n
    assert out["pixel_values"].shape[0] == n * 4


# ------------------------------------------------------------------ save / load


def _inputs(proc):
    img = Image.new("RGB", (150, 90), (10, 200, 30))
    img.putpixel((5, 5), (255, 255, 255))
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is 2+3?"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    return proc(images=[img], text=[text], return_tensors="pt")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, proc = tiny
    out = tmp_path_factory.mktemp("tiny-model")
    files = M.save(model, proc, out, max_shard_size="2MB")
    return out, files


def test_save_writes_hf_layout(saved):
    out, files = saved
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "processor_config.json", "preprocessor_config.json"):
        assert name in files
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) >= 2  # 2 MB shards of a ~5 MB model
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == sorted(shards)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [2025, 2032, 2034] and gen["pad_token_id"] == 2025
    # transformers' own class names: plain AutoProcessor (with torchvision) loads a working processor
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        assert json.loads((out / name).read_text())["processor_class"] == "Glm4vProcessor", name
    video = json.loads((out / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Glm4vVideoProcessor" and video["fps"] == 2.0
    assert video["size"] == {"shortest_edge": 12544, "longest_edge": 2 * 224 * 224}


def test_single_shard_still_has_index(tiny, tmp_path):
    model, proc = tiny
    files = M.save(model, proc, tmp_path)
    assert "model-00001-of-00001.safetensors" in files and "model.safetensors" not in files
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {"model-00001-of-00001.safetensors"}
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in model.state_dict().values())
    again = transformers.Glm4vForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


def test_saved_model_loads_with_plain_transformers_same_logits(tiny, saved):
    model, proc = tiny
    out, _ = saved
    hf_model = transformers.Glm4vForConditionalGeneration.from_pretrained(out)
    _, glmv_proc = M.load(out)  # glmv picks its torchvision-free processor at load time
    assert type(glmv_proc).__name__ == "GlmvProcessor"
    assert glmv_proc.chat_template == proc.chat_template
    inputs = _inputs(glmv_proc)
    with torch.no_grad():
        a = model(**inputs).logits
        b = hf_model(**inputs).logits
    assert a.shape == (1, inputs["input_ids"].shape[1], 2048)
    assert torch.equal(a, b)


def test_saved_model_loads_with_glmv_and_generates(tiny, saved):
    model, _ = tiny
    out, _ = saved
    m2, p2 = M.load(out)
    inputs = _inputs(p2)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, m2(**inputs).logits)
    n = inputs["input_ids"].shape[1]
    gen = m2.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert gen.shape == (1, n + 4)
    assert torch.equal(gen[:, :n], inputs["input_ids"])
    with torch.no_grad():
        first = m2(**inputs).logits[0, -1].argmax()
    assert int(gen[0, n]) == int(first)  # greedy: the first new token is the argmax


def test_tied_embeddings_round_trip(tmp_path):
    config = M.preset_config("tiny")
    config.tie_word_embeddings = True
    model = M.build_model(config, seed=1)
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    proc = M.load_processor("tiny")
    M.save(model, proc, tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]
    again = transformers.Glm4vForConditionalGeneration.from_pretrained(tmp_path)
    assert again.config.tie_word_embeddings is True
    assert again.lm_head.weight.data_ptr() == again.model.language_model.embed_tokens.weight.data_ptr()
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


def test_zai_layout_without_glmv_processor_config(tiny, saved, tmp_path):
    """A checkpoint dir as zai-org ships it: preprocessor_config.json naming Glm4vProcessor,
    no processor_config.json. glmv builds its image-only processor from those files."""
    import shutil

    out, files = saved
    for f in files:
        if f != "processor_config.json":
            shutil.copy(out / f, tmp_path / f)
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    pre["processor_class"] = "Glm4vProcessor"
    pre["size"] = {"shortest_edge": 12544, "longest_edge": 2 * 224 * 224}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    model, proc = M.load(tmp_path)
    assert type(proc).__name__ == "GlmvProcessor"
    assert M.image_grid_for_size(112, 112, proc) == (1, 8, 8)
    assert proc.chat_template == tiny[1].chat_template


def test_load_errors(tmp_path):
    with pytest.raises(GlmvError, match=r"not a model directory \(no config.json\)"):
        M.load(tmp_path)
    with pytest.raises(GlmvError, match=r"'zai-org/GLM-4.1V-9B-Thinking': cannot fetch from the Hub \(HF_HUB_OFFLINE=1"):
        M.load("zai-org/GLM-4.1V-9B-Thinking")
    with pytest.raises(GlmvError, match=r"not a preset \(tiny, glm-4.1v-9b, glm-4.5v\)"):
        M.load("no-such-model")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(GlmvError, match=r"model type 'llama' is not a GLM-4V model"):
        M.load(tmp_path)
    with pytest.raises(GlmvError, match=r"uses GLM-4's 151k-token tokenizer"):
        M.load_processor("glm-4.1v-9b")


def test_moe_sibling_of_tiny_round_trips_with_glm45v_template(tmp_path):
    from glmv_cli.data.chat import chat_template
    from glmv_cli.modeling.presets import TINY_IMAGE_SIZE, tiny_config

    config = tiny_config(moe=True)
    model = M.build_model(config, seed=0)
    assert type(model).__name__ == "Glm4vMoeForConditionalGeneration"
    proc = M.build_processor(M.offline_tokenizer("glm45v"), size=TINY_IMAGE_SIZE)
    assert proc.chat_template == chat_template("glm45v")
    M.save(model, proc, tmp_path)
    hf = transformers.Glm4vMoeForConditionalGeneration.from_pretrained(tmp_path)
    m2, p2 = M.load(tmp_path)
    assert p2.chat_template == chat_template("glm45v")
    inputs = _inputs(p2)
    assert p2.tokenizer.decode(inputs["input_ids"][0, -1:]) == "<|assistant|>"  # 4.5V: bare generation prompt
    with torch.no_grad():
        a = model(**inputs).logits
        assert torch.equal(a, hf(**inputs).logits)
        assert torch.equal(a, m2(**inputs).logits)


def test_save_reports_only_its_files_and_replaces_old_shards(tiny, tmp_path):
    model, proc = tiny
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "model-00001-of-00009.safetensors").write_text("stale")
    files = M.save(model, proc, tmp_path)
    assert "manifest.json" not in files and (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "model-00001-of-00009.safetensors").exists()
    assert [f for f in files if f.endswith(".safetensors")] == ["model-00001-of-00001.safetensors"]


@pytest.mark.gpu
def test_load_on_gpu_in_bf16_matches_cpu_and_generates(saved):
    out, _ = saved
    cpu_model, proc = M.load(out)
    gpu_model, _ = M.load(out, dtype="bf16", device="cuda")
    assert gpu_model.dtype == torch.bfloat16
    inputs = _inputs(proc)
    with torch.no_grad():
        ref = cpu_model(**inputs).logits
        got = gpu_model(**inputs.to("cuda")).logits.float().cpu()
    assert (ref - got).abs().max().item() < 0.05
    n = inputs["input_ids"].shape[1]
    gen = gpu_model.generate(**inputs.to("cuda"), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert gen.shape == (1, n + 4)
