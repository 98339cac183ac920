"""Video input: probing, frame sampling with timestamps, and decoding (PyAV or a frame folder).

A record names a video as a file (``clip.mp4``, any container FFmpeg reads) or a folder of
frame images. Three steps, split so that packing never decodes pixels:

1. ``probe(path)`` reads the container header (PyAV: ``stream.frames``, ``average_rate``,
   width/height; ~10 ms a synth clip on the loaded 2-core dev box, vs ~47 ms to decode it) or,
   for a folder, lists the frames and reads each image header.
   Containers without a frame count in the header (Matroska/WebM say 0) are counted by
   demuxing packets without decoding (~2 µs a packet).
2. ``plan_sampling(meta, settings)`` picks frame indices with the rule of transformers'
   ``Glm4vVideoProcessor.sample_frames`` (checked number by number in the tests):
   duration d = frames / fps; if d <= max_duration, n = max(floor(d·fps_target), 1) frames
   at ``ceil(i·fps / fps_target)``; otherwise ``int(max_duration·fps_target)`` frames spread
   evenly over the whole video (``linspace(0, d)``), so a 10-minute clip at the default cap
   of 300 s keeps 600 frames 1 s apart; duplicates are dropped and an odd count repeats the
   last frame, because the vision tower's Conv3d folds frames in pairs. The timestamp of a
   frame is its index / fps ("real" time in the source, not its rank among the samples), and
   the language model sees ``int(t)`` of the first frame of each pair.
   glmv additions, all off by default so the default equals transformers: ``max_frames``
   (an even cap, applied by taking evenly spaced frames of the plan -- a 16-frame cap on a
   60 s clip gives pairs 4 s apart, useful for small contexts), ``on_long="error"`` (refuse
   clips over the cap instead of spreading), ``min_frames=2`` (refuse one-frame clips, which
   are otherwise duplicated into a pair as transformers does).
3. ``decode(path, meta, plan)`` decodes only up to the last sampled frame and returns RGB
   uint8 ``(T, H, W, 3)`` with T even.

A folder of frames has no clock: its frames are taken to be ``folder_fps`` apart (default
2.0 = the default sampling rate, so every frame is kept and frame k has timestamp k/2).
Frames are ordered by natural sort (``f2.png`` before ``f10.png``).

Bad input raises :class:`VideoError` with the path and a ``kind`` the data layer counts:
``missing``, ``unreadable`` (not a video, or a decode error), ``no_frames``, ``too_few_frames``
(one frame with ``min_frames=2``), ``size_mismatch`` (frames of differing sizes; folders are
checked at probe time, files when decoded), ``too_long`` (``on_long="error"``) and
``truncated`` (the stream ends before a frame its header promised). A plan records what was
done silently so it can be counted: ``over_cap`` (spread over the cap), ``single_frame``
(duplicated), ``capped`` (``max_frames`` applied).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ON_LONG = ("sample", "error")


class VideoError(ValueError):
    """A video that cannot be used; ``kind`` names the failure for counting."""

    def __init__(self, path: str | os.PathLike, message: str, kind: str):
        self.path, self.kind = str(path), kind
        super().__init__(f"'{path}': {message}")


@dataclass(frozen=True)
class VideoSettings:
    """Sampling settings (defaults = transformers' ``Glm4vVideoProcessor``: 2 fps, 300 s cap)."""

    fps: float = 2.0
    max_duration: float = 300.0
    max_frames: int | None = None
    on_long: str = "sample"
    min_frames: int = 1
    folder_fps: float = 2.0

    def __post_init__(self) -> None:
        if not (self.fps > 0):
            raise ValueError(f"video fps must be > 0, got {self.fps}")
        if not (self.max_duration > 0):
            raise ValueError(f"video max_duration must be > 0, got {self.max_duration}")
        if self.max_frames is not None and (self.max_frames < 2 or self.max_frames % 2):
            raise ValueError(f"video max_frames must be an even number >= 2, got {self.max_frames}")
        if self.on_long not in ON_LONG:
            raise ValueError(f"video on_long must be one of {', '.join(ON_LONG)}, got {self.on_long!r}")
        if self.min_frames not in (1, 2):
            raise ValueError(f"video min_frames must be 1 or 2, got {self.min_frames}")
        if not (self.folder_fps > 0):
            raise ValueError(f"video folder_fps must be > 0, got {self.folder_fps}")


@dataclass(frozen=True)
class VideoMeta:
    """What the header says: frame count, frame rate, size; frame files for a folder."""

    path: str
    total_frames: int
    fps: float
    width: int
    height: int
    frame_files: tuple[str, ...] = ()
    data: bytes | None = field(default=None, repr=False, compare=False)  # in-memory file (packed data)

    @property
    def duration(self) -> float:
        return self.total_frames / self.fps

    @property
    def is_folder(self) -> bool:
        return bool(self.frame_files)


@dataclass(frozen=True)
class SamplePlan:
    """Sampled frame indices (even count) and their timestamps in seconds."""

    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    over_cap: bool = False
    single_frame: bool = False
    capped: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    @property
    def pair_timestamps(self) -> list[int]:
        """The integer second shown after each frame pair (transformers: ``int(t)`` of its first frame)."""
        return [int(t) for t in self.timestamps[::2]]


@dataclass
class VideoClip:
    """Decoded frames (RGB uint8, ``(T, H, W, 3)``, T even) with their plan and header."""

    frames: np.ndarray
    plan: SamplePlan
    meta: VideoMeta
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Sampling (pure)
# --------------------------------------------------------------------------------------------


def sample_indices(total_frames: int, fps: float, duration: float | None, *, target_fps: float = 2.0,
                   max_duration: float = 300.0) -> tuple[list[int], bool]:
    """Frame indices by transformers' GLM-4V rule (deduplicated, padded to even) and whether
    the clip was over ``max_duration`` (then frames are spread over all of it)."""
    if total_frames < 1:
        raise ValueError("a video needs at least one frame")
    max_idx = total_frames - 1
    # same expression as transformers, including its fallback when the duration is unknown
    duration = duration or round(max_idx / fps) + 1
    over = duration > max_duration
    if not over:
        n = max(int(math.floor(duration * target_fps)), 1)
        idx = [min(max_idx, int(math.ceil(i * fps / target_fps))) for i in range(n)]
    else:
        num = int(max_duration * target_fps)
        if num >= total_frames:
            idx = list(range(total_frames))
        else:
            idx = [min(max_idx, int(math.ceil(t * fps))) for t in np.linspace(0, duration, num, endpoint=True)]
    seen: set[int] = set()
    uniq = [i for i in idx if not (i in seen or seen.add(i))]
    if len(uniq) & 1:
        uniq.append(uniq[-1])
    return uniq, over


def cap_frames(indices: list[int], max_frames: int) -> list[int]:
    """Evenly spaced ``max_frames`` of ``indices`` (first and last kept), order preserved."""
    if len(indices) <= max_frames:
        return list(indices)
    picks = np.linspace(0, len(indices) - 1, max_frames).round().astype(int)
    return [indices[k] for k in picks]


def plan_sampling(meta: VideoMeta, settings: VideoSettings = VideoSettings()) -> SamplePlan:
    """The frames to decode and their timestamps; raises VideoError per ``settings``."""
    if meta.total_frames < 1:
        raise VideoError(meta.path, "the video has no frames", "no_frames")
    if meta.total_frames < settings.min_frames:
        raise VideoError(meta.path, f"the video has {meta.total_frames} frame; at least {settings.min_frames} "
                         "are needed (min_frames)", "too_few_frames")
    if settings.on_long == "error" and meta.duration > settings.max_duration:
        raise VideoError(meta.path, f"the video lasts {meta.duration:.2f} s, over the cap of "
                         f"{settings.max_duration:g} s (max_duration)", "too_long")
    idx, over = sample_indices(meta.total_frames, meta.fps, meta.duration, target_fps=settings.fps,
                               max_duration=settings.max_duration)
    capped = False
    if settings.max_frames is not None and len(idx) > settings.max_frames:
        # cap the distinct frames, then restore the even count
        distinct = list(dict.fromkeys(idx))
        idx = cap_frames(distinct, settings.max_frames)
        capped = True
    single = len(set(idx)) == 1
    return SamplePlan(tuple(idx), tuple(i / meta.fps for i in idx), over, single, capped)


# --------------------------------------------------------------------------------------------
# Probing and decoding
# --------------------------------------------------------------------------------------------


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _frame_files(folder: Path) -> list[str]:
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS) and not n.startswith(".")]
    return [str(folder / n) for n in sorted(names, key=_natural_key)]


