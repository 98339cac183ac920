"""Rewards users bring: the reward_fn hook and the \\boxed{} answer-format policy."""

import json

import pytest
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.rewards import (
    GateConfig,
    check_answer_format,
    config_from_dict,
    format_gate,
    load_config,
    load_reward_fn,
    score_detailed,
)

M = "tests.rewards.userfns.geo"
runner = CliRunner()


BOXED = [  # (response, answer_format, (answer, reason))
    ("<think>w</think><answer>It is \\boxed{12}.</answer>", "boxed", ("12", None)),
    ("<think>w</think><answer>\\boxed{\\frac{1}{2}}</answer>", "boxed", ("\\frac{1}{2}", None)),
    ("<think>w</think><answer>\\boxed{12}</answer>", "glm", (None, "boxed")),
    ("<think>w</think><answer><|begin_of_box|>12<|end_of_box|></answer>", "boxed", (None, "box_tokens")),
    ("<think>\\boxed{3}</think><answer>\\boxed{12}</answer>", "boxed", (None, "box_in_think")),
    ("<think>w</think><answer>\\boxed{1} or \\boxed{2}</answer>", "boxed", (None, "box_count")),
    ("<think>w</think><answer>\\boxed{}</answer>", "boxed", (None, "empty_box")),
    ("<think>w</think><answer>\\boxed{12</answer>", "boxed", (None, "box_count")),
    ("<think>w</think><answer>12</answer>", "boxed", (None, "missing_box")),
    ("<think>w</think><answer>\\boxed{12}</answer>", "either", ("12", None)),
    ("<think>w</think><answer><|begin_of_box|>12<|end_of_box|></answer>", "either", ("12", None)),
    ("<think>w</think><answer><|begin_of_box|>12<|end_of_box|> \\boxed{12}</answer>", "either",
     (None, "two_box_conventions")),
]


@pytest.mark.parametrize("response,fmt,want", BOXED)
def test_answer_formats(response, fmt, want):
    assert format_gate(response, GateConfig(answer_format=fmt)) == want


def test_answer_format_per_domain():
    cfg = config_from_dict({"domains": {"geo3k": {"verifier": "math", "answer_format": "boxed"}}})
    r = "<think>w</think><answer>\\boxed{12}</answer>"
    assert score_detailed(None, r, "12", "geo3k", config=cfg).reward == 1.0
    assert score_detailed(None, r, "12", "math", config=cfg).gate == "boxed"


def test_boxed_prompts_under_the_glm_policy_are_detected():
    prompts = [("g1", "geo3k", "Find x. The final answer MUST BE put in \\boxed{}."), ("g2", "geo3k", "Find y."),
               ("m1", "math", "What is 2+2?")]
    cfg = config_from_dict({"domains": {"geo3k": {"verifier": "math"}}})
    msg = check_answer_format(prompts, cfg)
    assert msg.startswith("prompts ask for \\boxed{} answers but the reward config's answer format is 'glm'")
    assert "1 of 2 'geo3k' prompts (e.g. record 'g1')" in msg and "answer_format: boxed" in msg
    ok = config_from_dict({"domains": {"geo3k": {"verifier": "math", "answer_format": "either"}}})
    assert check_answer_format(prompts, ok) is None
    assert check_answer_format(prompts, cfg.with_reward_fn(f"{M}:boxed_exact")) is None


def test_reward_fn_scores_every_domain_with_the_whole_response():
    cfg = load_config(None, reward_fn=f"{M}:boxed_exact")
    r = "Let me see... \\boxed{12}"
    res = score_detailed(None, r, "12", "geo3k", config=cfg)
    assert (res.reward, res.verifier, res.gate, res.error) == (1.0, "reward_fn", None, None)
    assert cfg.accepts("anything") and score_detailed(None, r, "13", "math", config=cfg).reward == 0.0


def test_reward_fn_per_domain_and_its_errors_are_counted():
    cfg = config_from_dict({"domains": {
        "geo3k": {"verifier": "reward_fn", "function": f"{M}:half"},
        "bad": {"verifier": "reward_fn", "function": f"{M}:raises"},
        "str": {"verifier": "reward_fn", "function": f"{M}:not_a_number"},
        "big": {"verifier": "reward_fn", "function": f"{M}:too_much"},
        "slow": {"verifier": "reward_fn", "function": f"{M}:slow", "timeout_s": 0.2}}})
    assert score_detailed(None, "x", "y", "geo3k", config=cfg).reward == 0.5
    assert score_detailed(None, "x", "y", "bad", config=cfg).error == "KeyError: 'no such field'"
    assert score_detailed(None, "x", "y", "str", config=cfg).error == "reward is str, not a number"
    assert score_detailed(None, "x", "y", "big", config=cfg).reward == 1.0  # clamped
    assert score_detailed(None, "x", "y", "slow", config=cfg).error == "timeout"
    assert score_detailed(None, "<think>w</think><answer><|begin_of_box|>1<|end_of_box|></answer>", "1", "math",
                          config=cfg).verifier == "math"  # other domains keep their verifiers


@pytest.mark.parametrize("spec,msg", [
    ("nodots", "--reward-fn must look like 'package.module:function', got 'nodots'"),
    ("a.b:c:d", "must look like 'package.module:function'"),
    ("os:system; rm", "must look like 'package.module:function'"),
    ("no_such_module_xyz:f", "importing module 'no_such_module_xyz' failed (ModuleNotFoundError"),
    (f"{M}:missing", f"module '{M}' has no attribute 'missing'"),
    (f"{M}:NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
    (f"{M}:two_args", "the function must accept (prompt, response, reference, domain, extra)"),
])
def test_reward_fn_load_errors(spec, msg):
    with pytest.raises(GlmvError) as ei:
        load_reward_fn(spec)
    assert msg in str(ei.value)


def test_reward_fn_in_the_config_file(tmp_path):
    p = tmp_path / "rewards.yaml"
    p.write_text(f"reward_fn: '{M}:half'\nreward_fn_timeout_s: 2\n")
    cfg = load_config(p)
    assert cfg.reward_fn == f"{M}:half" and cfg.reward_fn_timeout_s == 2.0
    p.write_text("domains: {g: {verifier: reward_fn}}\n")
    with pytest.raises(GlmvError, match="domains.g.function is missing"):
        load_config(p)


def test_glmv_reward_with_reward_fn_and_a_boxed_warning(tmp_path):
    inp = tmp_path / "r.jsonl"
    rows = [{"response": "\\boxed{12}", "reference": "12", "domain": "geo3k", "prompt": "Put it in \\boxed{}."},
            {"response": "\\boxed{11}", "reference": "12", "domain": "geo3k"}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), "--reward-fn",
                              f"{M}:boxed_exact"])
    assert res.exit_code == 0, res.output
    scored = [json.loads(x) for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()]
    assert [(s["reward"], s["verifier"]) for s in scored] == [(1.0, "reward_fn"), (0.0, "reward_fn")]
    cfg = tmp_path / "rewards.yaml"
    cfg.write_text("domains: {geo3k: {verifier: math}}\n")
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o2"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "warning: prompts ask for \\boxed{} answers" in " ".join(res.output.split())
    man = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert man["warnings"][0].startswith("prompts ask for \\boxed{} answers")
