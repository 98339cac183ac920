"""``glmv eval``: run the paper's benchmarks (or the synth eval split) through lm-eval with glmv's
model adapter and task YAMLs, and write results beside the published scores.

Parse -> resolve tasks (a benchmark that needs an agent environment or an external harness is an
error naming what it needs; in a ``--suite`` it is listed as "not run" with that reason) -> load
the model into the ``glmv`` adapter (thinking budget + forced answer, 8192 + 8192 by default) ->
``lm_eval.simple_evaluate`` with ``TaskManager(include_path=glmv's tasks, include_defaults=False)``
(skipping lm-eval's ~10k built-in YAMLs saves seconds per run) -> write the artifact:

- ``results.json``: ``results[task][metric]`` (acc, no_answer, mean_reward for synth, n, failed
  generations, truncated, forced), the tasks not run and why, the generation settings, lm-eval's raw
  results block, and the published scores;
- ``samples/<task>.jsonl``: per row the doc id, target, raw response, extracted answer, scores and
  finish reason (so any score can be audited or re-scored with ``glmv reward``);
- ``manifest.json`` with ``metrics["results"][task][metric]`` (what ``glmv push`` reads) and, when
  the model is a glmv artifact, its manifest among the inputs (lineage).

``--data-dir DIR`` reads every task from local files (see ``glmv_cli/evaluation/taskdata.py``)
and never touches the network.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import ArtifactWriter, Manifest, read_manifest
from glmv_cli.data.images import ImageSizeConfig
from glmv_cli.errors import GlmvError
from glmv_cli.names import STYLE_CHOICES
from glmv_cli.options import opt


@dataclass
class EvalOptions:
    model: Optional[str] = opt(None, "Model to evaluate: a glmv model artifact, a Hugging Face directory or Hub id, "
                                     "or a preset name (random weights; only when asked for).")
    out: Optional[Path] = opt(None, "Output artifact directory.")
    tasks: Optional[str] = opt(None, "Comma-separated benchmarks (keys or glmv_<key> task names).")
    suite: Optional[str] = opt(None, "A benchmark suite: glm41v-28, glm45v-42 or synth.")
    data_dir: Optional[Path] = opt(None, "Read every task from local files: DIR/<benchmark>/<split>.jsonl|parquet "
                                         "(a glmv synth artifact for the synth task). No network.")
    limit: Optional[int] = opt(None, "At most N rows per task.", min=1)
    batch_size: int = opt(8, "Prompts generated together.", min=1)
    thinking_budget: int = opt(8192, "Thinking tokens before the answer is forced (paper: 8192).", min=1)
    answer_budget: int = opt(8192, "Answer tokens after a forced answer (paper: 8192).", min=1)
    temperature: float = opt(0.0, "Sampling temperature (0 = greedy).", min=0)
    top_p: float = opt(1.0, "Nucleus sampling top-p (1.0 = full distribution).", gt=0, max=1)
    seed: int = opt(0, "Seed of sampling and of lm-eval's shuffles.")
    device: str = opt("auto", "auto, cpu, cuda, cuda:1 ...")
    dtype: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16.",
                     choices=("auto", "fp32", "bf16", "fp16"))
    style: str = opt("auto", "Answer format: auto (from the model), glm41v or glm45v.", choices=STYLE_CHOICES)
    list_benchmarks: bool = opt(False, "List every benchmark, its dataset, status and needs; then exit.",
                                flag="--list")
    overwrite: bool = opt(False, "Replace an existing --out.")
    images: ImageSizeConfig = field(default_factory=ImageSizeConfig)

    def check(self) -> None:
        from glmv_cli.evaluation.registry import SUITES

        if self.list_benchmarks:
            return
        if self.model is None:
            raise GlmvError("--model is required (a model directory, a glmv artifact, a Hub id, or a preset "
                            "such as 'tiny')")
        if self.out is None:
            raise GlmvError("--out is required")
        if (self.tasks is None) == (self.suite is None):
            raise GlmvError("pass exactly one of --tasks a,b and --suite NAME (see glmv eval --list)")
        if self.suite is not None and self.suite not in SUITES:
            raise GlmvError(f"--suite must be one of {', '.join(SUITES)}, got '{self.suite}'")
        from glmv_cli.evaluation.adapter import GenSettings  # the adapter's own checks, one place

        GenSettings(thinking_budget=self.thinking_budget, answer_budget=self.answer_budget,
                    temperature=self.temperature, top_p=self.top_p).validate()
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise GlmvError(f"--data-dir '{self.data_dir}' is not a directory")

    def validate(self) -> "EvalOptions":
        from glmv_cli import options

        return options.validate(self)


def resolve_tasks(tasks: str | None, suite_name: str | None) -> tuple[list[str], dict[str, str]]:
    """(lm-eval task names to run, {benchmark key: why not run}). Asking for a benchmark by name
    that glmv cannot run is an error that names what it needs."""
    from glmv_cli.evaluation.registry import BENCHMARKS, by_task, suite

    if suite_name is not None:
        run, not_run = [], {}
        for b in suite(suite_name):
            if b.kind == "task":
                run.append(b.task)
            else:
                not_run[b.key] = f"needs {b.needs}"
        return run, not_run
    run = []
    for name in [t.strip() for t in (tasks or "").split(",") if t.strip()]:
        b = by_task(name)
        if b is None:
            known = ", ".join(sorted(BENCHMARKS))
            raise GlmvError(f"--tasks: unknown benchmark '{name}'; known: {known} (glmv eval --list shows them all)")
        if b.kind != "task":
            what = "an agent environment or an external harness" if b.kind == "external" else "components glmv does not carry"
            raise GlmvError(f"--tasks: {b.name} ({b.key}) cannot run in glmv eval: it needs {what}: {b.needs}")
        if b.task not in run:
            run.append(b.task)
    if not run:
        raise GlmvError("--tasks is empty")
    return run, {}


def _yaml_spec(task: str) -> dict[str, Any]:
    """A task YAML's fields (``!function`` tags read as plain strings)."""
    import yaml

    from glmv_cli.evaluation.tasks import TASKS_DIR

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    f = TASKS_DIR / f"{task}.yaml"
    return yaml.load(f.read_text(encoding="utf-8"), Loader=_Loader) if f.is_file() else {}


