"""Video decoding and frame sampling (glmv_cli.data.video): hand-checked indices and timestamps,
transformers' own sampling rule on the same metadata, and every bad-input path."""

from __future__ import annotations

import math
import os
import types

import numpy as np
import pytest

from glmv_cli.data.video import (SamplePlan, VideoError, VideoMeta, VideoSettings, cap_frames, decode, load_stored,
                                 load_video, stored_bytes,
                                 plan_sampling, probe, sample_indices)
from glmv_cli.synth.video import encode_mp4


def _frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    """Frame k is a flat grey of level 8k (decodable back to k within the codec's error)."""
    return [np.full((h, w, 3), (8 * k) % 256, dtype=np.uint8) for k in range(n)]


def _write(tmp_path, name: str, n: int, fps: int, **kw) -> str:
    p = tmp_path / name
    p.write_bytes(encode_mp4(_frames(n, **kw), fps))
    return str(p)


def _level_to_index(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 8))


# ---- the sampling rule, by hand --------------------------------------------------------------


def test_sample_indices_hand_checked():
    # 31 frames at 30 fps: d = 1.0333 s -> floor(2.07) = 2 frames at ceil(i*15)
    assert sample_indices(31, 30.0, 31 / 30) == ([0, 15], False)
    # 3 s at 30 fps: 6 frames 15 apart
    assert sample_indices(90, 30.0, 3.0) == ([0, 15, 30, 45, 60, 75], False)
    # 25 fps, 2.8 s: 5 frames at ceil(12.5 i) = 0, 13, 25, 38, 50 -> odd -> last repeated
    assert sample_indices(70, 25.0, 2.8) == ([0, 13, 25, 38, 50, 50], False)
    # 1 fps source, 3 s: ceil(0.5 i) = 0,1,1,2,2,3->2 (clamped); deduplicated then padded
    assert sample_indices(3, 1.0, 3.0) == ([0, 1, 2, 2], False)
    # one frame: duplicated into a pair
    assert sample_indices(1, 30.0, 1 / 30) == ([0, 0], False)
    # unknown duration: transformers' fallback round(max_idx / fps) + 1 = round(59/30) + 1 = 3 s
    assert sample_indices(60, 30.0, None) == ([0, 15, 30, 45, 59, 59], False)


def test_sample_indices_over_the_cap_spreads_frames():
    # 20 s at 30 fps with a 10 s cap: int(10*2) = 20 frames at ceil(30 * 20k/19), last clamped to 599
    idx, over = sample_indices(600, 30.0, 20.0, max_duration=10)
    assert over and len(idx) == 20
    assert idx[:3] == [0, 32, 64] and idx[-1] == 599
    assert idx == [min(599, math.ceil(t * 30)) for t in np.linspace(0, 20, 20)]
    # fewer frames than the cap's sample count: every frame is kept
    assert sample_indices(10, 0.1, 100.0, max_duration=10) == (list(range(10)), True)


def test_sample_indices_equal_transformers_rule():
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor
    from transformers.video_utils import VideoMetadata

    for total, fps in [(1, 30.0), (7, 3.0), (31, 30.0), (70, 25.0), (301, 29.97), (1000, 24.0), (5000, 10.0),
                       (13, 0.5), (450, 1.0), (89, 60.0)]:
        for target, cap in [(2.0, 300.0), (1.0, 300.0), (2.0, 20.0), (4.0, 5.0)]:
            meta = VideoMetadata(total_num_frames=total, fps=fps, duration=total / fps)
            stub = types.SimpleNamespace(fps=2, max_duration=cap)
            ref = Glm4vVideoProcessor.sample_frames(stub, meta, fps=target).tolist()
            ours, _ = sample_indices(total, fps, total / fps, target_fps=target, max_duration=cap)
            assert ours == ref, (total, fps, target, cap)


def test_plan_timestamps_and_pairs():
    meta = VideoMeta("clip.mp4", 90, 30.0, 64, 48)
    plan = plan_sampling(meta)
    assert plan.indices == (0, 15, 30, 45, 60, 75)
    assert plan.timestamps == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
    assert plan.pair_timestamps == [0, 1, 2]
    assert not (plan.over_cap or plan.single_frame or plan.capped)
    # 25 fps: frame 38 is at 1.52 s, and the duplicated last frame keeps its real time
    plan = plan_sampling(VideoMeta("c.mp4", 70, 25.0, 64, 48))
    assert plan.timestamps == (0.0, 0.52, 1.0, 1.52, 2.0, 2.0)
    assert plan.pair_timestamps == [0, 1, 2]


