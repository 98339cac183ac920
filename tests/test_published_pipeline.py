"""The chained pipeline on the published layouts: synth -> pack -> sft -> grade-difficulty -> rlcs -> eval.

Each family runs on its fixture as a bigram policy that answers every question with a box holding
1, 2 or 3 (drawn with equal probability) in that family's answer form. The synth data is counting
level 1 (1-3 shapes), so about a third of the answers are right: rewards differ inside a group,
GRPO gets informative groups, and rlcs's reward is non-zero only if every link keeps the family's
format (the 4.5V gate rejects <answer> tags; the 4.1V answer must keep its final </answer>).
Artifacts are shared per module; the settings are tiny (a few steps, short responses).
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from glmv_cli.main import app

torch.set_num_threads(1)
runner = CliRunner()
DIGITS = ("1", "2", "3")
STYLE = {"glm41v": "glm41v", "glm45v": "glm45v"}


def _run(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    """Counting level 1 in both answer forms (the same scenes: the same seed)."""
    root = tmp_path_factory.mktemp("synth")
    for style in ("glm41v", "glm45v"):
        _run("synth", "--out", root / style, "--domains", "counting", "--levels", "1", "--n-train", "12",
             "--n-eval", "4", "--style", style)
    return root


@pytest.fixture(scope="module", params=["glm41v", "glm45v"])
def chain(request, published, synth_data, tmp_path_factory):
    """Runs the whole chain for one family; returns the artifact directories."""
    kind = request.param
    model = published(kind, digits=DIGITS)
    root = tmp_path_factory.mktemp(f"chain-{kind}")
    syn = synth_data / STYLE[kind]
    a = {"kind": kind, "model": model, "synth": syn, "pack": root / "pack", "sft": root / "sft",
         "grades": root / "grades", "rl": root / "rl", "eval": root / "eval"}
    _run("pack", "--model", model, "--input", syn, "--out", a["pack"], "--seq-len", "256")
    _run("sft", "--model", model, "--data", a["pack"], "--out", a["sft"], "--max-steps", "2", "--global-batch", "2",
         "--lr", "1e-5")
    _run("grade-difficulty", "--model", a["sft"], "--data", syn, "--out", a["grades"], "--k", "4",
         "--batch-size", "3", "--max-new-tokens", "20")
    _run("rlcs", "--model", a["sft"], "--data", syn, "--grades", a["grades"], "--out", a["rl"], "--steps", "2",
         "--group-size", "4", "--batch-prompts", "2", "--max-new-tokens", "20", "--micro-batch", "8", "--lr", "1e-5",
         "--eval-every", "1", "--eval-limit", "4")
    _run("eval", "--model", a["rl"], "--tasks", "synth", "--data-dir", syn, "--thinking-budget", "16",
         "--answer-budget", "4", "--batch-size", "4", "--out", a["eval"])
    return a


def test_pack_renders_with_the_checkpoint_template(chain):
    m = _manifest(chain["pack"])
    assert m["chat_template"] == "checkpoint" and m["options"]["style"] == STYLE[chain["kind"]]
    assert m["metrics"]["records_out"] == 6 and m["metrics"]["answers_converted"] == 0
    assert m["metrics"]["template_realigned"] == 0  # single-turn records: glmv's rendering is the template's


def test_sft_model_files_equal_the_input_except_weights(chain):
    src, out = chain["model"], chain["sft"]
    differ = sorted(f.name for f in src.iterdir()
                    if not (out / f.name).is_file() or not filecmp.cmp(f, out / f.name, shallow=False))
    shards = sorted(f.name for f in src.iterdir() if f.name.startswith("model-"))
    assert differ == sorted(shards + ["model.safetensors.index.json"])
    from glmv_cli.modeling import weights_dtype

    assert weights_dtype(out) == "bf16"
    shown = _run("info", out)
    assert "sft" in shown and "pack" in shown  # the lineage: pack -> sft


def test_grading_and_rl_see_the_answers(chain):
    g = _manifest(chain["grades"])["metrics"]
    rate = next(iter(g["model_pass_rate"].values()))
    assert 0.0 < rate < 1.0  # a third of the boxes are right, on average
    rl = _lines(chain["rl"] / "metrics.jsonl")
    assert len(rl) == 2 and all(m["reward"] > 0 for m in rl)
    assert all(m["informative_frac"] > 0 for m in rl)
    m = _manifest(chain["rl"])["metrics"]
    assert m["style"] == STYLE[chain["kind"]] and m["mean_reward"] > 0


def test_eval_reads_every_answer(chain):
    res = _manifest(chain["eval"])["metrics"]["results"]["glmv_synth"]
    assert res["n"] == 4 and res["failed_generations"] == 0 and res["no_answer"] == 0.0
    for ln in _lines(chain["eval"] / "samples" / "glmv_synth.jsonl"):
        assert ln["answer"] in DIGITS and (ln["response"].endswith("</answer>") == (chain["kind"] == "glm41v"))


@pytest.mark.parametrize("kind,data_style", [("glm45v", "glm41v"), ("glm41v", "glm45v")])
def test_pack_converts_the_other_familys_answer_form(published, synth_data, tmp_path, kind, data_style):
    from glmv_cli.data.packed import PackedDataset

    model = published(kind)
    _run("pack", "--model", model, "--input", synth_data / data_style, "--out", tmp_path / "p", "--seq-len", "256")
    m = _manifest(tmp_path / "p")
    assert m["metrics"]["answers_converted"] == 6
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ds = PackedDataset(tmp_path / "p")
    trained = [tok.decode([t for t in ds[i]["labels"].view(-1).tolist() if t != -100]) for i in range(len(ds))]
    text = "".join(trained)
    assert text.count("<|begin_of_box|>") == 6
    assert ("<answer>" in text) == (kind == "glm41v")


@pytest.mark.parametrize("kind", ["glm41v", "glm45v"])
def test_pretrain_extend_context_and_push_keep_the_published_files(published, synth_data, tmp_path, kind):
    """The training stages that change the model's config change only that key of config.json."""
    model = published(kind)
    _run("pack", "--model", model, "--input", synth_data / STYLE[kind], "--out", tmp_path / "pt", "--mode",
         "pretrain", "--seq-len", "256")
    _run("pretrain", "--model", model, "--data", tmp_path / "pt", "--out", tmp_path / "pre", "--max-steps", "1",
         "--lr", "1e-5", "--save-dtype", "fp32")
    from glmv_cli.modeling import weights_dtype

    assert weights_dtype(tmp_path / "pre") == "fp32"
    _run("extend-context", "--model", tmp_path / "pre", "--data", tmp_path / "pt", "--out", tmp_path / "long",
         "--seq-len", "131072", "--max-steps", "1", "--lr", "1e-5")
    src, got = (json.loads((d / "config.json").read_text()) for d in (model, tmp_path / "long"))
    assert got["text_config"].pop("max_position_embeddings") == 131072
    assert src["text_config"].pop("max_position_embeddings") == 65536
    for cfg in (src, got):  # the weights went fp32 at pretrain (--save-dtype) and stayed so (auto)
        cfg.pop("dtype"), cfg["text_config"].pop("dtype")
    assert src == got and weights_dtype(tmp_path / "long") == "fp32"
    for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "preprocessor_config.json", "video_preprocessor_config.json"):
        assert filecmp.cmp(model / f, tmp_path / "long" / f, shallow=False), f
    out = _run("push", tmp_path / "long", "--repo", "someone/tiny-glm", "--dry-run", "--out", tmp_path / "card")
    plan = json.loads((tmp_path / "card" / "upload_plan.json").read_text())
    names = {f["path_in_repo"] for f in plan["files"]}
    assert {"config.json", "video_preprocessor_config.json", "chat_template.jinja"} <= names, out