def list_benchmarks(console: Any = None) -> list[dict[str, Any]]:
    """Prints (and returns) every benchmark: how glmv runs it, its dataset, what it needs."""
    from rich.console import Console
    from rich.table import Table

    from glmv_cli.evaluation.registry import BENCHMARKS

    rows = []
    for b in BENCHMARKS.values():
        spec = _yaml_spec(b.task).get("metadata", {}).get("glmv", {}) if b.kind == "task" else {}
        hub = spec.get("hub", {})
        dataset = hub.get("path", "--data-dir (local)" if b.kind == "task" else "")
        if hub.get("name"):
            dataset += f" ({hub['name']}, split {hub.get('split')})"
        elif hub.get("names"):
            dataset += f" ({len(hub['names'])} configs, split {hub.get('split')})"
        elif hub.get("split") and hub.get("path"):
            dataset += f" (split {hub['split']})"
        status = {"task": "fixture-tested" if b.fixture else "yaml (untested on data)",
                  "external": "external harness", "needs": "not runnable"}[b.kind]
        rows.append({"key": b.key, "task": b.task if b.kind == "task" else "", "category": b.category,
                     "status": status, "dataset": dataset, "scorer": spec.get("scorer", ""),
                     "glm41v": b.glm41v, "glm45v": b.glm45v, "needs": b.needs, "suites": list(b.suites)})
    console = console or Console(highlight=False, width=200)
    t = Table(title="glmv eval benchmarks")
    for col in ("key", "category", "status", "dataset / needs", "scorer", "4.1V", "4.5V"):
        t.add_column(col)
    from rich.markup import escape

    from glmv_cli.evaluation.results import published_cell

    for r, b in zip(rows, BENCHMARKS.values()):
        t.add_row(r["key"], r["category"], r["status"], escape(r["dataset"] or r["needs"]), r["scorer"],
                  published_cell(b, "glm41v"), published_cell(b, "glm45v"))
    console.print(t)
    console.print('published scores marked "?" are recorded from the model cards and not re-verified')
    return rows


def _model_manifest(model: str) -> Manifest | None:
    p = Path(model)
    if p.is_dir() and (p / "manifest.json").is_file():
        return read_manifest(p, what="--model")
    return None


def _jsonable_doc(doc: dict[str, Any]) -> dict[str, Any]:
    from glmv_cli.evaluation.taskdata import row

    r = row(doc) if "_glmv_row" in doc else doc
    out = {}
    for k, v in r.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, dict)):
            try:
                json.dumps(v)
                out[k] = v
            except (TypeError, ValueError):
                out[k] = f"<{type(v).__name__}>"
        else:
            out[k] = f"<{type(v).__name__}>"
    return out


