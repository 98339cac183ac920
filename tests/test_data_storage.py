"""Shard format round trip: every pack comes back exactly, images byte for byte."""

import json

import numpy as np
import pytest

from glmv_cli.data.storage import Sample, ShardReader, shard_name, write_index, write_shard


def _sample(n, start, images=(), src=(0, 1)):
    ids = np.arange(start, start + n, dtype=np.int32)
    pos = np.stack([np.arange(n)] * 4).astype(np.int32) + np.array([[0], [1], [2], [3]], dtype=np.int32)
    return Sample(ids, -ids, pos, [b for b, _ in images], [g for _, g in images], src)


def test_round_trip(tmp_path):
    a = _sample(3, 10, [(b"\x89PNGaaa", (1, 2, 2))], (0, 1))
    b = _sample(2, 20, [], (0, 2))
    c = _sample(4, 30, [(b"J1", (1, 4, 2)), (b"JJ22", (1, 2, 4))], (1, 7))
    d = _sample(1, 40, [], (1, 9))
    shards = [write_shard(tmp_path / shard_name(0), [[a, b], [c]]), write_shard(tmp_path / shard_name(1), [[d]])]
    assert shards[0] == {"file": "packs-00000.safetensors", "packs": 2, "samples": 3, "tokens": 9, "images": 3}
    write_index(tmp_path, shards, seq_len=8)
    assert json.loads((tmp_path / "packs.json").read_text())["seq_len"] == 8
    r = ShardReader(tmp_path)
    assert len(r) == 3
    p0 = r.pack(0)
    assert p0.input_ids.tolist() == [10, 11, 12, 20, 21]
    assert p0.labels.tolist() == [-10, -11, -12, -20, -21]
    assert p0.position_ids.shape == (4, 5) and p0.position_ids[0].tolist() == [0, 1, 2, 0, 1]
    assert p0.position_ids[3].tolist() == [3, 4, 5, 3, 4]
    assert p0.sample_lengths.tolist() == [3, 2] and p0.sources.tolist() == [[0, 1], [0, 2]]
    assert p0.images == [b"\x89PNGaaa"] and p0.grids.tolist() == [[1, 2, 2]]
    p1 = r.pack(1)
    assert p1.images == [b"J1", b"JJ22"] and p1.grids.tolist() == [[1, 4, 2], [1, 2, 4]]
    p2 = r.pack(2)
    assert p2.input_ids.tolist() == [40] and p2.images == [] and p2.grids.shape == (0, 3)
    with pytest.raises(IndexError, match="pack 3 out of range 0..2"):
        r.pack(3)


def test_missing_or_foreign_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="packs.json is missing"):
        ShardReader(tmp_path)
    (tmp_path / "packs.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a glmv-packs v1 index"):
        ShardReader(tmp_path)
