"""Every synth answer earns full reward under its domain's verifier (glmv_cli.rewards)."""

import pytest

from glmv_cli.stages.synth import SynthOptions, synth
from glmv_cli.synth import DOMAINS
from glmv_cli.synth.build import read_split

rewards = pytest.importorskip("glmv_cli.rewards")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return synth(SynthOptions(out=tmp_path_factory.mktemp("synthr") / "ds", n_train=360, n_eval=90, seed=11))


def _boxed(answer):
    return f"<think>Reading the image.</think><answer><|begin_of_box|>{answer}<|end_of_box|></answer>"


def test_sft_responses_score_one(ds):
    recs = read_split(ds.path / "sft.jsonl")
    assert {r["domain"] for r in recs} == set(DOMAINS)
    for r in recs:
        prompt, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        got = rewards.score_detailed(prompt, reply, r["answer"], r["domain"])
        assert got.reward == 1.0, (r["id"], got.to_dict())


@pytest.mark.parametrize("split", ["rl", "eval"])
def test_references_score_one(ds, split):
    for r in read_split(ds.path / f"{split}.jsonl"):
        got = rewards.score_detailed(r["messages"][0]["content"], _boxed(r["answer"]), r["answer"], r["domain"])
        assert got.reward == 1.0, (r["id"], got.to_dict())


def test_wrong_answers_score_below_one(ds):
    """The check above is not vacuous: a perturbed answer loses reward in every domain."""
    seen = set()
    for r in read_split(ds.path / "rl.jsonl"):
        if r["domain"] in seen:
            continue
        seen.add(r["domain"])
        a = r["answer"]
        if r["domain"] in ("stem", "counting", "chart") and a.lstrip("-").isdigit():
            wrong = str(int(a) + 7)
        elif r["domain"] == "grounding":
            wrong = "[0, 0, 10, 10]"
        elif r["domain"] == "gui":
            wrong = '{"action": "click", "box_2d": [[0, 0, 5, 5]]}'
        else:
            wrong = "zz" + a[::-1]
        got = rewards.score(r["messages"][0]["content"], _boxed(wrong), a, r["domain"])
        assert got < 1.0, (r["id"], wrong)
    assert len(seen) >= 5
