"""Record validation: each bad input gives an exact file:line:field message and a reason."""

import json

import pytest

from glmv_cli.data.schema import RecordError, parse_record


@pytest.fixture
def img(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(b"x")
    return p


def _parse(tmp_path, obj, mode="sft", line=3):
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return parse_record(text, path=str(tmp_path / "d.jsonl"), line=line, mode=mode)


def _err(tmp_path, obj, mode="sft"):
    with pytest.raises(RecordError) as e:
        _parse(tmp_path, obj, mode)
    return str(e.value).replace(str(tmp_path), "T"), e.value.reason


def test_good_chat_record_is_normalised(tmp_path, img):
    r = _parse(tmp_path, {"id": "x1", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "<image>What is it? <image>"},
        {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}],
        "images": ["a.png", str(img)], "domain": "ocr", "answer": "cat"})
    assert r.id == "x1" and r.kind == "chat" and r.where.endswith("d.jsonl:3")
    assert r.messages[1]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it? "}, {"type": "image"}]
    assert r.images == [str(img), str(img)]
    assert r.meta == {"domain": "ocr", "answer": "cat"}


def test_list_parts_and_pretrain_text(tmp_path, img):
    r = _parse(tmp_path, {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]},
                                       {"role": "assistant", "content": "ok"}], "images": ["a.png"]})
    assert r.id == "d.jsonl:3"
    r = _parse(tmp_path, {"text": "a caption <image> end", "images": ["a.png"]}, mode="pretrain")
    assert r.kind == "text" and r.text == "a caption <image> end"


CASES = [
    ('{"id": "x", "messages": [', "T/d.jsonl:3: malformed JSON (Expecting value at column 26)", "malformed_json"),
    ({"messages": [{"role": "user", "content": "<image> hi"}, {"role": "assistant", "content": "x"}],
      "images": ["nope.png"]},
     "T/d.jsonl:3: field 'images[0]': image file 'T/nope.png' does not exist", "missing_image"),
    ({"messages": [{"role": "user", "content": "<image><image> hi"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]},
     "T/d.jsonl:3: field 'images': 2 <image> placeholder(s) but 1 image(s) listed", "image_count"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]},
     "T/d.jsonl:3: field 'messages[1].role': unknown role \"bot\" (expected system, user or assistant)",
     "unknown_role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  \n"}]},
     "T/d.jsonl:3: field 'messages[1].content': empty assistant turn", "empty_assistant"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": []}]},
     "T/d.jsonl:3: field 'messages[1].content': empty assistant turn", "empty_assistant"),
    ({"messages": [{"role": "user", "content": "hi"}]},
     "T/d.jsonl:3: field 'messages': no assistant turn (mode sft trains on assistant replies)", "bad_field"),
    ({"text": "hello"}, "T/d.jsonl:3: field 'messages': missing (mode sft needs 'messages')", "bad_field"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "T/d.jsonl:3: field 'messages[0].content[0]': expected {\"type\": \"text\", \"text\": ...}, {\"type\": \"image\"} "
     "or {\"type\": \"video\"}", "bad_field"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}, {"role": "assistant", "content": "x"}]},
     "T/d.jsonl:3: field 'videos': 1 <video> placeholder(s) but 0 video(s) listed", "video_count"),
    ({"messages": [{"role": "user", "content": 5}]},
     "T/d.jsonl:3: field 'messages[0].content': expected a string or a list of parts, got int", "bad_field"),
    ({"messages": [], "images": []}, "T/d.jsonl:3: field 'messages': expected a non-empty list of messages",
     "bad_field"),
    ({"messages": [{"role": "user", "content": "x"}], "images": "a.png"},
     "T/d.jsonl:3: field 'images': expected a list of image paths", "bad_field"),
    ("[1, 2]", "T/d.jsonl:3: expected a JSON object, got list", "malformed_json"),
]


@pytest.mark.parametrize("obj,msg,reason", CASES)
def test_bad_records(tmp_path, img, obj, msg, reason):
    assert _err(tmp_path, obj) == (msg, reason)


def test_pretrain_mode_messages(tmp_path, img):
    assert _err(tmp_path, {"images": []}, mode="pretrain") == (
        "T/d.jsonl:3: field 'messages': missing (mode pretrain needs 'messages' or 'text')", "bad_field")
    assert _err(tmp_path, {"text": "  "}, mode="pretrain") == (
        "T/d.jsonl:3: field 'text': expected a non-empty string", "bad_field")
    assert _err(tmp_path, {"text": "<image>", "images": []}, mode="pretrain") == (
        "T/d.jsonl:3: field 'images': 1 <image> placeholder(s) but 0 image(s) listed", "image_count")
    # pretrain accepts chat records without an assistant turn
    assert _parse(tmp_path, {"messages": [{"role": "user", "content": "hi"}]}, mode="pretrain").kind == "chat"


def test_error_round_trips_as_plain_values(tmp_path):
    with pytest.raises(RecordError) as e:
        _parse(tmp_path, "{")
    back = RecordError.from_tuple(e.value.as_tuple())
    assert str(back) == str(e.value) and back.reason == "malformed_json" and back.line == 3
