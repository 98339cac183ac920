"""From scenes to the four splits: plan, generate (optionally in worker processes), dedupe, write.

Plan. ``n`` scenes of a pool are spread evenly over the (domain, level) cells; the first
``n mod cells`` cells get one extra. Records are emitted round-robin over cells (index 0 of every
cell, then index 1, ...), so any prefix of a split is already a balanced mix.

Pools and splits. The *train* pool feeds three splits: every train scene gets a ``pretrain``
caption record; within each cell the scenes alternate between ``sft`` (question + derivation)
and ``rl`` (prompt + reference) by ``--sft-fraction`` (scene i goes to sft when
ceil((i+1)f) > ceil(if), so a cell's first scene is an sft one), so SFT and RL see distinct questions while pretraining has described
every train image. The *eval* pool is generated from its own RNG streams and then made disjoint:
a scene whose canonical JSON or whose pixels equal any earlier scene (train first, then eval) is
redrawn with the next ``attempt`` number. Redraws are decided in one fixed order in the parent
process, so the result does not depend on ``--workers``.

Video domains (opt-in, see :data:`glmv_cli.synth.OPT_IN`) write ``videos/{pool}/<id>.mp4``
instead of a PNG; their records carry ``"videos": [path]`` and a ``<video>`` placeholder, and the
pixel hash used for dedupe covers every frame. A 112 px clip of 3-8 s takes ~50 ms to draw and
encode (H.264, one thread, byte-identical across runs).

Cost (2-core dev VM, 112 px): a scene takes ~0.3-0.6 ms to build and draw, the PNG encode
~0.4 ms, creating its file ~1 ms (the VM's disk), the JSON lines a few µs. Workers build, encode
and write the PNGs; the parent only dedupes and writes JSONL. Spawned workers start in ~0.3 s
each, so they only pay off beyond a few thousand scenes and on idle cores.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any, Iterator, Sequence

from glmv_cli.errors import GlmvError
from glmv_cli.synth import ALL_DOMAINS, is_video
from glmv_cli.synth.common import png_bytes, response, rng_for, scene_hash

SPLITS = ("pretrain", "sft", "rl", "eval")
MAX_ATTEMPTS = 200
CHUNK = 128


@dataclass
class Sample:
    pool: str
    domain: str
    level: int
    index: int
    attempt: int
    scene: dict[str, Any]
    png: bytes
    scene_sha: str
    pixel_sha: str
    question: str
    answer: str
    reasoning: str
    caption: str

    @property
    def scene_id(self) -> str:
        return f"{self.domain}-L{self.level}-{self.index:06d}"

    @property
    def image(self) -> str:
        """The media file: a PNG, or an MP4 for a video domain."""
        if is_video(self.domain):
            return f"videos/{self.pool}/{self.scene_id}.mp4"
        return f"images/{self.pool}/{self.scene_id}.png"


def make_sample(seed: int, pool: str, domain: str, level: int, index: int, attempt: int,
                size: tuple[int, int]) -> Sample:
    """One scene, its image and its texts; a pure function of the arguments."""
    mod = ALL_DOMAINS[domain]
    scene = mod.make_scene(rng_for(seed, pool, domain, level, index, attempt), level, size)
    if is_video(domain):
        frames = mod.render_frames(scene)
        h = hashlib.sha256(f"{len(frames)}x{frames[0].width}x{frames[0].height}".encode())
        for f in frames:
            h.update(f.tobytes())
        pixel, data = h.hexdigest(), mod.encode_mp4(frames, scene["fps"])
    else:
        img = mod.render(scene)
        pixel = hashlib.sha256(f"{img.width}x{img.height}".encode() + img.tobytes()).hexdigest()
        data = png_bytes(img)
    return Sample(pool, domain, level, index, attempt, scene, data, scene_hash(scene), pixel,
                  mod.question(scene), mod.solve(scene), mod.reasoning(scene), mod.caption(scene))


def plan(domains: Sequence[str], levels: Sequence[int], n: int) -> list[tuple[str, int, int]]:
    """``(domain, level, index)`` for ``n`` scenes, even over cells, emitted round-robin."""
    cells = [(d, lv) for d in domains for lv in levels]
    if not cells or n <= 0:
        return []
    base, rem = divmod(n, len(cells))
    counts = [base + (1 if c < rem else 0) for c in range(len(cells))]
    out = []
    for i in range(max(counts)):
        for c, (d, lv) in enumerate(cells):
            if i < counts[c]:
                out.append((d, lv, i))
    return out


def goes_to_sft(index: int, fraction: float) -> bool:
    """Even interleaving of a cell's train scenes: the sft share of the first k is ceil(k * fraction)."""
    return ceil((index + 1) * fraction - 1e-9) > ceil(index * fraction - 1e-9)


