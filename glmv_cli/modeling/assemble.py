"""Assembly, the paper's initialisation: an AIMv2 vision tower + a GLM-4 LM -> Glm4vForConditionalGeneration.

Weight map (every mapped tensor is copied bit-exactly; ``assembly_map`` lists the pairs):

  AIMv2 vision                               -> model.visual
    embeddings.patch_embed (Conv2d D,C,P,P)  -> patch_embed.proj (Conv3d D,C,T,P,P): W3[:, :, t] = W2 / T
    embeddings.rms_norm                      -> post_conv_layernorm      (both applied right after the patch conv)
    embeddings.position_embedding (learned)  -> embeddings.position_embedding (kept; GLM-4.1V samples it
                                                bicubically at each image's own grid, so any resolution works)
    encoder.layers.i.rms_norm1/2             -> blocks.i.norm1/2
    encoder.layers.i.attention.{q,k,v}_proj  -> blocks.i.attn.qkv        (rows stacked q; k; v)
    encoder.layers.i.attention.out_proj      -> blocks.i.attn.proj
    encoder.layers.i.ffn.{gate,up,down}_proj -> blocks.i.mlp.{gate,up,down}_proj
    rms_norm                                 -> post_layernorm
    head (attention pooling)                 -> dropped
  GLM-4 causal LM: model.* -> model.language_model.*, lm_head -> lm_head.
  Fresh (random init): visual.downsample (the 2x2 patch merge) and visual.merger (the projector).

Conv inflation: dividing the 2D kernel by the temporal size T makes a clip of T identical frames
(an image, which GLM-4.1V duplicates over time) give exactly the 2D activation:
sum_t (W2/T) * x = W2 * x. Constraints checked with a message: the GLM-4.1V vision MLP width is
``out_hidden_size`` (the LM width), so AIMv2's intermediate size must equal the LM hidden size
(true for AIMv2-Huge 4096 + GLM-4-9B 4096); AIMv2 must have no qkv/out biases (the GLM-4.1V
``attn.proj`` has none); GLM-4's head_dim must be hidden/heads. mrope_section splits the rotary half
dim like the checkpoints' [8, 12, 12] (1/4, 3/8, 3/8); with equal t/h/w ids (text) M-RoPE equals
GLM-4's 1D RoPE, so text-only logits match the source LM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from glmv_cli.errors import GlmvError


def mrope_section(rotary_half: int) -> list[int]:
    """[t, h, w] split of the rotary half-dimension in the 1/4, 3/8, 3/8 ratio of [8, 12, 12]."""
    t = rotary_half // 4
    h = (rotary_half - t) // 2
    return [t, h, rotary_half - t - h]


def _rope(cfg) -> tuple[float, float]:
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    theta = float(rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    partial = float(rp.get("partial_rotary_factor", getattr(cfg, "partial_rotary_factor", 0.5)))
    return theta, partial


def assembled_config(vision_cfg, llm_cfg, token_ids: dict[str, int] | None = None):
    """The Glm4vConfig of an AIMv2 vision config + a GLM-4 config (checks compatibility)."""
    from transformers import Glm4vConfig

    heads = llm_cfg.num_attention_heads
    hidden = llm_cfg.hidden_size
    head_dim = getattr(llm_cfg, "head_dim", None) or hidden // heads
    if head_dim * heads != hidden:
        raise GlmvError(f"--init-llm: head_dim {head_dim} x {heads} heads != hidden_size {hidden}; "
                        "GLM-4.1V needs head_dim = hidden_size / num_attention_heads")
    if vision_cfg.intermediate_size != hidden:
        raise GlmvError(f"--init-vision: AIMv2 intermediate_size {vision_cfg.intermediate_size} must equal the "
                        f"LM hidden_size {hidden} (GLM-4.1V's vision MLP width is out_hidden_size)")
    if getattr(vision_cfg, "qkv_bias", False) or getattr(vision_cfg, "mlp_bias", False):
        raise GlmvError("--init-vision: AIMv2 with qkv_bias/mlp_bias has biases GLM-4.1V's vision blocks lack")
    if getattr(vision_cfg, "is_native", False):
        raise GlmvError("--init-vision: a native-resolution AIMv2 (is_native) has no learned position table")
    theta, partial = _rope(llm_cfg)
    half = int(head_dim * partial) // 2
    ids = dict(token_ids or {})
    text = dict(vocab_size=llm_cfg.vocab_size, hidden_size=hidden, intermediate_size=llm_cfg.intermediate_size,
                num_hidden_layers=llm_cfg.num_hidden_layers, num_attention_heads=heads,
                num_key_value_heads=llm_cfg.num_key_value_heads, hidden_act=llm_cfg.hidden_act,
                max_position_embeddings=llm_cfg.max_position_embeddings, rms_norm_eps=llm_cfg.rms_norm_eps,
                pad_token_id=getattr(llm_cfg, "pad_token_id", None),
                rope_parameters={"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": partial,
                                 "mrope_section": mrope_section(half)})
    vision = dict(depth=vision_cfg.num_hidden_layers, hidden_size=vision_cfg.hidden_size,
                  num_heads=vision_cfg.num_attention_heads, in_channels=vision_cfg.num_channels,
                  image_size=vision_cfg.image_size, patch_size=vision_cfg.patch_size,
                  rms_norm_eps=vision_cfg.rms_norm_eps, hidden_act=vision_cfg.hidden_act,
                  out_hidden_size=hidden, intermediate_size=llm_cfg.intermediate_size,
                  spatial_merge_size=2, temporal_patch_size=2, attention_bias=False)
    cfg = Glm4vConfig(text_config=text, vision_config=vision, **ids)
    for k in ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
              "video_start_token_id", "video_end_token_id"):
        if getattr(cfg, k) >= llm_cfg.vocab_size:
            raise GlmvError(f"--init-llm: vocab_size {llm_cfg.vocab_size} has no id {getattr(cfg, k)} for {k}; "
                            "the GLM-4 tokenizer must contain the GLM image/video special tokens")
    return cfg


def assembly_map(vision_cfg, llm_num_layers: int) -> list[tuple[str, str | list[str], str]]:
    """(target, source(s), how) for every mapped tensor; how: copy | inflate | stack."""
    rows: list[tuple[str, str | list[str], str]] = [
        ("model.visual.patch_embed.proj.weight", "embeddings.patch_embed.weight", "inflate"),
        ("model.visual.patch_embed.proj.bias", "embeddings.patch_embed.bias", "copy"),
        ("model.visual.post_conv_layernorm.weight", "embeddings.rms_norm.weight", "copy"),
        ("model.visual.embeddings.position_embedding.weight", "embeddings.position_embedding.weight", "copy"),
        ("model.visual.post_layernorm.weight", "rms_norm.weight", "copy"),
    ]
    for i in range(vision_cfg.num_hidden_layers):
        s, t = f"encoder.layers.{i}.", f"model.visual.blocks.{i}."
        rows += [
            (t + "norm1.weight", s + "rms_norm1.weight", "copy"),
            (t + "norm2.weight", s + "rms_norm2.weight", "copy"),
            (t + "attn.qkv.weight", [s + f"attention.{x}_proj.weight" for x in "qkv"], "stack"),
            (t + "attn.proj.weight", s + "attention.out_proj.weight", "copy"),
        ] + [(t + f"mlp.{x}_proj.weight", s + f"ffn.{x}_proj.weight", "copy") for x in ("gate", "up", "down")]
    return rows


def _vision_state(vision) -> dict[str, torch.Tensor]:
    sd = vision.state_dict()
    return {k[len("vision_model."):] if k.startswith("vision_model.") else k: v for k, v in sd.items()}


def assemble(vision, llm, *, token_ids: dict[str, int] | None = None, seed: int = 0):
    """Builds a Glm4vForConditionalGeneration from an Aimv2VisionModel and a Glm4ForCausalLM (modules)."""
    from transformers import Glm4vForConditionalGeneration

    vcfg = getattr(vision.config, "vision_config", vision.config)
    cfg = assembled_config(vcfg, llm.config, token_ids)
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(cfg)
    target = model.state_dict()
    vsd = _vision_state(vision)
    T = cfg.vision_config.temporal_patch_size
    new: dict[str, torch.Tensor] = {}
    for tgt, src, how in assembly_map(vcfg, llm.config.num_hidden_layers):
        if how == "stack":
            t = torch.cat([vsd[s] for s in src], dim=0)
        elif how == "inflate":
            w2 = vsd[src]
            t = (w2 / T).unsqueeze(2).expand(-1, -1, T, -1, -1).contiguous()
        else:
            t = vsd[src]
        new[tgt] = t
    for k, v in llm.state_dict().items():
        if k.startswith("model."):
            new["model.language_model." + k[len("model."):]] = v
        elif k == "lm_head.weight":
            new[k] = v
    for k, v in new.items():
        if k not in target:
            raise GlmvError(f"assembly: no target tensor '{k}' in the GLM-4.1V model")
        if target[k].shape != v.shape:
            raise GlmvError(f"assembly: '{k}' has shape {tuple(target[k].shape)}, source {tuple(v.shape)}")
    missing, unexpected = model.load_state_dict(new, strict=False)
    fresh = sorted(k for k in missing if not k.startswith(("model.visual.downsample.", "model.visual.merger.")))
    if fresh:
        raise GlmvError(f"assembly left {len(fresh)} tensors unmapped, e.g. '{fresh[0]}'")
    model.eval()
    return model


def load_sources(vision_dir: str | Path, llm_dir: str | Path):
    """Loads the AIMv2 vision tower (a vision-only or a full AIMv2 checkpoint) and the GLM-4 LM."""
    from transformers import AutoConfig, Aimv2VisionModel, Glm4ForCausalLM

    for flag, d in (("--init-vision", vision_dir), ("--init-llm", llm_dir)):
        if not (Path(d) / "config.json").is_file():
            raise GlmvError(f"{flag} '{d}' is not a Hugging Face model directory (no config.json)")
    vcfg = AutoConfig.from_pretrained(str(vision_dir))
    if vcfg.model_type not in ("aimv2", "aimv2_vision_model"):
        raise GlmvError(f"--init-vision '{vision_dir}' is a '{vcfg.model_type}' model, expected AIMv2")
    if vcfg.model_type == "aimv2":
        from transformers import Aimv2Model

        vision = Aimv2Model.from_pretrained(str(vision_dir), dtype=torch.float32).vision_model
    else:
        vision = Aimv2VisionModel.from_pretrained(str(vision_dir), dtype=torch.float32)
    lcfg = AutoConfig.from_pretrained(str(llm_dir))
    if lcfg.model_type != "glm4":
        raise GlmvError(f"--init-llm '{llm_dir}' is a '{lcfg.model_type}' model, expected GLM-4 (glm4)")
    llm = Glm4ForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32)
    return vision, llm


def token_ids_from_tokenizer(tokenizer: Any) -> dict[str, int]:
    """GLM image/video special-token ids as the tokenizer numbers them."""
    names = {"image_token_id": "<|image|>", "video_token_id": "<|video|>",
             "image_start_token_id": "<|begin_of_image|>", "image_end_token_id": "<|end_of_image|>",
             "video_start_token_id": "<|begin_of_video|>", "video_end_token_id": "<|end_of_video|>"}
    out = {}
    for k, tok in names.items():
        i = tokenizer.convert_tokens_to_ids(tok)
        if i is None or i == getattr(tokenizer, "unk_token_id", None):
            raise GlmvError(f"--init-llm tokenizer has no '{tok}' token")
        out[k] = int(i)
    return out
