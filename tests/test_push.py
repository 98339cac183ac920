"""glmv push: artifact validation, model card, and the real huggingface_hub client against a local
recording server on 127.0.0.1 (no request ever leaves the machine)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from glmv_cli import hub
from glmv_cli.artifacts import ArtifactWriter, read_manifest
from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.stages.push import PushOptions, push

runner = CliRunner()
TOKEN = "hf_SECRETtok3nNeverPrinted42"
ART_FILES = [
    "chat_template.jinja", "config.json", "generation_config.json", "manifest.json", "metrics.jsonl",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
    "preprocessor_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
]


# ----------------------------------------------------------------------------- fixtures


def _write_model_files(d: Path) -> None:
    s1 = {"model.embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
          "model.layers.0.w": np.ones((2, 2), dtype=np.float32)}
    s2 = {"lm_head.weight": np.full((3, 4), 0.5, dtype=np.float32)}
    save_file(s1, str(d / "model-00001-of-00002.safetensors"))
    save_file(s2, str(d / "model-00002-of-00002.safetensors"))
    wmap = {k: "model-00001-of-00002.safetensors" for k in s1} | {k: "model-00002-of-00002.safetensors" for k in s2}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 136}, "weight_map": wmap}))
    (d / "config.json").write_text(json.dumps({"model_type": "glm4v", "architectures": ["Glm4vForConditionalGeneration"]}))
    (d / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 1.0}))
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    (d / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    (d / "chat_template.jinja").write_text("[gMASK]<sop>{% for m in messages %}{{ m.content }}{% endfor %}")
    (d / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "Glm4vImageProcessor"}))
    (d / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n')
    (d / "checkpoints" / "step-00000002").mkdir(parents=True)
    (d / "checkpoints" / "step-00000002" / "state.json").write_text('{"step": 2}')


@pytest.fixture
def model(tmp_path) -> Path:
    """synth -> sft: a two-shard glm4v model artifact with a lineage."""
    with ArtifactWriter(tmp_path / "data", "synth", options={"seed": 3, "records": 64}) as art:
        (art.path / "train.jsonl").write_text("{}\n")
        art.metrics["records"] = 64
    with ArtifactWriter(tmp_path / "sft", "sft", inputs=[read_manifest(tmp_path / "data")],
                        options={"model": "zai-org/GLM-4.1V-9B-Base", "lr": 2e-5, "out": "/scratch/me/sft",
                                 "data": "/scratch/me/data", "seq_len": 8192}) as art:
        _write_model_files(art.path)
        art.metrics.update(final_loss=0.8125, steps=2)
    return tmp_path / "sft"


def _eval_artifact(tmp_path: Path, model_dir: Path, name: str = "ev", results=None) -> Path:
    if results is None:
        results = {"mmmu_val": {"accuracy": 0.5, "alias": "mmmu_val"},
                   "chartqa": {"relaxed_accuracy,none": 0.25, "relaxed_accuracy_stderr,none": 0.01}}
    with ArtifactWriter(tmp_path / name, "eval", inputs=[read_manifest(model_dir)]) as art:
        (art.path / "results.json").write_text("{}")
        art.metrics["results"] = results
    return tmp_path / name


class _Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[dict]

    def log_message(self, *a):  # keep pytest output clean
        pass

    def _reply(self, obj: dict, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        url = urlsplit(self.path)
        path = unquote(url.path)
        ctype = self.headers.get("Content-Type", "")
        body = ([json.loads(l) for l in raw.splitlines() if l] if "ndjson" in ctype
                else json.loads(raw) if raw else None)
        self.server.log.append({"method": "POST", "path": path, "query": parse_qs(url.query),
                                "auth": self.headers.get("Authorization"), "body": body})
        if path == "/api/repos/create":
            return self._reply({"url": f"http://{self.headers['Host']}/{body['organization']}/{body['name']}"})
        if path == "/api/validate-yaml":
            return self._reply({})
        if "/preupload/" in path:
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in body["files"]]})
        if "/branch/" in path:
            return self._reply({})
        if "/commit/" in path:
            repo = path.split("/api/models/")[1].split("/commit/")[0]
            return self._reply({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/abc123",
                                "commitOid": "a" * 40})
        self._reply({"error": f"unexpected {path}"}, 404)

    def do_GET(self):
        self.server.log.append({"method": "GET", "path": self.path})
        self._reply({"error": "unexpected GET"}, 404)


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A recording fake Hub; the real client may talk to it (offline mode lifted for this test only)."""
    import huggingface_hub.constants as c

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    srv.log = []
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _all_text_under(*dirs: Path) -> str:
    out = []
    for d in dirs:
        for f in d.rglob("*"):
            if f.is_file():
                out.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