def probe(path: str | os.PathLike, settings: VideoSettings = VideoSettings(), *, data: bytes | None = None) -> VideoMeta:
    """Header facts of a video file or frame folder, without decoding pixels (``data``: the
    file's bytes, already in memory; ``path`` then only names it in messages)."""
    p = Path(path)
    if data is None and not p.exists():
        raise VideoError(path, "video file or frame folder does not exist", "missing")
    if data is None and p.is_dir():
        return _probe_folder(p, settings)
    import av

    try:
        with av.open(io.BytesIO(data) if data is not None else str(p)) as container:
            if not container.streams.video:
                raise VideoError(path, "the file has no video stream", "unreadable")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or float(rate) <= 0:
                raise VideoError(path, "the video stream has no frame rate", "unreadable")
            total = int(stream.frames or 0)
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            if total <= 0:  # Matroska/WebM headers carry no count: count packets, no decoding
                total = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(path, f"cannot read the video: {e}", "unreadable") from None
    if total <= 0:
        raise VideoError(path, "the video has no frames", "no_frames")
    if width <= 0 or height <= 0:
        raise VideoError(path, f"the video stream has an empty size {width}x{height}", "unreadable")
    return VideoMeta(str(p), total, float(rate), width, height, data=data)


def _probe_folder(folder: Path, settings: VideoSettings) -> VideoMeta:
    from PIL import Image, UnidentifiedImageError

    files = _frame_files(folder)
    if not files:
        raise VideoError(folder, f"the frame folder has no images ({', '.join(FRAME_EXTENSIONS)})", "no_frames")
    size = None
    for f in files:
        try:
            with Image.open(f) as im:
                s = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise VideoError(folder, f"frame '{os.path.basename(f)}' is not a readable image: {e}",
                             "unreadable") from None
        if size is None:
            size = s
        elif s != size:
            raise VideoError(folder, f"frame '{os.path.basename(f)}' is {s[0]}x{s[1]} but the first frame is "
                             f"{size[0]}x{size[1]}; all frames of a video must have one size", "size_mismatch")
    assert size is not None
    return VideoMeta(str(folder), len(files), float(settings.folder_fps), size[0], size[1], tuple(files))


