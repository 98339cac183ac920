"""The benchmark scripts stay runnable: each is driven through its ``main(argv)`` on the tiny
preset with budgets of a few tokens, and its report is checked for the figures it promises.

Responses of a random tiny model never pass the format gate, so rewards come from a gate-free
config (glm45v style, OCR edit similarity): graded rewards, informative groups, real updates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmv_cli.testing import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
GATE_FREE = "style: glm45v\ngates: {require_think: false, require_box: false, language_mix: false}\n"


def test_paired_diff_hand_values():
    abl = load_benchmark("rlcs_ablation")
    m, se = abl.paired_diff({"a": 1.0, "b": 0.5, "c": 0.0}, {"a": 0.5, "b": 0.5, "c": 0.5, "only-b": 1.0})
    # differences 0.5, 0, -0.5: mean 0, sample var 0.25, se sqrt(0.25 / 3)
    assert m == pytest.approx(0.0) and se == pytest.approx((0.25 / 3) ** 0.5)
    assert abl.paired_diff({"a": 1.0}, {"a": 0.25}) == (0.75, 0.0)


def test_rlcs_ablation_runs_both_arms_within_the_budget(tmp_path):
    abl = load_benchmark("rlcs_ablation")
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Spell item {i}."}], "domain": "ocr",
             "answer": "abc" + "xyz"[i % 3]} for i in range(8)]
    data = tmp_path / "rl.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "rewards.yaml").write_text(GATE_FREE, encoding="utf-8")
    out = tmp_path / "abl"
    rc = abl.main(["--model", "tiny", "--data", str(data), "--eval-data", str(data), "--eval-limit", "4",
                   "--eval-samples", "2", "--reward-config", str(tmp_path / "rewards.yaml"), "--out", str(out),
                   "--batch-prompts", "2", "--group-size", "3", "--budget-prompts", "6", "--max-new-tokens", "5",
                   "--thinking-budget", "3", "--answer-budget", "2", "--lr", "1e-3", "--train", "vision,merger,llm"])
    assert rc == 0
    res = json.loads((out / "ablation.json").read_text())
    assert set(res) == {"rlcs", "uniform"}
    for arm in res.values():
        assert 0 < arm["prompts_rolled"] <= 6
        assert arm["prompts_rolled"] == sum(s["prompts_rolled"] for s in arm["steps"])
        assert set(arm["eval_end"]["per_prompt"]) == {f"r{i}" for i in range(4)}
    # uniform: no expansion, no top-up -> exactly B prompts per step
    assert all(s["prompts_rolled"] == 2 for s in res["uniform"]["steps"]) and len(res["uniform"]["steps"]) == 3
    md = (out / "ablation.md").read_text()
    assert "RLCS end - uniform end, paired over the same held-out prompts" in md
    assert "| prompts rolled (budget) |" in md


def test_rl_update_bench_reports_padding_time_and_gather_payload(tmp_path, capsys):
    bench = load_benchmark("rl_update_bench")
    out = tmp_path / "rl.json"
    assert bench.main(["--groups", "2", "--group-size", "3", "--median-len", "12", "--max-len", "40",
                       "--grid", "1,4,4", "--gather-tokens", "2000", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    u, g = res["update"], res["gather"]
    assert u["rows"] == 6 and u["before"]["padding_ratio"] > 1.0 and u["after"]["padding_ratio"] == 1.0
    assert u["after"]["forwards"] <= u["before"]["forwards"] and u["before"]["cpu_s"] > 0
    assert g["tensor_bytes_per_token"] == 9.0 and g["json_bytes_per_token"] > 20
    assert "padding ratio  before" in capsys.readouterr().out


def test_formats_bench_packs_both_forms_identically(capsys):
    bench = load_benchmark("formats_bench")
    res = bench.main(["--records", "30", "--repeats", "1", "--seq-len", "2048"])
    assert res["packs_identical"] is True and res["records"] == 30 and res["images"] == 45
    assert res["jsonl_png"]["packs"] == res["parquet_embedded"]["packs"] >= 1
    # the ratio is of unrounded seconds; the reported seconds are rounded to 1 ms of ~30 ms runs (< 5 %)
    assert res["ratio_cpu"] == pytest.approx(res["parquet_embedded"]["cpu_s"] / res["jsonl_png"]["cpu_s"], rel=0.05)
    assert json.loads(capsys.readouterr().out)["ratio_wall"] == res["ratio_wall"]


def test_template_bench_reports_each_path():
    out = load_benchmark("template_bench").main(["--records", "20"])
    assert out["records"] == 20
    for k in ("glmv_us", "template_equal_us", "glmv_two_turn_us", "template_realigned_us"):
        assert out[k] > 0, k


def test_image_verify_bench_packs_with_and_without_decoding():
    res = load_benchmark("image_verify_bench").main(["--records", "20", "--repeats", "1", "--image-size", "64"])
    assert res["records"] == 20 and res["images"] == res["images_verified"] == 20
    for mode in ("off", "on"):
        assert res[mode]["cpu_s_best"] > 0 and res[mode]["wall_s_best"] > 0
    assert "decode_cpu_us_per_image" in res and "cpu_overhead" in res