# ----------------------------------------------------------------------------- push over HTTP


def test_push_commits_exactly_the_artifact_files_plus_card(model, server, tmp_path):
    ev = _eval_artifact(tmp_path, model)
    rec = tmp_path / "pushed"
    r = runner.invoke(app, ["push", str(model), "--repo", "me/glm-tiny", "--private", "--revision", "exp-1",
                            "--commit-message", "first upload", "--eval", str(ev), "--endpoint", server.url,
                            "--out", str(rec)])
    assert r.exit_code == 0, r.output
    assert "13 files (0.0 MB) -> me/glm-tiny (private) @ exp-1: first upload" in r.output
    assert "pushed: " + server.url + "/me/glm-tiny/commit/abc123" in r.output
    assert "excluded: 1 file under checkpoints/ (--include-checkpoints)" in r.output

    log = server.log
    assert [e["path"] for e in log] == [
        "/api/repos/create", "/api/models/me/glm-tiny/branch/exp-1", "/api/validate-yaml",
        "/api/models/me/glm-tiny/preupload/exp-1", "/api/models/me/glm-tiny/commit/exp-1"]
    assert all(e["auth"] == f"Bearer {TOKEN}" for e in log)
    assert log[0]["body"] == {"name": "glm-tiny", "organization": "me", "visibility": "private", "type": "model"}
    header, *ops = log[-1]["body"]
    assert header == {"key": "header", "value": {"summary": "first upload", "description": ""}}
    paths = sorted(op["value"]["path"] for op in ops)
    assert paths == sorted(ART_FILES + ["README.md"])
    sent = {op["value"]["path"]: base64.b64decode(op["value"]["content"]) for op in ops}
    for rel in ART_FILES:
        assert sent[rel] == (model / rel).read_bytes(), rel
    card = sent["README.md"].decode()
    assert card == (rec / "README.md").read_text()
    plan = json.loads((rec / "upload_plan.json").read_text())
    assert plan["result"]["commit_oid"] == "a" * 40 and plan["private"] is True and plan["revision"] == "exp-1"
    assert sorted(f["path_in_repo"] for f in plan["files"]) == paths
    assert plan["excluded"] == ["checkpoints/step-00000002/state.json"]

    # the token went only into the Authorization header
    assert TOKEN not in r.output and TOKEN not in card
    assert TOKEN not in _all_text_under(tmp_path)
    assert TOKEN not in json.dumps([{k: v for k, v in e.items() if k != "auth"} for e in log])


def test_push_main_public_default_message_and_checkpoints(model, server):
    res = push(PushOptions(model=model, repo="org/m", endpoint=server.url, include_checkpoints=True))
    assert res.pushed
    log = server.log
    assert [e["path"] for e in log] == ["/api/repos/create", "/api/validate-yaml",
                                        "/api/models/org/m/preupload/main", "/api/models/org/m/commit/main"]
    assert "visibility" not in log[0]["body"]
    header, *ops = log[-1]["body"]
    sha = read_manifest(model).sha256
    assert header["value"]["summary"] == f"glmv push: sft model (manifest {sha[:12]})"
    assert sorted(op["value"]["path"] for op in ops) == sorted(
        ART_FILES + ["README.md", "checkpoints/step-00000002/state.json"])