def test_max_frames_cap_keeps_real_timestamps():
    meta = VideoMeta("long.mp4", 60 * 30, 30.0, 64, 48)     # 60 s -> 120 frames at 2 fps
    plan = plan_sampling(meta, VideoSettings(max_frames=8))
    assert plan.capped and plan.num_frames == 8
    # linspace(0, 119, 8) picks the 2-fps frames 0, 17, 34, ... 119 (15 source frames apart)
    assert plan.indices == (0, 255, 510, 765, 1020, 1275, 1530, 1785)
    assert plan.pair_timestamps == [0, 17, 34, 51]
    assert cap_frames([1, 2, 3], 4) == [1, 2, 3]
    with pytest.raises(ValueError, match="max_frames must be an even number >= 2, got 7"):
        VideoSettings(max_frames=7)


def test_settings_validation():
    with pytest.raises(ValueError, match="fps must be > 0, got 0"):
        VideoSettings(fps=0)
    with pytest.raises(ValueError, match="on_long must be one of sample, error, got 'drop'"):
        VideoSettings(on_long="drop")
    with pytest.raises(ValueError, match="min_frames must be 1 or 2, got 3"):
        VideoSettings(min_frames=3)


# ---- files and folders -----------------------------------------------------------------------


def test_mp4_probe_sample_decode(tmp_path):
    path = _write(tmp_path, "a.mp4", 12, 4)           # 3 s at 4 fps
    meta = probe(path)
    assert (meta.total_frames, meta.fps, meta.width, meta.height) == (12, 4.0, 64, 48)
    assert meta.duration == 3.0 and not meta.is_folder
    clip = load_video(path)
    assert clip.plan.indices == (0, 2, 4, 6, 8, 10)
    assert clip.plan.pair_timestamps == [0, 1, 2]
    assert clip.frames.shape == (6, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert [_level_to_index(f) for f in clip.frames] == [0, 2, 4, 6, 8, 10]
    assert clip.notes == []


def test_container_without_frame_count_is_counted(tmp_path):
    import av

    p = tmp_path / "b.mkv"
    with av.open(str(p), "w") as c:
        s = c.add_stream("ffv1", rate=5)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv444p"
        for f in _frames(10, 32, 32):
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    with av.open(str(p)) as c:
        assert c.streams.video[0].frames == 0          # Matroska: no count in the header
    meta = probe(p)
    assert meta.total_frames == 10 and meta.fps == 5.0
    clip = load_video(p)
    # 2 s at 5 fps: ceil(2.5 i) = 0, 3, 5, 8
    assert clip.plan.indices == (0, 3, 5, 8)
    assert [_level_to_index(f) for f in clip.frames] == [0, 3, 5, 8]


def test_frame_folder_natural_order_and_timestamps(tmp_path):
    from PIL import Image

    d = tmp_path / "frames"
    d.mkdir()
    for k in range(5):
        Image.fromarray(_frames(5, 30, 20)[k]).save(d / f"f{k * 5}.png")   # f0 f5 f10 f15 f20
    (d / "notes.txt").write_text("not a frame")
    meta = probe(d)
    assert meta.is_folder and meta.total_frames == 5 and (meta.width, meta.height) == (30, 20)
    assert [p.rsplit("/", 1)[1] for p in meta.frame_files] == ["f0.png", "f5.png", "f10.png", "f15.png", "f20.png"]
    clip = load_video(d)                                  # 2 fps folder, 2 fps sampling: all kept
    assert clip.plan.indices == (0, 1, 2, 3, 4, 4)
    assert clip.plan.timestamps == (0.0, 0.5, 1.0, 1.5, 2.0, 2.0)
    assert [_level_to_index(f) for f in clip.frames] == [0, 1, 2, 3, 4, 4]
    clip = load_video(d, VideoSettings(folder_fps=1.0))   # frames 1 s apart
    assert clip.plan.pair_timestamps == [0, 2, 4]


# ---- bad input -------------------------------------------------------------------------------


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(VideoError, match="does not exist") as e:
        probe(tmp_path / "nope.mp4")
    assert e.value.kind == "missing"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(VideoError, match=r"bad\.mp4': cannot read the video") as e:
        load_video(bad)
    assert e.value.kind == "unreadable"


def test_zero_frames(tmp_path):
    import av

    for name, codec, pix in (("empty.avi", "mjpeg", "yuvj420p"), ("empty.mp4", "libx264", "yuv420p")):
        with av.open(str(tmp_path / name), "w") as c:
            s = c.add_stream(codec, rate=4)
            s.width, s.height, s.pix_fmt = 32, 32, pix
            c.start_encoding()
    # AVI keeps a video stream with no frames; MP4 drops a stream that never got a packet
    with pytest.raises(VideoError, match=r"empty\.avi': the video has no frames") as e:
        load_video(tmp_path / "empty.avi")
    assert e.value.kind == "no_frames"
    with pytest.raises(VideoError, match=r"empty\.mp4': the file has no video stream") as e:
        load_video(tmp_path / "empty.mp4")
    assert e.value.kind == "unreadable"
    empty_dir = tmp_path / "noframes"
    empty_dir.mkdir()
    with pytest.raises(VideoError, match="the frame folder has no images") as e:
        probe(empty_dir)
    assert e.value.kind == "no_frames"
    with pytest.raises(VideoError, match="the video has no frames"):
        plan_sampling(VideoMeta("x.mp4", 0, 30.0, 8, 8))


def test_one_frame_is_paired_or_refused(tmp_path):
    path = _write(tmp_path, "one.mp4", 1, 4)
    clip = load_video(path)
    assert clip.plan.indices == (0, 0) and clip.plan.single_frame
    assert clip.frames.shape[0] == 2 and np.array_equal(clip.frames[0], clip.frames[1])
    assert clip.notes == ["one frame: duplicated into a frame pair"]
    with pytest.raises(VideoError, match="has 1 frame; at least 2 are needed") as e:
        load_video(path, VideoSettings(min_frames=2))
    assert e.value.kind == "too_few_frames"


def test_frames_of_differing_sizes(tmp_path):
    from PIL import Image

    d = tmp_path / "mixed"
    d.mkdir()
    Image.new("RGB", (32, 32)).save(d / "0.png")
    Image.new("RGB", (32, 32)).save(d / "1.png")
    Image.new("RGB", (40, 32)).save(d / "2.png")
    with pytest.raises(VideoError, match="frame '2.png' is 40x32 but the first frame is 32x32") as e:
        probe(d)
    assert e.value.kind == "size_mismatch"


def test_over_the_duration_cap(tmp_path):
    path = _write(tmp_path, "long.mp4", 48, 4, w=32, h=32)      # 12 s
    with pytest.raises(VideoError, match=r"lasts 12\.00 s, over the cap of 10 s") as e:
        load_video(path, VideoSettings(max_duration=10, on_long="error"))
    assert e.value.kind == "too_long"
    clip = load_video(path, VideoSettings(max_duration=10))
    assert clip.plan.over_cap and clip.plan.num_frames == 20
    assert clip.plan.indices[0] == 0 and clip.plan.indices[-1] == 47
    assert "over the 10 s cap" in clip.notes[0]


def test_truncated_stream(tmp_path):
    path = _write(tmp_path, "short.mp4", 6, 4, w=32, h=32)
    lying = VideoMeta(path, 100, 4.0, 32, 32)                   # header claims 100 frames
    with pytest.raises(VideoError, match="the stream ended after 6 decoded frames but frame 8 was sampled") as e:
        decode(lying, SamplePlan((0, 8), (0.0, 2.0)))
    assert e.value.kind == "truncated"


def test_stored_bytes_round_trip(tmp_path):
    from PIL import Image

    path = _write(tmp_path, "a.mp4", 12, 4)
    meta = probe(path)
    plan = plan_sampling(meta)
    data = stored_bytes(meta, plan)
    assert data == open(path, "rb").read()                    # a file is kept as it is
    again = load_stored(data, name="a.mp4")
    assert again.plan == plan and np.array_equal(again.frames, load_video(path).frames)
    d = tmp_path / "frames"
    d.mkdir()
    for k in range(7):
        Image.fromarray(_frames(7, 30, 20)[k]).save(d / f"{k}.png")
    meta = probe(d, VideoSettings(folder_fps=4.0))
    plan = plan_sampling(meta, VideoSettings(folder_fps=4.0))   # 1.75 s at 4 fps: ceil(2i) = 0, 2, 4 -> + 4
    assert plan.indices == (0, 2, 4, 4)
    data = stored_bytes(meta, plan)
    assert data.startswith(b"GLMVFRM1")
    # only the sampled frames travel, byte for byte
    assert len(data) < sum(os.path.getsize(f) for f in meta.frame_files)
    clip = load_stored(data, name="frames")
    assert clip.plan.indices == plan.indices and clip.plan.timestamps == plan.timestamps
    assert [_level_to_index(f) for f in clip.frames] == [0, 2, 4, 4]
    with pytest.raises(VideoError, match="<packed video>': cannot read the video"):
        load_stored(b"garbage bytes that are no video")
