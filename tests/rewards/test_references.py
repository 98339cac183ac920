"""References validated and normalised at load, and prepared once per group."""

import json

import pytest

from glmv_cli.errors import GlmvError
from glmv_cli.rewards import RewardConfig, check_reference, config_from_dict, score_detailed

B, E = "<|begin_of_box|>", "<|end_of_box|>"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


NORMALISED = [
    ("counting", "1.0", None, "1"), ("counting", " 1,200 ", None, "1200"), ("counting", "+3", None, "3"),
    ("mcq", "(B)", None, "B"), ("mcq", "D, B", None, "BD"), ("mcq", "a cat", {"options": ["a dog", "a cat"]}, "B"),
    ("yesno", "Yes.", None, "yes"), ("math", " $\\frac{1}{2}$ ", None, "\\frac{1}{2}"), ("chart", "45\\%", None, "45%"),
    ("grounding", "[1, 2, 30, 40]", None, "[1, 2, 30, 40]"), ("stem", "mitochondria", None, "mitochondria"),
    ("gui", "WAIT()", None, "WAIT()"), ("chemistry", "H2O", None, "H2O"), ("video", "7", None, "7"),
]


@pytest.mark.parametrize("domain,ref,extra,want", NORMALISED)
def test_references_are_normalised(domain, ref, extra, want):
    assert check_reference(ref, domain, extra=extra) == want
    assert check_reference(want, domain, extra=extra) == want  # normalising is idempotent


REFUSED = [
    ("counting", "one", "counting reference 'one' is not a non-negative integer in digits"),
    ("counting", "1.5", "counting reference '1.5' is not a non-negative integer"),
    ("counting", "-2", "counting reference '-2' is not a non-negative integer"),
    ("mcq", "the second one", "mcq reference 'the second one' names no option letter"),
    ("grounding", "[9, 9, 1, 1]", "grounding reference '[9, 9, 1, 1]' is not a list of valid 0-1000 boxes"),
    ("gui", "click there", "gui reference 'click there' is not a GUI action"),
    ("yesno", "perhaps", "yes/no reference 'perhaps' is neither yes nor no"),
    ("chemistry", "water", "chemistry reference 'water' is not a chemical formula or equation"),
    ("math", "10^{10^{10}}", "math reference '10^{10^{10}}' refused to evaluate (numeric power tower)"),
    ("math", "  ", "the reference answer must be a non-empty string"),
]


@pytest.mark.parametrize("domain,ref,msg", REFUSED)
def test_unreadable_references_are_errors(domain, ref, msg):
    with pytest.raises(GlmvError) as ei:
        check_reference(ref, domain)
    assert msg in str(ei.value)


def test_judge_and_reward_fn_domains_take_any_reference():
    cfg = config_from_dict({"domains": {"open": {"verifier": "judge", "endpoints": [{"url": "http://x", "model": "m"}]}}})
    assert check_reference("a red bicycle", "open", cfg) == "a red bicycle"
    with pytest.raises(GlmvError, match="unknown domain 'poetry'"):
        check_reference("x", "poetry", cfg)


def test_rl_records_are_normalised_and_bad_ones_counted(tmp_path):
    from glmv_cli.rl.records import load_rl_records

    rows = [{"id": "a", "messages": [{"role": "user", "content": "How many?"}], "answer": "3.0", "domain": "counting"},
            {"id": "b", "messages": [{"role": "user", "content": "How many?"}], "answer": "three", "domain": "counting"}]
    p = tmp_path / "rl.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs, bad = load_rl_records(p, RewardConfig(), on_bad="skip")
    assert [(r.id, r.answer) for r in recs] == [("a", "3")] and bad == {"bad_field": 1}
    with pytest.raises(GlmvError, match=f"{p}:2: field 'answer': domain 'counting': counting reference 'three'"):
        load_rl_records(p, RewardConfig())


def test_a_group_prepares_its_reference_once(monkeypatch):
    import glmv_cli.rewards.verifiers as v

    calls = []
    real = v.SPECS["math"]
    spec = v.Verifier(lambda ref, extra, o: calls.append(ref) or real.prepare(ref, extra, o), real.check, real.options)
    monkeypatch.setitem(v.SPECS, "math", spec)
    for cache, want_calls in ((True, 1), (False, 8)):
        calls.clear()
        cfg = RewardConfig(cache_references=cache)
        rewards = [score_detailed(None, resp(a), "\\frac{\\sqrt{2}}{2}", "math", config=cfg).reward
                   for a in ["\\frac{1}{\\sqrt{2}}", "0.7", "\\sqrt{2}/2", "1", "\\frac{1}{\\sqrt{2}}", "2", "x", "0.5"]]
        assert rewards == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        assert len(calls) == want_calls


def test_reference_cache_keys_on_extra():
    cfg = RewardConfig()
    a, b = {"options": ["a dog", "a cat"]}, {"options": ["a cat", "a dog"]}
    assert score_detailed(None, resp("a cat"), "a cat", "mcq", a, config=cfg).reward == 1.0
    assert score_detailed(None, resp("B"), "a cat", "mcq", b, config=cfg).reward == 0.0
    assert score_detailed(None, resp("A"), "a cat", "mcq", b, config=cfg).reward == 1.0


def test_config_round_trips_through_its_mapping():
    cfg = config_from_dict({"style": "glm45v", "gates": {"require_think": False, "answer_format": "either"},
                            "domains": {"geo": {"verifier": "math", "answer_format": "boxed", "timeout_s": 2.0}},
                            "aliases": {"science": "stem"}, "cache_references": False})
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict() and again.gates == cfg.gates
