"""``glmv grade-difficulty``: offline pass@k difficulty of RL samples under one or more models.

Parse → load records (+ human labels) → for each model, k rollouts per sample through the HF
rollout engine (``glmv_cli.generation``), rewards from the reward system (``glmv_cli.rewards``) →
per-sample pass rates, pass@j, combined grade and tier (``glmv_cli.rl.difficulty``) → artifact:

    results.jsonl    one line per sample, in input order: id, domain, data_difficulty,
                     per-model {model, pass_rate, correct, n, pass_at}, estimate, grade (what
                     ``glmv rlcs`` uses as the offline pass-rate prior), difficulty = 1 − grade,
                     level 1..5, tier, human_rule
    rollouts.jsonl   one line per (model, sample): rewards, response lengths, finish reasons
                     (and texts with --save-responses)
    manifest.json    options, metrics: per-domain tier histograms, mean grade, Spearman ρ between
                     the data's own difficulty field and the graded difficulty, forced/truncated rates

Resume. Work is cut into fixed chunks of ``--batch-size`` consecutive samples (by input position).
Each finished chunk of a model is appended to the progress file in the staging directory with
one ``write`` + ``fsync``; a killed run leaves the staging directory, and re-running the same
command skips every chunk already on disk (a torn last chunk is dropped and redone whole). Since
chunk composition is fixed and every rollout has its own seed (``rollout_seed``), a resumed run
writes the same results as an uninterrupted one. The options that decide the rollouts are stored
in ``run.json`` (``glmv_cli.lifecycle``); re-running with different ones is an error that names the
option, and ``--resume never`` starts over.

Data parallel (``torchrun --nproc_per_node N -m glmv_cli.main grade-difficulty ...``). Chunk j
belongs to rank j mod N, whatever is already done, so every rank knows its shard without asking
the others. Each rank loads the models itself (HF on ``cuda:LOCAL_RANK``; vLLM on that GPU alone),
grades its chunks and appends them to its own progress file ``rollouts.rank-RRRRR.jsonl``; a gloo
process group carries only barriers. Resume is per shard: a rerun (with any N) reads every
progress file, so a chunk graded by any rank of any earlier run is kept. At the end rank 0
merges the shards into ``rollouts.jsonl`` (model order, then input order), removes the shard
files, and writes ``results.jsonl`` and the manifest: the artifact is the one a single process
writes, byte for byte in ``results.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import InputChecks, Manifest, read_manifest, sha256_file
from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
from glmv_cli.data.jsonl import append_rows
from glmv_cli.data.images import ImageSizeConfig
from glmv_cli.data.mediacheck import MediaChecks
from glmv_cli.errors import GlmvError
from glmv_cli.generation.options import EngineOptions
from glmv_cli.names import STYLE_CHOICES
from glmv_cli.options import opt
from glmv_cli.rewards.userfn import REWARD_FN_HELP

STAGE = "grade-difficulty"
ROLLOUTS = "rollouts.jsonl"
RESULTS = "results.jsonl"
SHARD_GLOB = "rollouts.rank-*.jsonl"
# Options that decide the rollouts and their rewards; a resumed run must match them.
_ROLLOUT_KEYS = ("engine", "models", "k", "temperature", "top_p", "max_new_tokens", "thinking_budget", "answer_budget",
                 "style", "batch_size", "limit", "seed", "reward_fn", "format", "split", "subset", "domain_map",
                 "default_domain", "image_min_pixels", "image_max_pixels")


@dataclass
class GradeDifficultyOptions:
    data: str = opt(help="RL records: a glmv synth artifact (its rl.jsonl), a JSONL / JSON / parquet / Arrow file, a "
                         "datasets folder or hf:owner/name, in any format --format reads (verl and EasyR1 rows too).")
    models: list[str] = opt(help="A model to grade with (glmv model artifact, HF directory or Hub id, or a preset); "
                                 "repeat for several.", flag="--model")
    out: Path = opt(help="Output artifact directory.")
    k: int = opt(8, "Rollouts per sample per model.", min=1)
    human_labels: Optional[Path] = opt(None, "JSONL of {id, difficulty 1..5 (shifts the grade) and/or tier "
                                             "(overrides it)}.")
    human_weight: float = opt(8.0, "A 'difficulty' label counts as this many rollouts.", min=0)
    threshold: float = opt(0.5, "Reward at or above which a rollout counts as correct for pass@j.", gt=0, max=1)
    pass_at: list[int] = opt([1], "j values of the pass@j estimator (repeatable; <= --k).")
    model_weights: Optional[list[float]] = opt(None, "Weight of each --model in the combined grade (default equal; "
                                                     "repeatable, once per --model).", flag="--model-weight", min=0)
    temperature: float = opt(1.0, "Sampling temperature of the rollouts.", min=0)
    top_p: float = opt(1.0, "Nucleus sampling top-p (1.0 = full distribution).", gt=0, max=1)
    max_new_tokens: int = opt(1024, "Cap on response tokens.", min=1)
    thinking_budget: Optional[int] = opt(None, "Force </think> (+<answer>) after this many thinking tokens.", min=1)
    answer_budget: int = opt(64, "Tokens allowed after a forced answer.", min=1)
    style: str = opt("auto", "Answer format: auto (from the model), glm41v or glm45v.", choices=STYLE_CHOICES)
    batch_size: int = opt(8, "Samples per generation batch (x k rows); also the resume unit.", min=1)
    limit: Optional[int] = opt(None, "Grade only the first N records (0: every record, e.g. to override a recipe's "
                                     "limit).", min=0)
    seed: int = opt(0, "Seed of the rollouts (each rollout has its own seed derived from it).")
    device: str = opt("auto", "auto, cpu or cuda[:N].")
    reward_config: Optional[Path] = opt(None, "rewards.yaml (domain verifiers, gates).")
    reward_fn: Optional[str] = opt(None, REWARD_FN_HELP)
    on_bad: str = opt("fail", "fail or skip bad records (skips are counted).", choices=("fail", "skip"))
    save_responses: bool = opt(False, "Keep response texts in rollouts.jsonl.")
    resume: str = opt("auto", "auto: keep the finished chunks of an interrupted run on the same --out (the same "
                              "options are required) and grade only the rest; never: start over.",
                      choices=("never", "auto"))
    overwrite: bool = opt(False, "Replace an existing --out artifact.")
    source: DataFormatConfig = field(default_factory=DataFormatConfig)
    domains: DomainConfig = field(default_factory=DomainConfig)
    images: ImageSizeConfig = field(default_factory=ImageSizeConfig)
    generation: EngineOptions = field(default_factory=EngineOptions)
    checks: InputChecks = field(default_factory=InputChecks)
    media: MediaChecks = field(default_factory=MediaChecks)

    def check(self) -> None:
        if not self.models:
            raise GlmvError("give at least one --model")
        if len(set(self.models)) != len(self.models):
            raise GlmvError("--model lists the same model twice")
        bad = [j for j in self.pass_at if not 1 <= j <= self.k]
        if bad:
            raise GlmvError(f"--pass-at values must be in 1..--k ({self.k}), got {bad[0]}")
        if self.model_weights is not None and len(self.model_weights) != len(self.models):
            raise GlmvError(f"--model-weight must be given once per --model ({len(self.models)}), got {len(self.model_weights)}")
        if self.model_weights is not None and sum(self.model_weights) <= 0:
            raise GlmvError("--model-weight values must be >= 0 with a positive sum")
        if self.generation.engine == "server" and len(self.models) > 1:
            raise GlmvError("--engine server serves one model: grade with one --model per run (its servers at "
                            "--server-url), or use --engine hf / vllm for several")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise GlmvError(f"--device must be auto, cpu or cuda[:N], got '{self.device}'")

    def validate(self) -> "GradeDifficultyOptions":
        from glmv_cli import options

        return options.validate(self)


# ----------------------------------------------------------------------------- progress file


def read_progress(path: Path, chunk_sizes: dict[int, int], repair: bool = True) -> dict[tuple[int, str], dict]:
    """Committed (model, id) lines of a progress file; drops a torn tail and incomplete chunks
    (with ``repair``, rewriting the file: only its writer may) so that a chunk is either fully on
    disk or redone."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    lines = []
    for raw in data[:cut].splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            break  # a torn write: everything after it is suspect
    groups: dict[tuple[int, int], list[dict]] = {}
    for d in lines:
        groups.setdefault((d["model"], d["chunk"]), []).append(d)
    keep = [d for (mi, ch), ds in groups.items() if len(ds) == chunk_sizes.get(ch, -1) for d in ds]
    if repair and (len(keep) != len(lines) or cut != len(data)):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d) + "\n" for d in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return {(d["model"], d["id"]): d for d in keep}