def _flip_last_byte(d: Path) -> None:
    """A bit flip in tensor data: same size, valid header, different hash."""
    f = d / "model-00001-of-00002.safetensors"
    b = bytearray(f.read_bytes())
    b[-1] ^= 0x01
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model-00002-of-00002.safetensors").unlink(),
     "{d}/model-00002-of-00002.safetensors: missing (named by model.safetensors.index.json and listed in "
     "the manifest)"),
    (_flip_last_byte,
     "model '{d}' is damaged, nothing was uploaded:\n  {d}/model-00001-of-00002.safetensors: sha256 differs "
     "from the manifest"),
    (lambda d: (d / "preprocessor_config.json").unlink(),
     "{d}/preprocessor_config.json: listed in the manifest but missing"),
])
def test_damaged_artifact_stops_before_any_request(model, server, damage, message):
    damage(model)
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url])
    assert r.exit_code == 2
    assert r.output.strip() == "error: " + message.format(d=model.resolve())
    assert server.log == []


def test_missing_processor_when_never_written(tmp_path, server):
    with ArtifactWriter(tmp_path / "m", "sft") as art:
        _write_model_files(art.path)
        (art.path / "preprocessor_config.json").unlink()
    with pytest.raises(GlmvError) as e:
        push(PushOptions(model=tmp_path / "m", repo="me/x", endpoint=server.url))
    d = (tmp_path / "m").resolve()
    assert str(e.value) == (f"{d}: no processor config: expected preprocessor_config.json or "
                            "processor_config.json")
    assert server.log == []


def test_no_token_is_a_clear_error_before_any_request(model, server, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url])
    assert r.exit_code == 2
    assert "error: no Hugging Face token: set HF_TOKEN or run `hf auth login`" in r.output
    assert server.log == []


def test_offline_mode_refuses_to_push(model, server, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(GlmvError, match="HF_HUB_OFFLINE is set: unset it"):
        push(PushOptions(model=model, repo="me/x", endpoint=server.url))
    assert server.log == []


def test_server_error_is_reported_without_the_token(model, server):
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url + "/nothere"])
    assert r.exit_code == 2
    assert f"error: push to {server.url}/nothere/me/x failed:" in r.output
    assert TOKEN not in r.output
    assert [e["path"] for e in server.log] == ["/nothere/api/repos/create"]


# ----------------------------------------------------------------------------- dry run and card


def test_dry_run_writes_card_and_plan_and_sends_nothing(model, server, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")  # no token needed
    out = tmp_path / "dry"
    r = runner.invoke(app, ["push", str(model), "--repo", "me/glm-tiny", "--dry-run", "--out", str(out),
                            "--endpoint", server.url, "--tag", "demo"])
    assert r.exit_code == 0, r.output
    assert server.log == []
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "upload_plan.json"]
    plan = json.loads((out / "upload_plan.json").read_text())
    assert "result" not in plan and plan["private"] is False and plan["revision"] == "main"
    assert sorted(f["path_in_repo"] for f in plan["files"]) == sorted(ART_FILES + ["README.md"])
    man = read_manifest(model)
    for f in plan["files"]:
        if f["path_in_repo"] in man.files:
            assert f["sha256"] == man.files[f["path_in_repo"]]["sha256"]
    assert plan["total_bytes"] == sum(f["bytes"] for f in plan["files"])
    assert "dry run: wrote" in r.output and "nothing was sent" in r.output

    from huggingface_hub import ModelCard

    card = ModelCard((out / "README.md").read_text())
    meta = card.data.to_dict()
    assert meta["pipeline_tag"] == "image-text-to-text"
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert meta["base_model"] == "zai-org/GLM-4.1V-9B-Base"
    assert meta["tags"] == ["glmv", "glm4v", "vision-language", "reasoning", "demo"]
    assert "model-index" not in meta
    body = card.text
    assert "| 0 | synth |" in body and "| 1 | sft |" in body
    assert "lr=2e-05" in body and "seq_len=8192" in body and "data=data" in body
    assert "/scratch" not in body and "out=" not in body
    assert "final_loss=0.8125" in body and "records=64" in body
    assert 'AutoModelForImageTextToText.from_pretrained("me/glm-tiny"' in body
    assert "glmv info glm-tiny\n" in body  # checkpoints are listed but not uploaded: no --verify


