"""``glmv push DIR --repo owner/name``: publish a model artifact on the Hugging Face Hub.

Parse → validate the artifact (shards + index, config, tokenizer, processor, hashes; see
:mod:`glmv_cli.hub`) → read ``--eval`` artifacts → write the model card → one commit. Push is the
last stage and writes no artifact: its output is the Hub repo. ``--out DIR`` keeps a local record of
what was (or, with ``--dry-run``, would be) pushed: ``README.md`` and ``upload_plan.json``, written
only after the commit succeeded (``"sent": true`` with the commit) or for a dry run (``"sent":
false``); a failed push writes nothing there, so the record never claims an upload that did not
happen. That directory is not an artifact (it has no manifest), so no stage mistakes it for an input.

The token goes only to an https endpoint, or plain http on a loopback address (a local server)
unless ``--allow-http`` (:func:`glmv_cli.hub.check_endpoint`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from glmv_cli.errors import GlmvError
from glmv_cli.options import opt

PLAN = "upload_plan.json"


@dataclass
class PushOptions:
    model: Path = opt(help="Model artifact directory (written by pretrain, extend-context, sft or rlcs).",
                      argument=True, metavar="DIR")
    repo: str = opt(help="Target Hub repo, 'owner/name'; created if missing.")
    private: bool = opt(False, "Create the repo private [default: the owner's default visibility]; an existing "
                               "repo keeps its visibility.")
    revision: str = opt("main", "Branch to commit to; created from main if missing.")
    commit_message: Optional[str] = opt(None, "Commit summary [default: 'glmv push: <stage> model (manifest <sha>)'].")
    dry_run: bool = opt(False, "Validate, write README.md and upload_plan.json to --out, and touch no network.")
    out: Optional[Path] = opt(None, "Directory for README.md and upload_plan.json: required with --dry-run; after "
                                    "a real push, a record of what was sent.")
    overwrite: bool = opt(False, "Reuse a non-empty --out.")
    include_checkpoints: bool = opt(False, "Also upload DIR/checkpoints/ (resumable training state).")
    evals: list[Path] = opt([], "Eval artifact of this model whose results go into the card (repeatable).",
                            flag="--eval", metavar="DIR")
    license: str = opt("mit", "License id for the card metadata.")
    base_model: list[str] = opt([], "Hub id of the base model (repeatable) [default: the Hub ids given to *model* "
                                    "options in the lineage; 'none' omits it].", metavar="ID")
    tags: list[str] = opt([], "Extra card tag (repeatable).", flag="--tag", metavar="TAG")
    endpoint: Optional[str] = opt(None, "Hub URL [default: $HF_ENDPOINT or https://huggingface.co].")
    allow_http: bool = opt(False, "Send the token to a plain-http --endpoint that is not a loopback address "
                                  "(unencrypted: only on a trusted network).")

    def validate(self) -> None:
        from glmv_cli import options

        options.validate(self)

    def check(self) -> None:
        from glmv_cli.hub import check_repo_id

        check_repo_id(self.repo)
        if not self.revision or self.revision.strip() != self.revision or " " in self.revision:
            raise GlmvError(f"--revision must be a branch name without spaces, got '{self.revision}'")
        if self.commit_message is not None and not self.commit_message.strip():
            raise GlmvError("--commit-message must not be empty")
        if self.dry_run and self.out is None:
            raise GlmvError("--dry-run needs --out DIR for the card and the upload plan")
        if self.out is not None:
            from glmv_cli.artifacts import check_disjoint, check_out_parent

            check_disjoint(self.out, [self.model, *self.evals])
            check_out_parent(self.out)
        if self.out is not None and self.out.exists():
            if not self.out.is_dir():
                raise GlmvError(f"--out '{self.out}' exists and is not a directory")
            if any(self.out.iterdir()) and not self.overwrite:
                raise GlmvError(f"--out '{self.out}' already exists and is not empty; "
                                "choose a new path or pass --overwrite")
        if not self.license.strip():
            raise GlmvError("--license must not be empty (e.g. mit, apache-2.0, other)")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise GlmvError(f"--endpoint must be an http(s) URL, got '{self.endpoint}'")


@dataclass
class PushResult:
    plan: dict[str, Any]
    card: str
    pushed: bool
    out: Optional[Path] = None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def push(opts: PushOptions) -> PushResult:
    """Validates ``opts.model``, renders the card, and pushes it (unless ``dry_run``)."""
    from huggingface_hub import constants

    from glmv_cli import hub

    opts.validate()
    art = hub.validate_model_artifact(opts.model, include_checkpoints=opts.include_checkpoints)
    evals = hub.read_eval_artifacts(opts.evals, art.manifest)
    rows = hub.collect_eval_rows(art.manifest, evals)
    base = opts.base_model or hub.infer_base_model(art.manifest.lineage + [art.manifest.lineage_entry()])
    base = [b for b in base if b.lower() != "none"]
    card = hub.render_model_card(art, opts.repo, license=opts.license, base_model=base, tags=opts.tags,
                                 eval_rows=rows, evals=evals)
    message = opts.commit_message or (
        f"glmv push: {art.manifest.stage} model (manifest {art.manifest.sha256[:12]})")
    endpoint = (opts.endpoint or constants.ENDPOINT).rstrip("/")
    plan = hub.upload_plan(art, card, repo_id=opts.repo, private=opts.private, revision=opts.revision,
                           commit_message=message, endpoint=endpoint)
    plan["eval_results"] = [asdict(r) for r in rows]
    hub.check_endpoint(endpoint, opts.allow_http)
    if opts.dry_run:
        plan["sent"] = False
        _write_record(opts.out, card, plan)
        return PushResult(plan, card, pushed=False, out=opts.out)
    # The token is resolved only now, after every local check, and only for a real push.
    token = hub.resolve_token()
    plan["result"] = hub.upload(art, card, plan, token)
    plan["sent"] = True
    if opts.out is not None:  # only now: a failed push leaves no record that looks like a sent one
        _write_record(opts.out, card, plan)
    return PushResult(plan, card, pushed=True, out=opts.out)


def _write_record(out: Path, card: str, plan: dict[str, Any]) -> None:
    from glmv_cli import hub

    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / hub.CARD, card)
    _write_text(out / PLAN, json.dumps(plan, indent=2) + "\n")


DOC = """Upload a model artifact to the Hugging Face Hub with a generated model card.

