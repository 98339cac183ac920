"""``glmv eval``: run the paper's benchmarks (or the synth eval split) by their official protocols
and write results beside the published scores.

Parse -> resolve tasks (a benchmark that needs an agent environment or an external harness is an
error naming what it needs; in a ``--suite`` it is listed as "not run" with that reason) -> load
every task's rows (Hub or ``--data-dir``, one ``datasets`` path, see ``glmv_cli/evaluation/data.py``)
-> check every row's columns and media (a problem stops the run before any generation, naming
dataset, split, row and column) -> generate and score in batches, streaming each batch's samples to
``samples/<task>.jsonl`` (``--resume auto`` continues an interrupted run without regenerating a
finished row) -> aggregate each benchmark by its own protocol -> commit the artifact atomically:

- ``results.json``: ``results[task]`` (the headline ``score`` and its name, ``acc`` per asked row,
  the protocol's sub-metrics such as aAcc/fAcc/qAcc, breakdowns, n, no_answer, failed generations,
  truncated, forced, how many rows a judge decided), ``errors`` (every row that could not be
  scored, and why), the tasks not run and why, the generation settings and the published scores;
- ``samples/<task>.jsonl``: per row its key, target, raw response, extracted answer, score, finish
  reason and the row's plain values (so any score can be audited or re-scored with ``glmv reward``);
- ``manifest.json`` with ``metrics["results"][task][metric]`` (what ``glmv push`` reads) and, when
  the model is a glmv artifact, its manifest among the inputs (lineage).

``glmv eval --check --tasks ...`` loads and checks the datasets only (every image decoded, every
video probed) and needs no model. ``docs/eval-protocols.md`` compares each benchmark's official
protocol with glmv's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import Manifest, read_manifest, write_json
from glmv_cli.data.images import ImageSizeConfig
from glmv_cli.generation.options import EngineOptions
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
    data_dir: Optional[Path] = opt(None, "Read every task from local files: DIR/<benchmark>[/<config>]/<split>.parquet|"
                                         "jsonl|json|tsv or a copy of the Hub repo's files (a glmv synth artifact for "
                                         "the synth task). No network.")
    limit: Optional[int] = opt(None, "At most N rows per task.", min=1)
    batch_size: int = opt(8, "Prompts generated together (and the resume unit). With --engine server they are all "
                             "in flight at once: raise it (e.g. 256) for a server's throughput.", min=1)
    thinking_budget: int = opt(8192, "Thinking tokens before the answer is forced (paper: 8192).", min=1)
    answer_budget: int = opt(8192, "Answer tokens after a forced answer (paper: 8192).", min=1)
    temperature: float = opt(0.0, "Sampling temperature (0 = greedy).", min=0)
    top_p: float = opt(1.0, "Nucleus sampling top-p (1.0 = full distribution).", gt=0, max=1)
    seed: int = opt(0, "Seed of sampling (each prompt derives its own).")
    device: str = opt("auto", "auto, cpu, cuda, cuda:1 ...")
    dtype: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16.",
                     choices=("auto", "fp32", "bf16", "fp16"))
    style: str = opt("auto", "Answer format: auto (from the model), glm41v or glm45v.", choices=STYLE_CHOICES)
    list_benchmarks: bool = opt(False, "List every benchmark, its dataset, status and needs; then exit.",
                                flag="--list")
    check_only: bool = opt(False, "Check the datasets of --tasks/--suite (splits, columns, every image decoded, every "
                                  "video probed) without a model; then exit.", flag="--check")
    resume: str = opt("auto", "auto: continue an interrupted eval on the same --out (same options required), "
                              "generating only the rows not yet on disk; never: start over.", choices=("never", "auto"))
    judge_url: Optional[str] = opt(None, "OpenAI-compatible /v1/chat/completions URL of an LLM judge for the "
                                         "protocols that use one (ChartMuseum, MathVerse, MMVU, MathVista's extraction "
                                         "fallback); without it those use glmv's rule-based default.")
    judge_model: str = opt("gpt-4o-mini", "Model name sent to --judge-url.")
    judge_api_key_env: Optional[str] = opt(None, "Environment variable holding the judge's API key (never the key "
                                                 "itself).")
    overwrite: bool = opt(False, "Replace an existing --out.")
    images: ImageSizeConfig = field(default_factory=ImageSizeConfig)
    generation: EngineOptions = field(default_factory=EngineOptions)

    def check(self) -> None:
        from glmv_cli.evaluation.registry import SUITES

        if self.list_benchmarks:
            return
        if (self.tasks is None) == (self.suite is None):
            raise GlmvError("pass exactly one of --tasks a,b and --suite NAME (see glmv eval --list)")
        if self.suite is not None and self.suite not in SUITES:
            raise GlmvError(f"--suite must be one of {', '.join(SUITES)}, got '{self.suite}'")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise GlmvError(f"--data-dir '{self.data_dir}' is not a directory")
        if self.check_only:
            return
        if self.model is None:
            raise GlmvError("--model is required (a model directory, a glmv artifact, a Hub id, or a preset "
                            "such as 'tiny')")
        if self.out is None:
            raise GlmvError("--out is required")
        if self.judge_url is not None and not self.judge_url.startswith(("http://", "https://")):
            raise GlmvError(f"--judge-url must be an http(s) URL, got '{self.judge_url}'")
        from glmv_cli.evaluation.adapter import GenSettings  # the adapter's own checks, one place

        GenSettings(thinking_budget=self.thinking_budget, answer_budget=self.answer_budget,
                    temperature=self.temperature, top_p=self.top_p).validate()

    def validate(self) -> "EvalOptions":
        from glmv_cli import options

        return options.validate(self)


def resolve_tasks(tasks: str | None, suite_name: str | None) -> tuple[list[str], dict[str, str]]:
    """(task names to run, {benchmark key: why not run}). Asking for a benchmark by name
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


