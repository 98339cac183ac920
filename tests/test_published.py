"""Checkpoints in the published layouts (GLM-4.1V-9B-Thinking, GLM-4.5V, GLM-4.6V): the fixture
builder, loading them, the chat format they imply, and saving a model as a standard HF model."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glmv_cli.errors import GlmvError
from glmv_cli.testing import published as P

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the fixture builder


@pytest.mark.parametrize("kind", P.KINDS)
def test_layout_has_the_published_files_and_ids(published, kind):
    d = published(kind)
    names = sorted(p.name for p in d.iterdir())
    assert names == ["chat_template.jinja", "config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
                     "tokenizer.json", "tokenizer_config.json", "video_preprocessor_config.json"]
    cfg = json.loads((d / "config.json").read_text())
    image = {"glm41v": 151343, "glm45v": 151363, "glm46v": 151363}[kind]
    assert (cfg["image_token_id"], cfg["video_token_id"]) == (image, image + 1)
    assert (cfg["image_start_token_id"], cfg["image_end_token_id"]) == (151339, 151340)
    assert cfg["text_config"]["vocab_size"] == 151552
    eos = [151329, 151336, 151338, 151348] if kind == "glm41v" else [151329, 151336, 151338]
    assert json.loads((d / "generation_config.json").read_text())["eos_token_id"] == eos
    assert cfg["model_type"] == {"glm41v": "glm4v", "glm45v": "glm4v_moe", "glm46v": "glm46v"}[kind]
    pclass = "Glm46VProcessor" if kind == "glm46v" else "Glm4vProcessor"
    for f in ("tokenizer_config.json", "preprocessor_config.json", "video_preprocessor_config.json"):
        assert json.loads((d / f).read_text())["processor_class"] == pclass

    from glmv_cli.modeling import weights_dtype
    from transformers import AutoTokenizer

    assert weights_dtype(d) == "bf16"
    tok = AutoTokenizer.from_pretrained(d)
    ids = P.special_token_ids(kind)
    assert len(tok) == P.FIRST_SPECIAL_ID + len(ids)
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in ids.items())
    if kind == "glm41v":
        assert ids["</answer>"] == 151348  # the fourth eos id: a content token
    else:
        assert "<answer>" not in ids and ids["/nothink"] == 151360
    text = "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>12 + 30?<|assistant|>\n"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_templates_render_the_published_forms(published):
    from transformers import AutoTokenizer

    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q1"}]},
            {"role": "assistant", "content": "<think>a</think><answer>1</answer>"},
            {"role": "user", "content": "Q2"}]
    t41 = AutoTokenizer.from_pretrained(published("glm41v"))
    assert t41.apply_chat_template(conv, tokenize=False, add_generation_prompt=True) == (
        "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>Q1<|assistant|>\n"
        "<think>a</think><answer>1</answer><|user|>\nQ2<|assistant|>\n")  # history kept as given
    t45 = AutoTokenizer.from_pretrained(published("glm45v"))
    conv45 = [conv[0], {"role": "assistant", "content": "1", "reasoning_content": "a"}, conv[2]]
    assert t45.apply_chat_template(conv45, tokenize=False, add_generation_prompt=True, enable_thinking=False) == (
        "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>Q1/nothink<|assistant|>\n<think></think>\n1"
        "<|user|>\nQ2/nothink<|assistant|>\n<think></think>")


def test_bigram_script_needs_single_tokens():
    model = P.random_model("glm41v")
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(P.tokenizer_json("glm41v"))))
    with pytest.raises(ValueError, match=r"script token 'count' is 2 tokens"):
        P.bigram_weights(model, tok, {"<think>": ["count"]})


# ------------------------------------------------------------------ loading in glmv


@pytest.mark.parametrize("kind,style", [("glm41v", "glm41v"), ("glm45v", "glm45v"), ("glm46v", "glm45v")])
def test_glmv_loads_each_family_with_its_own_template(published, kind, style):
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.modeling import load, model_type

    model, proc = load(published(kind))
    assert type(proc).__name__ == "GlmvProcessor" and model.dtype == torch.bfloat16
    assert model.generation_config.eos_token_id == list(P.layout(kind).eos)
    fmt = ChatFormat.of(proc, model_type(published(kind)))
    assert (fmt.style, fmt.source, fmt.template) == (style, "checkpoint", P.layout(kind).template)


def test_glm4v_with_the_45v_template_gets_the_45v_format(published, tmp_path):
    """GLM-4.6V-Flash: model type glm4v, the GLM-4.5V chat template and answer form."""
    from glmv_cli.data.template import ChatFormat, template_style
    from glmv_cli.modeling import load_processor

    d = tmp_path / "flash"
    d.mkdir()
    for f in published("glm41v").iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "chat_template.jinja").write_text(P.TEMPLATE_45V)
    assert ChatFormat.of(load_processor(d), "glm4v").style == "glm45v"
    assert template_style(P.TEMPLATE_41V) == "glm41v" and template_style(None) is None


# ------------------------------------------------------------------ saving: a standard HF model


@pytest.fixture(scope="module")
def saved41(published, tmp_path_factory):
    """The 4.1V fixture loaded for training (fp32) and saved with its source."""
    from glmv_cli.modeling import load, save

    src = published("glm41v")
    model, proc = load(src, dtype="fp32")
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0  # "trained"
    out = tmp_path_factory.mktemp("saved41")
    save(model, proc, out, source=src)
    return src, out, model


def test_saved_model_files_equal_the_input_except_weights(saved41):
    from glmv_cli.modeling import weights_dtype

    src, out, _ = saved41
    differ = sorted(f.name for f in src.iterdir()
                    if not (out / f.name).is_file() or not filecmp.cmp(f, out / f.name, shallow=False))
    assert differ == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                      "model.safetensors.index.json"]
    assert weights_dtype(out) == "bf16"  # the input's dtype, though the model was trained in fp32
    added = sorted({f.name for f in out.iterdir()} - {f.name for f in src.iterdir()})
    assert added == ["model-00001-of-00001.safetensors"]


def test_save_dtype_changes_weights_and_the_config_dtype_only(saved41, tmp_path):
    from glmv_cli.modeling import save, weights_dtype

    src, _, model = saved41
    save(model, None, tmp_path, source=src, dtype="fp32")
    assert weights_dtype(tmp_path) == "fp32"
    a, b = json.loads((src / "config.json").read_text()), json.loads((tmp_path / "config.json").read_text())
    for cfg, want in ((a, "bfloat16"), (b, "float32")):
        assert cfg.pop("dtype") == want and cfg["text_config"].pop("dtype") == want
    assert a == b
    assert filecmp.cmp(src / "generation_config.json", tmp_path / "generation_config.json", shallow=False)


_PLAIN = """
import sys, torch
if sys.argv[2] == "glmv":
    import glmv_cli.modeling  # noqa: F401
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
out = sys.argv[1]
m = AutoModelForImageTextToText.from_pretrained(out)
tok = AutoTokenizer.from_pretrained(out)
ids = tok("[gMASK]<sop><|user|>\\nhi<|assistant|>\\n", return_tensors="pt").input_ids
with torch.no_grad():
    print("LOGIT", float(m(input_ids=ids).logits[0, -1].float().sum()))
