"""Chat templates (GLM-4.1V / GLM-4.5V), SFT labels, pretraining labels, mm token types."""

from __future__ import annotations

import pytest

from glmv_cli.data.chat import IGNORE_INDEX, ChatFormatError, chat_template, render_prompt, style_for_model_type
from glmv_cli.data.chat_tokens import encode_chat, encode_pretrain_text, mm_token_type_ids


@pytest.fixture(scope="module")
def tok():
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    return offline_tokenizer()


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
Q1 = {"role": "user", "content": "<image>What is 2+3?"}
Q2 = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And 4+4?"}]}
A1_41 = {"role": "assistant", "content": "<think>2 plus 3 is 5.</think><answer>The sum is <|begin_of_box|>5<|end_of_box|></answer>"}
A2_41 = {"role": "assistant", "content": "<think>4 plus 4.</think><answer><|begin_of_box|>8<|end_of_box|></answer>"}
A1_45 = {"role": "assistant", "content": "<think>2 plus 3 is 5.</think>The sum is <|begin_of_box|>5<|end_of_box|>"}
A2_45 = {"role": "assistant", "content": "<think>4 plus 4.</think>\n<|begin_of_box|>8<|end_of_box|>"}
CONV_41 = [SYSTEM, Q1, A1_41, Q2, A2_41]
CONV_45 = [SYSTEM, Q1, A1_45, Q2, A2_45]
IMG = "<|begin_of_image|><|image|><|end_of_image|>"

GOLDEN_41 = (
    "[gMASK]<sop><|system|>\nYou are a helpful assistant."
    f"<|user|>\n{IMG}What is 2+3?"
    "<|assistant|>\n<answer>The sum is <|begin_of_box|>5<|end_of_box|></answer>"
    f"<|user|>\n{IMG}And 4+4?"
    "<|assistant|>\n<think>4 plus 4.</think><answer><|begin_of_box|>8<|end_of_box|></answer>"
)
GOLDEN_45 = (
    "[gMASK]<sop><|system|>\nYou are a helpful assistant."
    f"<|user|>\n{IMG}What is 2+3?"
    "<|assistant|>\n<think></think>\nThe sum is <|begin_of_box|>5<|end_of_box|>"
    f"<|user|>\n{IMG}And 4+4?"
    "<|assistant|>\n<think>4 plus 4.</think>\n<|begin_of_box|>8<|end_of_box|>"
)
GOLDEN_45_NOTHINK_PROMPT = (
    "[gMASK]<sop><|system|>\nYou are a helpful assistant."
    f"<|user|>\n{IMG}What is 2+3?/nothink"
    "<|assistant|>\n<think></think>\nThe sum is <|begin_of_box|>5<|end_of_box|>"
    f"<|user|>\n{IMG}And 4+4?/nothink"
    "<|assistant|>\n<think></think>"
)


def test_golden_glm41v():
    assert render_prompt(CONV_41, style="glm41v", add_generation_prompt=False) == GOLDEN_41
    assert render_prompt(CONV_41[:-1], style="glm41v") == GOLDEN_41[: GOLDEN_41.rindex("<|assistant|>")] + "<|assistant|>\n"


def test_golden_glm45v_and_thinking_switch():
    assert render_prompt(CONV_45, style="glm45v", add_generation_prompt=False) == GOLDEN_45
    prompt_on = render_prompt(CONV_45[:-1], style="glm45v")
    assert prompt_on.endswith("And 4+4?<|assistant|>")
    assert render_prompt(CONV_45[:-1], style="glm45v", enable_thinking=False) == GOLDEN_45_NOTHINK_PROMPT


def test_earlier_turns_drop_their_thinking():
    for style, conv in (("glm41v", CONV_41), ("glm45v", CONV_45)):
        text = render_prompt(conv, style=style, add_generation_prompt=False)
        assert "2 plus 3" not in text and "4 plus 4." in text


def test_reasoning_content_field_glm45v():
    conv = [Q1, {"role": "assistant", "content": "It is 5.", "reasoning_content": "2+3=5"}]
    text = render_prompt(conv, style="glm45v", add_generation_prompt=False, image_token_counts=[2])
    assert text.endswith("What is 2+3?<|assistant|>\n<think>2+3=5</think>\nIt is 5.")
    assert "<|begin_of_image|><|image|><|image|><|end_of_image|>" in text


@pytest.mark.parametrize("style", ["glm41v", "glm45v"])
@pytest.mark.parametrize("thinking", [True, False])
@pytest.mark.parametrize("gen", [True, False])
def test_apply_chat_template_agrees_with_encode_chat(tok, style, thinking, gen):
    conv = (CONV_41 if style == "glm41v" else CONV_45)[: 4 if gen else 5]
    text = tok.apply_chat_template(
        conv, tokenize=False, add_generation_prompt=gen, enable_thinking=thinking, chat_template=chat_template(style)
    )
    assert text == render_prompt(conv, style=style, add_generation_prompt=gen, enable_thinking=thinking)
    counts = [3, 2]
    enc = encode_chat(tok, conv, image_token_counts=counts, style=style, add_generation_prompt=gen, enable_thinking=thinking)
    expanded = render_prompt(conv, style=style, add_generation_prompt=gen, enable_thinking=thinking, image_token_counts=counts)
    ids = tok(expanded, add_special_tokens=False)["input_ids"]
    eos = [tok.eos_token_id] if not gen else []
    assert enc["input_ids"] == ids + eos
    assert len(enc["labels"]) == len(enc["input_ids"])


def _label_runs(tok, enc):
    runs, cur = [], []
    for t, lab in zip(enc["input_ids"], enc["labels"]):
        if lab == IGNORE_INDEX:
            if cur:
                runs.append(tok.decode(cur))
                cur = []
        else:
            assert lab == t
            cur.append(lab)
    if cur:
        runs.append(tok.decode(cur))
    return runs


