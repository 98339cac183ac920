"""The data side of glmv's lm-eval tasks: loading, prompts, images and per-row scoring.

Every task YAML under ``glmv_cli/evaluation/tasks/`` includes one template whose hooks point
here (through the tiny ``tasks/utils.py``). A YAML's ``metadata.glmv`` block is the spec::

    glmv:
      benchmark: mmstar                 # registry key (published scores, category)
      hub: {path: Lin-Chen/MMStar, name: null, split: val}
      prompt: mcq                       # mcq | open | yesno | grounding | chat
      scorer: mcq                       # a rule of glmv_cli.evaluation.scoring
      columns: {id: index, question: question, images: [image], answer: answer}
      answer_kind: letter               # mcq gold: letter | index | text
      circular: true                    # optional: ask once per rotation of the options (MMBench)
      aggregate: circular               # optional: the benchmark's headline 'score' (circular | cvbench)

Loading (``load_dataset``, the YAML's ``custom_dataset``). With ``--data-dir DIR`` the rows come
from local files only: the first of ``DIR/<benchmark>/<split>.{jsonl,json,parquet}`` and
``DIR/<split>.{jsonl,json,parquet}`` (so a ``glmv synth`` artifact, which holds ``eval.jsonl``, is
its own data dir). Image/video cells may be paths relative to the file. Without ``--data-dir`` the
split is read through ``datasets.load_dataset`` (the Hub or its local cache); offline, a missing
dataset is a GlmvError that says both ways to provide it.

Rows are kept in the benchmark's own schema. Local rows travel through Arrow as one JSON string
(``_glmv_row``) because real schemas mix types per row (synth ``scene`` objects differ by domain);
:func:`row` gives back the original dict either way. Two columns are added: ``_glmv_task`` (the
benchmark key, which selects the spec) and ``_glmv_base`` (the directory relative paths resolve from).

CircularEval (``circular: true``): each row is asked once per rotation of its letter-column options
(rows tagged ``_glmv_rot``/``_glmv_group``; :func:`row` applies the rotation, so prompt, gold and
scoring all see the rotated row). Cost: n_options x the generations (4x for MMBench), in exchange for
the official metric, which removes the ~25 % a model gets by always answering one letter.

Videos (``columns.video``) are decoded with PyAV into ``frames`` uniformly spaced RGB frames that
reach the model as a sequence of images. Trade-off: GLM-4.1V's native video path adds frame
timestamps and merges frame pairs over time (half the tokens); frames-as-images keeps one
generation path for every task and costs 2x the visual tokens at the same frame count.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

LOCAL_EXTS = (".jsonl", ".json", ".parquet")
_SPECS: dict[str, dict[str, Any]] = {}

PROMPT_KINDS = ("mcq", "open", "yesno", "grounding", "chat")
MCQ_INSTRUCTION = "Answer with the option's letter from the given choices."
YESNO_INSTRUCTION = "Answer yes or no."
GROUNDING_TEMPLATE = ("Help me to locate {expr} in the image and give me its bounding box "
                      "[x1, y1, x2, y2] in coordinates normalised to 0-1000.")


# ------------------------------------------------------------------------------------- specs


def register_spec(task: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Checks a YAML's ``metadata.glmv`` block and remembers it under the task name."""
    where = f"task {task}"
    for key in ("benchmark", "prompt", "scorer", "columns"):
        if key not in spec:
            raise GlmvError(f"{where}: metadata.glmv.{key} is missing")
    if spec["prompt"] not in PROMPT_KINDS:
        raise GlmvError(f"{where}: metadata.glmv.prompt is '{spec['prompt']}'; expected one of {', '.join(PROMPT_KINDS)}")
    if spec["scorer"] not in SCORERS:
        raise GlmvError(f"{where}: metadata.glmv.scorer is '{spec['scorer']}'; expected one of {', '.join(sorted(SCORERS))}")
    if not isinstance(spec["columns"], dict):
        raise GlmvError(f"{where}: metadata.glmv.columns must be a mapping")
    if spec.get("aggregate") not in (None, "circular", "cvbench"):
        raise GlmvError(f"{where}: metadata.glmv.aggregate is '{spec['aggregate']}'; expected circular or cvbench")
    if spec.get("circular") and not isinstance(spec["columns"].get("options"), list):
        raise GlmvError(f"{where}: metadata.glmv.circular needs columns.options to list one column per letter")
    _SPECS[task] = dict(spec)
    return _SPECS[task]


def spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    task = doc.get("_glmv_task")
    if task not in _SPECS:
        raise GlmvError(f"row of unknown glmv task {task!r} (was its dataset loaded by glmv?)")
    return _SPECS[task]


def row(doc: dict[str, Any]) -> dict[str, Any]:
    """The row in the benchmark's own schema (options rotated for a circular copy)."""
    raw = doc.get("_glmv_row")
    r = doc if raw is None else _decode_row(raw)
    k = doc.get("_glmv_rot")
    if k:
        r = rotate_options(spec_of(doc), r, int(k))
    return r


def rotate_options(spec: dict[str, Any], r: dict[str, Any], k: int) -> dict[str, Any]:
    """The row with its letter-column options shifted by ``k`` (option i moves to letter
    (i - k) mod n) and the gold letter moved with its option: MMBench's CircularEval copies."""
    from glmv_cli.evaluation.scoring import LETTERS, gold_letter

    cols = _col(spec, "options")
    if not isinstance(cols, list):
        raise GlmvError(f"task {spec['benchmark']}: circular evaluation needs one options column per letter")
    opts = options_of(spec, r)
    n = len(opts)
    if n < 2:
        return r
    out = dict(r)
    for i in range(n):
        out[cols[i]] = opts[(i + k) % n]
    g = LETTERS.index(gold_letter(r.get(_col(spec, "answer")), opts, spec.get("answer_kind", "letter")))
    out[_col(spec, "answer")] = LETTERS[(g - k) % n]
    return out


