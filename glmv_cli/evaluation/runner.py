"""The evaluation loop: rows -> prompts -> generations -> per-row scores, streamed to disk.

For each task, in row order and ``batch_size`` rows at a time: build the prompts (text, decoded
images, video files), ask the :class:`~glmv_cli.evaluation.adapter.Generator`, extract and score
each answer, and append the batch's sample lines to ``samples/<task>.jsonl`` in one write followed
by ``fsync``. So a kill loses at most the batch in flight, and a resumed run (``--resume auto``)
reads the lines already there -- matched by row key and a hash of the prompt text -- and generates
only the rest. A torn last line (a kill mid-write) is dropped and its batch redone.

Nothing is scored silently: a row whose media cannot be read, or whose gold the scorer cannot use
(an MVBench answer that is none of its candidates), gets score 0, keeps its line with the ``error``,
and is listed in ``results.json`` ``errors``; the run goes on. A failed generation is scored 0 and
counted (``failed_generations``). Aggregates are computed from the sample files at the end, so a
resumed run's results equal an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from glmv_cli.data.jsonl import append_rows
from glmv_cli.errors import GlmvError
from glmv_cli.evaluation.data import EvalRow, open_image, video_file
from glmv_cli.evaluation.prompts import build_prompt
from glmv_cli.evaluation.spec import TaskSpec

ROW_ERRORS = (GlmvError, ValueError, KeyError, TypeError, IndexError, ZeroDivisionError)


@dataclass
class TaskRun:
    spec: TaskSpec
    rows: list[EvalRow]
    path: Path                          # samples/<task>.jsonl
    reused: int = 0
    generated: int = 0
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)


def prompt_sha(text: str, n_images: int, n_videos: int) -> str:
    return hashlib.sha256(f"{text}\0{n_images}\0{n_videos}".encode("utf-8")).hexdigest()[:16]


def read_lines(path: Path) -> dict[str, dict[str, Any]]:
    """Finished sample lines by row key; a torn tail is cut off (the file is rewritten without it)."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    good: list[dict[str, Any]] = []
    for raw in data[:cut].splitlines():
        try:
            good.append(json.loads(raw))
        except json.JSONDecodeError:
            break
    if cut != len(data) or len(good) != len(data[:cut].splitlines()):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in good), encoding="utf-8")
        os.replace(tmp, path)
    return {x["key"]: x for x in good}


def jsonable_row(r: dict[str, Any]) -> dict[str, Any]:
    """The row's plain values for the sample file (media and other objects as ``<type>``)."""
    out: dict[str, Any] = {}
    for k, v in r.items():
        if k.startswith("_"):
            continue
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v if not isinstance(v, str) or len(v) < 2000 else f"<text of {len(v)} chars>"
        elif isinstance(v, (list, dict)):
            try:
                s = json.dumps(v, ensure_ascii=False)
                out[k] = v if len(s) < 4000 else f"<{type(v).__name__} of {len(s)} chars>"
            except (TypeError, ValueError):
                out[k] = f"<{type(v).__name__}>"
        else:
            out[k] = f"<{type(v).__name__}>"
    return out


def facts_of(spec: TaskSpec, er: EvalRow, r: dict[str, Any]) -> dict[str, Any]:
    from glmv_cli.evaluation.protocols import AGG_FACTS

    f: dict[str, Any] = {"split": er.split, "config": er.config}
    for role in AGG_FACTS[spec.aggregate]:
        col = spec.col(role, role)
        f[role] = r.get(col)
    for c in spec.breakdown:
        f[c] = r.get(c)
    return json.loads(json.dumps(f, default=str))


@dataclass
class Prepared:
    er: EvalRow
    text: str
    sha: str
    images: list = field(default_factory=list)
    videos: list = field(default_factory=list)
    error: str | None = None


def prepare(spec: TaskSpec, er: EvalRow, data_dir: str | None) -> Prepared:
    """Prompt text and decoded media; a media problem becomes the row's error."""
    parts = build_prompt(spec, er)
    sha = prompt_sha(parts.text, len(parts.images), len(parts.videos))
    p = Prepared(er, parts.text, sha)
    try:
        p.images = [open_image(cell, er.media) for _, cell in parts.images]
        for _ in parts.videos:
            f = video_file(spec, er.row, er.media, data_dir)
            if not f.is_file():
                raise GlmvError(f"video '{f}' does not exist")
            p.videos.append(str(f))
    except GlmvError as e:
        p.error = f"{er.where()}: {e}"
    return p


