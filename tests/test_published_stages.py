"""Every generating stage on the GLM-4.1V-9B-Thinking layout: a perfect answer scores 1.0.

The model is the 4.1V fixture turned into a bigram policy that always answers
``<think>the</think><answer><|begin_of_box|>3<|end_of_box|></answer>`` and stops on ``</answer>``:
an eos id of GLM-4.1V's published generation config, and a content token of the answer format. It
has to reach the reward in the text (only pure control tokens are cut), or every answer scores 0.
On records whose reference answer is 3 the scripted model is always right, so rollouts, grading,
RL and eval must all see reward 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from glmv_cli.main import app

torch.set_num_threads(1)
runner = CliRunner()
PERFECT = "<think>the</think><answer><|begin_of_box|>3<|end_of_box|></answer>"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four counting records (the answer is always 3), as RL data and as a synth-style eval split."""
    d = tmp_path_factory.mktemp("threes")
    (d / "images").mkdir()
    rows = []
    for i in range(4):
        Image.new("RGB", (112, 112), (40 * i, 120, 200)).save(d / "images" / f"{i}.png")
        rows.append({"id": f"q{i}", "messages": [{"role": "user", "content": f"<image>\nQ{i}: how many shapes?"}],
                     "images": [f"images/{i}.png"], "answer": "3", "domain": "counting", "difficulty": 1})
    blob = "".join(json.dumps(r) + "\n" for r in rows)
    (d / "rl.jsonl").write_text(blob)
    (d / "eval.jsonl").write_text(blob)
    return d


@pytest.fixture(scope="module")
def perfect(published):
    return published("glm41v", digits=("3",))


def test_rollouts_keep_the_content_stop_token_and_score_one(perfect, data):
    from glmv_cli.data.schema import parse_record
    from glmv_cli.data.template import ChatFormat
    from glmv_cli.generation import HFEngine, SamplingParams, control_stop_ids, prompt_from_record
    from glmv_cli.modeling import load
    from glmv_cli.rewards.scoring import load_config, score

    model, proc = load(perfect)
    fmt = ChatFormat.of(proc, model.config.model_type)
    line = (data / "rl.jsonl").read_text().splitlines()[0]
    rec = parse_record(line, path=str(data / "rl.jsonl"), line=1, mode="pretrain")
    prompt = prompt_from_record(rec, proc.tokenizer, proc.image_processor, style=fmt.style, template=fmt.template)
    assert proc.tokenizer.decode(prompt.input_ids[-2:]) == "<|assistant|>\n"
    outs = HFEngine(model, proc.tokenizer, batch_size=8).generate([prompt], SamplingParams(max_new_tokens=20), n=4)
    cfg = load_config(None).with_style("glm41v")
    for r in outs[0]:
        assert r.finish_reason == "stop" and r.token_ids[-1] == 151348  # </answer>: in the eos list
        assert r.text == PERFECT
        assert score("how many shapes?", r.text, "3", "counting", {}, config=cfg) == 1.0
    assert 151348 not in control_stop_ids(proc.tokenizer)
    assert control_stop_ids(proc.tokenizer) == {151329, 151336, 151338}


def test_control_stop_tokens_are_cut_content_ones_kept():
    from glmv_cli.generation.sampling import response_ids

    control = frozenset({1, 2})
    assert response_ids([5, 6, 1], [False] * 3, control) == [5, 6]
    assert response_ids([5, 6, 9], [False] * 3, control) == [5, 6, 9]  # a content eos stays
    assert response_ids([5, 1], [False, True], control) == [5, 1]      # a forced token is never cut


def test_grade_difficulty_pass_rate_is_one(perfect, data, tmp_path):
    out = tmp_path / "grades"
    r = runner.invoke(app, ["grade-difficulty", "--data", str(data / "rl.jsonl"), "--model", str(perfect),
                            "--out", str(out), "--k", "4", "--batch-size", "4", "--max-new-tokens", "20",
                            "--save-responses"])
    assert r.exit_code == 0, r.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["metrics"]["model_pass_rate"] == {str(perfect): 1.0}
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [x["models"][0]["pass_rate"] for x in results] == [1.0] * 4
    rolls = [json.loads(x) for x in (out / "rollouts.jsonl").read_text().splitlines()]
    assert {t for x in rolls for t in x["responses"]} == {PERFECT}


def test_rlcs_reward_is_one(perfect, data, tmp_path):
    out = tmp_path / "rl"
    r = runner.invoke(app, ["rlcs", "--model", str(perfect), "--data", str(data / "rl.jsonl"), "--out", str(out),
                            "--steps", "1", "--group-size", "4", "--batch-prompts", "2", "--max-new-tokens", "20",
                            "--micro-batch", "8", "--eval-data", str(data / "eval.jsonl")])
    assert r.exit_code == 0, r.output
    m = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert m[0]["reward"] == 1.0
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["reward"] for e in evals] == [1.0, 1.0]
    from glmv_cli.modeling import weights_dtype

    assert weights_dtype(out) == "bf16"  # --save-dtype auto: the input's


def test_eval_scores_one(perfect, data, tmp_path):
    out = tmp_path / "ev"
    r = runner.invoke(app, ["eval", "--model", str(perfect), "--tasks", "synth", "--data-dir", str(data),
                            "--thinking-budget", "16", "--answer-budget", "4", "--batch-size", "4",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "manifest.json").read_text())["metrics"]["results"]["glmv_synth"]
    assert res["n"] == 4 and res["acc"] == 1.0 and res["mean_reward"] == 1.0
    lines = [json.loads(x) for x in (out / "samples" / "glmv_synth.jsonl").read_text().splitlines()]
    assert {ln["response"] for ln in lines} == {PERFECT}


def test_stages_without_a_model_are_errors(data, tmp_path):
    for args in (["eval", "--tasks", "synth", "--out", str(tmp_path / "e")],
                 ["rlcs", "--data", str(data / "rl.jsonl"), "--out", str(tmp_path / "r")],
                 ["grade-difficulty", "--data", str(data / "rl.jsonl"), "--out", str(tmp_path / "g")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "--model" in r.output, (args, r.output)
        assert not Path(args[-1]).exists()


def test_glm46v_family_rolls_out_and_trains(published, data, tmp_path):
    """Model type glm46v (transformers' Glm46V classes, the 4.5V format): rlcs runs and scores 1.0."""
    model = published("glm46v", digits=("3",))
    out = tmp_path / "rl46"
    r = runner.invoke(app, ["rlcs", "--model", str(model), "--data", str(data / "rl.jsonl"), "--out", str(out),
                            "--steps", "1", "--group-size", "2", "--batch-prompts", "1", "--max-new-tokens", "20",
                            "--micro-batch", "4"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())["metrics"]
    assert m["style"] == "glm45v" and m["final_reward"] == 1.0
    assert json.loads((out / "config.json").read_text())["model_type"] == "glm46v"
