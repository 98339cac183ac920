"""Official protocols on fixtures in the real layouts, with scripted answers whose official scores are
counted by hand here; and the run's robustness: per-row errors listed, kill-and-resume without
regenerating a row."""

import json
from pathlib import Path

import pytest

from glmv_cli.errors import GlmvError
from glmv_cli.evaluation.adapter import Generation, ScriptedGenerator
from glmv_cli.stages.eval import EvalOptions, run_eval

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def R(x: str) -> str:
    return f"<think>r</think><answer><|begin_of_box|>{x}<|end_of_box|></answer>"


def letter_of(prompt: str, option: str) -> str:
    return next(line[0] for line in prompt.splitlines() if line[1:] == f". {option}")


def _run(tmp_path, tasks, gen, **kw):
    return run_eval(EvalOptions(model="scripted", out=tmp_path / "ev", tasks=tasks, data_dir=FIXTURES, **kw), generator=gen)


def test_mmbench_probe_is_50_from_6_generations(tmp_path):
    """The Hub rows hold the circular copies: a perfectly answered 4-option question (4 rows) and a
    2-option question always answered "A" (2 rows, right in one) -> 1 of 2 questions, 6 generations."""
    gen = ScriptedGenerator({"Q-MB1": lambda r: R(letter_of(r.text, "red")), "Q-MB2": R("A")})
    m = _run(tmp_path, "mmbench_en", gen)
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["glmv_mmbench_en"]
    assert len(gen.seen) == 6 and res["n"] == 6 and res["questions"] == 2
    assert round(res["score"] * 100, 1) == 50.0 and res["headline"] == "CircularEval accuracy"
    assert res["acc"] == pytest.approx(5 / 6)
    # the fixture is parquet with embedded image bytes (the Hub's own format): every prompt got its image
    assert all(len(r.images) == 1 and r.images[0].size == (16, 16) for r in gen.seen)
    assert res["breakdown"]["category"]["attribute_recognition"] == {"n": 4, "acc": 1.0}
    assert m.metrics["results"]["glmv_mmbench_en"]["score"] == 0.5


def test_hallusionbench_always_yes(tmp_path):
    """Six questions, gold yes/no/yes/yes/yes/no; always "yes" -> aAcc 4/6. fAcc per figure
    (VS figure 0 left out): (VD,0,fig0) both right, (VD,0,fig1) one wrong, (VS,1,fig1) wrong -> 1/3.
    qAcc per pair: (VD,0,q0) one wrong, (VD,0,q1) both right, (VS,1,q0) one wrong -> 1/3."""
    _run(tmp_path, "hallusionbench", ScriptedGenerator({}, default=R("Yes")))
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["glmv_hallusionbench"]
    assert res["aAcc"] == pytest.approx(4 / 6) and res["fAcc"] == pytest.approx(1 / 3)
    assert res["qAcc"] == pytest.approx(1 / 3)
    assert res["score"] == pytest.approx((4 / 6 + 1 / 3 + 1 / 3) / 3)   # 44.4, where aAcc alone says 66.7
    assert res["breakdown"]["category"] == {"VD": {"n": 4, "acc": 0.75}, "VS": {"n": 2, "acc": 0.5}}


def test_dynamath_worst_case_over_ten_variants(tmp_path):
    """Seed 1 right in all 10 variants, seed 2 right in 7: worst case 1/2, average 17/20."""
    def answer(req):
        v = int(req.text.split("-v")[1].split(" ")[0])
        return R(str(2 * v + 0.5)) if "Q-DM1" in req.text else R("B" if v <= 7 else "A")

    gen = ScriptedGenerator(answer)
    _run(tmp_path, "dynamath", gen)
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["glmv_dynamath"]
    assert len(gen.seen) == 20 and res["variants"] == 10 and res["questions"] == 2
    assert res["score"] == 0.5 and res["average"] == pytest.approx(0.85)
    assert res["headline"] == "worst-case accuracy"


def test_wemath_strict_and_loose(tmp_path):
    """P1 all right (CM); P2 sub 1 wrong, whole right (RM strict, CM loose); P3 subs right, whole wrong
    (IG); P4 subs wrong, whole right (RM both); P5 all wrong (IK). N = 5:
    strict (5 - 0.5 - 2 - 1) / 5 = 0.3, loose (5 - 0.5 - 1 - 1) / 5 = 0.5."""
    wrong = {"P2-1", "P3-multi", "P4-1", "P4-2", "P4-3", "P5-1", "P5-2", "P5-multi"}
    gen = ScriptedGenerator(lambda r: R("A" if r.text.split("Q-WM-")[1].split(" ")[0] in wrong else "B"))
    _run(tmp_path, "wemath", gen)
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["glmv_wemath"]
    assert res["strict"] == pytest.approx(0.3) and res["loose"] == pytest.approx(0.5) and res["score"] == res["strict"]
    assert (res["IK"], res["IG"], res["CM_strict"], res["CM_loose"], res["RM_strict"], res["RM_loose"]) == (1, 1, 1, 2, 2, 1)
    assert res["S2"] == pytest.approx(2 / 3) and res["S3"] == pytest.approx(1 / 2)   # whole problems right


