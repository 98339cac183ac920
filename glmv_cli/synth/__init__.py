"""Procedural multi-domain dataset with exactly known answers (``glmv synth``).

Six image domains mirror the paper's joint RL mixture: ``stem`` (arithmetic/algebra in the image),
``counting``, ``ocr``, ``chart``, ``grounding`` and ``gui``. Each domain module exposes the
same pure functions over a JSON *scene* (everything needed to draw the image and answer it):

``make_scene(rng, level, size)``, ``render(scene) -> PIL.Image``, ``solve(scene) -> answer``,
``question``, ``reasoning`` (the step-by-step derivation written into SFT targets), ``caption``
(the pretraining description) and ``features`` (measured difficulty, e.g. objects, target area).

Opt-in domains (``OPT_IN``, never part of the default mix, so default outputs are unchanged):
``video`` ("at which second does the square turn red?"), whose module also has
``render_frames(scene)`` and ``video_bytes(scene)`` (an MP4) and ``KIND = "video"``.

:mod:`glmv_cli.synth.build` turns them into the four splits (pretrain, sft, rl, eval).
"""

from __future__ import annotations

from types import ModuleType

from glmv_cli.synth import chart, counting, grounding, gui, ocr, stem, video

DOMAINS: dict[str, ModuleType] = {m.NAME: m for m in (stem, counting, ocr, chart, grounding, gui)}
OPT_IN: dict[str, ModuleType] = {m.NAME: m for m in (video,)}
ALL_DOMAINS: dict[str, ModuleType] = {**DOMAINS, **OPT_IN}
LEVELS = (1, 2, 3, 4, 5)


def domain(name: str) -> ModuleType:
    return ALL_DOMAINS[name]


def is_video(name: str) -> bool:
    return getattr(ALL_DOMAINS[name], "KIND", "image") == "video"


__all__ = ["ALL_DOMAINS", "DOMAINS", "LEVELS", "OPT_IN", "domain", "is_video"]