def test_card_model_index_from_eval_artifacts(model, tmp_path):
    ev1 = _eval_artifact(tmp_path, model, "ev1")
    ev2 = _eval_artifact(tmp_path, model, "ev2", {"mmmu_val": {"accuracy": 0.625}, "ocrbench": {"acc": 0.75}})
    res = push(PushOptions(model=model, repo="me/glm-tiny", dry_run=True, out=tmp_path / "o",
                           evals=[ev1, ev2], base_model=["none"], license="apache-2.0"))
    from huggingface_hub import ModelCard

    card = ModelCard(res.card)
    assert card.data.license == "apache-2.0" and card.data.base_model is None
    got = sorted((r.dataset_name, r.metric_type, r.metric_value, r.task_type) for r in card.data.eval_results)
    assert got == [("chartqa", "relaxed_accuracy", 0.25, "image-text-to-text"),
                   ("mmmu_val", "accuracy", 0.625, "image-text-to-text"),
                   ("ocrbench", "acc", 0.75, "image-text-to-text")]
    assert card.data.model_name == "glm-tiny"
    assert "| mmmu_val | accuracy | 0.625 | ev2 |" in card.text
    assert "| 2 | eval |" in card.text and "| 3 | eval |" in card.text
    assert "mmmu_val/accuracy=0.625, ocrbench/acc=0.75 |" in card.text
    assert res.plan["eval_results"][0] == {"task": "mmmu_val", "metric": "accuracy", "value": 0.625, "source": "ev2"}


def test_eval_results_shape():
    assert hub.eval_results({}) == []
    assert hub.eval_results({"results": "n/a"}) == []
    assert hub.eval_results({"results": {"t": {"acc,none": 1, "acc_stderr,none": 0.1, "em,strict": 0.5,
                                               "alias": "t", "flag": True, "nan": float("nan")},
                                         "bad": 3}}) == [("t", "acc", 1.0), ("t", "em (strict)", 0.5)]
    # glmv eval's own shape: scores kept, generation accounting left out of the model-index
    glmv_eval = {"results": {"glmv_synth": {"acc": 0.375, "mean_reward": 0.4, "no_answer": 0.0, "n": 128,
                                            "failed_generations": 0, "truncated": 3, "forced": 2}}}
    assert hub.eval_results(glmv_eval) == [("glmv_synth", "acc", 0.375), ("glmv_synth", "mean_reward", 0.4)]


def test_eval_of_another_model_is_rejected(model, tmp_path):
    with ArtifactWriter(tmp_path / "other", "sft") as art:
        _write_model_files(art.path)
    ev = _eval_artifact(tmp_path, tmp_path / "other", "ev_other")
    with pytest.raises(GlmvError, match=r"--eval '.*ev_other' evaluated another model \(its inputs: .*other\)"):
        push(PushOptions(model=model, repo="me/x", dry_run=True, out=tmp_path / "o", evals=[ev]))
    with pytest.raises(GlmvError, match="was written by stage 'sft', expected one of: eval"):
        push(PushOptions(model=model, repo="me/x", dry_run=True, out=tmp_path / "o", evals=[model]))


# ----------------------------------------------------------------------------- validation details