def write_samples(path: Path, samples: list[dict[str, Any]], records: list[dict[str, Any]], task: str) -> int:
    from glmv_cli.rewards import extract_answer

    finish = {r["doc_id"]: r for r in records if r["task"] == task}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            resp = (s.get("resps") or [[""]])[0]
            resp = resp[0] if isinstance(resp, list) else resp
            doc = s.get("doc", {})
            rec = finish.get(s.get("doc_id"), {})
            line = {"doc_id": s.get("doc_id"), "target": s.get("target"), "response": resp,
                    "answer": extract_answer(resp or ""), "finish_reason": rec.get("finish_reason"),
                    "error": rec.get("error"), "num_tokens": rec.get("num_tokens"),
                    **{m: s[m] for m in ("acc", "mean_reward", "no_answer") if m in s},
                    "doc": _jsonable_doc(doc)}
            f.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    return len(samples)


def run_eval(opts: EvalOptions, *, generator: Any = None, console: Any = None) -> Manifest:
    """The stage. ``generator`` replaces the model (any ``adapter.Generator``; tests use a
    ``ScriptedGenerator``) while everything else runs as from the command line."""
    opts.validate()
    task_names, not_run = resolve_tasks(opts.tasks, opts.suite)
    model_manifest = _model_manifest(str(opts.model))

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from glmv_cli.evaluation.adapter import GlmvLM
    from glmv_cli.evaluation.results import print_table, task_metrics
    from glmv_cli.evaluation.tasks import TASKS_DIR

    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    meta = {"glmv_data_dir": str(Path(opts.data_dir).resolve())} if opts.data_dir else {}
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=meta)
    from glmv_cli import options as O

    resolved = O.flat_dict(opts)
    inputs = [model_manifest] if model_manifest is not None else []
    # opened before the hours of generation, so an existing --out fails now, not at the end
    art = ArtifactWriter(opts.out, "eval", options=resolved, inputs=inputs, overwrite=opts.overwrite).open()
    try:
        lm = GlmvLM(pretrained=None if generator is not None else str(opts.model), generator=generator,
                    batch_size=opts.batch_size, thinking_budget=opts.thinking_budget, answer_budget=opts.answer_budget,
                    temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed, device=opts.device,
                    dtype=opts.dtype, style=None if opts.style == "auto" else opts.style,
                    image_min_pixels=opts.images.image_min_pixels, image_max_pixels=opts.images.image_max_pixels)
        t0 = time.perf_counter()
        res = simple_evaluate(model=lm, tasks=task_names, task_manager=tm, limit=opts.limit, bootstrap_iters=0,
                              log_samples=True, random_seed=opts.seed, numpy_random_seed=opts.seed,
                              torch_random_seed=opts.seed, fewshot_random_seed=opts.seed)
        seconds = time.perf_counter() - t0
        if res is None:
            raise GlmvError("lm-eval returned no results (a non-zero rank?)")
        metrics = task_metrics(res["results"], {k: dict(v) for k, v in lm.stats.items()})

        from glmv_cli.evaluation.registry import by_task

        for task in task_names:
            write_samples(art.path / "samples" / f"{task}.jsonl", res.get("samples", {}).get(task, []), lm.records, task)
        published = {t: {"glm41v": by_task(t).glm41v, "glm45v": by_task(t).glm45v} for t in task_names}
        payload = {"results": metrics, "not_run": not_run, "settings": lm.get_model_info(),
                   "published": published, "lm_eval_results": res["results"], "seconds": round(seconds, 3)}
        (art.path / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        art.metrics["results"] = {t: {k: v for k, v in m.items()} for t, m in metrics.items()}
        art.metrics["not_run"] = not_run
        art.metrics["failed_generations"] = sum(m["failed_generations"] for m in metrics.values())
        art.metrics["seconds"] = round(seconds, 3)
        m = art.commit()
    except BaseException:
        art.abort()
        raise
    print_table(metrics, not_run, console)
    return m


def eval_stage(opts: EvalOptions) -> Manifest | None:
    """``glmv eval``: --list prints the benchmark table; otherwise ``run_eval``."""
    if opts.list_benchmarks:
        list_benchmarks()
        return None
    return run_eval(opts)


DOC = """Evaluate a model on the paper's benchmarks (lm-eval + glmv's adapter).

Generates with a thinking budget and a forced answer, extracts the answer as GLM does
(drop <think>, take <answer>, take the box) and scores each benchmark by its own rule.
Writes OUT/results.json, OUT/samples/<task>.jsonl and a manifest, and prints the scores
beside the published GLM-4.1V-9B-Thinking and GLM-4.5V numbers. Benchmarks that need an
agent environment or an external harness are listed by --list with what they need.
"""


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "eval", eval_stage, EvalOptions, doc=DOC)
