"""Model presets: ``tiny`` for CPU tests and the demo, and the two published checkpoints.

``glm-4.1v-9b`` and ``glm-4.5v`` carry the values of zai-org/GLM-4.1V-9B-Thinking and
zai-org/GLM-4.5V ``config.json`` (transformers ``Glm4vConfig`` / ``Glm4vMoeConfig``): 3D RoPE
with theta 10000 on half of each head (``partial_rotary_factor`` 0.5, 64 of 128 dims) split
t/h/w = [8, 12, 12] frequency pairs; a 24-block, 1536-wide vision tower (patch 14, 2x2 spatial
merge, 2-frame temporal patch) projected to 4096; GLM-4 token ids (``<|endoftext|>`` 151329,
``<|user|>`` 151336, ``<|observation|>`` 151338, image markers 151339/151340, video markers
151341/151342; ``<|image|>``/``<|video|>`` 151343/151344 for 4.1V, 151363/151364 for 4.5V).
Note that transformers' bare ``Glm4vConfig()`` defaults to *full* rotary; the presets set 0.5
explicitly, as the checkpoints do.

``tiny`` keeps every structural feature (GQA, partial 3D rope, vision tower with Conv3d patch
embed, learned position table, downsample and merger) at 1.24 M parameters (0.04 s to build on
one CPU thread), with head_dim 32 so its rope has 8 frequency pairs split [2, 3, 3] (the
checkpoints' 1 : 1.5 : 1.5). Its vocabulary is the offline tokenizer's (2048) and its token
ids are looked up in that tokenizer. Parameter counts check out against the published
checkpoints: ``glm-4.5v`` has 107,710,927,360 parameters + 45x128 router-bias buffers =
107,710,933,120 stored values, GLM-4.5V's safetensors total; ``glm-4.1v-9b`` has 10.29 B.
"""

from __future__ import annotations

from typing import Any

GLM_TOKEN_IDS_41V = {
    "image_token_id": 151343,
    "video_token_id": 151344,
    "image_start_token_id": 151339,
    "image_end_token_id": 151340,
    "video_start_token_id": 151341,
    "video_end_token_id": 151342,
}
GLM_TOKEN_IDS_45V = {**GLM_TOKEN_IDS_41V, "image_token_id": 151363, "video_token_id": 151364}
GLM_EOS_IDS = [151329, 151336, 151338]  # <|endoftext|>, <|user|>, <|observation|>
GLM_PAD_ID = 151329

ROPE_CHECKPOINT = {
    "rope_type": "default",
    "rope_theta": 10000.0,
    "partial_rotary_factor": 0.5,
    "mrope_section": [8, 12, 12],
}

# Image processor limits (pixels of the 2-frame temporal patch: t*h*w, as smart_resize counts).
# The checkpoints' preprocessor_config.json: 112*112 .. 47,040,000 (= 28*28*2*30000).
CHECKPOINT_IMAGE_SIZE = {"shortest_edge": 12544, "longest_edge": 47040000}
# tiny: a 112x112 image stays 112x112 (8x8 patches -> 16 tokens); at most 256 patches / 64 tokens.
TINY_IMAGE_SIZE = {"shortest_edge": 12544, "longest_edge": 2 * 224 * 224}

_PRESETS = ("tiny", "glm-4.1v-9b", "glm-4.5v")
_ALIASES = {
    "glm-4.1v": "glm-4.1v-9b",
    "glm-4.1v-9b-thinking": "glm-4.1v-9b",
    "glm4.1v": "glm-4.1v-9b",
    "glm4.5v": "glm-4.5v",
}


def list_presets() -> list[str]:
    """Names accepted by ``preset_config`` and ``glmv_cli.modeling.load``."""
    return list(_PRESETS)