def decode(meta: VideoMeta, plan: SamplePlan) -> np.ndarray:
    """RGB uint8 frames ``(T, H, W, 3)`` at ``plan.indices`` (duplicates repeated)."""
    wanted = sorted(set(plan.indices))
    got: dict[int, np.ndarray] = {}
    if meta.is_folder:
        from PIL import Image

        for i in wanted:
            with Image.open(meta.frame_files[i]) as im:
                got[i] = np.asarray(im.convert("RGB"))
    else:
        got = _decode_file(meta, wanted)
    for i in wanted:
        a = got[i]
        if a.shape[:2] != (meta.height, meta.width):
            raise VideoError(meta.path, f"frame {i} is {a.shape[1]}x{a.shape[0]} but the video is "
                             f"{meta.width}x{meta.height}; all frames of a video must have one size", "size_mismatch")
    return np.stack([got[i] for i in plan.indices])


def _decode_file(meta: VideoMeta, wanted: list[int]) -> dict[int, np.ndarray]:
    import av

    need, last = set(wanted), wanted[-1]
    got: dict[int, np.ndarray] = {}
    count = 0
    try:
        with av.open(io.BytesIO(meta.data) if meta.data is not None else meta.path) as container:
            for n, frame in enumerate(container.decode(video=0)):
                count = n + 1
                if n in need:
                    got[n] = frame.to_ndarray(format="rgb24")
                if n >= last:
                    break
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(meta.path, f"cannot decode the video: {e}", "unreadable") from None
    if len(got) < len(need):
        missing = min(need - got.keys())
        raise VideoError(meta.path, f"the stream ended after {count} decoded frames but frame "
                         f"{missing} was sampled (the header declares {meta.total_frames})", "truncated")
    return got