Checks first, before any request: the manifest's sha256 of every file to upload, the
shards against model.safetensors.index.json (each named shard exists and holds its
tensors, no stray shard), config.json with a model_type, tokenizer_config.json plus
tokenizer.json (or tokenizer.model), and preprocessor_config.json or processor_config.json.
The first failure is an error naming the file, and nothing is sent.

Then it writes README.md: YAML metadata (license, base_model, pipeline_tag
image-text-to-text, tags, model-index with eval results) and a body with the lineage as a
table of stages with key options and metrics, the eval results, and usage snippets for
transformers and glmv. Eval results come from --eval artifacts (an `eval` stage run on this
exact model) and from eval stages in the lineage: metrics["results"][task][metric].

It creates the repo (exist_ok) and commits manifest.json, every file the manifest lists
(checkpoints/ only with --include-checkpoints) and README.md in one commit. Files on disk
that the manifest does not list are not uploaded (upload_plan.json names them).

The token comes from HF_TOKEN or `hf auth login`; it is never printed or written. Pushing
needs HF_HUB_OFFLINE unset. --dry-run needs no token and no network.
"""


def report(res: PushResult) -> None:
    plan = res.plan
    mb = plan["total_bytes"] / 1e6
    vis = "private" if plan["private"] else "public"
    print(f"{len(plan['files'])} files ({mb:,.1f} MB) -> {plan['repo_id']} ({vis}) "
          f"@ {plan['revision']}: {plan['commit_message']}")
    if plan["excluded"]:
        n = len(plan["excluded"])
        print(f"  excluded: {n} file{'s' * (n != 1)} under checkpoints/ (--include-checkpoints)")
    for rel in plan["not_in_manifest"][:10]:
        print(f"  not uploaded (not in the manifest): {rel}")
    if len(plan["not_in_manifest"]) > 10:
        print(f"  … and {len(plan['not_in_manifest']) - 10} more")
    if res.pushed:
        print(f"pushed: {plan['result']['commit_url']}")
    else:
        print(f"dry run: wrote {res.out / 'README.md'} and {res.out / PLAN}; nothing was sent")


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "push", push, PushOptions, doc=DOC, report=report)