def resolve_preset(name: str) -> str | None:
    """The canonical preset name for ``name`` (case-insensitive, a few aliases), or None."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in _PRESETS else None


def _vision(**over: Any) -> dict:
    v = {
        "depth": 24,
        "hidden_size": 1536,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "num_heads": 12,
        "in_channels": 3,
        "image_size": 336,
        "patch_size": 14,
        "rms_norm_eps": 1e-5,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 4096,
        "intermediate_size": 13696,
        "initializer_range": 0.02,
    }
    v.update(over)
    return v


def glm41v_9b_config():
    from transformers import Glm4vConfig

    text = {
        "vocab_size": 151552,
        "hidden_size": 4096,
        "intermediate_size": 13696,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 65536,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "use_cache": True,
        "attention_dropout": 0.0,
        "rope_parameters": dict(ROPE_CHECKPOINT),
        "pad_token_id": GLM_PAD_ID,
        "eos_token_id": list(GLM_EOS_IDS),
    }
    return Glm4vConfig(
        text_config=text,
        vision_config=_vision(),
        tie_word_embeddings=False,
        architectures=["Glm4vForConditionalGeneration"],
        **GLM_TOKEN_IDS_41V,
    )


def glm45v_config():
    from transformers import Glm4vMoeConfig

    text = {
        "vocab_size": 151552,
        "hidden_size": 4096,
        "intermediate_size": 10944,
        "num_hidden_layers": 46,
        "num_attention_heads": 96,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 65536,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "use_cache": True,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "moe_intermediate_size": 1408,
        "num_experts_per_tok": 8,
        "n_shared_experts": 1,
        "n_routed_experts": 128,
        "routed_scaling_factor": 1.0,
        "n_group": 1,
        "topk_group": 1,
        "first_k_dense_replace": 1,
        "norm_topk_prob": True,
        "router_aux_loss_coef": 0.0001,
        "use_qk_norm": False,
        "rope_parameters": dict(ROPE_CHECKPOINT),
        "pad_token_id": GLM_PAD_ID,
        "eos_token_id": list(GLM_EOS_IDS),
        "tie_word_embeddings": False,
    }
    return Glm4vMoeConfig(
        text_config=text,
        vision_config=_vision(intermediate_size=10944),
        tie_word_embeddings=False,
        architectures=["Glm4vMoeForConditionalGeneration"],
        **GLM_TOKEN_IDS_45V,
    )


def tiny_config(tokenizer=None, *, moe: bool = False):
    """The tiny preset, with vocabulary and token ids of ``tokenizer`` (default: offline).

    ``moe=True`` gives its GLM-4.5V-architecture sibling (``Glm4vMoeConfig``: 4 routed experts,
    top-2, one shared expert, first layer dense) for tests of the MoE / 4.5V-style paths.
    """
    from transformers import Glm4vConfig, Glm4vMoeConfig

    from glmv_cli.modeling.tokenizer import offline_tokenizer, stop_token_ids

    tok = tokenizer if tokenizer is not None else offline_tokenizer()
    conv = tok.convert_tokens_to_ids
    ids = {
        "image_token_id": conv("<|image|>"),
        "video_token_id": conv("<|video|>"),
        "image_start_token_id": conv("<|begin_of_image|>"),
        "image_end_token_id": conv("<|end_of_image|>"),
        "video_start_token_id": conv("<|begin_of_video|>"),
        "video_end_token_id": conv("<|end_of_video|>"),
    }
    text = {
        "vocab_size": len(tok),
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "use_cache": True,
        "attention_dropout": 0.0,
        "rope_parameters": {**ROPE_CHECKPOINT, "mrope_section": [2, 3, 3]},
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": stop_token_ids(tok),
    }
    vision = _vision(
        depth=2,
        hidden_size=64,
        num_heads=2,
        image_size=112,
        out_hidden_size=128,
        intermediate_size=352,
    )
    if moe:
        text.update(
            head_dim=32,
            attention_bias=True,
            moe_intermediate_size=64,
            num_experts_per_tok=2,
            n_shared_experts=1,
            n_routed_experts=4,
            routed_scaling_factor=1.0,
            n_group=1,
            topk_group=1,
            first_k_dense_replace=1,
            norm_topk_prob=True,
            use_qk_norm=False,
        )
        return Glm4vMoeConfig(
            text_config=text,
            vision_config=vision,
            tie_word_embeddings=False,
            architectures=["Glm4vMoeForConditionalGeneration"],
            **ids,
        )
    return Glm4vConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        architectures=["Glm4vForConditionalGeneration"],
        **ids,
    )


def preset_config(name: str):
    """The transformers config of preset ``name`` (see ``list_presets``)."""
    from glmv_cli.errors import GlmvError

    key = resolve_preset(name)
    if key is None:
        raise GlmvError(f"unknown model preset {name!r} (expected one of: {', '.join(_PRESETS)})")
    if key == "tiny":
        return tiny_config()
    if key == "glm-4.1v-9b":
        return glm41v_9b_config()
    return glm45v_config()


def preset_image_size(name: str) -> dict:
    """The image processor ``size`` (min/max pixels) for preset ``name``."""
    return dict(TINY_IMAGE_SIZE if resolve_preset(name) == "tiny" else CHECKPOINT_IMAGE_SIZE)