def progress_file(stage_dir: Path, rank: int, world: int) -> Path:
    """The progress file this rank appends to (one process: ``rollouts.jsonl`` itself)."""
    return stage_dir / (ROLLOUTS if world == 1 else f"rollouts.rank-{rank:05d}.jsonl")


def read_all_progress(stage_dir: Path, chunk_sizes: dict[int, int],
                      own: Path | None = None) -> dict[tuple[int, str], dict]:
    """Every progress file's committed lines (only ``own`` is repaired: others may be in use)."""
    done: dict[tuple[int, str], dict] = {}
    for f in [stage_dir / ROLLOUTS, *sorted(stage_dir.glob(SHARD_GLOB))]:
        done.update(read_progress(f, chunk_sizes, repair=f == own))
    return done


# ----------------------------------------------------------------------------- the stage


def _device(opt: str, world: int) -> str:
    """The device of this rank: under a launcher ``auto``/``cuda`` mean this rank's own GPU."""
    import torch

    if opt.startswith("cuda") and not torch.cuda.is_available():
        raise GlmvError(f"--device {opt}: no CUDA device is available")
    if opt == "auto":
        opt = "cuda" if torch.cuda.is_available() else "cpu"
    if opt == "cuda" and world > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return opt


def _engine_for(spec: str, opts: GradeDifficultyOptions, dev: str, tag: str):
    """(engine, tokenizer, records -> prompts, style) for one --model; prompts in the model's own
    chat format (``ChatFormat``: its template when it ships one), as token ids + images for every
    engine (nothing is re-tokenised by vLLM or a server)."""
    from glmv_cli.data.images import apply_pixel_limits
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.generation import HFEngine, VLLMEngine, prompt_from_record
    from glmv_cli.modeling import load_config, load_processor, model_type

    gen = opts.generation
    if gen.engine == "hf":
        from glmv_cli.modeling import load as load_model

        model, processor = load_model(spec)
        model.to(dev).eval()
        mt = getattr(model.config, "model_type", "glm4v")
    else:
        processor = load_processor(spec)
        mt = model_type(spec)
    size = apply_pixel_limits(processor.image_processor, opts.images)
    fmt = ChatFormat.of(processor, mt, opts.style)
    tok = processor.tokenizer
    if gen.engine == "hf":
        engine = HFEngine(model, tok, batch_size=opts.batch_size * opts.k, model_tag=tag)
    elif gen.engine == "server":
        from glmv_cli.generation.options import server_engine

        config, gen_config = load_config(spec, processor)
        engine = server_engine(gen, tok, config, gen_config, model_tag=tag)
    else:
        if not (Path(spec) / "config.json").is_file():
            raise GlmvError(f"--engine vllm needs each --model to be a model directory, got '{spec}'")
        # vLLM runs the model's HF processor itself; the same size goes to it as a processor kwarg
        mm = {"mm_processor_kwargs": {"size": size}} if opts.images.is_set else {}
        engine = VLLMEngine(spec, tokenizer=tok, model_tag=tag, **mm)
    return engine, tok, lambda records: [prompt_from_record(r, tok, processor.image_processor, style=fmt.style,
                                                            template=fmt.template) for r in records], fmt.style


