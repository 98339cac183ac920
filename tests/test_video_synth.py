"""The opt-in synthetic video domain: the answer read back from the decoded clip's timestamps,
determinism, and the build writing MP4s and <video> records without touching the default mix."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from glmv_cli.data.video import load_video
from glmv_cli.synth import ALL_DOMAINS, DOMAINS, OPT_IN, is_video
from glmv_cli.synth import video as V
from glmv_cli.synth.build import build, read_split


def _red_pixels(frame: np.ndarray) -> int:
    r, g, b = (frame[..., k].astype(int) for k in range(3))
    return int(((r > 170) & (g < 100) & (b < 100)).sum())


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_answer_is_the_timestamp_of_the_first_red_pair(tmp_path, level):
    scene = V.make_scene(random.Random(100 + level), level, (112, 112))
    path = tmp_path / "clip.mp4"
    path.write_bytes(V.video_bytes(scene))
    clip = load_video(path)
    assert clip.meta.total_frames == scene["seconds"] * 4 and clip.meta.fps == 4.0
    assert clip.plan.pair_timestamps == list(range(scene["seconds"]))
    side = scene["square"]["box"][2] - scene["square"]["box"][0]
    red_pairs = [k for k in range(clip.frames.shape[0] // 2)
                 if min(_red_pixels(clip.frames[2 * k]), _red_pixels(clip.frames[2 * k + 1])) > side * side // 2]
    # red from the turn on and never before: the first red pair's timestamp is the answer
    assert red_pairs == list(range(int(V.solve(scene)), scene["seconds"]))
    assert str(clip.plan.pair_timestamps[red_pairs[0]]) == V.solve(scene)
    assert red_pairs[0] >= 1  # the first frame pair never shows the answer colour: the answer is seen, not 0
    assert f"turns red at second {V.solve(scene)}" in V.caption(scene)
    assert V.reasoning(scene).endswith(f"So the square turns red at second {V.solve(scene)}.")


def test_levels_and_determinism():
    assert [V.LEVELS[lv][0] for lv in (1, 2, 3, 4, 5)] == [3, 4, 5, 6, 8]
    a = V.make_scene(random.Random(7), 5, (112, 112))
    b = V.make_scene(random.Random(7), 5, (112, 112))
    assert a == b and V.video_bytes(a) == V.video_bytes(b)
    assert len(a["distractors"]) == 2 and any(a["square"]["velocity"])
    assert all(d["turn"] != a["square"]["turn"] for d in a["distractors"])
    assert V.features(a)["seconds"] == 8.0


def test_registry_is_opt_in():
    assert "video" not in DOMAINS and set(DOMAINS) == {"stem", "counting", "ocr", "chart", "grounding", "gui"}
    assert OPT_IN == {"video": V} and ALL_DOMAINS["video"] is V
    assert is_video("video") and not is_video("counting")


def test_build_with_video(tmp_path):
    for d in "abc":
        (tmp_path / d).mkdir()
    m = build(tmp_path / "a", domains=["counting", "video"], levels=[1, 3], n_train=8, n_eval=4, seed=0,
              size=(112, 112))
    assert m["videos"] == {"train": 4, "eval": 2}
    assert m["per_domain"]["eval"] == {"counting": 2, "video": 2}
    sft = [r for r in read_split(tmp_path / "a" / "sft.jsonl") if r["domain"] == "video"]
    pre = [r for r in read_split(tmp_path / "a" / "pretrain.jsonl") if r["domain"] == "video"]
    assert sft and pre
    rec = sft[0]
    assert "images" not in rec and rec["videos"] == [f"videos/train/{rec['scene_id']}.mp4"]
    assert rec["messages"][0]["content"].startswith("<video>\n")
    assert rec["messages"][1]["content"].endswith(f"<|begin_of_box|>{rec['answer']}<|end_of_box|></answer>")
    assert pre[0]["text"].startswith("<video>\n") and pre[0]["videos"][0].endswith(".mp4")
    clip = load_video(tmp_path / "a" / rec["videos"][0])
    assert clip.frames.shape[0] == 2 * rec["scene"]["seconds"]
    # same seed, same bytes
    build(tmp_path / "b", domains=["counting", "video"], levels=[1, 3], n_train=8, n_eval=4, seed=0, size=(112, 112))
    for f in ("sft.jsonl", "eval.jsonl", rec["videos"][0]):
        assert hashlib.sha256((tmp_path / "a" / f).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / "b" / f).read_bytes()).digest()
    # without the video domain nothing about videos appears
    m = build(tmp_path / "c", domains=["counting"], levels=[1], n_train=2, n_eval=1, seed=0, size=(112, 112))
    assert "videos" not in m and not (tmp_path / "c" / "videos").exists()


def test_cli_accepts_opt_in_video_domain(tmp_path):
    from typer.testing import CliRunner

    from glmv_cli.main import app
    from glmv_cli.rewards import score

    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "s"), "--domains", "video", "--levels", "1",
                                 "--n-train", "4", "--n-eval", "2", "--seed", "0"])
    assert r.exit_code == 0, r.output
    rows = read_split(tmp_path / "s" / "eval.jsonl")
    assert {x["domain"] for x in rows} == {"video"}
    # the reward system verifies video references (alias of counting: non-negative integers)
    for x in rows:
        resp = f"<think>t</think><answer><|begin_of_box|>{x['answer']}<|end_of_box|></answer>"
        assert score("", resp, x["answer"], "video") == 1.0
        assert score("", resp.replace(x["answer"], str(int(x["answer"]) + 1)), x["answer"], "video") == 0.0
