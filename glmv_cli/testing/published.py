"""Scaled-down checkpoint directories in the layouts zai-org publishes, built locally (never downloaded).

``build(kind, out)`` writes a directory shaped like one of

- ``glm41v``: zai-org/GLM-4.1V-9B-Thinking (``glm4v``, dense LM, the ``<answer>`` format);
- ``glm45v``: zai-org/GLM-4.5V (``glm4v_moe``, MoE LM, answers without ``<answer>`` tags);
- ``glm46v``: the GLM-4.6V family as transformers names it (``glm46v``, ``Glm46VProcessor``), with
  the 4.5V tokenizer layout and answer format and a dense LM (as GLM-4.6V-Flash).

Every file a published repo carries is there: ``config.json`` with the nested ``text_config`` /
``vision_config`` keys of transformers' Glm4v / Glm4vMoe / Glm46V configs, ``generation_config.json``
with the published eos lists, ``tokenizer.json`` + ``tokenizer_config.json`` naming the real
processor class, ``chat_template.jinja``, ``preprocessor_config.json``, ``video_preprocessor_config.json``
and bf16 safetensors shards with their index. The vocabulary has the published size (151,552 rows
in the model, every special token at its published id); the model dimensions are tiny (hidden 64,
2 layers), so a directory costs ~40 MB and ~1 s to build. docs/checkpoints.md lists which facts
come from published files (and where) and which are assumptions of this builder.

The tokenizer is glmv's offline byte-level BPE (2,025 learned entries) padded with inert filler
entries to id 151,328, followed by the special tokens: ordinary text gets other ids than in GLM-4's
real 151k BPE, which no stage depends on; every special token, the thing stages do depend on, sits
where the published tokenizer has it.

``script`` turns the random model into a bigram policy with known outputs (``bigram_weights``): the
residual stream then carries only the current token's embedding, and the LM head maps it to the
scripted successors. The rollout engine, the stop tokens, the reward system and the training stages
all run for real on it; only the "knowledge" is planted. Tests use it to check, e.g., that a perfect
4.1V answer ending in ``</answer>`` (an eos id of GLM-4.1V) reaches the reward intact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

KINDS = ("glm41v", "glm45v", "glm46v")
FIRST_SPECIAL_ID = 151329
VOCAB_SIZE = 151552
PAD_ID = 151329

# 151329..151342: the GLM-4 tokens every GLM-4V tokenizer starts with.
_GLM4_SPECIAL = ("<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                 "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
                 "<|begin_of_video|>", "<|end_of_video|>")
# GLM-4.1V: <|image|> 151343, <|video|> 151344; </answer> at 151348 (an eos id of its generation config).
SPECIAL_41V = _GLM4_SPECIAL + ("<|image|>", "<|video|>", "<|begin_of_box|>", "<|end_of_box|>", "<answer>",
                               "</answer>", "<think>", "</think>")
# GLM-4.5V / 4.6V: the GLM-4.5 order, <|image|> 151363, <|video|> 151364; no <answer> token.
SPECIAL_45V = _GLM4_SPECIAL + ("<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
                               "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>",
                               "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>",
                               "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
                               "/nothink", "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>")

EOS_41V = [151329, 151336, 151338, 151348]
EOS_45V = [151329, 151336, 151338]

# Written for this fixture from what the published GLM-4.1V template renders: [gMASK]<sop>, then
# <|system|>\n / <|user|>\n / <|assistant|>\n + content (an assistant turn with metadata puts it after
# the role token), images and videos as one placeholder token between their markers, history kept as
# given, and <|assistant|>\n as the generation prompt.
TEMPLATE_41V = (
    "[gMASK]<sop>"
    "{%- for msg in messages -%}"
    "{%- if msg.role == 'system' -%}{{- '<|system|>\\n' + msg.content -}}"
    "{%- elif msg.role == 'user' -%}{{- '<|user|>\\n' -}}"
    "{%- if msg.content is string -%}{{- msg.content -}}"
    "{%- else -%}{%- for item in msg.content -%}"
    "{%- if item.type == 'video' or 'video' in item -%}{{- '<|begin_of_video|><|video|><|end_of_video|>' -}}"
    "{%- elif item.type == 'image' or 'image' in item -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif item.type == 'text' -%}{{- item.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- elif msg.role == 'assistant' -%}"
    "{%- if msg.metadata -%}{{- '<|assistant|>' + msg.metadata + '\\n' + msg.content -}}"
    "{%- else -%}{{- '<|assistant|>\\n' + msg.content -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

# Written for this fixture from what the published GLM-4.5V template renders: visible text with image
# / video placeholders, <|user|>\n + text (+ /nothink when thinking is off), reasoning from
# reasoning_content or from <think>...</think> in the content, kept only after the last user turn,
# <|assistant|>\n<think>…</think> + \n + answer, and a bare <|assistant|> as the generation prompt.
TEMPLATE_45V = (
    "[gMASK]<sop>"
    "{%- macro visible_text(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is iterable and content is not mapping -%}{%- for item in content -%}"
    "{%- if item is mapping and item.type == 'text' -%}{{- item.text -}}"
    "{%- elif item is mapping and (item.type == 'image' or 'image' in item) -%}"
    "{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif item is mapping and (item.type == 'video' or 'video' in item) -%}"
    "{{- '<|begin_of_video|><|video|><|end_of_video|>' -}}"
    "{%- elif item is string -%}{{- item -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{- content -}}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(last_user_index=-1) -%}"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last_user_index = loop.index0 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}"
    "{%- set user_content = visible_text(m.content) -%}"
    "{{- '<|user|>\\n' + user_content -}}"
    "{%- if enable_thinking is defined and not enable_thinking and not user_content.endswith('/nothink') -%}"
    "{{- '/nothink' -}}{%- endif -%}"
    "{%- elif m.role == 'assistant' -%}"
    "{%- set reasoning_content = '' -%}{%- set content = visible_text(m.content) -%}"
    "{%- if m.reasoning_content is string -%}{%- set reasoning_content = m.reasoning_content -%}"
    "{%- elif '</think>' in content -%}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{%- if loop.index0 > ns.last_user_index and reasoning_content -%}"
    "{{- '<|assistant|>\\n<think>' + reasoning_content.strip() + '</think>' -}}"
    "{%- else -%}{{- '<|assistant|>\\n<think></think>' -}}{%- endif -%}"
    "{%- if content.strip() -%}{{- '\\n' + content.strip() -}}{%- endif -%}"
    "{%- elif m.role == 'system' -%}{{- '<|system|>\\n' + visible_text(m.content) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|assistant|>' -}}{%- if enable_thinking is defined and not enable_thinking -%}{{- '\\n<think></think>' -}}"
    "{%- endif -%}{%- endif -%}"
)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PIXELS = {"shortest_edge": 12544, "longest_edge": 47040000}  # 112·112 .. 28·28·2·30000


@dataclass(frozen=True)
class Layout:
    """What differs between the published families."""

    kind: str
    model_type: str
    text_model_type: str
    architecture: str
    special_tokens: tuple[str, ...]
    eos: tuple[int, ...]
    processor_class: str
    image_processor_type: str
    video_processor_type: str
    template: str
    moe: bool


LAYOUTS = {
    "glm41v": Layout("glm41v", "glm4v", "glm4v_text", "Glm4vForConditionalGeneration", SPECIAL_41V, tuple(EOS_41V),
                     "Glm4vProcessor", "Glm4vImageProcessor", "Glm4vVideoProcessor", TEMPLATE_41V, False),
    "glm45v": Layout("glm45v", "glm4v_moe", "glm4v_moe_text", "Glm4vMoeForConditionalGeneration", SPECIAL_45V,
                     tuple(EOS_45V), "Glm4vProcessor", "Glm4vImageProcessor", "Glm4vVideoProcessor", TEMPLATE_45V,
                     True),
    "glm46v": Layout("glm46v", "glm46v", "glm4v_text", "Glm46VForConditionalGeneration", SPECIAL_45V,
                     tuple(EOS_45V), "Glm46VProcessor", "Glm46VImageProcessor", "Glm46VVideoProcessor", TEMPLATE_45V,
                     False),
}


def layout(kind: str) -> Layout:
    if kind not in LAYOUTS:
        raise ValueError(f"unknown published layout {kind!r} (expected one of: {', '.join(KINDS)})")
    return LAYOUTS[kind]


def special_token_ids(kind: str) -> dict[str, int]:
    """Each special token of ``kind`` and its id."""
    return {t: FIRST_SPECIAL_ID + i for i, t in enumerate(layout(kind).special_tokens)}


# ------------------------------------------------------------------------------------------ files


def config_dict(kind: str) -> dict:
    """config.json: the published keys with tiny dimensions (hidden 64, 2 layers, 2 heads of 32)."""
    lay = layout(kind)
    ids = special_token_ids(kind)
    text = {
        "model_type": lay.text_model_type, "vocab_size": VOCAB_SIZE, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_act": "silu",
        "max_position_embeddings": 65536, "initializer_range": 0.02, "rms_norm_eps": 1e-05, "use_cache": True,
        "attention_dropout": 0.0, "pad_token_id": PAD_ID, "eos_token_id": list(lay.eos), "dtype": "bfloat16",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                            "mrope_section": [2, 3, 3]},
    }
    if lay.moe:
        text.update({"head_dim": 32, "attention_bias": True, "moe_intermediate_size": 32, "num_experts_per_tok": 2,
                     "n_shared_experts": 1, "n_routed_experts": 4, "routed_scaling_factor": 1.0, "n_group": 1,
                     "topk_group": 1, "first_k_dense_replace": 1, "norm_topk_prob": True,
                     "router_aux_loss_coef": 0.0001, "use_qk_norm": False})
    vision = {
        "model_type": "glm4v_moe_vision" if lay.moe else "glm4v_vision", "depth": 2, "hidden_size": 64,
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0, "num_heads": 2, "in_channels": 3,
        "image_size": 336, "patch_size": 14, "rms_norm_eps": 1e-05, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "out_hidden_size": 64, "intermediate_size": 128, "initializer_range": 0.02,
    }
    return {
        "architectures": [lay.architecture], "model_type": lay.model_type, "text_config": text,
        "vision_config": vision, "image_start_token_id": ids["<|begin_of_image|>"],
        "image_end_token_id": ids["<|end_of_image|>"], "video_start_token_id": ids["<|begin_of_video|>"],
        "video_end_token_id": ids["<|end_of_video|>"], "image_token_id": ids["<|image|>"],
        "video_token_id": ids["<|video|>"], "tie_word_embeddings": False, "dtype": "bfloat16",
        "transformers_version": "4.57.1",
    }


def generation_config_dict(kind: str) -> dict:
    return {"_from_model_config": True, "eos_token_id": list(layout(kind).eos), "pad_token_id": PAD_ID,
            "transformers_version": "4.57.1"}


def tokenizer_json(kind: str) -> dict:
    """tokenizer.json: glmv's offline BPE, filler entries to id 151,328, then the special tokens."""
    from glmv_cli.modeling.tokenizer import _train_backend

    data = json.loads(_train_backend().to_str())
    vocab = data["model"]["vocab"]
    for i in range(len(vocab), FIRST_SPECIAL_ID):
        vocab[f"<|fill_{i}|>"] = i  # never produced: no merge leads to it
    data["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for t, i in special_token_ids(kind).items()]
    return data


def tokenizer_config_dict(kind: str) -> dict:
    lay = layout(kind)
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": True} for t, i in special_token_ids(kind).items()}
    return {"added_tokens_decoder": decoder, "additional_special_tokens": list(lay.special_tokens),
            "clean_up_tokenization_spaces": False, "do_lower_case": False, "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>", "padding_side": "left", "model_max_length": 128000,
            "remove_space": False, "tokenizer_class": "PreTrainedTokenizerFast",
            "processor_class": lay.processor_class}


def preprocessor_config_dict(kind: str) -> dict:
    lay = layout(kind)
    return {"size": dict(PIXELS), "do_rescale": True, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "image_processor_type": lay.image_processor_type,
            "processor_class": lay.processor_class}


def video_preprocessor_config_dict(kind: str) -> dict:
    lay = layout(kind)
    return {"size": dict(PIXELS), "do_rescale": True, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "fps": 2, "max_duration": 300,
            "video_processor_type": lay.video_processor_type, "processor_class": lay.processor_class}


# ------------------------------------------------------------------------------------------ weights


def random_model(kind: str, seed: int = 0):
    """The model of ``config_dict(kind)``, randomly initialised from ``seed`` (fp32)."""
    import torch
    from transformers import AutoConfig

    from glmv_cli.modeling.io import model_class_for

    config = AutoConfig.for_model(**config_dict(kind))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class_for(config)(config)
    return model.eval()


def bigram_weights(model, tokenizer, script: Mapping[str, Sequence[str]], logit: float = 30.0) -> None:
    """Makes ``model`` a bigram policy: after token ``a`` it emits one of ``script[a]`` (equally likely).

    Attention and MLP outputs are zeroed (``o_proj``, every ``down_proj``), so the final hidden state is
    the current token's embedding; each scripted source token gets its own embedding axis, every other
    token's embedding is kept off those axes, and the LM head gives each successor ``logit`` on its
    source's axis (after the final RMSNorm an axis vector has length sqrt(hidden)). A step from a
    scripted token then puts all but ~1e-8 of the mass on its successors. Every name must be one token.
    """
    import torch

    def one(t: str) -> int:
        ids = tokenizer.encode(t, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"script token {t!r} is {len(ids)} tokens; each entry must be a single token")
        return ids[0]

    lm = model.model.language_model
    hidden = lm.embed_tokens.weight.shape[1]
    if len(script) > hidden:
        raise ValueError(f"a script of {len(script)} sources needs hidden size >= that, the model has {hidden}")
    with torch.no_grad():
        for name, p in lm.layers.named_parameters():
            if name.endswith("o_proj.weight") or "down_proj" in name:
                p.zero_()
        emb, head = lm.embed_tokens.weight, model.lm_head.weight
        k = len(script)
        emb[:, :k] = 0
        head[:, :k] = 0
        lm.norm.weight.fill_(1.0)
        scale = logit / math.sqrt(hidden)
        for axis, (src, targets) in enumerate(script.items()):
            emb[one(src)] = 0
            emb[one(src), axis] = 1.0
            for t in targets:
                head[one(t), axis] = scale


def answer_script(kind: str, digits: Sequence[str] = ("3",)) -> dict[str, list[str]]:
    """A ``bigram_weights`` script that answers any question with a box holding one of ``digits``
    (drawn with equal probability), in ``kind``'s answer format after its generation prompt:

    - GLM-4.1V (prompt ends ``<|assistant|>\\n``): ``<think>the</think><answer><|begin_of_box|>d<|end_of_box|>
      </answer>``, stopping on ``</answer>``, an eos id of GLM-4.1V's generation config;
    - GLM-4.5V / 4.6V (prompt ends ``<|assistant|>``): ``\\n<think>the</think><|begin_of_box|>d<|end_of_box|>``
      then ``<|endoftext|>``.
    """
    box = {"<|begin_of_box|>": list(digits), **{d: ["<|end_of_box|>"] for d in digits}}
    if kind == "glm41v":
        return {"\n": ["<think>"], "<think>": ["the"], "the": ["</think>"], "</think>": ["<answer>"],
                "<answer>": ["<|begin_of_box|>"], **box, "<|end_of_box|>": ["</answer>"]}
    layout(kind)
    return {"<|assistant|>": ["\n"], "\n": ["<think>"], "<think>": ["the"], "the": ["</think>"],
            "</think>": ["<|begin_of_box|>"], **box, "<|end_of_box|>": ["<|endoftext|>"]}


# ------------------------------------------------------------------------------------------ build


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_weights(model, out: Path, shards: int = 2) -> None:
    """bf16 safetensors in ``shards`` files with ``model.safetensors.index.json`` (the published layout)."""
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    total = sum(state[n].numel() * 2 for n in names)
    groups: list[list[str]] = [[] for _ in range(shards)]
    acc = 0
    for n in names:  # fill shards in name order up to an equal share of the bytes each
        groups[min(shards - 1, acc * shards // max(total, 1))].append(n)
        acc += state[n].numel() * 2
    weight_map = {}
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n] for n in group}, str(out / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in group})
    _write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def build(kind: str, out: str | Path, *, seed: int = 0, script: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Writes the checkpoint directory of ``kind`` to ``out`` (created; existing files replaced)."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer

    lay = layout(kind)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_json = tokenizer_json(kind)
    (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
    _write_json(out / "tokenizer_config.json", tokenizer_config_dict(kind))
    _write_json(out / "config.json", config_dict(kind))
    _write_json(out / "generation_config.json", generation_config_dict(kind))
    _write_json(out / "preprocessor_config.json", preprocessor_config_dict(kind))
    _write_json(out / "video_preprocessor_config.json", video_preprocessor_config_dict(kind))
    (out / "chat_template.jinja").write_text(lay.template, encoding="utf-8")
    model = random_model(kind, seed)
    if script:
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(tok_json)))
        bigram_weights(model, tok, script)
    _write_weights(model, out)
    return out
