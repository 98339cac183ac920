"""Layout checks: every row has the columns its task needs and its media resolve.

Run before any generation (a row that cannot be asked fails the run up front, with dataset, split,
row and column named) and alone as ``glmv eval --check --tasks ...`` (no model): then every image
is also decoded and every video's header probed, so a corrupt file shows up before hours of
generation rather than in them.

Checks per row: each ``required`` column (the spec's, or ``required_by_config`` for one config such as
MMMU-Pro's vision setting) is present and not empty; each image cell holds bytes or names a file that
exists (in the table's folder, the dataset root, the zip, or the Hub cache); each video file exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmv_cli.errors import GlmvError
from glmv_cli.evaluation.data import EvalRow, image_cells, media_bytes, open_image, resolve_file, video_file
from glmv_cli.evaluation.spec import TaskSpec, is_missing

MAX_LISTED = 10


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class CheckReport:
    task: str
    rows: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    images: int = 0
    videos: int = 0
    unlabeled: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def error_message(self) -> str:
        shown = "\n  ".join(str(p) for p in self.problems[:MAX_LISTED])
        more = f"\n  ... and {len(self.problems) - MAX_LISTED} more" if len(self.problems) > MAX_LISTED else ""
        return f"task {self.task}: {len(self.problems)} row problem(s) (run glmv eval --check):\n  {shown}{more}"


def required_columns(spec: TaskSpec, er: EvalRow) -> tuple[str, ...]:
    by_config = spec.get("required_by_config") or {}
    return tuple(by_config.get(er.config, spec.required)) if er.config in by_config else spec.required


def _check_images(spec: TaskSpec, er: EvalRow, r: dict[str, Any], decode: bool, rep: CheckReport) -> None:
    for col, cell in image_cells(spec, r):
        rep.images += 1
        try:
            if decode:
                open_image(cell, er.media)
                continue
            data, rel = media_bytes(cell, er.media)
            if data is None and er.media.kind != "hub":
                resolve_file(str(rel), er.media)
        except FileNotFoundError as e:
            rep.problems.append(Problem(er.where(col), f"image '{e.args[0]}' does not exist"))
        except GlmvError as e:
            rep.problems.append(Problem(er.where(col), str(e)))


def _check_video(spec: TaskSpec, er: EvalRow, r: dict[str, Any], data_dir: str | None, decode: bool,
                 rep: CheckReport) -> None:
    col = spec.col("video")
    if not col or is_missing(r.get(col)):
        return
    rep.videos += 1
    try:
        p = video_file(spec, r, er.media, data_dir)
    except GlmvError as e:
        rep.problems.append(Problem(er.where(col), str(e)))
        return
    if not p.is_file():
        rep.problems.append(Problem(er.where(col), f"video '{p}' does not exist"))
        return
    if decode:
        from glmv_cli.data.video import VideoError, probe

        try:
            probe(p)
        except VideoError as e:
            rep.problems.append(Problem(er.where(col), str(e)))


def check_rows(spec: TaskSpec, rows: list[EvalRow], data_dir: str | None = None, *, decode: bool = False) -> CheckReport:
    """Every problem of every row (columns first, then media)."""
    rep = CheckReport(spec.task, rows=len(rows))
    absent: set[tuple[str | None, str]] = set()
    for er in rows:
        rep.splits[er.split] = rep.splits.get(er.split, 0) + 1
        r = er.row
        for c in required_columns(spec, er):
            if c not in r:
                if (er.config, c) not in absent:  # a column the whole table lacks: said once
                    absent.add((er.config, c))
                    cols = ", ".join(sorted(k for k in r if not k.startswith("_")))
                    rep.problems.append(Problem(er.where(c), f"column missing (the rows have: {cols})"))
            elif is_missing(r[c]):
                rep.problems.append(Problem(er.where(c), "empty"))
        _check_images(spec, er, r, decode, rep)
        _check_video(spec, er, r, data_dir, decode, rep)
    return rep
