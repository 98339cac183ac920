"""Video: "at which second does the square turn red?" -- an answer only time can give.

A clip of ``seconds`` seconds at 4 frames/s shows a square in a neutral colour that turns red
at an integer second ``s`` (1 <= s < seconds) and stays red. The model samples 2 frames/s, so
frame pair k holds the frames at k s and k+0.5 s and is followed by the timestamp text ``k``;
the first all-red pair is pair ``s``, and the answer is the number printed after it. No single
frame answers the question: the model has to compare frames and read the timestamp text.

Levels (sizes for 112 px, scaled with the frame):

1. 3 s, one 40-56 px square, blue -> red (answers 1-2).
2. 4 s, one 28-40 px square, blue or green -> red.
3. 5 s, a 20-32 px square and a distractor circle that turns orange at another second.
4. 6 s, an 18-28 px square that moves 2 px a frame (bouncing off the edges); a distractor.
5. 8 s, a 14-22 px moving square, two distractors (one turns a dark red-brown, not red).

``features``: ``seconds`` and ``object_px`` (square side) grow harder with the level; the clip
is encoded as H.264 (libx264, CRF 18, one thread: byte-identical across runs, ~50 ms a clip).
"""

from __future__ import annotations

import io
import random
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from glmv_cli.synth.common import ANSWER_INSTRUCTION, TINTS, box_str, layout_attempts, norm_box, place_boxes

NAME = "video"
KIND = "video"
SOURCE_FPS = 4
RED = (220, 40, 40)
NEUTRALS = {"blue": (40, 80, 220), "green": (40, 170, 70), "gray": (140, 140, 140), "purple": (130, 60, 170)}
DISTRACTOR_AFTER = {"orange": (240, 150, 30), "brown": (120, 60, 40)}
# level -> (seconds, min side, max side, distractors, moving)
LEVELS = {1: (3, 40, 56, 0, False), 2: (4, 28, 40, 0, False), 3: (5, 20, 32, 1, False),
          4: (6, 18, 28, 1, True), 5: (8, 14, 22, 2, True)}


def make_scene(rng: random.Random, level: int, size: tuple[int, int]) -> dict[str, Any]:
    w, h = size
    seconds, smin, smax, n_dis, moving = LEVELS[level]
    f = min(w, h) / 112
    side = max(6, round(rng.randint(smin, smax) * f))
    sides = [side] + [max(6, round(rng.randint(smin, smax) * f)) for _ in range(n_dis)]
    for _ in layout_attempts(NAME, level, size):
        boxes = place_boxes(rng, [(s, s) for s in sides], [2, 2, w - 2, h - 2], gap=4)
        if boxes is not None:
            break
    turn = rng.randint(1, seconds - 1)
    before = rng.choice(["blue"] if level == 1 else list(NEUTRALS))
    distractors = []
    for k in range(n_dis):
        after = "orange" if k == 0 else "brown"
        distractors.append({"box": boxes[1 + k], "before": rng.choice(list(NEUTRALS)), "after": after,
                            "turn": rng.choice([t for t in range(1, seconds) if t != turn])})
    velocity = [rng.choice([-2, 2]), rng.choice([-2, 2])] if moving else [0, 0]
    bg = TINTS[0] if level < 5 else rng.choice(TINTS[1:])
    return {"domain": NAME, "level": level, "size": [w, h], "bg": list(bg), "seconds": seconds,
            "fps": SOURCE_FPS, "square": {"box": boxes[0], "before": before, "turn": turn, "velocity": velocity},
            "distractors": distractors}


def _bounce(box: Sequence[int], velocity: Sequence[int], frame: int, size: Sequence[int]) -> list[int]:
    """The box after ``frame`` steps, reflecting off the frame edges (a triangle wave)."""
    out = list(box)
    for axis, (lo_i, hi_i) in enumerate(((0, 2), (1, 3))):
        v = velocity[axis]
        if v == 0:
            continue
        span = size[axis] - (box[hi_i] - box[lo_i]) - 4
        if span <= 0:
            continue
        pos = box[lo_i] - 2 + v * frame
        period = 2 * span
        pos %= period
        if pos > span:
            pos = period - pos
        out[lo_i], out[hi_i] = 2 + pos, 2 + pos + (box[hi_i] - box[lo_i])
    return out


def render_frames(scene: dict[str, Any]) -> list[Image.Image]:
    """All ``seconds * fps`` frames of the clip."""
    w, h = scene["size"]
    fps = scene["fps"]
    sq = scene["square"]
    frames = []
    for k in range(scene["seconds"] * fps):
        t = k / fps
        img = Image.new("RGB", (w, h), tuple(scene["bg"]))
        d = ImageDraw.Draw(img)
        for dis in scene["distractors"]:
            c = DISTRACTOR_AFTER[dis["after"]] if t >= dis["turn"] else NEUTRALS[dis["before"]]
            d.ellipse(dis["box"], fill=c)
        box = _bounce(sq["box"], sq["velocity"], k, (w, h))
        d.rectangle(box, fill=RED if t >= sq["turn"] else NEUTRALS[sq["before"]])
        frames.append(img)
    return frames


def render(scene: dict[str, Any]) -> Image.Image:
    """The first frame (a thumbnail; the clip itself comes from :func:`render_frames`)."""
    return render_frames(scene)[0]


def encode_mp4(frames: Sequence[Image.Image | np.ndarray], fps: int) -> bytes:
    """H.264 MP4 bytes of RGB frames (even sides; deterministic: one encoder thread)."""
    import av

    arrays = [np.asarray(f.convert("RGB") if isinstance(f, Image.Image) else f, dtype=np.uint8) for f in frames]
    h, w = arrays[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        s.codec_context.thread_count = 1
        for a in arrays:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return buf.getvalue()


def video_bytes(scene: dict[str, Any]) -> bytes:
    return encode_mp4(render_frames(scene), scene["fps"])


def solve(scene: dict[str, Any]) -> str:
    return str(scene["square"]["turn"])


def question(scene: dict[str, Any]) -> str:
    return ("The number after each pair of frames is its time in seconds. At which second does the square "
            f"turn red? {ANSWER_INSTRUCTION}")


def reasoning(scene: dict[str, Any]) -> str:
    sq = scene["square"]
    s = sq["turn"]
    parts = [f"The clip lasts {scene['seconds']} seconds and shows a square that starts {sq['before']}."]
    if scene["distractors"]:
        parts.append("Other shapes change colour too, but only the square matters.")
    parts.append(f"Going through the frames by their timestamps: at {s - 1} s the square is still "
                 f"{sq['before']}, and at {s} s it is red for the first time.")
    parts.append(f"So the square turns red at second {s}.")
    return " ".join(parts)


def caption(scene: dict[str, Any]) -> str:
    w, h = scene["size"]
    sq = scene["square"]
    moving = " moving" if any(sq["velocity"]) else ""
    text = (f"A {scene['seconds']}-second {w}x{h} video of a{moving} {sq['before']} square, first at "
            f"{box_str(norm_box(sq['box'], (w, h)))}, that turns red at second {sq['turn']}.")
    for dis in scene["distractors"]:
        text += f" A {dis['before']} circle turns {dis['after']} at second {dis['turn']}."
    return text


def features(scene: dict[str, Any]) -> dict[str, float]:
    return {"seconds": float(scene["seconds"]), "object_px": float(scene["square"]["box"][2] - scene["square"]["box"][0]),
            "distractors": float(len(scene["distractors"]))}


__all__ = ["NAME", "KIND", "make_scene", "render", "render_frames", "encode_mp4", "video_bytes", "solve", "question",
           "reasoning", "caption", "features"]
