"""benchmarks/grade_correlation.py: option resolution and its statistics and tables on hand-made
numbers (the pipeline itself trains for minutes; it is run by hand, see the script's docstring)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from glmv_cli.testing import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc():
    return load_benchmark("grade_correlation")


def _args(gc, argv):
    return gc.resolve(gc.build_parser().parse_args(argv))


def test_defaults_full_and_quick(gc):
    a = _args(gc, [])
    assert (a.domain_list, a.level_list) == (["counting", "chart"], [1, 2, 3, 4, 5])
    assert (a.rl_per_level, a.sft_per_level, a.k, a.temperature) == (40, 160, 8, 1.0)
    assert (a.warmup_pretrain_steps, a.pretrain_steps, a.sft_steps, a.threads) == (800, 400, 700, 1)
    assert not a.no_shuffled_grades
    q = _args(gc, ["--quick", "--k", "3", "--domains", "math,chart"])
    # explicit flags win over the --quick values; "math" is the synth alias of stem
    assert (q.k, q.domain_list, q.rl_per_level, q.sft_steps, q.bootstrap) == (3, ["stem", "chart"], 4, 30, 200)


def test_bad_options_exit_with_the_flag_named(gc):
    with pytest.raises(SystemExit, match="--rl-per-level must be >= 2"):
        _args(gc, ["--rl-per-level", "1"])
    with pytest.raises(SystemExit, match="--sft-steps must be >= 1, got 0"):
        _args(gc, ["--sft-steps", "0"])
    with pytest.raises(Exception, match="unknown domain 'maps'"):
        _args(gc, ["--domains", "counting,maps"])
    with pytest.raises(SystemExit, match="--model and --synth go together"):
        gc.main(["--model", "runs/demo/sft"])


def test_mean_se_and_majority(gc):
    m, se = gc.mean_se([0.0, 0.5, 1.0])
    assert m == 0.5 and se == pytest.approx(math.sqrt(0.25 / 3))
    assert gc.mean_se([0.25]) == (0.25, 0.0)
    assert gc.majority_rate(["1", "2", "1", "3"]) == 0.5


def test_correlation_perfect_none_and_permutation_p(gc):
    lv = [1, 1, 2, 2, 3, 3, 4, 4]
    c = gc.correlation(lv, [0.1, 0.1, 0.3, 0.3, 0.6, 0.6, 0.9, 0.9], n_boot=200, n_perm=500, seed=1)
    assert c["rho"] == pytest.approx(1.0) and c["n"] == 8
    # every permutation with |rho*| = 1 must keep the pairs' order (or reverse it): p is small
    assert c["p"] < 0.02 and c["se"] is not None and c["se"] < 0.1
    flat = gc.correlation(lv, [1.0] * 8, n_boot=10, n_perm=10)
    assert flat["rho"] is None and flat["se"] is None and flat["p"] is None
    # a hand-computed rho: ranks x = 1,2,3 ; y = 1,3,2 -> 1 - 6*2/(3*8) = 0.5
    assert gc.correlation([1, 2, 3], [0.0, 0.9, 0.5], n_boot=0, n_perm=0)["rho"] == pytest.approx(0.5)


def test_answer_prior(gc):
    recs = [{"domain": "counting", "difficulty": 1, "answer": a} for a in ("1", "1", "2", "3")]
    recs += [{"domain": "counting", "difficulty": 2, "answer": "4"}]
    # level 1: p = 1/2, 1/4, 1/4 -> 1/4 + 1/16 + 1/16 = 0.375; level 2: one answer -> 1
    assert gc.answer_prior(recs) == {"counting": {1: 0.375, 2: 1.0}}


def test_summarise_and_table(gc):
    rows = [{"domain": "counting", "data_difficulty": lv, "grade": g}
            for lv, g in [(1, 1.0), (1, 0.75), (2, 0.5), (2, 0.25), (3, 0.0), (3, 0.0)]]
    rows.append({"domain": "counting", "data_difficulty": None, "grade": 1.0})  # no level: left out
    s = gc.summarise_grades(rows, [1, 2, 3], n_boot=50, n_perm=50)
    c = s["counting"]
    assert c["n"] == 6 and c["levels"][1]["mean"] == 0.875 and c["levels"][3]["zero"] == 1.0
    assert c["levels"][2]["se"] == pytest.approx(0.125)
    assert c["rho"] > 0.9
    table = gc.format_grade_table(s, [1, 2, 3], {"counting": c["rho"]})
    head, line = table.splitlines()
    assert head.split() == ["domain", "n", "L1", "pass", "L2", "pass", "L3", "pass", "rho", "boot", "SE", "perm", "p",
                            "manifest"]
    assert line.split()[:5] == ["counting", "6", "0.875±0.125", "0.375±0.125", "0.000±0.000"]
    assert line.split()[5] == f"{c['rho']:+.3f}" == line.split()[-1]


def test_shuffled_images_rotate_within_cells_and_heldout_rows(gc, tmp_path):
    recs = [{"id": f"e{i}", "domain": d, "difficulty": lv, "answer": a, "images": [f"images/{i}.png"],
             "messages": [{"role": "user", "content": "<image>\nq"}]}
            for i, (d, lv, a) in enumerate([("counting", 1, "2"), ("counting", 1, "2"), ("counting", 1, "3"),
                                            ("counting", 2, "1"), ("chart", 1, "7"), ("chart", 1, "9")])]
    src = tmp_path / "eval.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    kept = gc.write_shuffled(src, tmp_path / "shuf.jsonl")
    out = [json.loads(x) for x in (tmp_path / "shuf.jsonl").read_text().splitlines()]
    img = [Path(r["images"][0]).name for r in out]
    assert img == ["1.png", "2.png", "0.png", "3.png", "5.png", "4.png"] and kept == 1  # the lone L2 record
    assert all(Path(r["images"][0]).is_absolute() for r in out)
    res = [{"domain": r["domain"], "data_difficulty": r["difficulty"], "grade": g}
           for r, g in zip(recs, [1.0, 0.0, 1.0, 1.0, 0.0, 0.0])]
    shuf = [dict(x, grade=0.0) for x in res]
    h = gc.heldout_rows(res, shuf, recs, [1, 2])
    assert h["counting"]["acc"] == 0.75 and h["counting"]["majority"] == 0.5
    assert h["counting"]["per_level"] == {1: pytest.approx(2 / 3), 2: 1.0} and h["counting"]["shuffled"] == 0.0
    assert h["chart"]["per_level"][2] is None
    text = gc.format_heldout_table(h, [1, 2])
    assert text.splitlines()[2].split() == ["counting", "4", "0.500", "0.750±0.250", "0.000±0.000", "0.67", "1.00"]