def _rewrite(model: Path, fn) -> Path:
    """Applies fn to a fresh copy of the model's files in a new, consistent artifact."""
    out = model.parent / "rewritten"
    with ArtifactWriter(out, "sft") as art:
        _write_model_files(art.path)
        fn(art.path)
    return out.resolve()


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "model-00003-of-00003.safetensors").write_bytes((d / "model-00002-of-00002.safetensors").read_bytes()),
     "{d}/model-00003-of-00003.safetensors: shard not named by model.safetensors.index.json's weight_map"),
    (lambda d: (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors",
                        "extra.weight": "model-00002-of-00002.safetensors",
                        "model.embed.weight": "model-00001-of-00002.safetensors",
                        "model.layers.0.w": "model-00001-of-00002.safetensors"}})),
     "{d}/model-00002-of-00002.safetensors: lacks tensor 'extra.weight' that model.safetensors.index.json maps to it"),
    (lambda d: (d / "model.safetensors.index.json").write_text('{"weight_map": {}}'),
     "{d}/model.safetensors.index.json: field 'weight_map' must be a non-empty mapping of tensor name to shard file"),
    (lambda d: (d / "config.json").write_text('{"architectures": []}'),
     "{d}/config.json: field 'model_type' is missing (expected e.g. \"glm4v\")"),
    (lambda d: (d / "config.json").write_text('{"model_type": '),
     "{d}/config.json:1: invalid JSON (Expecting value)"),
    (lambda d: (d / "tokenizer.json").unlink(),
     "{d}: no tokenizer file: expected tokenizer.json or tokenizer.model"),
    (lambda d: (d / "model-00001-of-00002.safetensors").write_bytes(b"\xff" * 16),
     "{d}/model-00001-of-00002.safetensors: not a safetensors file (header length 18,446,744,073,709,551,615 exceeds "
         "the file of 16 bytes: truncated or corrupted)"),
])
def test_validation_errors_name_the_file(model, edit, message):
    d = _rewrite(model, edit)
    with pytest.raises(GlmvError) as e:
        hub.validate_model_artifact(d)
    assert str(e.value) == message.format(d=d)


def test_single_file_weights_and_unlisted_files(tmp_path):
    with ArtifactWriter(tmp_path / "m", "sft") as art:
        _write_model_files(art.path)
        for f in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"):
            (art.path / f).unlink()
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(art.path / "model.safetensors"))
        (art.path / "preprocessor_config.json").rename(art.path / "processor_config.json")
        (art.path / "tokenizer.json").rename(art.path / "tokenizer.model")
    (tmp_path / "m" / "notes.txt").write_text("scratch")
    a = hub.validate_model_artifact(tmp_path / "m")
    names = [f.path_in_repo for f in a.files]
    assert "model.safetensors" in names and "processor_config.json" in names and "tokenizer.model" in names
    assert "notes.txt" not in names and "preprocessor_config.json" not in names
    assert a.unlisted == ["notes.txt"] and a.excluded == ["checkpoints/step-00000002/state.json"]


def test_bad_options(model, tmp_path):
    for kw, msg in [({"repo": "noslash"}, "--repo must be 'owner/name' (letters, digits, '-', '_', '.'), got 'noslash'"),
                    ({"repo": "a/b", "dry_run": True}, "--dry-run needs --out DIR for the card and the upload plan"),
                    ({"repo": "a/b", "revision": "my branch"}, "--revision must be a branch name without spaces, got 'my branch'")]:
        with pytest.raises(GlmvError) as e:
            push(PushOptions(model=model, **kw))
        assert str(e.value) == msg
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(GlmvError, match="--out '.*full' already exists and is not empty"):
        push(PushOptions(model=model, repo="a/b", dry_run=True, out=tmp_path / "full"))


def test_help_documents_the_flags():
    r = runner.invoke(app, ["push", "--help"])
    assert r.exit_code == 0
    for flag in ("--repo", "--private", "--revision", "--commit-message", "--dry-run", "--out", "--eval",
                 "--include-checkpoints", "--license", "--base-model", "--tag", "--endpoint", "HF_TOKEN"):
        assert flag in r.output, flag


# ----------------------------------------------------------------------------- what push never sends


def test_a_symlinked_file_is_refused_before_any_request(model, server, tmp_path):
    """A listed file swapped for a symlink to a file outside the artifact with the very same bytes
    (so its hash matches) is still refused: push never follows a link out of the artifact."""
    secret = tmp_path / "secret.json"
    secret.write_bytes((model / "tokenizer.json").read_bytes())
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").symlink_to(secret)
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url, "--out", str(tmp_path / "rec")])
    assert r.exit_code == 2
    assert r.output.strip().startswith(f"error: {model.resolve() / 'tokenizer.json'}: is a symbolic link; push uploads "
                                       "only regular files inside the artifact")
    assert server.log == [] and not (tmp_path / "rec").exists()