def load_video(path: str | os.PathLike, settings: VideoSettings = VideoSettings()) -> VideoClip:
    """Probe, sample and decode: the frames a model sees, with their timestamps."""
    meta = probe(path, settings)
    plan = plan_sampling(meta, settings)
    frames = decode(meta, plan)
    notes = []
    if plan.over_cap:
        notes.append(f"{meta.duration:.1f} s is over the {settings.max_duration:g} s cap: "
                     f"{plan.num_frames} frames spread over the whole clip")
    if plan.single_frame:
        notes.append("one frame: duplicated into a frame pair")
    if plan.capped:
        notes.append(f"capped at max_frames={settings.max_frames}")
    return VideoClip(frames, plan, meta, notes)


# --------------------------------------------------------------------------------------------
# Storage form for packed datasets: the file's own bytes, or a bundle of a folder's frames
# --------------------------------------------------------------------------------------------

BUNDLE_MAGIC = b"GLMVFRM1"


def stored_bytes(meta: VideoMeta, plan: SamplePlan) -> bytes:
    """What a packed dataset keeps of a video, never re-encoded: a file's bytes as they are
    (the reader re-derives the same plan from them and the pack's settings), or for a frame
    folder a bundle of only the sampled frames' files plus their indices and timestamps
    (``GLMVFRM1``, a little-endian u32 header length, a JSON header, the files back to back)."""
    if meta.data is not None:
        return meta.data
    if not meta.is_folder:
        return Path(meta.path).read_bytes()
    distinct = sorted(set(plan.indices))
    blobs = [Path(meta.frame_files[i]).read_bytes() for i in distinct]
    header = json.dumps({"fps": meta.fps, "width": meta.width, "height": meta.height,
                         "total_frames": meta.total_frames, "indices": list(plan.indices),
                         "timestamps": list(plan.timestamps), "frames": distinct,
                         "sizes": [len(b) for b in blobs]}).encode()
    return BUNDLE_MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)


def load_stored(data: bytes, settings: VideoSettings = VideoSettings(), name: str = "<packed video>") -> VideoClip:
    """The frames and plan of :func:`stored_bytes` output (the pack's ``settings`` for a file)."""
    if not data.startswith(BUNDLE_MAGIC):
        meta = probe(name, settings, data=data)
        plan = plan_sampling(meta, settings)
        return VideoClip(decode(meta, plan), plan, meta)
    from PIL import Image

    (n,) = struct.unpack_from("<I", data, len(BUNDLE_MAGIC))
    start = len(BUNDLE_MAGIC) + 4
    h = json.loads(data[start:start + n])
    pos = start + n
    got = {}
    for idx, size in zip(h["frames"], h["sizes"]):
        with Image.open(io.BytesIO(data[pos:pos + size])) as im:
            got[idx] = np.asarray(im.convert("RGB"))
        pos += size
    for idx, a in got.items():
        if a.shape[:2] != (h["height"], h["width"]):
            raise VideoError(name, f"frame {idx} is {a.shape[1]}x{a.shape[0]} but the video is "
                             f"{h['width']}x{h['height']}", "size_mismatch")
    meta = VideoMeta(name, int(h["total_frames"]), float(h["fps"]), int(h["width"]), int(h["height"]))
    plan = SamplePlan(tuple(h["indices"]), tuple(h["timestamps"]))
    return VideoClip(np.stack([got[i] for i in plan.indices]), plan, meta)
