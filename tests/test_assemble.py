"""Assembly: AIMv2 vision tower + GLM-4 LM -> GLM-4.1V (tiny random sources)."""

import pytest
import torch

from glmv_cli.errors import GlmvError
from glmv_cli.modeling.assemble import assemble, assembly_map, load_sources, mrope_section
from glmv_cli.testing.tiny import TINY_IDS



def _sources(intermediate=128):
    from transformers import Aimv2VisionConfig, Aimv2VisionModel, Glm4Config, Glm4ForCausalLM

    torch.manual_seed(1)
    vision = Aimv2VisionModel(Aimv2VisionConfig(hidden_size=32, intermediate_size=intermediate, num_hidden_layers=2,
                                                num_attention_heads=2, image_size=56, patch_size=14))
    llm = Glm4ForCausalLM(Glm4Config(vocab_size=300, hidden_size=128, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                     max_position_embeddings=256, pad_token_id=0))
    # non-trivial norms and biases so a missed copy cannot pass by accident
    with torch.no_grad():
        for m in (vision, llm):
            for n, p in m.named_parameters():
                if n.endswith("norm.weight") or "norm" in n or n.endswith(".bias"):
                    p.uniform_(0.5, 1.5)
    return vision.eval(), llm.eval()


def test_mrope_section_matches_checkpoints():
    assert mrope_section(32) == [8, 12, 12]  # head_dim 128, partial rotary 0.5
    assert mrope_section(8) == [2, 3, 3]


def test_every_mapped_tensor_equals_its_source_and_text_logits_match():
    vision, llm = _sources()
    model = assemble(vision, llm, token_ids=TINY_IDS)
    sd, vsd = model.state_dict(), vision.state_dict()
    rows = assembly_map(vision.config, 2)
    assert len(rows) == 5 + 2 * 7
    for tgt, src, how in rows:
        if how == "copy":
            assert torch.equal(sd[tgt], vsd[src]), tgt
        elif how == "stack":
            assert torch.equal(sd[tgt], torch.cat([vsd[s] for s in src])), tgt
    for k, v in llm.state_dict().items():
        tgt = "lm_head.weight" if k == "lm_head.weight" else "model.language_model." + k[len("model."):]
        assert torch.equal(sd[tgt], v), k
    ids = torch.randint(0, 280, (2, 17))
    with torch.no_grad():
        ref = llm(input_ids=ids).logits
        got = model(input_ids=ids, mm_token_type_ids=torch.zeros_like(ids)).logits
    assert (ref - got).abs().max().item() < 1e-5


def test_inflated_conv3d_equals_conv2d_on_a_duplicated_image():
    vision, llm = _sources()
    model = assemble(vision, llm, token_ids=TINY_IDS)
    w3 = model.model.visual.patch_embed.proj.weight
    assert w3.shape == (32, 3, 2, 14, 14)
    img = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        ref = vision.embeddings.patch_embed(img).flatten(2).transpose(1, 2)[0]  # (16, 32), row-major patches
        patches = img.unfold(2, 14, 14).unfold(3, 14, 14)  # 1,3,4,4,14,14
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(16, 3, 1, 14, 14).expand(-1, -1, 2, -1, -1)
        got = model.model.visual.patch_embed(patches.reshape(16, -1))
    assert (ref - got).abs().max().item() < 1e-5
    # and the full tower runs on it at the native grid
    with torch.no_grad():
        out = model.model.visual(patches.reshape(16, -1), grid_thw=torch.tensor([[1, 4, 4]]))
    assert out.pooler_output.shape == (4, 128)


def test_incompatible_sources_are_refused(tmp_path):
    vision, llm = _sources(intermediate=64)
    with pytest.raises(GlmvError, match=r"AIMv2 intermediate_size 64 must equal the LM hidden_size 128"):
        assemble(vision, llm, token_ids=TINY_IDS)
    vision, llm = _sources()
    with pytest.raises(GlmvError, match=r"vocab_size 300 has no id 151343 for image_token_id"):
        assemble(vision, llm)
    vision.save_pretrained(tmp_path / "v")
    with pytest.raises(GlmvError, match=r"--init-llm '.*' is a 'aimv2_vision_model' model, expected GLM-4"):
        load_sources(tmp_path / "v", tmp_path / "v")
    with pytest.raises(GlmvError, match=r"--init-vision '.*nope' is not a Hugging Face model directory"):
        load_sources(tmp_path / "nope", tmp_path / "v")
