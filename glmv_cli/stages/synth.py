"""``glmv synth``: a procedural multi-domain dataset with exactly known answers.

Parse -> plan the train and eval scene pools -> generate scenes (``--workers`` processes) ->
write ``images/{train,eval}/*.png`` and ``{pretrain,sft,rl,eval}.jsonl`` -> manifest with
per-split, per-domain and per-level counts. Byte-identical output for a seed, whatever the
worker count: every scene has its own RNG derived from (seed, pool, domain, level, index).
The domains and their levels are documented in ``glmv_cli/synth/<domain>.py``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from glmv_cli.artifacts import ArtifactWriter, Manifest
from glmv_cli.errors import GlmvError
from glmv_cli.names import STYLES
from glmv_cli.options import opt

ALL_DOMAINS = ("stem", "counting", "ocr", "chart", "grounding", "gui")
# Opt-in: never in the default mix, so default outputs stay byte-identical (glmv_cli.synth.OPT_IN).
OPT_IN_DOMAINS = ("video",)
MIN_SIDE, MAX_SIDE = 64, 1024


def parse_domains(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    names = ["stem" if n == "math" else n for n in names]
    if not names:
        raise GlmvError(f"--domains must list at least one of: {', '.join(ALL_DOMAINS)}")
    for n in names:
        if n not in ALL_DOMAINS and n not in OPT_IN_DOMAINS:
            raise GlmvError(f"--domains: unknown domain '{n}'; choose from {', '.join(ALL_DOMAINS)} "
                            f"(opt-in: {', '.join(OPT_IN_DOMAINS)})")
    if len(set(names)) != len(names):
        raise GlmvError(f"--domains lists a domain twice: '{text}'")
    return names


def parse_levels(text: str) -> list[int]:
    """``1-5``, ``2``, ``1,3,5`` or ``1-2,4`` -> sorted distinct levels in 1..5."""
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*([1-5])\s*(?:-\s*([1-5])\s*)?", part)
        if not m:
            raise GlmvError(f"--levels must be a range like 1-5 or a list like 1,3,5 of levels 1..5, got '{text}'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise GlmvError(f"--levels range '{part.strip()}' is empty (high end below low end)")
        out.update(range(lo, hi + 1))
    return sorted(out)


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m:
        raise GlmvError(f"--image-size must be N or WxH (pixels), got '{text}'")
    w = int(m.group(1))
    h = int(m.group(2) or m.group(1))
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise GlmvError(f"--image-size sides must be in {MIN_SIDE}..{MAX_SIDE} pixels, got {w}x{h}")
    return w, h


@dataclass
class SynthOptions:
    out: Path = opt(help="Output artifact directory.")
    domains: str = opt(",".join(ALL_DOMAINS), f"Comma-separated domains from: {', '.join(ALL_DOMAINS)}; opt-in: "
                                              f"{', '.join(OPT_IN_DOMAINS)} (MP4 clips; the answer depends on time).")
    n_train: int = opt(3000, "Train scenes (each: one pretrain record + one sft or rl record), spread evenly over "
                             "domains x levels.", min=0)
    n_eval: int = opt(300, "Held-out eval scenes, spread evenly over domains x levels.", min=0)
    levels: str = opt("1-5", "Difficulty levels: a range 1-5, a list 1,3,5, or both 1-2,4.")
    seed: int = opt(0, "Seed; the same seed gives byte-identical JSONL and PNGs.", min=0)
    image_size: str = opt("112", "Image size N or WxH in pixels (64..1024).")
    workers: int = opt(1, "Worker processes (does not change the output).", min=1)
    sft_fraction: float = opt(0.5, "Share of train scenes that become sft records; the rest become rl records.",
                              min=0, max=1)
    style: str = opt("glm41v", "Answer form of the sft records: glm41v (GLM-4.1V-Thinking, the answer in <answer> "
                               "tags) or glm45v (GLM-4.5V / 4.6V, the answer after </think> without tags).",
                     choices=STYLES)
    overwrite: bool = opt(False, "Replace an existing --out.")
    parsed: dict = field(default_factory=dict, repr=False, init=False)

    def check(self) -> None:
        if self.n_train + self.n_eval == 0:
            raise GlmvError("--n-train and --n-eval are both 0: nothing to generate")
        self.parsed = {"domains": parse_domains(self.domains), "levels": parse_levels(self.levels),
                       "size": parse_size(self.image_size)}

    def validate(self) -> "SynthOptions":
        from glmv_cli import options

        return options.validate(self)

    def resolved(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("parsed", "overwrite")}
        d.update(domains=self.parsed["domains"], levels=self.parsed["levels"], image_size=list(self.parsed["size"]))
        # --workers never changes the output, so it is not an option of the artifact's content.
        d.pop("workers")
        return d


def synth(opts: SynthOptions) -> Manifest:
    """Generates the dataset artifact at ``opts.out`` and returns its manifest."""
    from glmv_cli.synth.build import build

    opts.validate()
    p = opts.parsed
    t0 = time.perf_counter()
    art = ArtifactWriter(opts.out, "synth", options=opts.resolved(), overwrite=opts.overwrite).open()
    try:
        metrics = build(art.path, domains=p["domains"], levels=p["levels"], n_train=opts.n_train,
                        n_eval=opts.n_eval, seed=opts.seed, size=p["size"], workers=opts.workers,
                        sft_fraction=opts.sft_fraction, style=opts.style)
    except BaseException:
        art.abort()
        raise
    secs = time.perf_counter() - t0
    art.metrics.update(metrics)
    art.metrics["seconds"] = round(secs, 3)
    art.metrics["records_per_s"] = round(metrics["records_total"] / max(secs, 1e-9), 1)
    art.metrics["workers"] = opts.workers
    art.extra["splits"] = {sp: f"{sp}.jsonl" for sp in ("pretrain", "sft", "rl", "eval")}
    return art.commit()


HELP = f"""Generate a small multi-domain image dataset with exactly known answers.

