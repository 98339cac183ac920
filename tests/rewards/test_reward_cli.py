"""`glmv reward`: the artifact, the per-domain table, bad lines, configs."""

import json

import pytest
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.rewards import config_from_dict, load_config

B, E = "<|begin_of_box|>", "<|end_of_box|>"
runner = CliRunner()


def r41(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


def r45(ans: str) -> str:
    return f"<think>work</think>{B}{ans}{E}"


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"id": "m1", "response": r41("\\frac{1}{2}"), "reference": "0.5", "domain": "math"},
    {"id": "m2", "response": r41("between 0 and 10"), "reference": "10", "domain": "math"},
    {"id": "m3", "response": "<think>" + B + "4" + E + "</think><answer>4</answer>", "reference": "4", "domain": "stem"},
    {"id": "c1", "response": r41("101"), "answer": "100", "domain": "chart"},
    {"id": "g1", "response": r41("[10, 10, 100, 100]"), "reference": "[10, 10, 100, 100]", "domain": "grounding"},
    {"id": "g2", "response": r41("[1, 1, 2, 2]"), "reference": "[9, 9, 50, 50]", "domain": "grounding"},
    {"id": "q1", "response": r41("B. a cat"), "reference": "B", "domain": "mcq", "prompt": "Which?",
     "extra": {"options": ["a dog", "a cat"]}},
]


def test_reward_end_to_end(tmp_path):
    inp = write(tmp_path / "responses.jsonl", ROWS)
    out = tmp_path / "scored"
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for word in ("rewards per domain", "grounding", "stem", "reward", "gate fail", "errors", "timeouts"):
        assert word in res.output
    line = next(x for x in res.output.splitlines() if x.strip().startswith("grounding"))
    assert line.split() == ["grounding", "2", "0.500", "0.500", "0", "0", "0", "0"]
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reward"]) for r in rows] == [("m1", 1.0), ("m2", 0.0), ("m3", 0.0), ("c1", 1.0),
                                                       ("g1", 1.0), ("g2", 0.0), ("q1", 1.0)]
    assert rows[2]["gate"] == "box_in_think" and rows[2]["domain"] == "stem"
    assert rows[5]["error"] is None and rows[0]["line"] == 1
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "reward" and "scores.jsonl" in man["files"]
    d = man["metrics"]["domains"]
    assert d["math"] == {"n": 2, "mean_reward": 0.5, "pass_rate": 0.5, "gate_failures": 0, "gate_reasons": {},
                         "verifier_errors": 0, "timeouts": 0, "unverifiable": 0}
    assert d["stem"]["gate_reasons"] == {"box_in_think": 1}
    assert d["grounding"]["verifier_errors"] == 0 and d["grounding"]["mean_reward"] == 0.5
    assert d["all"]["n"] == 7 and d["all"]["gate_failures"] == 1 and d["all"]["verifications_per_s"] > 0
    assert man["metrics"]["skipped_lines"] == 0
    assert man["reward_config"]["gates"]["style"] == "glm41v"


def test_style_glm45v(tmp_path):
    inp = write(tmp_path / "r.jsonl", [{"response": r45("7"), "reference": "7", "domain": "counting"},
                                       {"response": r41("7"), "reference": "7", "domain": "counting"}])
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), "--style", "glm45v"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()]
    assert [(r["reward"], r["gate"]) for r in rows] == [(1.0, None), (0.0, "answer_tags")]


GOOD = json.dumps({"response": r41("1"), "reference": "1", "domain": "math"})
BAD_LINES = [
    ("{not json", "{p}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
    ("[1, 2]", "{p}:2: expected a JSON object, got list"),
    (json.dumps({"reference": "1", "domain": "math"}), "{p}:2: field 'response' is missing"),
    (json.dumps({"response": "x", "domain": "math"}), "{p}:2: field 'reference' is missing"),
    (json.dumps({"response": "x", "reference": "1"}), "{p}:2: field 'domain' is missing"),
    (json.dumps({"response": 5, "reference": "1", "domain": "math"}), "{p}:2: field 'response' must be a string, got int"),
    (json.dumps({"response": "x", "reference": 1, "domain": "math"}), "{p}:2: field 'reference' must be a string, got int"),
    (json.dumps({"response": "x", "reference": "1", "domain": "poetry"}), "{p}:2: field 'domain': unknown domain 'poetry'"),
    (json.dumps({"response": "x", "reference": "1", "domain": "math", "extra": [1]}),
     "{p}:2: field 'extra' must be an object, got list"),
    (json.dumps({"response": "x", "reference": "1", "domain": "math", "prompt": 3}),
     "{p}:2: field 'prompt' must be a string, got int"),
    (json.dumps({"response": "x", "reference": "[9, 9, 1, 1]", "domain": "grounding"}),
     "{p}:2: field 'reference': domain 'grounding': grounding reference '[9, 9, 1, 1]' is not a list of valid "
     "0-1000 boxes"),
    (json.dumps({"response": "x", "reference": "one", "domain": "counting"}),
     "{p}:2: field 'reference': domain 'counting': counting reference 'one' is not a non-negative integer"),
]


@pytest.mark.parametrize("line,msg", BAD_LINES)
def test_bad_lines_name_file_line_field(tmp_path, line, msg):
    inp = write(tmp_path / "r.jsonl", [GOOD, line])
    out = tmp_path / "o"
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(out)])
    assert res.exit_code == 2
    assert f"error: {msg.format(p=inp)}" in res.output
    assert not out.exists()


