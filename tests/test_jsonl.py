"""The one input opener and JSONL reader: regular files only, bounded lines, file:line errors."""

from __future__ import annotations

import os
import re
import threading

import pytest

from glmv_cli.data.jsonl import iter_lines, iter_objects
from glmv_cli.errors import GlmvError


def test_lines_objects_and_blank_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"a": 1}\n\n   \n{"b": [2]}\r\n{"c": 3}')  # CRLF and no final newline
    assert list(iter_objects(p)) == [(1, {"a": 1}), (4, {"b": [2]}), (5, {"c": 3})]


@pytest.mark.parametrize("body, message", [
    (b'{"a": 1}\n{"a": \n', "a.jsonl:2: invalid JSON (Expecting value at column 7)"),
    (b'[1, 2]\n', "a.jsonl:1: expected a JSON object, got list"),
    (b'{"a": 1}\n\xff\xfe{}\n', "a.jsonl:2: not UTF-8 text"),
    (b"[" * 100000 + b"\n", "a.jsonl:1: "),
])
def test_bad_lines_name_file_and_line(tmp_path, body, message):
    p = tmp_path / "a.jsonl"
    p.write_bytes(body)
    with pytest.raises(GlmvError, match=re.escape(message)):
        list(iter_objects(p))


def test_an_overlong_line_is_refused_with_its_size_before_it_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("GLMV_MAX_LINE_BYTES", "1000")
    p = tmp_path / "big.jsonl"
    p.write_bytes(b'{"ok": 1}\n{"text": "' + b"x" * 5000 + b'"}\n{"ok": 2}\n')
    with pytest.raises(GlmvError, match=r"big.jsonl:2: the line has 5,013 bytes, more than the limit 1,000"):
        list(iter_lines(p))


def test_non_regular_files_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(GlmvError, lambda: list(iter_lines(fifo)))))
    t.start()
    t.join(timeout=5)
    assert done, "reading a FIFO must not block"
    assert "is a FIFO; glmv reads regular files only" in str(done[0].value)
    with pytest.raises(GlmvError, match="'/dev/zero' is a device; glmv reads regular files only"):
        list(iter_lines("/dev/zero"))
    with pytest.raises(GlmvError, match="is a directory, expected a file"):
        list(iter_lines(tmp_path))
    with pytest.raises(GlmvError, match="does not exist"):
        list(iter_lines(tmp_path / "nope.jsonl", "--input"))