def test_labels_only_on_last_assistant_turn(tok):
    enc = encode_chat(tok, CONV_41, image_token_counts=[4, 4])
    assert _label_runs(tok, enc) == [
        "<think>4 plus 4.</think><answer><|begin_of_box|>8<|end_of_box|></answer><|endoftext|>"
    ]
    enc45 = encode_chat(tok, CONV_45, image_token_counts=[4, 4], style="glm45v")
    assert _label_runs(tok, enc45) == ["\n<think>4 plus 4.</think>\n<|begin_of_box|>8<|end_of_box|><|endoftext|>"]


def test_train_on_all_labels_every_assistant_turn_and_its_closing_token(tok):
    enc = encode_chat(tok, CONV_41, image_token_counts=[4, 4], train_on="all")
    assert _label_runs(tok, enc) == [
        "<answer>The sum is <|begin_of_box|>5<|end_of_box|></answer><|user|>",
        "<think>4 plus 4.</think><answer><|begin_of_box|>8<|end_of_box|></answer><|endoftext|>",
    ]


def test_image_tokens_are_expanded_and_unlabelled(tok):
    enc = encode_chat(tok, CONV_41, image_token_counts=[5, 7])
    image_id = tok.convert_tokens_to_ids("<|image|>")
    positions = [i for i, t in enumerate(enc["input_ids"]) if t == image_id]
    assert len(positions) == 12
    assert all(enc["labels"][i] == IGNORE_INDEX for i in positions)


def test_generation_prompt_has_no_labels(tok):
    enc = encode_chat(tok, CONV_41[:4], image_token_counts=[1, 1], add_generation_prompt=True)
    assert set(enc["labels"]) == {IGNORE_INDEX}
    assert tok.decode(enc["input_ids"][-2:]) == "<|assistant|>\n"


def test_processor_tokenisation_matches_encode_chat(tok):
    from PIL import Image

    from glmv_cli.modeling import image_token_count, load_processor

    proc = load_processor("tiny")
    images = [Image.new("RGB", (150, 90)), Image.new("RGB", (64, 300))]
    conv = CONV_41[:4]
    text = proc.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    out = proc(images=images, text=[text])
    counts = [image_token_count(im.width, im.height, proc) for im in images]
    enc = encode_chat(proc.tokenizer, conv, image_token_counts=counts, add_generation_prompt=True)
    assert list(out["input_ids"][0]) == enc["input_ids"]
    tt = mm_token_type_ids(
        enc["input_ids"],
        image_token_id=proc.image_token_id,
        video_start_id=proc.video_start_id,
        video_end_id=proc.video_end_id,
    )
    assert tt == list(out["mm_token_type_ids"][0])


def test_pretrain_text_labels(tok):
    enc = encode_pretrain_text(tok, "A cat <image> on a mat.", image_token_counts=[3])
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[:2] == ["[gMASK]", "<sop>"] and toks[-1] == "<|endoftext|>"
    assert toks.count("<|image|>") == 3
    unlabelled = [t for t, lab in zip(toks, enc["labels"]) if lab == IGNORE_INDEX]
    assert unlabelled == ["[gMASK]", "<sop>", "<|begin_of_image|>", "<|image|>", "<|image|>", "<|image|>", "<|end_of_image|>"]
    assert tok.decode([lab for lab in enc["labels"] if lab != IGNORE_INDEX]) == "A cat  on a mat.<|endoftext|>"


def test_mm_token_type_ids_hand_values():
    # 7 = image token, 8/9 = video start/end
    ids = [1, 7, 7, 2, 8, 7, 7, 9, 7]
    assert mm_token_type_ids(ids, image_token_id=7, video_start_id=8, video_end_id=9) == [0, 1, 1, 0, 0, 2, 2, 0, 1]
    assert mm_token_type_ids(ids, image_token_id=7) == [0, 1, 1, 0, 0, 1, 1, 0, 1]


def test_validation_errors(tok):
    with pytest.raises(ChatFormatError, match=r"^messages\[1\]: unknown role 'bot' \(expected one of: system, user, assistant\)$"):
        encode_chat(tok, [Q1, {"role": "bot", "content": "x"}], image_token_counts=[1])
    with pytest.raises(ChatFormatError, match=r"^messages\[1\]: assistant turn is empty$"):
        encode_chat(tok, [Q1, {"role": "assistant", "content": "  "}], image_token_counts=[1])
    with pytest.raises(ChatFormatError, match=r"^messages\[1\]: assistant turn is empty$"):
        encode_chat(tok, [Q1, {"role": "assistant", "content": "<think></think>"}], image_token_counts=[1], style="glm45v")
    with pytest.raises(ChatFormatError, match=r"^1 image placeholder\(s\) in the text but 2 image\(s\) given$"):
        encode_chat(tok, [Q1, A1_41], image_token_counts=[1, 1])
    with pytest.raises(ChatFormatError, match=r"^messages\[0\]\.content\[0\]: video parts are not supported"):
        encode_chat(tok, [{"role": "user", "content": [{"type": "video"}]}])
    with pytest.raises(ChatFormatError, match=r"^unknown chat style 'glm5' \(expected one of: glm41v, glm45v\)$"):
        render_prompt([Q1], style="glm5")
    with pytest.raises(ChatFormatError, match=r"^image_token_counts\[0\] must be a positive integer, got 0$"):
        encode_pretrain_text(tok, "<image> x", image_token_counts=[0])
    assert issubclass(ChatFormatError, ValueError)


def test_style_for_model_type():
    assert style_for_model_type("glm4v") == "glm41v"
    assert style_for_model_type("glm4v_moe") == "glm45v"