def _with_kept_checkpoint(tmp_path: Path) -> Path:
    """A model artifact as training writes it with --keep-final-checkpoint: checkpoints/ outside
    ``files``, listed with sizes and hashes in ``checkpoint_files``."""
    art = ArtifactWriter(tmp_path / "kept", "sft", exclude=("checkpoints",)).open()
    _write_model_files(art.path)
    save_file({"m": np.ones(3, dtype=np.float32)}, str(art.path / "checkpoints" / "step-00000002" / "model.safetensors"))
    art.extra["checkpoint_files"] = art._file_table(art.path / "checkpoints")
    art.commit()
    return tmp_path / "kept"


def test_include_checkpoints_sends_exactly_the_listed_checkpoint_files(server, tmp_path):
    d = _with_kept_checkpoint(tmp_path)
    step = d / "checkpoints" / "step-00000002"
    (step / "scratch.bin").write_bytes(b"not listed")
    (tmp_path / "key").write_text("PRIVATE")
    (step / "key-link").symlink_to(tmp_path / "key")
    res = push(PushOptions(model=d, repo="me/k", endpoint=server.url, include_checkpoints=True))
    assert res.pushed
    ops = server.log[-1]["body"][1:]
    sent = sorted(op["value"]["path"] for op in ops)
    assert [p for p in sent if p.startswith("checkpoints/")] == ["checkpoints/step-00000002/model.safetensors",
                                                                  "checkpoints/step-00000002/state.json"]
    assert all(base64.b64decode(op["value"]["content"]) != b"PRIVATE" for op in ops)
    assert sorted(res.plan["not_in_manifest"]) == ["checkpoints/step-00000002/key-link",
                                                   "checkpoints/step-00000002/scratch.bin"]
    assert all(f["verified"] for f in res.plan["files"])
    server.log.clear()
    (step / "state.json").write_text('{"step": 3}')  # same size, other content
    with pytest.raises(GlmvError, match=r"is damaged, nothing was uploaded:\n  .*state.json: sha256 differs"):
        push(PushOptions(model=d, repo="me/k", endpoint=server.url, include_checkpoints=True))
    assert server.log == []


def _non_loopback_ipv4() -> str | None:
    """This machine's address on its default route (a UDP connect sends no packet), if any."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_plain_http_to_a_non_loopback_host_gets_no_token_unless_allowed(model, monkeypatch, tmp_path):
    """A local server on all interfaces (127.0.0.1 included), reached by the machine's own non-loopback
    address: refused before any request; --allow-http sends."""
    import huggingface_hub.constants as c

    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach a local server by")
    srv = ThreadingHTTPServer(("0.0.0.0", 0), _Hub)
    srv.log = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    url = f"http://{ip}:{srv.server_address[1]}"
    try:
        r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", url])
        assert r.exit_code == 2 and srv.log == []
        assert f"error: --endpoint '{url}' is plain http to a non-local host: the Hub token would travel " \
               "unencrypted" in r.output
        r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", url, "--allow-http"])
        assert r.exit_code == 0, r.output
        assert srv.log and all(e["auth"] == f"Bearer {TOKEN}" for e in srv.log)
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_failed_push_writes_no_record(model, server, tmp_path):
    rec = tmp_path / "rec"
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url + "/nothere",
                            "--out", str(rec)])
    assert r.exit_code == 2 and "failed:" in r.output
    assert not rec.exists()  # no README.md / upload_plan.json that would read as a record of an upload
    r = runner.invoke(app, ["push", str(model), "--repo", "me/x", "--endpoint", server.url, "--out", str(rec)])
    assert r.exit_code == 0
    assert json.loads((rec / "upload_plan.json").read_text())["sent"] is True


def test_endpoint_rules():
    assert hub.check_endpoint("https://huggingface.co", False) == "https://huggingface.co"
    for ok in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.5.0.1"):
        assert hub.check_endpoint(ok, False) == ok
    for bad in ("http://hub.internal", "http://10.0.0.5", "http://127.0.0.1.example.com"):
        with pytest.raises(GlmvError, match="plain http to a non-local host"):
            hub.check_endpoint(bad, False)
        assert hub.check_endpoint(bad, True) == bad