print("GEN", m.generation_config.eos_token_id)
try:
    p = AutoProcessor.from_pretrained(out)
    print("PROCESSOR", type(p).__name__)
except ImportError as e:
    print("PROCESSOR-ERROR", str(e).strip().split(chr(10))[0])
print("GLMV", any(k.startswith("glmv_cli") for k in sys.modules))
"""


@pytest.mark.parametrize("with_glmv", ["plain", "glmv"])
def test_plain_transformers_loads_the_saved_model(saved41, with_glmv):
    """A fresh interpreter: the weights load with the input's generation config; AutoProcessor names
    transformers' Glm4vProcessor, which without torchvision fails loudly instead of dropping images
    (with torchvision it handles images: tests/test_saved_processor_torchvision.py)."""
    _, out, model = saved41
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'kernels'}", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _PLAIN, str(out), with_glmv], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln.split(" ", 1)[0].isupper())
    assert lines["GEN"] == "[151329, 151336, 151338, 151348]"
    assert lines["GLMV"] == ("True" if with_glmv == "glmv" else "False")
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        assert lines["PROCESSOR-ERROR"].startswith("Glm4vVideoProcessor requires the Torchvision library")
    else:
        assert lines["PROCESSOR"] == "Glm4vProcessor"
    from glmv_cli.modeling import load

    ours, proc = load(out)
    ids = proc.tokenizer("[gMASK]<sop><|user|>\nhi<|assistant|>\n", return_tensors="pt").input_ids
    with torch.no_grad():
        want = float(ours(input_ids=ids).logits[0, -1].float().sum())
    assert float(lines["LOGIT"]) == pytest.approx(want, rel=1e-6)  # same weights, same op sequence; printed


def test_preset_saves_name_transformers_classes_and_keep_generation_ids(tmp_path):
    from glmv_cli.modeling import load, save

    model, proc = load("tiny")
    save(model, proc, tmp_path, dtype="bf16")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    files = {f.name for f in tmp_path.iterdir()}
    assert {"processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"} <= files
    assert "GlmvProcessor" not in "".join((tmp_path / f).read_text() for f in files if f.endswith(".json"))
    again, _ = load(tmp_path)
    assert again.dtype == torch.bfloat16
    assert again.generation_config.eos_token_id == [2025, 2032, 2034]


# ------------------------------------------------------------------ Hub ids


def _fake_hub_cache(root: Path, repo: str, src: Path) -> Path:
    """``src`` as the Hugging Face cache holds a downloaded snapshot of ``repo``."""
    rev = "0" * 40
    d = root / f"models--{repo.replace('/', '--')}"
    snap = d / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(rev)
    return snap


def test_hub_id_resolves_from_the_cache_in_every_loader(published, tmp_path, monkeypatch):
    import huggingface_hub.constants as C

    from glmv_cli.modeling import load_processor, model_dir, model_type

    snap = _fake_hub_cache(tmp_path / "hub", "zai-org/GLM-4.1V-9B-Thinking", published("glm41v"))
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_dir("zai-org/GLM-4.1V-9B-Thinking") == snap
    assert model_type("zai-org/GLM-4.1V-9B-Thinking") == "glm4v"
    assert load_processor("zai-org/GLM-4.1V-9B-Thinking").tokenizer.convert_tokens_to_ids("<|image|>") == 151343
    with pytest.raises(GlmvError, match=r"'zai-org/GLM-4.5V': cannot fetch from the Hub \(HF_HUB_OFFLINE=1"):
        model_type("zai-org/GLM-4.5V")


def test_pack_takes_a_hub_id(published, tmp_path, monkeypatch):
    import huggingface_hub.constants as C
    from PIL import Image
    from typer.testing import CliRunner

    from glmv_cli.main import app

    _fake_hub_cache(tmp_path / "hub", "zai-org/GLM-4.5V", published("glm45v"))
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hub"))
    Image.new("RGB", (112, 112)).save(tmp_path / "a.png")
    rec = {"messages": [{"role": "user", "content": "<image>How many?"},
                        {"role": "assistant", "content": "<think>one</think><answer>1</answer>"}], "images": ["a.png"]}
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    r = CliRunner().invoke(app, ["pack", "--model", "zai-org/GLM-4.5V", "--input", str(tmp_path / "d.jsonl"),
                                 "--out", str(tmp_path / "p"), "--seq-len", "128"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert (m["options"]["style"], m["chat_template"], m["metrics"]["answers_converted"]) == ("glm45v", "checkpoint", 1)


def test_legacy_glmv_processor_names_are_replaced_when_carried(tmp_path):
    from glmv_cli.modeling import load, save

    model, proc = load("tiny")
    src = tmp_path / "old"
    save(model, proc, src)
    for f in ("processor_config.json", "tokenizer_config.json"):  # as glmv wrote them before
        data = json.loads((src / f).read_text())
        data["processor_class"] = "GlmvProcessor"
        (src / f).write_text(json.dumps(data))
    assert type(load(src)[1]).__name__ == "GlmvProcessor"
    save(model, None, tmp_path / "new", source=src)
    for f in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / "new" / f).read_text())["processor_class"] == "Glm4vProcessor"