def test_on_bad_skip_counts(tmp_path):
    inp = write(tmp_path / "r.jsonl", [GOOD, "{oops", "", GOOD])
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), "--on-bad", "skip"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["metrics"]["skipped_lines"] == 1 and man["metrics"]["domains"]["all"]["n"] == 2
    assert man["skipped"][0].startswith(f"{inp}:2: invalid JSON")


@pytest.mark.parametrize("args,msg", [
    (["--style", "glm5"], "error: --style must be one of auto, glm41v, glm45v, got 'glm5'"),
    (["--on-bad", "ignore"], "error: --on-bad must be one of fail, skip, got 'ignore'"),
    (["--workers", "0"], "error: --workers must be >= 1, got 0"),
])
def test_bad_options(tmp_path, args, msg):
    inp = write(tmp_path / "r.jsonl", [GOOD])
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and msg in res.output


def test_missing_input_and_existing_out(tmp_path):
    res = runner.invoke(app, ["reward", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not exist or is not a file" in res.output
    inp = write(tmp_path / "r.jsonl", [GOOD])
    assert runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o")]).exit_code == 0
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), "--overwrite",
                              "--workers", "2"])
    assert res.exit_code == 0


def test_config_file_changes_verifiers(tmp_path):
    cfg = tmp_path / "rewards.yaml"
    cfg.write_text("style: glm41v\ngates:\n  require_box: false\n"
                   "domains:\n  chart: {verifier: chart, rel_tol: 0.001}\n  answer: {verifier: exact}\n"
                   "aliases:\n  figures: chart\n")
    inp = write(tmp_path / "r.jsonl", [
        {"response": r41("101"), "reference": "100", "domain": "figures"},
        {"response": "<think>x</think><answer>Blue</answer>", "reference": "blue", "domain": "answer"},
    ])
    res = runner.invoke(app, ["reward", "--input", str(inp), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "scores.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == [0.0, 1.0]


@pytest.mark.parametrize("text,msg", [
    ("colour: red\n", "{p}: unknown key 'colour'; valid: aliases, cache_references, domains, gates, reward_fn, "
                      "reward_fn_timeout_s, style"),
    ("gates: {strict: true}\n", "{p}: unknown key 'gates.strict'; valid:"),
    ("style: glm5\n", "{p}: 'style' must be one of glm41v, glm45v, got 'glm5'"),
    ("domains: {chart: {verifier: chart, tol: 1}}\n", "{p}: unknown key 'domains.chart.tol' for verifier 'chart'"),
    ("domains: {x: {verifier: magic}}\n", "{p}: domains.x.verifier is 'magic'; expected one of:"),
    ("domains: {x: 3}\n", "{p}: domains.x must be a mapping with a 'verifier' key"),
    ("domains: {g: {verifier: grounding, shape: round}}\n", "{p}: domains.g.shape must be step, linear or thresholded"),
    ("aliases: {a: nowhere}\n", "{p}: aliases.a points to unknown domain 'nowhere'"),
    ("domains: [1\n", "{p}:2: invalid YAML"),
    ("- 1\n", "{p}: a reward config must be a mapping, got list"),
    ("gates: {min_cjk_chars: many}\n", "{p}: gates.min_cjk_chars must be an integer, got 'many'"),
    ("domains: {chart: {verifier: chart, year_range: 1900}}\n", "{p}: domains.chart.year_range must be [first, last]"),
    ("gates: {language_mix: 1}\n", "{p}: gates.language_mix must be true or false, got 1"),
    ("domains: {math: {verifier: math, timeout_s: soon}}\n", "{p}: domains.math.timeout_s must be a non-negative number"),
    ("domains: {math: {verifier: math, cache: 'yes'}}\n", "{p}: domains.math.cache must be true or false, got 'yes'"),
])
def test_config_errors_name_file_and_key(tmp_path, text, msg):
    p = tmp_path / "rewards.yaml"
    p.write_text(text)
    with pytest.raises(GlmvError) as ei:
        load_config(p)
    assert msg.format(p=p) in str(ei.value)


def test_config_defaults_and_missing_file(tmp_path):
    cfg = config_from_dict({})
    assert cfg.resolve("stem") == "stem" and cfg.verifier_name("video") == "counting" and cfg.style == "glm41v"
    with pytest.raises(GlmvError, match="--config '.*nope.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_example_config_loads():
    from pathlib import Path

    import glmv_cli.rewards as rw

    cfg = load_config(Path(rw.__file__).parent / "rewards.example.yaml")
    assert cfg.resolve("science") == "math" and cfg.verifier_name("open_vqa") == "judge"
    assert cfg.domains["grounding"] == {"verifier": "grounding", "iou_threshold": 0.5, "shape": "step"}
    assert cfg.gates.max_response_chars == 262144