def _rollout_fingerprint(opts: GradeDifficultyOptions, data_sha: str) -> dict[str, Any]:
    from glmv_cli import options as O

    flat = O.flat_dict(opts)
    d = {k: flat[k] for k in _ROLLOUT_KEYS}
    d["data_sha256"] = data_sha
    d["reward_config_sha256"] = sha256_file(opts.reward_config) if opts.reward_config else None
    return json.loads(json.dumps(d))


def grade_difficulty(opts: GradeDifficultyOptions) -> Manifest | None:
    """Runs (or resumes) the grading and writes the artifact (the manifest on rank 0, None on the
    other ranks of a launcher)."""
    from glmv_cli.artifacts import check_out, option_paths

    opts.validate()
    check_out(opts.out, opts.overwrite, option_paths(opts))
    from glmv_cli.training import dist

    world, rank = dist.env_world(), dist.env_rank()
    dist.init_coordination()
    try:
        return _grade(opts, world, rank)
    finally:
        if world > 1:
            dist.shutdown()


def _grade(opts: GradeDifficultyOptions, world: int, rank: int) -> Manifest | None:
    from glmv_cli import options as O
    from glmv_cli.artifacts import option_paths, verify_input
    from glmv_cli.lifecycle import StageRun
    from glmv_cli.rewards.scoring import load_config
    from glmv_cli.rl.difficulty import read_human_labels
    from glmv_cli.rl.records import check_boxed_prompts, load_data
    from glmv_cli.training import dist

    reward_cfg = load_config(opts.reward_config, reward_fn=opts.reward_fn)
    data = load_data(opts.data, reward_cfg, on_bad=opts.on_bad, source=opts.source, domains=opts.domains,
                     limit=opts.limit or None, checks=opts.media)
    recs, bad, data_manifest = data.records, data.skipped, data.manifest
    check_boxed_prompts(recs, reward_cfg)
    labels = read_human_labels(opts.human_labels) if opts.human_labels else {}
    _check_labels_match(labels, recs, opts.human_labels)
    full = opts.checks.verify_inputs
    inputs = [verify_input(data_manifest, full, "--data")] if data_manifest else []
    for spec in opts.models:  # model artifacts (e.g. from glmv sft) join the lineage
        if (Path(spec) / "manifest.json").is_file():
            inputs.append(verify_input(read_manifest(spec, what="--model"), full, "--model"))
        _check_model_dir(spec)
    run = StageRun(Path(opts.out), STAGE, _rollout_fingerprint(opts, data.fingerprint), resume=opts.resume == "auto",
                   overwrite=opts.overwrite, options=O.flat_dict(opts), inputs=inputs, rank0=rank == 0,
                   input_paths=option_paths(opts), progress=(ROLLOUTS, SHARD_GLOB))
    run.check_resume()
    dist.barrier()  # every rank checked the old run before rank 0 (re)opens the staging directory
    stage_dir = run.open()
    try:
        return _grade_opened(opts, world, rank, run, stage_dir, recs, bad, labels, reward_cfg)
    except BaseException:
        run.release()  # rank 0: the staging dir stays only with rollouts on disk
        raise


