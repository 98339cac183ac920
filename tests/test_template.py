"""The chat format of a model: its own template's rendering with glmv's labels carried over,
reasoning fields, and answer forms converted between the GLM-4.1V and GLM-4.5V families."""

from __future__ import annotations

import json

import pytest

from glmv_cli.data.chat import ChatFormatError, encode_chat
from glmv_cli.data.schema import RecordError, parse_record
from glmv_cli.data.template import ChatFormat, convert_answer_form, template_messages
from glmv_cli.testing.published import TEMPLATE_41V, TEMPLATE_45V


@pytest.fixture(scope="module")
def tok():
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    return offline_tokenizer()


Q = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}
A41 = {"role": "assistant", "content": "<think>I count.</think><answer><|begin_of_box|>3<|end_of_box|></answer>"}


def _trained(tok, ids, labels) -> str:
    return tok.decode([i for i, lab in zip(ids.tolist(), labels.tolist()) if lab != -100])


def test_checkpoint_template_equal_to_glmv_keeps_glmv_labels(tok):
    glmv = encode_chat(tok, [Q, A41], image_token_counts=[4])
    ids, labels, realigned = ChatFormat("glm41v", TEMPLATE_41V).arrays(tok, [Q, A41], image_token_counts=[4])
    assert not realigned
    assert ids.tolist() == glmv["input_ids"] and labels.tolist() == glmv["labels"]


def test_default_system_prompt_of_a_template_is_rendered_and_not_trained(tok):
    template = TEMPLATE_41V.replace("[gMASK]<sop>", "[gMASK]<sop><|system|>\nYou are GLM.", 1)
    ids, labels, realigned = ChatFormat("glm41v", template).arrays(tok, [Q, A41], image_token_counts=[4])
    assert realigned
    assert tok.decode(ids.tolist()).startswith("[gMASK]<sop><|system|>\nYou are GLM.<|user|>\n<|begin_of_image|>")
    assert _trained(tok, ids, labels) == A41["content"] + "<|endoftext|>"
    # ids equal a plain tokenizer call on the template's text (one <|image|> expanded to 4)
    text = ChatFormat("glm41v", template).template_text([Q, A41], add_generation_prompt=False, enable_thinking=True)
    plain = tok(text + "<|endoftext|>", add_special_tokens=False).input_ids
    image = tok.convert_tokens_to_ids("<|image|>")
    expanded = [t for i in plain for t in ([i] * 4 if i == image else [i])]
    assert ids.tolist() == expanded


def test_history_thinking_kept_by_the_41v_template(tok):
    conv = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>a</think><answer>1</answer>"},
            {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>b</think><answer>2</answer>"}]
    ids, labels, realigned = ChatFormat("glm41v", TEMPLATE_41V).arrays(tok, conv)
    assert realigned  # glmv's own renderer drops the first <think>; the published template keeps it
    assert "<think>a</think>" in tok.decode(ids.tolist())
    assert _trained(tok, ids, labels) == "<think>b</think><answer>2</answer><|endoftext|>"


def test_a_template_that_rewrites_the_trained_text_fails_with_a_diff(tok):
    template = TEMPLATE_45V.replace("reasoning_content.strip() + '</think>'", "'thinking hidden</think>'")
    conv = [Q, {"role": "assistant", "content": "3", "reasoning_content": "I count."}]
    with pytest.raises(ChatFormatError) as e:
        ChatFormat("glm45v", template).arrays(tok, conv, image_token_counts=[4])
    msg = str(e.value)
    assert msg.startswith("the model's chat template renders the text glmv trains differently (glmv renders style "
                          "glm45v)")
    assert ("--- glmv (trained text)\n+++ the model's chat template\n@@ -4,3 +4,3 @@\n <|assistant|>\n"
            "-<think>I count.</think>\n+<think>thinking hidden</think>\n 3\n") in msg


def test_reasoning_fields_train_as_the_thinking_part(tok):
    for style, want in (("glm41v", "<think>2+3=5</think><answer>5</answer>"), ("glm45v", "\n<think>2+3=5</think>\n5")):
        for key in ("reasoning_content", "thinking"):
            conv = [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": "<answer>5</answer>"
                     if style == "glm41v" else "5", key: "2+3=5"}]
            enc = encode_chat(tok, conv, style=style)
            assert tok.decode([t for t in enc["labels"] if t != -100]) == want + "<|endoftext|>", (style, key)
    with pytest.raises(ChatFormatError, match=r"messages\[1\]: the reasoning is given twice"):
        encode_chat(tok, [{"role": "user", "content": "q"},
                          {"role": "assistant", "content": "<think>x</think>5", "reasoning_content": "x"}])