def score_line(spec: TaskSpec, p: Prepared, gen: Any, judge: Any) -> dict[str, Any]:
    from glmv_cli.evaluation.protocols import SCORERS, ScoreContext
    from glmv_cli.rewards import extract_answer

    r = dict(p.er.row)
    if p.images:
        r["_image_size"] = p.images[0].size
    text = gen.text if gen is not None else ""
    pred = extract_answer(text or "")
    line: dict[str, Any] = {"key": p.er.key, "index": p.er.index, "split": p.er.split, "config": p.er.config,
                            "prompt_sha": p.sha, "target": r.get(spec.col("answer")), "response": text,
                            "answer": pred, "finish_reason": gen.finish_reason if gen is not None else None,
                            "num_tokens": gen.num_tokens if gen is not None else 0,
                            "gen_error": gen.error if gen is not None else None, "error": p.error,
                            "judged": False, "score": 0.0, "no_answer": float(pred is None)}
    if p.error is None:
        ctx = ScoreContext(spec, r, pred, text, question=p.text, judge=judge)
        try:
            line["score"] = 0.0 if (pred is None and spec.scorer != "reward") else float(SCORERS[spec.scorer](ctx))
        except ROW_ERRORS as e:
            line["error"] = f"{p.er.where()}: cannot score: {type(e).__name__}: {e}"[:500]
        except Exception as e:  # noqa: BLE001 - the judge's JudgeError and the like: this row only
            line["error"] = f"{p.er.where()}: cannot score: {type(e).__name__}: {e}"[:500]
        line["judged"] = ctx.judged
        if spec.scorer == "reward":
            line["mean_reward"] = line["score"]
            line["score"] = float(line["score"] >= 1.0)
    line["facts"] = facts_of(spec, p.er, r)
    line["doc"] = jsonable_row(r)
    return line


def run_task(tr: TaskRun, get_generator: Callable[[], Any], batch_size: int, data_dir: str | None,
             judge: Any = None) -> None:
    """Generates and scores the rows of one task that have no finished line yet."""
    from glmv_cli.evaluation.adapter import GenRequest

    done = read_lines(tr.path)
    todo: list[Prepared] = []

    def flush() -> None:
        asked = [p for p in todo if p.error is None]
        gens = get_generator().generate([GenRequest(id=f"{tr.spec.task}:{p.er.key}", text=p.text, images=p.images,
                                                    videos=p.videos, task=tr.spec.task,
                                                    video_max_frames=tr.spec.get("max_frames"))
                                         for p in asked]) if asked else []
        by = dict(zip((id(p) for p in asked), gens))
        lines = [score_line(tr.spec, p, by.get(id(p)), judge) for p in todo]
        append_rows(tr.path, lines, default=str)
        tr.lines.update({x["key"]: x for x in lines})
        tr.generated += len(asked)
        todo.clear()

    for er in tr.rows:
        old = done.get(er.key)
        parts = build_prompt(tr.spec, er)
        if old is not None and old.get("prompt_sha") == prompt_sha(parts.text, len(parts.images), len(parts.videos)):
            tr.lines[er.key] = old
            tr.reused += 1
            continue
        todo.append(prepare(tr.spec, er, data_dir))
        if len(todo) >= batch_size:
            flush()
    if todo:
        flush()


def task_results(tr: TaskRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, errors) of one finished task from its sample lines, in row order."""
    from glmv_cli.evaluation.protocols import aggregate

    lines = [tr.lines[er.key] for er in tr.rows if er.key in tr.lines]
    items = [{"score": x["score"], "facts": x.get("facts", {})} for x in lines]
    m = aggregate(tr.spec, items)
    m["n"] = len(lines)
    m["no_answer"] = sum(x["no_answer"] for x in lines) / len(lines) if lines else 0.0
    if tr.spec.scorer == "reward":
        m["mean_reward"] = sum(x.get("mean_reward", 0.0) for x in lines) / len(lines) if lines else 0.0
    fin = [x.get("finish_reason") for x in lines]
    m["failed_generations"] = fin.count("error")
    m["truncated"] = fin.count("length")
    m["forced"] = fin.count("forced")
    m["judged"] = sum(1 for x in lines if x.get("judged"))
    m["generated_this_run"], m["reused"] = tr.generated, tr.reused
    errors = [{"task": tr.spec.task, "row": x["key"], "error": x["error"]} for x in lines if x.get("error")]
    m["errors"] = len(errors)
    return m, errors
