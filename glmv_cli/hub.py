"""Publishing a model artifact on the Hugging Face Hub: validation, model card, one-commit upload.

The push is all-or-nothing and checks before it talks: every check that can fail on local data runs
before the first HTTP request, so a broken artifact never leaves a half-filled repo behind.

1. Validation (:func:`validate_model_artifact`), cheapest checks first so the usual mistakes fail
   in milliseconds: the weights (``model.safetensors.index.json``'s ``weight_map`` names only shards
   that exist, every ``*.safetensors`` file is named by it, and each shard's safetensors header —
   8 bytes plus a JSON table, read without loading a tensor — really holds the tensors the index
   maps to it), then ``config.json`` (JSON with a ``model_type``), a tokenizer file and a processor
   config, and last the content hashes of every file to upload against ``manifest.json``. Hashing
   is the one expensive step: sha256 runs at ~1.3 GB/s on one core of the dev machine, so a 9B model
   in bf16 (~20 GB) takes ~15 s — small beside the upload, and it catches a shard truncated by a
   full disk or a copy that was interrupted. The verified hashes are handed to the Hub client, so
   its legacy LFS path does not read the files a second time.
2. The model card (:func:`render_model_card`): YAML metadata (license, base_model, pipeline_tag
   ``image-text-to-text``, tags, and a ``model-index`` built with huggingface_hub's own
   ``EvalResult`` so the Hub parses it) and a body with the lineage as a table of stages with their
   key options and metrics, the evaluation results, and usage snippets for transformers and glmv.
   Absolute paths in options are cut to their last component: a public card should not reveal the
   layout of a private cluster.
3. The upload (:func:`upload`): ``create_repo(exist_ok=True)``, ``create_branch`` for a revision
   other than ``main``, then a single ``create_commit`` with one ``CommitOperationAdd`` per file plus
   ``README.md``, so the repo never shows a partial model. The token comes from ``HF_TOKEN`` or the
   stored login (``huggingface_hub.get_token``); it is passed to the client only, never printed or
   written, and scrubbed from any error text that might echo it.

Eval results come from ``eval`` artifacts: their ``metrics["results"]`` is read as
``{task: {metric: number}}``. Keys in lm-eval's ``"metric,filter"`` form become ``metric`` (filter
``none``) or ``metric (filter)``; ``*_stderr`` entries and non-numbers (``alias``) are skipped. An
eval artifact without ``results`` contributes nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from glmv_cli import __version__
from glmv_cli.artifacts import MANIFEST, Manifest, read_manifest, sha256_bytes, sha256_file, verify_files
from glmv_cli.errors import GlmvError

CARD = "README.md"
WEIGHTS_INDEX = "model.safetensors.index.json"
SINGLE_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
CHECKPOINTS = "checkpoints/"
PIPELINE_TAG = "image-text-to-text"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_OPTION_SKIP = {"out", "overwrite", "recipe", "resume"}


@dataclass
class UploadFile:
    """One file of the commit: where it goes in the repo and what it must hash to."""

    path_in_repo: str
    local: Path
    bytes: int
    sha256: str
    verified: bool  # hash checked against the manifest (False only for unlisted checkpoint files)


@dataclass
class ModelArtifact:
    """A validated model artifact and the exact set of files a push uploads."""

    manifest: Manifest
    config: dict[str, Any]
    files: list[UploadFile]
    excluded: list[str] = field(default_factory=list)  # checkpoints/ unless --include-checkpoints
    unlisted: list[str] = field(default_factory=list)  # on disk, not in the manifest: not uploaded


@dataclass
class EvalRow:
    task: str
    metric: str
    value: float
    source: str  # the eval artifact's directory name


def check_repo_id(repo_id: str) -> str:
    if not _REPO_RE.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-")):
        raise GlmvError(f"--repo must be 'owner/name' (letters, digits, '-', '_', '.'), got '{repo_id}'")
    return repo_id


def _is_checkpoint(rel: str) -> bool:
    return rel == CHECKPOINTS.rstrip("/") or rel.startswith(CHECKPOINTS)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GlmvError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise GlmvError(f"{path}: not UTF-8 text") from None


def safetensors_tensor_names(path: Path) -> set[str]:
    """Tensor names in a safetensors file, from its header alone (no tensor data is read; the
    header's offsets are checked against the file size, so a truncated shard is caught here)."""
    from glmv_cli.modeling.weights import read_header

    return set(read_header(path))


def check_weights(root: Path, names: set[str]) -> list[str]:
    """Checks the shards against the index; returns the shard names. ``names``: files to upload."""
    shards = sorted(n for n in names if "/" not in n and n.endswith(".safetensors"))
    if WEIGHTS_INDEX not in names:
        if SINGLE_WEIGHTS in names:
            if shards != [SINGLE_WEIGHTS]:
                extra = [s for s in shards if s != SINGLE_WEIGHTS]
                raise GlmvError(f"{root / extra[0]}: a shard without {WEIGHTS_INDEX}; "
                                f"sharded weights need an index, a single {SINGLE_WEIGHTS} needs none")
            safetensors_tensor_names(root / SINGLE_WEIGHTS)
            return shards
        raise GlmvError(f"{root}: no weights: expected {WEIGHTS_INDEX} with its shards, or {SINGLE_WEIGHTS}")
    index_path = root / WEIGHTS_INDEX
    index = _read_json(index_path)
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise GlmvError(f"{index_path}: field 'weight_map' must be a non-empty mapping of tensor name to shard file")
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in wmap.items():
        if not isinstance(shard, str):
            raise GlmvError(f"{index_path}: field 'weight_map' maps '{tensor}' to {shard!r}, expected a file name")
        by_shard.setdefault(shard, set()).add(tensor)
    for shard in sorted(by_shard):
        if shard not in names:
            raise GlmvError(f"{index_path}: weight_map names '{shard}', but {root / shard} is "
                            + ("not listed in the manifest" if (root / shard).is_file() else "missing"))
        if not (root / shard).is_file():
            raise GlmvError(f"{root / shard}: missing (named by {WEIGHTS_INDEX} and listed in the manifest)")
    for shard in shards:
        if shard not in by_shard:
            raise GlmvError(f"{root / shard}: shard not named by {WEIGHTS_INDEX}'s weight_map")
    for shard in sorted(by_shard):
        missing = sorted(by_shard[shard] - safetensors_tensor_names(root / shard))
        if missing:
            raise GlmvError(f"{root / shard}: lacks tensor '{missing[0]}' that {WEIGHTS_INDEX} maps to it"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return sorted(by_shard)


def _require_one(root: Path, names: set[str], candidates: Iterable[str], what: str) -> str:
    candidates = list(candidates)
    for c in candidates:
        if c in names and (root / c).is_file():
            return c
    for c in candidates:
        if c in names:
            raise GlmvError(f"{root / c}: listed in the manifest but missing")
    wanted = " or ".join(candidates)
    raise GlmvError(f"{root}: no {what}: expected {wanted}")


def _check_inside(root: Path, rel: str) -> None:
    """A listed file must be a regular file reached without a symlink: a link could send a file
    from outside the artifact (a key, a home directory) to a public repo."""
    cur = root
    for part in Path(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            raise GlmvError(f"{cur}: is a symbolic link; push uploads only regular files inside the artifact, "
                            "never what a link points to (replace it with the file itself)")
    real, top = os.path.realpath(root / rel), os.path.realpath(root)
    if not real.startswith(top.rstrip(os.sep) + os.sep):
        raise GlmvError(f"{root / rel}: resolves outside the artifact ({real}); nothing was uploaded")


def validate_model_artifact(path: str | Path, *, include_checkpoints: bool = False) -> ModelArtifact:
    """Checks a model artifact and returns the files a push uploads; GlmvError names the bad file.

    A push uploads exactly the files the manifest lists (``files``, and with
    ``include_checkpoints`` the kept checkpoint's ``checkpoint_files``), each hash-checked against
    the manifest and reached without a symlink. Anything else on disk is named, never sent."""
    m = read_manifest(path, what="model")
    root = m.path
    listed = {rel: info for rel, info in m.files.items() if not _is_checkpoint(rel)}
    ckpt = {rel: info for rel, info in m.files.items() if _is_checkpoint(rel)}
    ckpt.update(m.data.get("checkpoint_files") or {})
    on_disk = sorted(f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file() or f.is_symlink())
    known = set(listed) | set(ckpt) | {MANIFEST}
    if include_checkpoints:
        if not ckpt:
            raise GlmvError(f"--include-checkpoints: the manifest of '{root}' lists no checkpoint files (train "
                            "with --keep-final-checkpoint to keep one in the artifact)")
        listed.update(ckpt)
        excluded = []
    else:
        excluded = sorted(set(ckpt) | {r for r in on_disk if _is_checkpoint(r) and r not in known})
    unlisted = [r for r in on_disk if r not in known and (include_checkpoints or not _is_checkpoint(r))]
    names = {rel for rel in listed if not _is_checkpoint(rel)}

    for rel in sorted(listed):
        _check_inside(root, rel)
    _check_inside(root, MANIFEST)
    check_weights(root, names)
    cfg_name = _require_one(root, names, ["config.json"], "model config")
    config = _read_json(root / cfg_name)
    if not isinstance(config, dict):
        raise GlmvError(f"{root / cfg_name}: expected a JSON object")
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise GlmvError(f"{root / cfg_name}: field 'model_type' is missing (expected e.g. \"glm4v\")")
    _require_one(root, names, ["tokenizer_config.json"], "tokenizer config")
    _require_one(root, names, TOKENIZER_FILES, "tokenizer file")
    _require_one(root, names, PROCESSOR_FILES, "processor config")

    problems = verify_files(Manifest(root, {**m.data, "files": listed}))
    if problems:
        raise GlmvError(f"model '{root}' is damaged, nothing was uploaded:\n  " + "\n  ".join(problems))

    files = [UploadFile(rel, root / rel, int(info["bytes"]), info["sha256"], True)
             for rel, info in sorted(listed.items())]
    files.append(UploadFile(MANIFEST, root / MANIFEST, (root / MANIFEST).stat().st_size,
                            sha256_file(root / MANIFEST), True))
    files.sort(key=lambda f: f.path_in_repo)
    return ModelArtifact(m, config, files, excluded, unlisted)


def check_endpoint(endpoint: str, allow_http: bool) -> str:
    """The Hub URL, if the token may go there: https, or http to a loopback address (a local test
    server), or any http with ``allow_http``. A plain-http endpoint elsewhere would send the
    token readable to every hop on the way."""
    from urllib.parse import urlsplit

    u = urlsplit(endpoint)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise GlmvError(f"--endpoint must be an http(s) URL with a host, got '{endpoint}'")
    if u.scheme == "http" and not allow_http and not _is_loopback(u.hostname):
        raise GlmvError(f"--endpoint '{endpoint}' is plain http to a non-local host: the Hub token would travel "
                        "unencrypted; use https, or pass --allow-http if this network is trusted")
    return endpoint


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: not resolved here (DNS could point it anywhere)


# ----------------------------------------------------------------------------- eval results


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


# Generation accounting that glmv eval stores beside the scores: counts, not results to publish.
ACCOUNTING = frozenset({"n", "sample_len", "failed_generations", "truncated", "forced", "no_answer"})


def eval_results(metrics: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(task, metric, value)`` from an eval manifest's ``metrics["results"][task][metric]``
    (scores only: the accounting keys in ``ACCOUNTING`` are left out of the model-index)."""
    results = metrics.get("results") if isinstance(metrics, dict) else None
    if not isinstance(results, dict):
        return []
    out = []
    for task, per_metric in results.items():
        if not isinstance(per_metric, dict):
            continue
        for key, value in per_metric.items():
            name, _, filt = str(key).partition(",")
            num = _number(value)
            if num is None or name.endswith("_stderr") or name in ACCOUNTING:
                continue
            out.append((str(task), name if filt in ("", "none") else f"{name} ({filt})", num))
    return out


def read_eval_artifacts(paths: Iterable[str | Path], model: Manifest) -> list[Manifest]:
    """Reads ``--eval`` artifacts; each must be an ``eval`` stage run on exactly this model."""
    sha = model.sha256
    evals = []
    for p in paths:
        e = read_manifest(p, expect_stage="eval", what="--eval")
        if not any(i.get("manifest_sha256") == sha for i in e.data.get("inputs", [])):
            seen = ", ".join(str(i.get("path")) for i in e.data.get("inputs", [])) or "none"
            raise GlmvError(f"--eval '{p}' evaluated another model (its inputs: {seen}), not '{model.path}'")
        evals.append(e)
    return evals


def collect_eval_rows(model: Manifest, evals: Iterable[Manifest]) -> list[EvalRow]:
    """Eval results of the lineage and of ``evals``; a later source wins on the same task+metric."""
    entries = [e for e in model.lineage if e.get("stage") == "eval"]
    entries += [e.lineage_entry() for e in evals]
    rows: dict[tuple[str, str], EvalRow] = {}
    seen: set[str] = set()
    for e in entries:
        key = e.get("manifest_sha256") or json.dumps(e, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        source = Path(str(e.get("path", "eval"))).name
        for task, metric, value in eval_results(e.get("metrics") or {}):
            rows[(task, metric)] = EvalRow(task, metric, value, source)
    return list(rows.values())


# ----------------------------------------------------------------------------- model card


def infer_base_model(lineage: list[dict[str, Any]]) -> list[str]:
    """Hub ids (``owner/name``) given to ``*model*`` options anywhere in the lineage, oldest first."""
    found: list[str] = []
    for entry in lineage:
        for key, value in (entry.get("options") or {}).items():
            if "model" not in key or not isinstance(value, str):
                continue
            if _REPO_RE.match(value) and not value.startswith(".") and not Path(value).exists() \
                    and value not in found:
                found.append(value)
    return found


def _cell(v: Any, width: int = 40) -> str:
    if isinstance(v, float):
        s = f"{v:.4g}"
    elif isinstance(v, str):
        s = Path(v).name if v.startswith("/") else v
    else:
        s = json.dumps(v, sort_keys=True)
    s = s.replace("\n", " ").replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


def _key_values(d: dict[str, Any], limit: int, skip: set[str] = frozenset()) -> str:
    items = [(k, v) for k, v in d.items()
             if k not in skip and (v is None or isinstance(v, (str, int, float, bool)))]
    shown = ", ".join(f"{k}={_cell(v, 24)}" for k, v in items[:limit])
    return shown + (f" (+{len(items) - limit})" if len(items) > limit else "") if shown else "–"


def lineage_table(chain: list[dict[str, Any]]) -> str:
    lines = ["| # | stage | created | key options | key metrics |", "|---|---|---|---|---|"]
    for i, e in enumerate(chain):
        metrics = e.get("metrics") or {}
        if e.get("stage") == "eval":  # nested results: flatten to task/metric=value
            metrics = {f"{t}/{k}": v for t, k, v in eval_results(metrics)} or metrics
        lines.append(f"| {i} | {_cell(e.get('stage', '?'))} | {_cell(e.get('created') or '–')} | "
                     f"{_key_values(e.get('options') or {}, 6, _OPTION_SKIP)} | "
                     f"{_key_values(metrics, 6)} |")
    return "\n".join(lines)


def render_model_card(art: ModelArtifact, repo_id: str, *, license: str, base_model: list[str],
                      tags: Iterable[str], eval_rows: list[EvalRow], evals: Iterable[Manifest] = ()) -> str:
    """The README.md: YAML metadata the Hub indexes plus a human-readable body."""
    from huggingface_hub import EvalResult, ModelCardData

    model_type = art.config["model_type"]
    name = repo_id.split("/", 1)[1]
    all_tags = ["glmv", model_type, "vision-language", "reasoning", *tags]
    data = ModelCardData(
        license=license,
        base_model=(base_model[0] if len(base_model) == 1 else base_model) or None,
        pipeline_tag=PIPELINE_TAG,
        library_name="transformers",
        tags=all_tags,
        model_name=name if eval_rows else None,
        eval_results=[EvalResult(task_type=PIPELINE_TAG, dataset_type=r.task, dataset_name=r.task,
                                 metric_type=r.metric, metric_value=r.value) for r in eval_rows] or None,
    )
    m = art.manifest
    chain = m.lineage + [m.lineage_entry()] + [e.lineage_entry() for e in evals]
    size = sum(f.bytes for f in art.files)
    verify = " --verify" if not any(r in m.files for r in art.excluded) else ""
    parts = [
        "---", data.to_yaml(), "---", "",
        f"# {name}", "",
        f"A `{model_type}` vision-language model trained with glmv, a reproduction of the training "
        f"framework of GLM-4.1V-Thinking / GLM-4.5V ([arXiv 2507.01006](https://arxiv.org/abs/2507.01006)). "
        f"This upload is the `{m.stage}` artifact: {len(art.files)} files, {size / 1e6:,.1f} MB, "
        f"manifest sha256 `{m.sha256[:16]}`.", "",
        "## Lineage", "",
        "Stages that produced this model, oldest first (from `manifest.json`):", "",
        lineage_table(chain), "",
    ]
    if eval_rows:
        parts += ["## Evaluation", "", "| task | metric | value | eval run |", "|---|---|---|---|"]
        parts += [f"| {_cell(r.task)} | {_cell(r.metric)} | {r.value:.4g} | {_cell(r.source)} |" for r in eval_rows]
        parts.append("")
    parts += [
        "## Usage", "",
        "With transformers:", "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'processor = AutoProcessor.from_pretrained("{repo_id}")',
        f'model = AutoModelForImageTextToText.from_pretrained("{repo_id}", dtype="auto", device_map="auto")',
        'messages = [{"role": "user", "content": [',
        '    {"type": "image", "url": "https://example.com/chart.png"},',
        '    {"type": "text", "text": "What is the highest value in the chart?"}]}]',
        "inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,",
        '                                       return_dict=True, return_tensors="pt").to(model.device)',
        "out = model.generate(**inputs, max_new_tokens=2048)",
        'print(processor.decode(out[0, inputs["input_ids"].shape[1]:]))',
        "```", "",
        "The response thinks in `<think>…</think>`, then answers; the final answer is inside "
        "`<|begin_of_box|>…<|end_of_box|>`.", "",
        "With glmv (the download is a glmv artifact: `manifest.json` carries the lineage above):", "",
        "```bash",
        f"hf download {repo_id} --local-dir {name}",
        f"glmv info {name}{verify}",
        "```", "",
        "Pass the directory as the model input of a later stage (`glmv sft`, `glmv rlcs`, `glmv eval`).", "",
        f"Pushed with glmv {__version__}.", "",
    ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- plan and upload


def upload_plan(art: ModelArtifact, card: str, *, repo_id: str, private: bool, revision: str,
                commit_message: str, endpoint: str) -> dict[str, Any]:
    """What a push sends, as JSON: never the token, only paths, sizes and hashes."""
    card_bytes = card.encode("utf-8")
    files = [{"path_in_repo": f.path_in_repo, "local": str(f.local), "bytes": f.bytes, "sha256": f.sha256,
              "verified": f.verified} for f in art.files if f.path_in_repo != CARD]
    files.append({"path_in_repo": CARD, "local": None, "bytes": len(card_bytes),
                  "sha256": sha256_bytes(card_bytes), "verified": True})
    files.sort(key=lambda f: f["path_in_repo"])
    return {
        "endpoint": endpoint,
        "repo_id": repo_id,
        "repo_type": "model",
        "private": private,
        "revision": revision,
        "commit_message": commit_message,
        "model": str(art.manifest.path),
        "model_stage": art.manifest.stage,
        "model_manifest_sha256": art.manifest.sha256,
        "files": files,
        "total_bytes": sum(f["bytes"] for f in files),
        "excluded": art.excluded,
        "not_in_manifest": art.unlisted,
        "replaces_artifact_readme": any(f.path_in_repo == CARD for f in art.files),
    }


def resolve_token() -> str:
    """The Hub token from ``HF_TOKEN`` or the stored login; an error when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise GlmvError("no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                        "(--dry-run checks the artifact and writes the card without one)")
    return token


def upload(art: ModelArtifact, card: str, plan: dict[str, Any], token: str) -> dict[str, Any]:
    """Creates the repo (and branch) and uploads every file plus README.md in one commit."""
    import httpx2
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.is_offline_mode():
        raise GlmvError("HF_HUB_OFFLINE is set: unset it (and TRANSFORMERS_OFFLINE) to push, "
                        "or use --dry-run")
    repo_id, revision = plan["repo_id"], plan["revision"]
    api = HfApi(endpoint=plan["endpoint"], token=token)
    ops = []
    for f in art.files:
        if f.path_in_repo == CARD:
            continue
        op = CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local))
        op.upload_info.sha256 = bytes.fromhex(f.sha256)  # verified above: spares a second full read
        ops.append(op)
    ops.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode("utf-8")))
    try:
        # private=None rather than False: without --private the owner's default visibility applies.
        url = api.create_repo(repo_id, repo_type="model", private=True if plan["private"] else None, exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.create_commit(repo_id, ops, commit_message=plan["commit_message"], repo_type="model",
                                 revision=revision)
    except (HfHubHTTPError, httpx2.HTTPError, ValueError, OSError) as e:
        msg = str(e).replace(token, "***")
        raise GlmvError(f"push to {plan['endpoint']}/{repo_id} failed: {msg}") from None
    return {"repo_url": str(url), "commit_url": info.commit_url, "commit_oid": info.oid}