Writes DIR/images/{{train,eval}}/*.png and four JSONL splits in the glmv record schema
(image paths relative to DIR): pretrain.jsonl (captions: every fact in the image),
sft.jsonl (question + step-by-step derivation: GLM-4.1V <think>/<answer>/box format, or with
--style glm45v GLM-4.5V's <think>/box without <answer> tags),
rl.jsonl (prompt + reference answer + domain + difficulty) and eval.jsonl (held-out scenes:
no scene or image is shared with the other splits). Records of sft/rl/eval carry "scene",
from which the answer can be recomputed. Output is byte-identical for a seed, for any --workers.

Domains, each with difficulty levels 1-5:

stem: 1 a+b single digits; 2 two-digit +/-; 3 a+b-c or two-digit x one-digit;
4 linear equation ax+b=c; 5 fractions with unlike denominators (more solution steps).

counting: 1 1-3 shapes "how many shapes"; 2 up to 5, count one kind; 3 up to 8, two colours;
4 up to 10, count colour+kind; 5 up to 14 small shapes (more objects, smaller).

ocr: 1 three capitals at 22 px; 2 4-5 capitals/digits; 3 6-7 mixed case; 4 7-9 chars at
11 px with noise; 5 two strings, read the named colour (longer, smaller text).

chart: 1 2-3 bars, read a value; 2 3-4 bars, largest category; 3 4-5 bars, max - min;
4 line chart over 5-6 years, only the end years labelled; 5 6-7 items, no printed values,
read gridlines, difference (more items, less printed).

grounding: box [x1, y1, x2, y2] in 0-1000 of 1 the only object; 2 one of two shapes;
3 colour+shape among 3-4; 4 among 5-6; 5 among 7-9 small objects (target area shrinks 16x).

gui: JSON action {{"action": "click"|"type", "box_2d": [[...]]}} on a screen of 1 one button;
2 2-3 buttons; 3 3-4 widgets with a text field; 4 title bar + 5 widgets; 5 6-7 widgets
(smaller targets, more widgets).

Images default to 112x112 so the tiny model can learn on a CPU; --image-size 64..1024
(gui levels 4-5 need >= 88 px).
"""


def report(m: Manifest) -> None:
    r = m.metrics["records"]
    print(f"wrote {m.path}: " + ", ".join(f"{k} {v}" for k, v in r.items())
          + f" records in {m.metrics['seconds']:.1f} s ({m.metrics['records_per_s']:.0f} records/s)")


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "synth", synth, SynthOptions, doc=HELP, report=report)