def test_a_row_that_cannot_be_scored_is_listed_and_the_run_goes_on(tmp_path):
    gen = ScriptedGenerator({"Q-MVB1": R("B"), "Q-MVB2": R("cup")}, default=R("A"))
    m = _run(tmp_path, "mvbench", gen)
    data = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert len(gen.seen) == 3 and m.metrics["errors"] == 1
    assert data["errors"][0]["row"] == "train/2" and "'plate' is not one of the options" in data["errors"][0]["error"]
    assert data["results"]["glmv_mvbench"]["acc"] == pytest.approx(2 / 3)
    lines = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "glmv_mvbench.jsonl").read_text().splitlines()]
    assert [ln["score"] for ln in lines] == [1.0, 1.0, 0.0] and lines[2]["error"]


class Killed(Exception):
    pass


class Counting:
    """Answers right, counts generations per prompt, and dies after ``die_after`` of them."""

    def __init__(self, die_after=None):
        self.die_after, self.count = die_after, {}

    def generate(self, reqs):
        out = []
        for r in reqs:
            if self.die_after is not None and sum(self.count.values()) >= self.die_after:
                raise Killed("simulated kill")
            self.count[r.id] = self.count.get(r.id, 0) + 1
            out.append(Generation(R("Yes"), "stop"))
        return out


def test_kill_and_resume_generates_every_row_once(tmp_path):
    """DynaMath's 20 rows and HallusionBench's 6, batch 4: killed after 9 generations (2 batches = 8 rows
    on disk, the third batch lost), resumed: 18 more generations, none twice, results equal a clean run."""
    tasks = "dynamath,hallusionbench"
    first = Counting(die_after=9)
    with pytest.raises(Killed):
        _run(tmp_path, tasks, first, batch_size=4)
    staged = tmp_path / ".ev.incomplete" / "samples" / "glmv_dynamath.jsonl"
    assert len(staged.read_text().splitlines()) == 8 and not (tmp_path / "ev").exists()
    second = Counting()
    m = _run(tmp_path, tasks, second, batch_size=4)
    assert sum(first.count.values()) == 9 and sum(second.count.values()) == 18
    done_first = {k for k in first.count}
    assert len(done_first & set(second.count)) == 1              # only the lost batch's first row is asked again
    assert all(v == 1 for v in second.count.values())
    assert m.metrics["reused"] == 8 and m.metrics["generated_this_run"] == 18
    clean = Counting()
    mc = run_eval(EvalOptions(model="scripted", out=tmp_path / "clean", tasks=tasks, data_dir=FIXTURES, batch_size=4),
                  generator=clean)
    assert sum(clean.count.values()) == 26
    assert m.metrics["results"]["glmv_dynamath"] == {**mc.metrics["results"]["glmv_dynamath"],
                                                     "generated_this_run": 12.0, "reused": 8.0}
    assert m.metrics["results"]["glmv_hallusionbench"]["score"] == mc.metrics["results"]["glmv_hallusionbench"]["score"]


def test_resume_refuses_other_options_and_never_starts_over(tmp_path):
    with pytest.raises(Killed):
        _run(tmp_path, "dynamath", Counting(die_after=4), batch_size=4)
    with pytest.raises(GlmvError, match=r"holds a run with other options \(--thinking-budget: 8192 != 64\)"):
        _run(tmp_path, "dynamath", Counting(), batch_size=4, thinking_budget=64)
    again = Counting()
    _run(tmp_path, "dynamath", again, batch_size=4, resume="never")
    assert sum(again.count.values()) == 20


def test_judge_url_decides_the_judged_protocols(tmp_path):
    """ChartMuseum through --judge-url: the judge says CORRECT only for "sixty percent" (a rule would
    miss it); the table labels the protocol; no key is sent without --judge-api-key-env."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((body["model"], self.headers.get("Authorization")))
            verdict = "CORRECT" if "sixty percent" in body["messages"][1]["content"] else "INCORRECT"
            out = json.dumps({"choices": [{"message": {"content": verdict}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        gen = ScriptedGenerator({"Q-CM1": R("2015"), "Q-CM2": R("sixty percent")})
        _run(tmp_path, "chartmuseum", gen, judge_url=f"http://127.0.0.1:{srv.server_port}/v1/chat/completions",
             judge_model="judge-m")
    finally:
        srv.shutdown()
    res = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["glmv_chartmuseum"]
    # "2015" is INCORRECT by this judge, "sixty percent" CORRECT: the judge decided both rows
    assert res["score"] == 0.5 and res["judged"] == 2 and res["protocol"] == "LLM judge (--judge-url)"
    assert seen == [("judge-m", None), ("judge-m", None)]
    default = tmp_path / "rule"
    run_eval(EvalOptions(model="scripted", out=default, tasks="chartmuseum", data_dir=FIXTURES),
             generator=ScriptedGenerator({"Q-CM1": R("2015"), "Q-CM2": R("sixty percent")}))
    res = json.loads((default / "results.json").read_text())["results"]["glmv_chartmuseum"]
    assert res["score"] == 0.5 and res["judged"] == 0 and res["protocol"] == "rule-based (official: LLM judge)"