def list_benchmarks(console: Any = None) -> list[dict[str, Any]]:
    """Prints (and returns) every benchmark: how glmv runs it, its dataset, what it needs."""
    from rich.console import Console
    from rich.table import Table

    from glmv_cli.evaluation.registry import BENCHMARKS
    from glmv_cli.evaluation.spec import load_spec

    rows = []
    for b in BENCHMARKS.values():
        spec = load_spec(b.task) if b.kind == "task" else None
        hub = spec.hub if spec is not None else {}
        dataset = hub.get("path", "--data-dir (local)" if b.kind == "task" else "")
        if hub.get("name"):
            dataset += f" ({hub['name']}, split {hub.get('split')})"
        elif hub.get("names"):
            dataset += f" ({len(hub['names'])} configs, split {hub.get('split')})"
        elif hub.get("split") and hub.get("path"):
            dataset += f" (split {hub['split']})"
        elif hub.get("splits"):
            dataset += f" ({len(hub['splits'])} splits)"
        status = {"task": "fixture-tested" if b.fixture else "yaml (untested on data)",
                  "external": "external harness", "needs": "not runnable"}[b.kind]
        rows.append({"key": b.key, "task": b.task if b.kind == "task" else "", "category": b.category,
                     "status": status, "dataset": dataset, "scorer": spec.scorer if spec else "",
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


def _fingerprint(opts: EvalOptions, tasks: list[str], model_manifest: Manifest | None) -> dict[str, Any]:
    """The options that decide the generations and scores (a resume must match them)."""
    keys = ("model", "data_dir", "limit", "thinking_budget", "answer_budget", "temperature", "top_p", "seed",
            "style", "judge_url", "judge_model")
    d: dict[str, Any] = {k: getattr(opts, k) for k in keys}
    d["images"] = [opts.images.image_min_pixels, opts.images.image_max_pixels]
    d["tasks"] = tasks
    d["model_manifest_sha256"] = model_manifest.sha256 if model_manifest is not None else None
    return json.loads(json.dumps(d, default=str))


def _judge(opts: EvalOptions) -> Any:
    if not opts.judge_url:
        return None
    from glmv_cli.evaluation.judging import EvalJudge

    return EvalJudge(opts.judge_url, opts.judge_model, opts.judge_api_key_env)


def load_checked(task_names: list[str], data_dir: Path | None, limit: int | None, *, decode: bool = False):
    """[(spec, rows, report)] for the tasks; the reports list every layout problem."""
    from glmv_cli.evaluation.check import check_rows
    from glmv_cli.evaluation.data import drop_unlabeled, load_rows
    from glmv_cli.evaluation.spec import load_spec

    out = []
    for t in task_names:
        spec = load_spec(t)
        rows, unlabeled = drop_unlabeled(spec, load_rows(spec, data_dir, limit))
        rep = check_rows(spec, rows, str(data_dir) if data_dir else None, decode=decode)
        rep.unlabeled = unlabeled
        out.append((spec, rows, rep))
    return out


def check_tasks(opts: EvalOptions, console: Any = None) -> list[Any]:
    """``glmv eval --check``: loads every split, checks columns and decodes every medium; prints one
    line per task and raises a GlmvError listing the problems when there are any."""
    from rich.console import Console

    task_names, _ = resolve_tasks(opts.tasks, opts.suite)
    console = console or Console(highlight=False, width=200)
    reports = [rep for _, _, rep in load_checked(task_names, opts.data_dir, opts.limit, decode=True)]
    for rep in reports:
        splits = ", ".join(f"{k}: {v}" for k, v in rep.splits.items())
        state = "ok" if rep.ok else f"{len(rep.problems)} problem(s)"
        console.print(f"{rep.task}: {rep.rows} rows ({splits}), {rep.images} images, {rep.videos} videos: {state}")
    bad = [rep for rep in reports if not rep.ok]
    if bad:
        raise GlmvError("\n".join(rep.error_message() for rep in bad))
    return reports


def _generator_factory(opts: EvalOptions, generator: Any):
    """A function that builds the model's generator on first use (a fully resumed run loads none)."""
    box: list[Any] = [generator]

    def get() -> Any:
        if box[0] is None:
            from glmv_cli.evaluation.adapter import GenSettings, load_generator

            settings = GenSettings(thinking_budget=opts.thinking_budget, answer_budget=opts.answer_budget,
                                   temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed)
            box[0] = load_generator(str(opts.model), settings, batch_size=opts.batch_size, device=opts.device,
                                    dtype=opts.dtype, style=None if opts.style == "auto" else opts.style,
                                    image_min_pixels=opts.images.image_min_pixels,
                                    image_max_pixels=opts.images.image_max_pixels, engine=opts.generation)
        return box[0]
    return get


def _scalars(m: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_eval(opts: EvalOptions, *, generator: Any = None, console: Any = None) -> Manifest:
    """The stage. ``generator`` replaces the model (any ``adapter.Generator``; tests use a
    ``ScriptedGenerator``) while everything else runs as from the command line."""
    from glmv_cli import options as O
    from glmv_cli.evaluation.registry import by_task
    from glmv_cli.evaluation.results import print_table
    from glmv_cli.evaluation.runner import TaskRun, run_task, task_results
    from glmv_cli.lifecycle import StageRun

    opts.validate()
    task_names, not_run = resolve_tasks(opts.tasks, opts.suite)
    model_manifest = _model_manifest(str(opts.model))
    run = StageRun(Path(opts.out), "eval", _fingerprint(opts, task_names, model_manifest),
                   resume=opts.resume == "auto", overwrite=opts.overwrite, options=O.flat_dict(opts),
                   inputs=[model_manifest] if model_manifest is not None else [])
    run.check_resume()  # an --out of another run fails now, not after the data is read
    loaded = load_checked(task_names, opts.data_dir, opts.limit)
    bad = [rep for _, _, rep in loaded if not rep.ok]
    if bad:  # nothing is asked when a row lacks what its task needs
        raise GlmvError("\n".join(rep.error_message() for rep in bad))
    stage = run.open()
    (stage / "samples").mkdir(exist_ok=True)
    get_gen, judge = _generator_factory(opts, generator), _judge(opts)
    data_dir = str(Path(opts.data_dir).resolve()) if opts.data_dir else None
    t0 = time.perf_counter()
    metrics, errors = {}, []
    for spec, rows, rep in loaded:
        tr = TaskRun(spec, rows, stage / "samples" / f"{spec.task}.jsonl")
        run_task(tr, get_gen, opts.batch_size, data_dir, judge)
        metrics[spec.task], errs = task_results(tr)
        metrics[spec.task]["unlabeled_not_asked"] = rep.unlabeled
        metrics[spec.task]["protocol"] = protocol_label(spec, judge)
        errors.extend(errs)
    seconds = time.perf_counter() - t0
    published = {t: {"glm41v": by_task(t).glm41v, "glm45v": by_task(t).glm45v} for t in task_names}
    settings = {"thinking_budget": opts.thinking_budget, "answer_budget": opts.answer_budget,
                "temperature": opts.temperature, "top_p": opts.top_p, "seed": opts.seed, "model": str(opts.model)}
    payload = {"results": metrics, "errors": errors, "not_run": not_run, "settings": settings,
               "published": published, "seconds": round(seconds, 3)}
    write_json(stage / "results.json", payload)
    run.metrics["results"] = {t: _scalars(m) for t, m in metrics.items()}
    run.metrics.update({"not_run": not_run, "errors": len(errors), "seconds": round(seconds, 3),
                        "failed_generations": sum(m["failed_generations"] for m in metrics.values()),
                        "generated_this_run": sum(m["generated_this_run"] for m in metrics.values()),
                        "reused": sum(m["reused"] for m in metrics.values())})
    manifest = run.commit(keep_final_checkpoint=False)
    print_table(metrics, not_run, console)
    return manifest


def protocol_label(spec: Any, judge: Any) -> str:
    """How the row scores were decided, for the table: the official rule, the judge, or glmv's
    rule-based stand-in for an official LLM judge."""
    from glmv_cli.evaluation.protocols import JUDGED

    if spec.scorer in JUDGED and spec.get("official_judge"):
        return "LLM judge (--judge-url)" if judge is not None else "rule-based (official: LLM judge)"
    return "official rule"


def eval_stage(opts: EvalOptions) -> Manifest | None:
    """``glmv eval``: --list prints the benchmark table, --check checks the datasets; otherwise ``run_eval``."""
    if opts.list_benchmarks:
        list_benchmarks()
        return None
    if opts.check_only:
        opts.validate()
        check_tasks(opts)
        return None
    return run_eval(opts)


DOC = """Evaluate a model on the paper's benchmarks by their official protocols.

Generates with a thinking budget and a forced answer, extracts the answer as GLM does
(drop <think>, take <answer>, take the box) and scores each benchmark by its own rule
(docs/eval-protocols.md). Samples stream to OUT/samples/<task>.jsonl as they are generated;
--resume auto continues an interrupted run. Writes OUT/results.json and a manifest, and
prints the scores beside the published GLM-4.1V-9B-Thinking and GLM-4.5V numbers.
--check validates the datasets without a model. Benchmarks that need an agent environment
or an external harness are listed by --list with what they need.
"""


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "eval", eval_stage, EvalOptions, doc=DOC)
