"""The glmv lm-eval adapter: request plumbing, failure accounting (never hidden), refusals."""

from types import SimpleNamespace

import pytest
from PIL import Image

from glmv_cli.errors import GlmvError
from glmv_cli.evaluation.adapter import GenRequest, Generation, GlmvLM, HFGenerator, GenSettings, ScriptedGenerator


def _inst(context, images=None, task="t", doc_id=0):
    args = (context, {"until": []}) + (({"visual": images},) if images is not None else ())
    return SimpleNamespace(args=args, task_name=task, doc_id=doc_id)


def test_requests_become_glm_prompts_and_failures_are_counted():
    img = Image.new("RGB", (8, 8))
    gen = ScriptedGenerator({"q1": "<think>a</think><answer>x</answer>"}, default="")
    lm = GlmvLM(generator=gen, batch_size=2)
    out = lm.generate_until([
        _inst("q1 what?", [img]),                   # no placeholder: the image goes first
        _inst("<image>q2 <image>", [img]),          # 2 placeholders, 1 image: refused, counted
        _inst("q3 text only"),
    ])
    assert out == ["<think>a</think><answer>x</answer>", "", ""]
    assert [r.text for r in gen.seen] == ["<image>\nq1 what?", "q3 text only"]
    assert dict(lm.stats["t"]) == {"requests": 3, "stop": 2, "error": 1}
    bad = [r for r in lm.records if r["finish_reason"] == "error"]
    assert bad[0]["doc_id"] == 0 and "2 <image> placeholder(s) but the task gave 1 image(s)" in bad[0]["error"]


def test_refusals_name_the_problem():
    lm = GlmvLM(generator=ScriptedGenerator({}))
    with pytest.raises(GlmvError, match="only runs generative tasks"):
        lm.loglikelihood([])
    with pytest.raises(GlmvError, match="unknown model_args: thinkingbudget"):
        GlmvLM(generator=ScriptedGenerator({}), thinkingbudget=3)
    with pytest.raises(GlmvError, match="needs pretrained=DIR"):
        GlmvLM()
    with pytest.raises(GlmvError, match="--answer-budget must be >= 1, got 0"):
        GlmvLM(generator=ScriptedGenerator({}), answer_budget=0)


def test_hf_generator_isolates_a_failing_request(monkeypatch):
    """A batch that raises is retried one by one; only the bad request is an error."""
    import torch

    from glmv_cli.modeling import load

    model, proc = load("tiny")
    g = HFGenerator(model, proc, GenSettings(thinking_budget=3, answer_budget=2), batch_size=4)
    real = g.engine.generate

    def flaky(prompts, params, n=1, seed=0):
        if any(p.id == "boom" for p in prompts):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(prompts, params, n=n, seed=seed)

    monkeypatch.setattr(g.engine, "generate", flaky)
    img = Image.new("RGB", (28, 28), (200, 10, 10))
    outs = g.generate([GenRequest("a", "<image>\nfirst", [img]), GenRequest("boom", "second"),
                       GenRequest("c", "<image><image>\nthird", [img])])
    assert outs[0].finish_reason in ("stop", "length", "forced") and outs[0].error is None
    assert outs[1] == Generation("", "error", "RuntimeError: CUDA out of memory (simulated)")
    assert outs[2].finish_reason == "error" and "placeholder" in outs[2].error
    # the budget holds: 3 thinking + 2 forced tokens + 2 answer tokens at most
    assert outs[0].num_tokens <= 7


def test_video_goes_through_glms_native_video_input():
    """A video request becomes frame pairs with their timestamps (not loose images): the Video-MME
    fixture (8 frames at 4 fps, 2 s) sampled at 2 fps is 4 frames = 2 pairs stamped 0 and 1."""
    from pathlib import Path

    import torch

    from glmv_cli.modeling import load

    torch.set_num_threads(1)
    model, proc = load("tiny")
    g = HFGenerator(model, proc, GenSettings(thinking_budget=2, answer_budget=2), batch_size=1)
    clip = Path(__file__).parent / "fixtures" / "eval" / "videomme" / "videos" / "fixvid01.mp4"
    p = g._prompt(GenRequest("v", "<video>\nHow does the brightness change?", videos=[str(clip)]))
    text = proc.tokenizer.decode(p.input_ids)
    n = p.image_grid_thw[0].prod().item() // 4
    # 32 px frames rise to the 56 px minimum (4 x 4 patches): 2 pairs of 16 rows, 4 tokens a pair
    assert p.image_grid_thw.tolist() == [[1, 4, 4], [1, 4, 4]] and p.pixel_values.shape[0] == 32
    assert f"<|begin_of_video|><|begin_of_image|>{'<|image|>' * n}<|end_of_image|>0<|begin_of_image|>" in text
    assert text.count("<|begin_of_image|>") == 2 and "<|end_of_image|>1<|end_of_video|>" in text
    out = g.generate([GenRequest("v", "<video>\nHow does the brightness change?", videos=[str(clip)])])
    assert out[0].finish_reason in ("stop", "length", "forced") and out[0].error is None


def test_failed_generations_reach_results_and_manifest(tmp_path):
    from pathlib import Path

    from glmv_cli.stages.eval import EvalOptions, run_eval

    class HalfBroken:
        def generate(self, reqs):
            return [Generation("", "error", "boom") if "Q-HB2" in r.text or "Q-HB4" in r.text
                    else Generation("<think>t</think><answer><|begin_of_box|>yes<|end_of_box|></answer>", "forced")
                    for r in reqs]

    fixtures = Path(__file__).parent / "fixtures" / "eval"
    m = run_eval(EvalOptions(model="m", out=tmp_path / "ev", tasks="hallusionbench", data_dir=fixtures),
                 generator=HalfBroken())
    res = m.metrics["results"]["glmv_hallusionbench"]
    # rows 1, 3, 5 (gold yes) and 6 (gold no) answered yes, rows 2 and 4 failed: scored 0, counted, not dropped
    assert res["n"] == 6 and res["acc"] == 0.5 and res["failed_generations"] == 2 and res["forced"] == 4
    assert res["no_answer"] == pytest.approx(2 / 6)
    assert m.metrics["failed_generations"] == 2