def _parse(obj) -> object:
    return parse_record(json.dumps(obj), path="d.jsonl", line=3, mode="sft", check_files=False)


def test_schema_parses_and_validates_reasoning():
    u = {"role": "user", "content": "q"}
    rec = _parse({"messages": [u, {"role": "assistant", "content": "5", "thinking": "because"}]})
    assert rec.messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "5"}],
                               "reasoning_content": "because"}
    rec = _parse({"messages": [u, {"role": "assistant", "content": "", "reasoning_content": "only thinking"}]})
    assert rec.messages[1]["reasoning_content"] == "only thinking"
    cases = [
        ({"role": "assistant", "content": "5", "reasoning_content": 7},
         r"d.jsonl:3: field 'messages\[1\].reasoning_content': expected a string, got int"),
        ({"role": "assistant", "content": "<think>a</think>5", "thinking": "a"},
         r"field 'messages\[1\].thinking': the reasoning is given twice"),
        ({"role": "assistant", "content": "5", "thinking": "a", "reasoning_content": "b"},
         r"field 'messages\[1\].reasoning_content': reasoning_content and thinking differ"),
    ]
    for msg, pattern in cases:
        with pytest.raises(RecordError, match=pattern):
            _parse({"messages": [u, msg]})
    with pytest.raises(RecordError, match=r"field 'messages\[0\].reasoning_content': only assistant messages"):
        _parse({"messages": [{**u, "reasoning_content": "x"}, {"role": "assistant", "content": "5"}]})


def test_answer_forms_convert_both_ways_or_refuse():
    m41 = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r</think><answer> A </answer>"}]
    to45, n = convert_answer_form(m41, "glm45v")
    assert n == 1 and to45[1]["content"] == "<think>r</think> A "
    back, n = convert_answer_form(to45, "glm41v")
    assert n == 1 and back[1]["content"] == "<think>r</think><answer>A</answer>"
    same, n = convert_answer_form(m41, "glm41v")
    assert n == 0 and same == m41
    reasoning = [{"role": "assistant", "content": [{"type": "text", "text": "A"}], "reasoning_content": "r"}]
    assert convert_answer_form(reasoning, "glm41v")[0][0]["content"] == [{"type": "text", "text": "<answer>A</answer>"}]
    plain = [{"role": "assistant", "content": "hello"}]
    assert convert_answer_form(plain, "glm41v") == (plain, 0)  # no thinking: in neither family's form
    for bad in ("<answer>a</answer> and more", "<think>r</think>text<answer>a</answer>",
                "<answer>a</answer><answer>b</answer>"):
        with pytest.raises(ChatFormatError, match=r"^messages\[0\]\.content: the answer uses GLM-4.1V <answer> "
                                                  r"tags in a form glmv cannot convert .* --style glm41v$"):
            convert_answer_form([{"role": "assistant", "content": bad}], "glm45v")
    with pytest.raises(ChatFormatError, match=r"messages\[0\]\.content: a GLM-4.1V answer needs text after"):
        convert_answer_form([{"role": "assistant", "content": "<think>r</think>  "}], "glm41v")


def test_template_messages_use_media_parts_and_inline_reasoning_for_41v():
    msgs = template_messages([{"role": "user", "content": "<image>\nQ"},
                              {"role": "assistant", "content": [{"type": "text", "text": "A"}], "thinking": "r"}],
                             reads_reasoning=False)
    assert msgs == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nQ"}]},
                    {"role": "assistant", "content": "<think>r</think>A"}]


def test_pack_help_names_the_record_fields():
    from typer.testing import CliRunner

    from glmv_cli.main import app

    r = CliRunner().invoke(app, ["pack", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    flat = " ".join(r.output.split())
    for field in ('"messages"', '"reasoning_content"', '"thinking"', '"images"', '"videos"', '"text"'):
        assert field in flat, field