def _grade_opened(opts: GradeDifficultyOptions, world: int, rank: int, run: Any, stage_dir: Path, recs: list,
                  bad: Any, labels: dict, reward_cfg: Any) -> Manifest | None:
    """Every rank's chunks rolled out (or reused from disk), then rank 0 finishes the artifact."""
    from glmv_cli.training import dist

    dist.barrier()
    bs = opts.batch_size
    chunks = [recs[i:i + bs] for i in range(0, len(recs), bs)]
    sizes = {j: len(c) for j, c in enumerate(chunks)}
    own = progress_file(stage_dir, rank, world)
    done = read_all_progress(stage_dir, sizes, own=own)
    dist.barrier()  # nobody appends before every rank has read what was there
    reused = len(done)
    mine = [j for j in range(len(chunks)) if j % world == rank]
    dev = _device(opts.device, world)
    gen_tokens, gen_time = _grade_shard(opts, chunks, mine, done, own, reward_cfg, dev)
    gen_tokens, gen_time = dist.all_sum([float(gen_tokens), gen_time])
    dist.barrier()  # every shard is on disk
    if rank != 0:
        return None
    done = read_all_progress(stage_dir, sizes)
    _merge_progress(stage_dir, recs, len(opts.models), done)
    return _finish(opts, run, recs, bad, labels, done, reused, gen_tokens, gen_time, dev, world)