def _work(job: tuple[str, int, tuple[int, int], str, list[tuple[str, int, int]]]) -> list[Sample]:
    """Builds a chunk of scenes and writes their PNGs (file creation is ~1 ms each on a VM disk,
    so it is spread over the workers); the PNG bytes do not travel back to the parent."""
    out, seed, size, pool, tasks = job
    done = []
    for d, lv, i in tasks:
        s = make_sample(seed, pool, d, lv, i, 0, size)
        (Path(out) / s.image).write_bytes(s.png)
        s.png = b""
        done.append(s)
    return done


def _generate(out: Path, seed: int, size: tuple[int, int], pool: str, tasks: list[tuple[str, int, int]],
              workers: int) -> Iterator[Sample]:
    jobs = [(str(out), seed, size, pool, tasks[k:k + CHUNK]) for k in range(0, len(tasks), CHUNK)]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield from _work(job)
        return
    # spawn: no fork of a parent that may hold torch threads or open files; results come back in
    # submission order (imap), so the worker count cannot reorder anything.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(jobs))) as p:
        for chunk in p.imap(_work, jobs):
            yield from chunk


def _records(s: Sample, split: str, style: str = "glm41v") -> dict[str, Any]:
    media, tag = ("videos", "<video>") if is_video(s.domain) else ("images", "<image>")
    base = {"id": f"{split}-{s.scene_id}", media: [s.image], "domain": s.domain}
    if split == "pretrain":
        return {"id": base["id"], "text": f"{tag}\n{s.caption}", media: base[media],
                "domain": s.domain, "difficulty": s.level, "scene_id": s.scene_id}
    msgs = [{"role": "user", "content": f"{tag}\n{s.question}"}]
    if split == "sft":
        msgs.append({"role": "assistant", "content": response(s.reasoning, s.answer, style)})
    return {**base, "messages": msgs, "answer": s.answer, "difficulty": s.level,
            "scene_id": s.scene_id, "scene": s.scene}


def _dump(rec: dict[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def build(out: Path, *, domains: Sequence[str], levels: Sequence[int], n_train: int, n_eval: int,
          seed: int, size: tuple[int, int], workers: int = 1, sft_fraction: float = 0.5,
          style: str = "glm41v") -> dict[str, Any]:
    """Writes images and the four JSONL splits under ``out``; returns the manifest metrics.
    ``style``: the answer form of the sft split (glm41v: <answer> tags; glm45v: none)."""
    seen: set[str] = set()
    redrawn = 0
    counts = {sp: {d: 0 for d in domains} for sp in SPLITS}
    by_level = {sp: {str(lv): 0 for lv in levels} for sp in SPLITS}
    files = {sp: open(out / f"{sp}.jsonl", "w", encoding="utf-8", newline="\n") for sp in SPLITS}
    try:
        for pool, n in (("train", n_train), ("eval", n_eval)):
            (out / "images" / pool).mkdir(parents=True, exist_ok=True)
            if any(is_video(d) for d in domains):
                (out / "videos" / pool).mkdir(parents=True, exist_ok=True)
            for s in _generate(out, seed, size, pool, plan(domains, levels, n), workers):
                while s.scene_sha in seen or s.pixel_sha in seen:
                    if s.attempt + 1 >= MAX_ATTEMPTS:
                        raise GlmvError(
                            f"--n-{pool}: domain '{s.domain}' level {s.level} cannot produce "
                            f"{s.index + 1} distinct scenes at --image-size {size[0]}x{size[1]} "
                            f"(every redraw repeated an earlier scene); lower the count or raise the size")
                    s = make_sample(seed, pool, s.domain, s.level, s.index, s.attempt + 1, size)
                    (out / s.image).write_bytes(s.png)  # replaces the duplicate a worker wrote
                    redrawn += 1
                seen.add(s.scene_sha)
                seen.add(s.pixel_sha)
                if pool == "train":
                    splits = ["pretrain", "sft" if goes_to_sft(s.index, sft_fraction) else "rl"]
                else:
                    splits = ["eval"]
                for sp in splits:
                    files[sp].write(_dump(_records(s, sp, style)))
                    counts[sp][s.domain] += 1
                    by_level[sp][str(s.level)] += 1
    finally:
        for f in files.values():
            f.close()
    metrics = {
        "records": {sp: sum(counts[sp].values()) for sp in SPLITS},
        "records_total": sum(sum(c.values()) for c in counts.values()),
        "images": {"train": n_train, "eval": n_eval},
        "per_domain": counts,
        "per_level": by_level,
        "redrawn_duplicates": redrawn,
        "image_size": list(size),
    }
    if any(is_video(d) for d in domains):  # only then: default outputs stay byte-identical
        metrics["videos"] = {pool: sum(counts[sp][d] for sp in sps for d in domains if is_video(d))
                             for pool, sps in (("train", ("pretrain",)), ("eval", ("eval",)))}
    return metrics


def read_split(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
