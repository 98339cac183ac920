"""Procedural multi-domain dataset with exactly known answers (``glmv synth``).

Six domains mirror the paper's joint RL mixture: ``stem`` (arithmetic/algebra in the image),
``counting``, ``ocr``, ``chart``, ``grounding`` and ``gui``. Each domain module exposes the
same pure functions over a JSON *scene* (everything needed to draw the image and answer it):

``make_scene(rng, level, size)``, ``render(scene) -> PIL.Image``, ``solve(scene) -> answer``,
``question``, ``reasoning`` (the step-by-step derivation written into SFT targets), ``caption``
(the pretraining description) and ``features`` (measured difficulty, e.g. objects, target area).

:mod:`glmv_cli.synth.build` turns them into the four splits (pretrain, sft, rl, eval).
"""

from __future__ import annotations

from types import ModuleType

from glmv_cli.synth import chart, counting, grounding, gui, ocr, stem

DOMAINS: dict[str, ModuleType] = {m.NAME: m for m in (stem, counting, ocr, chart, grounding, gui)}
LEVELS = (1, 2, 3, 4, 5)


def domain(name: str) -> ModuleType:
    return DOMAINS[name]


__all__ = ["DOMAINS", "LEVELS", "domain"]