def circular_copies(spec: dict[str, Any], option_rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(row index, rotation) pairs: every row once per option (a row with one option once)."""
    pairs = []
    for i, r in enumerate(option_rows):
        n = len(options_of(spec, r))
        pairs.extend((i, k) for k in range(max(1, n)))
    return pairs


def _decode_row(raw: str) -> dict[str, Any]:
    return json.loads(raw)


# ------------------------------------------------------------------------------------- loading


def local_file(data_dir: str | os.PathLike, benchmark: str, split: str) -> Path | None:
    base = Path(data_dir)
    for d in (base / benchmark, base):
        for ext in LOCAL_EXTS:
            f = d / f"{split}{ext}"
            if f.is_file():
                return f
    return None


def read_local_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL / JSON (list of objects) / Parquet file; errors name file and line."""
    if path.suffix == ".parquet":
        import datasets

        ds = datasets.Dataset.from_parquet(str(path))
        return [dict(r) for r in ds]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GlmvError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise GlmvError(f"{path}: expected a JSON list of row objects")
        return data
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GlmvError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise GlmvError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def _columns_hint(spec: dict[str, Any]) -> str:
    cols = []
    for v in spec["columns"].values():
        cols.extend(v if isinstance(v, list) else [v])
    return ", ".join(dict.fromkeys(str(c) for c in cols))


def missing_message(task: str, spec: dict[str, Any], data_dir: str | None, reason: str) -> str:
    hub = spec.get("hub") or {}
    split = hub.get("split", "test")
    name = f" (configs: {', '.join(hub['names'])})" if hub.get("names") else (
        f" --config {hub['name']}" if hub.get("name") else "")
    where = (f"put its rows at DATA_DIR/{spec['benchmark']}/{split}.jsonl (or .parquet; columns: "
             f"{_columns_hint(spec)}; image/video paths relative to the file) and pass --data-dir DATA_DIR")
    if not hub.get("path"):
        return f"task {task}: {reason}; {where}"
    return (f"task {task}: {reason}. Either download '{hub['path']}'{name} (split {split}) where there is "
            f"network (`hf download {hub['path']} --repo-type dataset`, or run once with network so "
            f"datasets caches it), or {where}")


def load_dataset(**kw: Any):
    """lm-eval ``custom_dataset`` hook: ``{split: datasets.Dataset}`` for one glmv task."""
    import datasets

    spec = kw.get("glmv")
    if not isinstance(spec, dict) or "benchmark" not in spec:
        raise GlmvError(f"{kw.get('config_source', 'task')}: metadata.glmv.benchmark is missing")
    task = str(spec["benchmark"])
    spec = register_spec(task, spec)
    hub = spec.get("hub") or {}
    split = hub.get("split", "test")
    data_dir = kw.get("glmv_data_dir")
    if data_dir:
        f = local_file(data_dir, spec["benchmark"], split)
        if f is None:
            raise GlmvError(missing_message(task, spec, data_dir,
                                            f"no {split}.jsonl/.json/.parquet under {data_dir}/{spec['benchmark']}/ or {data_dir}/"))
        rows = read_local_rows(f)
        base = str(f.parent.resolve())
        ds = datasets.Dataset.from_dict({
            "_glmv_row": [json.dumps(r, ensure_ascii=False, default=str) for r in rows],
            "_glmv_task": [task] * len(rows),
            "_glmv_base": [base] * len(rows),
        })
        return datasets.DatasetDict({split: _circular(spec, ds, rows)})
    if not hub.get("path"):
        raise GlmvError(missing_message(task, spec, None, "this task has no Hub dataset"))
    offline = os.environ.get("HF_DATASETS_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    names = hub.get("names") or [hub.get("name")]
    try:
        parts = [datasets.load_dataset(hub["path"], n, split=split) for n in names]
        ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except Exception as e:  # noqa: BLE001 - every loading failure becomes the same user message
        why = ("it is not in the local Hugging Face cache and the network is off (HF_DATASETS_OFFLINE=1)"
               if offline else f"loading failed ({type(e).__name__}: {str(e)[:200]})")
        raise GlmvError(missing_message(task, spec, None, why)) from None
    ds = ds.add_column("_glmv_task", [task] * len(ds))
    ds = ds.add_column("_glmv_base", [""] * len(ds))
    opt_cols = [c for c in _as_list(_col(spec, "options")) if c in ds.column_names]
    option_rows = list(ds.select_columns(opt_cols)) if spec.get("circular") else []
    return datasets.DatasetDict({split: _circular(spec, ds, option_rows)})


def _circular(spec: dict[str, Any], ds, option_rows: list[dict[str, Any]]):
    """With ``circular: true``: one copy per rotation, tagged ``_glmv_rot`` and ``_glmv_group``."""
    if not spec.get("circular"):
        return ds
    pairs = circular_copies(spec, option_rows)
    ds = ds.select([i for i, _ in pairs])
    ds = ds.add_column("_glmv_rot", [k for _, k in pairs])
    return ds.add_column("_glmv_group", [i for i, _ in pairs])


# ------------------------------------------------------------------------------------- cells


def _col(spec: dict[str, Any], key: str, default: Any = None) -> Any:
    return spec["columns"].get(key, default)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def to_image(cell: Any, base: str):
    """A PIL RGB image from a datasets Image, {bytes, path}, raw bytes or a path."""
    from PIL import Image

    if cell is None:
        return None
    if isinstance(cell, Image.Image):
        return cell.convert("RGB")
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return to_image(bytes(cell["bytes"]), base)
        if cell.get("path"):
            return to_image(str(cell["path"]), base)
        return None
    if isinstance(cell, (bytes, bytearray)):
        with Image.open(io.BytesIO(cell)) as im:
            return im.convert("RGB")
    if isinstance(cell, str):
        p = Path(cell)
        if not p.is_absolute() and base:
            p = Path(base) / p
        if not p.is_file():
            raise GlmvError(f"image '{p}' does not exist")
        with Image.open(p) as im:
            return im.convert("RGB")
    raise GlmvError(f"cannot read an image from a {type(cell).__name__} cell")


def video_frames(path: str | os.PathLike, n: int) -> list:
    """``n`` uniformly spaced RGB frames of a video (PyAV); fewer if the video is shorter."""
    import av

    p = Path(path)
    if not p.is_file():
        raise GlmvError(f"video '{p}' does not exist")
    with av.open(str(p)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    if not frames:
        raise GlmvError(f"video '{p}' has no decodable frames")
    if len(frames) <= n:
        return [f.convert("RGB") for f in frames]
    idx = [min(len(frames) - 1, int((i + 0.5) * len(frames) / n)) for i in range(n)]
    return [frames[i].convert("RGB") for i in idx]


def options_of(spec: dict[str, Any], r: dict[str, Any]) -> list[str]:
    from glmv_cli.evaluation.scoring import parse_options

    col = _col(spec, "options")
    if col is None:
        return []
    if isinstance(col, list):  # one column per letter (MMBench: A, B, C, D)
        out = []
        for c in col:
            v = r.get(c)
            if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() in ("", "nan"):
                break
            out.append(str(v))
        return out
    return parse_options(r.get(col))


# ------------------------------------------------------------------------------------- hooks


def doc_to_image(doc: dict[str, Any]) -> list:
    spec, r = spec_of(doc), row(doc)
    base = doc.get("_glmv_base", "")
    images = []
    vcol = _col(spec, "video")
    if vcol is not None and r.get(vcol) is not None:
        v = str(r[vcol])
        p = Path(v)
        if not p.suffix:
            p = p.with_suffix(spec.get("video_ext", ".mp4"))
        if not p.is_absolute():
            p = Path(base) / spec.get("video_dir", "") / p
        if not p.is_file():
            raise GlmvError(f"video '{p}' does not exist; {spec['benchmark']} videos are read from local files: put "
                            f"them under DATA_DIR/{spec['benchmark']}/{spec.get('video_dir', '')} (as the "
                            f"'{vcol}' column names them) and pass --data-dir DATA_DIR")
        images.extend(video_frames(p, int(spec.get("frames", 16))))
    for c in _as_list(_col(spec, "images")):
        for cell in _as_list(r.get(c)):
            im = to_image(cell, base)
            if im is not None:
                images.append(im)
    return images


def _chat_text(r: dict[str, Any]) -> str:
    parts = []
    for m in r.get("messages") or []:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        else:
            parts.append("".join(p.get("text", "") if p.get("type") == "text" else "<image>" for p in c))
    return "\n".join(parts)


def _question(spec: dict[str, Any], r: dict[str, Any]) -> str:
    """The question cell; a list cell is a dialogue (ChartQAPro: earlier turns with their
    answers, then the last question) or, with ``question_list: first``, a list of phrasings."""
    q = r.get(_col(spec, "question"), "")
    if isinstance(q, (list, tuple)):
        if not q:
            return ""
        if spec.get("question_list") == "first":
            return str(q[0])
        answers = r.get(_col(spec, "answer")) or []
        turns = [f"Q: {qq}\nA: {aa}" for qq, aa in zip(q[:-1], answers)]
        return "\n".join(turns + [str(q[-1])])
    q = "" if q is None else str(q)
    extra = _col(spec, "choices_text")
    if extra and r.get(extra):
        q = f"{q}\n{r[extra]}"
    return q


def doc_to_text(doc: dict[str, Any]) -> str:
    """The user turn: ``<image>`` placeholders (one per image, first unless the text places them)
    then the question in the benchmark's prompt format."""
    spec, r = spec_of(doc), row(doc)
    kind = spec["prompt"]
    if kind == "chat":
        return _chat_text(r)
    q = _question(spec, r)
    hint_col = _col(spec, "hint")
    hint = r.get(hint_col) if hint_col else None
    if hint is not None and str(hint).strip() and str(hint) != "nan":
        q = f"Hint: {hint}\n{q}"
    if kind == "mcq":
        opts = options_of(spec, r)
        if opts:
            lines = [q] + [f"{chr(65 + i)}. {o}" for i, o in enumerate(opts)] + [spec.get("instruction", MCQ_INSTRUCTION)]
        elif spec.get("options_in_question"):
            lines = [q, spec.get("instruction", MCQ_INSTRUCTION)]
        else:  # an open question inside a mostly multiple-choice benchmark (MMMU, MathVision)
            lines = [q]
        text = "\n".join(lines)
    elif kind == "yesno":
        text = f"{q}\n{spec.get('instruction', YESNO_INSTRUCTION)}"
    elif kind == "grounding":
        text = spec.get("instruction", GROUNDING_TEMPLATE).format(expr=q)
    else:
        text = q + (f"\n{spec['instruction']}" if spec.get("instruction") else "")
    n = len(doc_to_image(doc))
    return "<image>" * n + ("\n" if n else "") + text


def doc_to_target(doc: dict[str, Any]) -> str:
    spec, r = spec_of(doc), row(doc)
    gold = r.get(_col(spec, "answer"))
    return gold if isinstance(gold, str) else json.dumps(gold, ensure_ascii=False, default=str)


def _gold(spec, r):
    g = r.get(_col(spec, "answer"))
    if isinstance(g, (list, tuple)) and spec.get("answer_list") == "last":
        return g[-1] if g else ""
    return g


def _score_mcq(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_mcq

    return score_mcq(pred, _gold(spec, r), options_of(spec, r), spec.get("answer_kind", "letter"))


def _score_yesno(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_yesno

    return score_yesno(pred, _gold(spec, r))


def _score_exact(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_exact

    return score_exact(pred, _gold(spec, r))


def _score_ocrbench(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_ocrbench

    sub = r.get(_col(spec, "subset", "dataset"), "") or ""
    return score_ocrbench(pred, _gold(spec, r), str(sub))


def _score_letters(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_letters

    return score_letters(pred, _gold(spec, r))


def _score_relaxed(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_relaxed

    return score_relaxed(pred, _gold(spec, r), float(spec.get("rel_tol", 0.05)))


def _score_math(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import LETTERS, score_math, score_mcq

    opts = options_of(spec, r)
    gold = _gold(spec, r)
    if len(str(gold).strip()) == 1 and str(gold).strip() in LETTERS:
        return score_mcq(pred, gold, opts, "letter")
    return score_math(pred, gold)


def _score_mathvista(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import score_mathvista

    return score_mathvista(pred, _gold(spec, r), str(r.get("question_type", "")), str(r.get("answer_type", "")),
                           options_of(spec, r), r.get("precision"))


def _score_iou(spec, r, pred, doc):
    from glmv_cli.evaluation.scoring import parse_options, score_iou

    box = _gold(spec, r)
    box = [float(x) for x in (box if isinstance(box, (list, tuple)) else parse_options(box))]
    w, h = r.get(_col(spec, "width", "width")), r.get(_col(spec, "height", "height"))
    if not (w and h):
        im = doc_to_image(doc)[0]
        w, h = im.size
    return score_iou(pred, box, int(w), int(h), float(spec.get("iou_threshold", 0.5)))


def _score_reward(spec, r, pred, doc, response=""):
    from glmv_cli.rewards import score_detailed

    res = score_detailed(_chat_text(r), response, str(_gold(spec, r)), str(r.get(_col(spec, "domain", "domain"))))
    return res.reward


SCORERS = {"mcq": _score_mcq, "yesno": _score_yesno, "exact": _score_exact, "letters": _score_letters,
           "ocrbench": _score_ocrbench, "relaxed": _score_relaxed, "math": _score_math, "mathvista": _score_mathvista,
           "iou": _score_iou, "reward": _score_reward}


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Per-row metrics: ``acc`` (the benchmark's score), ``no_answer`` (nothing to extract);
    the ``reward`` scorer adds ``mean_reward`` (acc is then the pass rate, reward >= 1)."""
    from glmv_cli.rewards import extract_answer

    spec, r = spec_of(doc), row(doc)
    response = results[0] if results else ""
    pred = extract_answer(response)
    if spec["scorer"] == "reward":
        rew = _score_reward(spec, r, pred, doc, response)
        return {"acc": float(rew >= 1.0), "mean_reward": rew, "no_answer": float(pred is None)}
    acc = 0.0 if pred is None else float(SCORERS[spec["scorer"]](spec, r, pred, doc))
    out: dict[str, Any] = {"acc": acc, "no_answer": float(pred is None)}
    agg = spec.get("aggregate")
    if agg:
        group = doc.get("_glmv_group")
        source = r.get(_col(spec, "source", "source"))
        out["score"] = {"rule": agg, "acc": acc, "group": group, "source": None if source is None else str(source)}
    return out


CVBENCH_2D, CVBENCH_3D = ("ADE20K", "COCO"), ("Omni3D",)


def aggregate_score(items: list[dict[str, Any]]) -> float:
    """The benchmark's headline number from per-row items (lm-eval ``aggregation`` hook).

    - ``circular`` (MMBench CircularEval): a question counts only when every rotation of its
      options was answered right; the score is the fraction of such questions.
    - ``cvbench`` (CV-Bench): ((mean over ADE20K + mean over COCO) / 2 + mean over Omni3D) / 2;
      sources absent from the run are left out of their average.
    """
    if not items:
        return 0.0
    rule = items[0]["rule"]
    if rule == "circular":
        groups: dict[Any, bool] = {}
        for it in items:
            groups[it["group"]] = groups.get(it["group"], True) and it["acc"] >= 1.0
        return sum(groups.values()) / len(groups)
    if rule == "cvbench":
        by: dict[str, list[float]] = {}
        for it in items:
            by.setdefault(str(it["source"]), []).append(it["acc"])
        means = {k: sum(v) / len(v) for k, v in by.items()}
        d2 = [means[k] for k in CVBENCH_2D if k in means]
        d3 = [means[k] for k in CVBENCH_3D if k in means]
        parts = [sum(d) / len(d) for d in (d2, d3) if d]
        return sum(parts) / len(parts) if parts else sum(it["acc"] for it in items) / len(items)
    raise GlmvError(f"unknown aggregate rule '{rule}' (known: circular, cvbench)")
