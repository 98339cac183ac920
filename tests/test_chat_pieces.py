"""The piece cache of chat_tokens.py (``_Pieces``): tokenising a text from cached pieces between added
tokens must give exactly the ids and start offsets of one Rust ``encode`` of the whole text, and
``encode_chat`` / ``encode_pretrain_text`` must not change when the cache is switched off."""

from __future__ import annotations

import copy
import random

import pytest

from glmv_cli.data import chat_tokens as chat
from glmv_cli.data.chat_tokens import encode_chat, encode_pretrain_text

HAND = [
    "", "\n", " ", "  \n \n", "Hello world", " How many red circles are there in picture 1234?",
    "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|> What?<|assistant|>\n<think>r</think>",
    "<|image|><|image|>", "a<|endoftext|>b", "<|user|", "<|user|>>", "<<|user|>", "/nothink/nothink",
    "中文。测试 mixed 中", "e\u0301 \u00a0x\u3000y", "😀😀 emoji", "it's they'll we've 123,456.7",
    "\t\r\n tabs\x1c\x85", "<think>\n reasoning \n</think>\n answer", "</answer><answer>",
]


@pytest.fixture(scope="module")
def tok():
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    return offline_tokenizer()


@pytest.fixture()
def plain(tok):
    """A copy of the tokenizer whose chat encoding goes through one whole-string ``encode``."""
    t = copy.deepcopy(tok)
    chat._marker_ids(t).pieces = None
    return t


def _whole(backend, text):
    enc = backend.encode(text, add_special_tokens=False)
    return enc.ids, [a for a, _ in enc.offsets]


def test_pieces_equal_whole_string_encode(tok):
    pieces = chat._Pieces.for_tokenizer(tok)
    assert pieces is not None
    backend = tok.backend_tokenizer
    for text in HAND:
        assert pieces.encode(text) == _whole(backend, text), text
        assert pieces.encode(text) == _whole(backend, text), text  # second time from the cache
    rng = random.Random(0)
    alphabet = list("ab Z\n\t 09.,!?'<>|/") + ["中", "é", "😀", "\u0301", "\u3000"] + list(pieces.added)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        assert pieces.encode(text) == _whole(backend, text), text


def test_pieces_split_at_added_tokens_and_cache_them(tok):
    pieces = chat._Pieces.for_tokenizer(tok)
    ids, starts = pieces.encode("<|user|>\nhi<|assistant|>")
    conv = tok.convert_tokens_to_ids
    assert ids[0] == conv("<|user|>") and ids[-1] == conv("<|assistant|>")
    assert starts[0] == 0 and starts[-1] == len("<|user|>\nhi")
    assert set(pieces.cache) == {"\nhi"}
    pieces.MAX_ENTRIES = 2
    pieces.encode("a<|user|>b<|user|>c")  # "b" finds the cache full ("\nhi", "a") and empties it
    assert set(pieces.cache) == {"b", "c"}


def test_pieces_refused_where_equality_is_not_guaranteed(tok):
    from tokenizers import normalizers

    t = copy.deepcopy(tok)
    t.backend_tokenizer.normalizer = normalizers.NFC()
    assert chat._Pieces.for_tokenizer(t) is None
    t = copy.deepcopy(tok)
    t.backend_tokenizer.enable_truncation(16)
    assert chat._Pieces.for_tokenizer(t) is None
    assert chat._Pieces.for_tokenizer(object()) is None


CONVERSATIONS = [
    [{"role": "system", "content": "Be brief. 中文"},
     {"role": "user", "content": "<image><image> compare\n <image>"},
     {"role": "assistant", "content": "<think>one\n</think><answer>a <|begin_of_box|>1<|end_of_box|></answer>"},
     {"role": "user", "content": "again  "},
     {"role": "assistant", "content": " \n<think>two</think><answer><|begin_of_box|>2<|end_of_box|></answer>\n"}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " what?\n"}, {"type": "image"}]},
     {"role": "assistant", "content": "  leading spaces, no think"}],
]


@pytest.mark.parametrize("style", ["glm41v", "glm45v"])
@pytest.mark.parametrize("train_on", ["last", "all"])
def test_encode_chat_same_with_and_without_cache(tok, plain, style, train_on):
    for msgs in CONVERSATIONS:
        n = sum(m["content"].count("<image>") if isinstance(m["content"], str)
                else sum(part["type"] == "image" for part in m["content"]) for m in msgs)
        kw = dict(image_token_counts=[3 + k for k in range(n)], style=style, train_on=train_on)
        fast = encode_chat(tok, msgs, **kw)
        assert fast == encode_chat(plain, msgs, **kw)
        assert len(fast["input_ids"]) == len(fast["labels"]) and fast["labels"][-1] == tok.convert_tokens_to_ids(
            "<|endoftext|>")
    video = [{"role": "user", "content": "<video>\nWhen?"}, {"role": "assistant", "content": "<think>t</think>3"}]
    kw = dict(video_layouts=[(4, [0, 2, 4])], style=style, train_on=train_on)
    assert encode_chat(tok, video, **kw) == encode_chat(plain, video, **kw)


def test_encode_pretrain_same_with_and_without_cache(tok, plain):
    for text, counts in [("A caption <image> with words.", [5]), ("<image><image>x  \n y <image> end", [1, 2, 3]),
                         ("no images 42", [])]:
        assert encode_pretrain_text(tok, text, image_token_counts=counts) == \
            encode_pretrain_text(plain, text, image_token_counts=counts)
    with pytest.raises(chat.ChatFormatError, match=r"0 video\(s\) given but the text has 1 <\|video\|> token"):
        encode_pretrain_text(tok, "literal <|video|> here")