def _check_model_dir(spec: str) -> None:
    """A --model directory's config and weight headers, before the run opens (models load one by one later)."""
    p = Path(spec)
    if not p.is_dir():
        return  # a preset or Hub id: resolved when it is loaded
    from transformers import AutoConfig

    from glmv_cli.modeling.weights import check_model_dir

    if not (p / "config.json").is_file():
        raise GlmvError(f"--model '{p}': not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(p))
    except (ValueError, OSError, KeyError) as e:
        raise GlmvError(f"{p / 'config.json'}: cannot read the model config ({e})") from None
    check_model_dir(p, config)


def _check_labels_match(labels: dict[str, Any], recs: list, path: Any) -> None:
    """--human-labels that match no record are an error; a partial match is a warning line."""
    if not labels:
        return
    ids = {r.id for r in recs}
    unmatched = [i for i in labels if i not in ids]
    if len(unmatched) == len(labels):
        raise GlmvError(f"--human-labels '{path}': none of its {len(labels)} ids (e.g. '{unmatched[0]}') is a record "
                        "id of --data; labels of another dataset?")
    if unmatched:
        print(f"warning: --human-labels '{path}': {len(unmatched)} of {len(labels)} ids match no record of --data "
              f"(e.g. '{unmatched[0]}'); they are ignored", flush=True)


def _finite(x: Any) -> Any:
    """NaN and infinities as null: results.jsonl is strict JSON that any reader parses."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _grade_shard(opts: GradeDifficultyOptions, chunks: list, mine: list[int], done: dict, own: Path,
                 reward_cfg: Any, dev: str) -> tuple[int, float]:
    """Rolls out and scores this rank's chunks not yet done, appending each to ``own``; returns
    (generated tokens, generation seconds)."""
    import torch

    from glmv_cli.generation import SamplingParams, prompt_text
    from glmv_cli.rewards.scoring import score

    gen_tokens, gen_time = 0, 0.0
    for mi, spec in enumerate(opts.models):
        todo = [j for j in mine if any((mi, r.id) not in done for r in chunks[j])]
        if not todo:
            continue
        # the rollout seeds hash the model's position in --model, not its path: the same weights
        # moved or copied elsewhere grade identically
        engine, tok, make_prompts, style = _engine_for(spec, opts, dev, tag=f"model-{mi}")
        cfg = reward_cfg.with_style(style)
        sp = SamplingParams(temperature=opts.temperature, top_p=opts.top_p, max_new_tokens=opts.max_new_tokens,
                            thinking_budget=opts.thinking_budget, answer_budget=opts.answer_budget, style=style)
        for j in todo:
            chunk = chunks[j]
            prompts = make_prompts([r.record for r in chunk])
            t0 = time.perf_counter()
            with torch.no_grad():
                outs = engine.generate(prompts, sp, n=opts.k, seed=opts.seed)
            gen_time += time.perf_counter() - t0
            lines = []
            for r, rolls in zip(chunk, outs):
                ptext = prompt_text(r.record.messages)
                rewards = [score(ptext, ro.text, r.answer, r.domain, r.extra, config=cfg) for ro in rolls]
                gen_tokens += sum(ro.num_tokens for ro in rolls)
                line = {"model": mi, "model_name": spec, "chunk": j, "id": r.id, "rewards": rewards,
                        "lengths": [ro.num_tokens for ro in rolls], "finish": [ro.finish_reason for ro in rolls]}
                if opts.save_responses:
                    line["responses"] = [ro.text for ro in rolls]
                lines.append(line)
            append_rows(own, lines)
            done.update({(mi, d["id"]): d for d in lines})
        del engine
    return gen_tokens, gen_time


def _merge_progress(stage_dir: Path, recs: list, n_models: int, done: dict) -> None:
    """Rank 0: one ``rollouts.jsonl`` in (model, input) order from every progress file."""
    tmp = stage_dir / (ROLLOUTS + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(done[(mi, r.id)]) + "\n" for mi in range(n_models) for r in recs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, stage_dir / ROLLOUTS)
    for p in stage_dir.glob(SHARD_GLOB):
        p.unlink()


def _finish(opts: GradeDifficultyOptions, run: Any, recs: list, bad: int, labels: dict, done: dict, reused: int,
            gen_tokens: float, gen_time: float, dev: str, world: int) -> Manifest:
    """Rank 0: results.jsonl in input order, the manifest metrics, commit."""
    from glmv_cli.rl.difficulty import grade_sample, spearman, tier_histograms

    results = []
    finish_counts: dict[str, int] = {}
    for r in recs:
        rid = r.id
        per = [done[(mi, rid)] for mi in range(len(opts.models))]
        for d in per:
            for f in d["finish"]:
                finish_counts[f] = finish_counts.get(f, 0) + 1
        g = grade_sample([d["rewards"] for d in per], threshold=opts.threshold,
                         pass_ks=sorted(set(opts.pass_at)), weights=opts.model_weights, label=labels.get(rid),
                         human_weight=opts.human_weight)
        for name, m in zip(opts.models, g["models"]):
            m["model"] = name
        results.append({"id": rid, "domain": r.domain, "data_difficulty": r.difficulty, **g,
                        "human_label": labels.get(rid)})
    with open(run.path / RESULTS, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(_finite(x), allow_nan=False) + "\n" for x in results)

    domains = sorted({x["domain"] for x in results})
    rho = {}
    for d in domains:
        rows = [x for x in results if x["domain"] == d and isinstance(x["data_difficulty"], (int, float))]
        rho[d] = spearman([x["data_difficulty"] for x in rows], [x["difficulty"] for x in rows]) if rows else None
    total_rollouts = sum(finish_counts.values())
    run.art.metrics.update({
        "samples": len(results),
        "rollouts": total_rollouts,
        "bad_records": bad,
        "tier_histograms": tier_histograms(results),
        "mean_grade": {d: sum(x["grade"] for x in results if x["domain"] == d) /
                       sum(1 for x in results if x["domain"] == d) for d in domains},
        "model_pass_rate": {name: sum(x["models"][mi]["pass_rate"] for x in results) / len(results)
                            for mi, name in enumerate(opts.models)},
        "spearman_data_difficulty": rho,
        "finish_rates": {k: v / total_rollouts for k, v in sorted(finish_counts.items())},
        "human_labels": {"given": len(labels), "matched": sum(1 for x in results if x["human_label"])},
        "resumed_pairs": reused,
        "generated_tokens_this_run": int(gen_tokens),
        # summed over ranks: the ranks generate side by side, so this is per GPU, not the job's rate
        "generation_tokens_per_s": gen_tokens / gen_time if gen_time > 0 else None,
        "device": dev if world == 1 else dev.split(":")[0],
        "world_size": world,
    })
    return run.commit(keep_final_checkpoint=False)


DOC = """Grade RL samples by pass@k under one or more models: k rollouts each, rewards from the
reward system, a combined grade (mean pass rate) and curriculum tier per sample.

Writes results.jsonl (per sample), rollouts.jsonl (per model and sample) and a manifest
with per-domain tier histograms. Interrupted? Run the same command again: finished
chunks are kept and only the rest is graded, with identical results.
"""


def report(m: Manifest) -> None:
    met = m.metrics
    n_models, k = len(m.options["models"]), m.options["k"]
    print(f"graded {met['samples']} samples x {n_models} model(s) x {k} rollouts -> {m.path}")
    for d, h in met["tier_histograms"].items():
        print(f"  {d:<12} " + "  ".join(f"{t}={c}" for t, c in h.items()))


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "grade-difficulty", grade_difficulty, GradeDifficultyOptions, doc=DOC, report=report)
