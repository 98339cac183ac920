"""Every fixture-backed benchmark through the real path (task YAML -> lm-eval -> glmv adapter ->
scoring) with a scripted model whose outputs are known; each metric equals a hand count.

One ``glmv eval`` run over all fixture tasks (lm-eval's start-up dominates), then per-task checks.
"""

import json
from pathlib import Path

import pytest
import yaml

from glmv_cli.evaluation.registry import BENCHMARKS
from glmv_cli.evaluation.tasks import TASKS_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def letter_of(prompt: str, option: str) -> str:
    """The letter a prompt gives to an option ("C. red" -> "C")."""
    return next(line[0] for line in prompt.splitlines() if line[1:] == f". {option}")


def R(x: str) -> str:
    """A GLM-4.1V-style response boxing ``x``."""
    return f"<think>reasoning</think><answer>The answer is <|begin_of_box|>{x}<|end_of_box|></answer>"


def dynamath_answer(req) -> str:
    """Q-DM1 right in every variant (2v + 0.5); Q-DM2 (gold B) right in variants 1-7 only."""
    v = int(req.text.split("-v")[1].split(" ")[0])
    if "Q-DM1" in req.text:
        return R(str(2 * v + 0.5))
    return R("B" if v <= 7 else "A")


WEMATH_WRONG = {"P2-1", "P3-multi", "P4-1", "P4-2", "P4-3", "P5-1", "P5-2", "P5-multi"}


def wemath_answer(req) -> str:
    part = req.text.split("Q-WM-")[1].split(" ")[0]
    return R("A" if part in WEMATH_WRONG else "B")


SCRIPT = {
    # MMBench probe: Q-MB1 (4 circular copies) read from the rotated prompt, always right; Q-MB2 (2 copies)
    # always "A": right in 1 -> acc 5/6, CircularEval 1 of 2 questions
    "Q-MB1": lambda req: R(letter_of(req.text, "red")), "Q-MB2": R("A"),
    # MMStar: (B) right; thinking never closed -> no answer; GLM-4.5V style C right; B wrong -> 2/4
    "Q-MS1": R("(B)"), "Q-MS2": "<think>still thinking about A", "Q-MS3": "<think>r</think>It is <|begin_of_box|>C<|end_of_box|>",
    "Q-MS4": R("B"),
    # HallusionBench: always "yes" (hand counts in tests/test_eval_protocols.py)
    "Q-HB": R("Yes"),
    # MMMU: B right; "3.429" is one of the list golds ['24/7', '3.429']; B vs A wrong; "12 m/s" holds 12 -> 3/4
    "Q-MU1": R("B"), "Q-MU2": R("3.429"), "Q-MU3": R("B"), "Q-MU4": R("12 m/s"),
    # MMMU-Pro: standard J right, "3" no option; vision A right twice -> settings 0.5 and 1.0
    "Q-MP1": R("J"), "Q-MP2": R("3"), "question shown in the image": R("A"),
    # MathVista: all 8 right by MathVista's rules (letter, int, precision-rounded floats, "12 cm", int("3.7"),
    # "The answer is C", nearest choice text)
    "Q-MV1": R("B"), "Q-MV2": R("7"), "Q-MV3": R("1.54"), "Q-MV4": R("2.35"), "Q-MV5": R("12 cm"), "Q-MV6": R("3.7"),
    "Q-MV7": R("The answer is C"), "Q-MV8": R("the square"),
    # AI2D: C == index 2 right, "leaf" == index 0 right, A != index 1 wrong -> 2/3
    "Q-AI1": R("C"), "Q-AI2": R("leaf"), "Q-AI3": R("A"),
    # OCRBench: substring right, HME100k without spaces right, GO wrong -> 2/3
    "Q-OC1": R("hello world"), "Q-OC2": R("x^2+1"), "Q-OC3": R("GO"),
    # ChartQAPro: 43 within 5 % of 42; 2019 exact (Year YES); "United State" ANLS 1 - 1/13; list item by item
    "Q-CP1": R("43"), "Q-CP2b": R("2019"), "Q-CP3": R("United State"), "Q-CP4": R("['North', 'South']"),
    # RefCOCO: five expressions: IoU 1, 0.93, 1 right; no box, 0.375 wrong -> 3/5
    "Q-RC1a": R("[100, 100, 500, 500]"), "Q-RC1b": R("[110, 100, 500, 520]"), "Q-RC2a": R("[500, 0, 1000, 1000]"),
    "Q-RC2b": R("the cat"), "Q-RC2c": R("[100, 100, 250, 500]"),
    # CV-Bench: ADE20K right, COCO wrong ("3" is option B, gold A), Omni3D right -> acc 2/3,
    # score ((1 + 0) / 2 + 1) / 2 = 0.75
    "Q-CV1": R("B"), "Q-CV2": R("3"), "Q-CV3": R("A"),
    # Video-MME: C right, "B. two" is B but gold A wrong -> 1/2
    "Q-VM1": R("C"), "Q-VM2": R("B. two"),
    # synth: stem 12 right, counting 4 != 3, ocr exact, grounding exact box, \boxed fails the format gate -> 3/5
    "S-1": R("12"), "S-2": R("4"), "S-3": R("ABC"), "S-4": R("[100, 200, 400, 500]"),
    "S-5": "<think>r</think><answer>\\boxed{7/2}</answer>",
    "Q-DM": dynamath_answer, "Q-WM": wemath_answer,
    # one right + one wrong unless noted
    "Q-MC1": R("A"),                                      # right only where 红 sits at A: 1 of 4 copies
    "Q-BL1": R("D"), "Q-BL2": R("B"),
    "Q-MR1": R("B"), "Q-MR2": R("2"),                     # "2" is option C, gold A
    "Q-ZB1": R("12.0"), "Q-ZB2": R("apple."),             # both right: numbers by value, case/period-free
    "Q-MVS1": R("C"), "Q-MVS2": R("4.5"),                 # both right: letter; 4.5 == 9/2
    "Q-MVE1": R("B"), "Q-MVE2": R("\\sqrt{12}"),          # both right: letter; sqrt(12) == 2 sqrt(3)
    "Q-LV1": R("C, A"), "Q-LV2": R("B and C"),            # letter sets {A, C} right, {B, C} != {B}
    "Q-CM1": R("2015"), "Q-CM2": R("0.6"),                # both right: year exact; 0.6 == 60 %
    "Q-refcocoplus_val-1": R("[0, 0, 500, 1000]"), "Q-refcocoplus_val-2": R("[0, 0, 500, 1000]"),
    "Q-refcocog_val-1": R("[0, 0, 500, 1000]"), "Q-refcocog_val-2": R("[0, 0, 500, 1000]"),
    "Q-TB1": R("B"), "Q-TB2": R("B"),
    "Q-OS1": R("right"), "Q-OS2": R("B"),                 # gold is a 0-based index
    "Q-ER1": R("B"), "Q-ER2": R("B"),
    "Q-MU-V1": R("A"), "Q-MU-V2": R("mitosis"),           # both right: open answer by text
    "Q-VMM1": R("B"), "Q-VMM2": R("4"),                   # both right
    "Q-LB1": R("C"), "Q-LB2": R("B"),
    "Q-MB-V1": R("D"), "Q-MB-V2": R("A"),
    "Q-MVB1": R("B"), "Q-MVB2": R("cup"), "Q-MVB3": R("ball"),  # MVB3's gold is no candidate: a row error
}

# (acc per asked row, headline score, no_answer, row errors)
EXPECTED = {
    "mmbench_en": (5 / 6, 1 / 2, 0.0, 0), "mmstar": (2 / 4, 2 / 4, 1 / 4, 0), "hallusionbench": (4 / 6, 4 / 9, 0.0, 0),
    "mmmu_val": (3 / 4, 3 / 4, 0.0, 0), "mathvista": (1.0, 1.0, 0.0, 0), "ai2d": (2 / 3, 2 / 3, 0.0, 0),
    "ocrbench": (2 / 3, 2 / 3, 0.0, 0), "chartqapro": ((3 + 12 / 13) / 4, (3 + 12 / 13) / 4, 0.0, 0),
    "refcoco_val": (3 / 5, 3 / 5, 0.0, 0), "cvbench": (2 / 3, 0.75, 0.0, 0), "videomme": (1 / 2, 1 / 2, 0.0, 0),
    "synth": (3 / 5, 3 / 5, 0.0, 0), "mmbench_cn": (1 / 4, 0.0, 0.0, 0), "blink": (0.5, 0.5, 0.0, 0),
    "muirbench": (0.5, 0.5, 0.0, 0), "zerobench": (1.0, 1.0, 0.0, 0), "mmmu_pro": (3 / 4, 3 / 4, 0.0, 0),
    "mathvision": (1.0, 1.0, 0.0, 0), "mathverse": (1.0, 1.0, 0.0, 0), "dynamath": (17 / 20, 1 / 2, 0.0, 0),
    "logicvista": (0.5, 0.5, 0.0, 0), "wemath": (9 / 17, 0.3, 0.0, 0), "chartmuseum": (1.0, 1.0, 0.0, 0),
    "refcocoplus_val": (0.5, 0.5, 0.0, 0), "refcocog_val": (0.5, 0.5, 0.0, 0), "treebench": (0.5, 0.5, 0.0, 0),
    "omnispatial": (0.5, 0.5, 0.0, 0), "erqa": (0.5, 0.5, 0.0, 0), "mmvu": (1.0, 1.0, 0.0, 0),
    "videommmu": (1.0, 1.0, 0.0, 0), "lvbench": (0.5, 0.5, 0.0, 0), "motionbench": (0.5, 0.5, 0.0, 0),
    "mvbench": (2 / 3, 2 / 3, 0.0, 1),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from glmv_cli.evaluation.adapter import ScriptedGenerator
    from glmv_cli.stages.eval import EvalOptions, run_eval

    gen = ScriptedGenerator(SCRIPT, default="<think>unscripted</think><answer>none</answer>")
    out = tmp_path_factory.mktemp("evalrun") / "ev"
    m = run_eval(EvalOptions(model="scripted", out=out, tasks=",".join(EXPECTED), data_dir=FIXTURES), generator=gen)
    return m, gen, out


def test_every_fixture_benchmark_is_in_the_expectations():
    with_fixture = {k for k, b in BENCHMARKS.items() if b.fixture}
    assert with_fixture == set(EXPECTED)
    assert all((FIXTURES / k).is_dir() for k in with_fixture)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_metric_equals_hand_count(run, key):
    m, _, _ = run
    res = m.metrics["results"][f"glmv_{key}"]
    acc, score, no_answer, errors = EXPECTED[key]
    assert res["acc"] == pytest.approx(acc)
    assert res["score"] == pytest.approx(score)
    assert res["no_answer"] == pytest.approx(no_answer)
    assert res["failed_generations"] == 0 and res["errors"] == errors


def test_prompts_carry_images_options_and_dialogue(run):
    _, gen, _ = run
    by = {k: next(r for r in gen.seen if k in r.text)
          for k in ("Q-MU1", "Q-MU3", "Q-MB2", "Q-VM1", "Q-CP1", "Q-CP2b", "Q-RC2c", "S-1", "Q-TB1", "Q-OS1", "Q-CM1")}
    assert len(by["Q-MU1"].images) == 1 and len(by["Q-MU3"].images) == 2      # MMMU image_1..7, Nones dropped
    assert by["Q-MU3"].text.startswith("<image><image>\n")
    assert "Hint: The picture is simple." in by["Q-MB2"].text
    # the rows hold the circular copies: each is asked as stored, none rotated again
    asked = sorted(r.text.split("Q-MB2 Is there a square?\n")[1].split("\nAnswer with")[0] for r in gen.seen if "Q-MB2" in r.text)
    assert asked == ["A. no\nB. yes", "A. yes\nB. no"]
    # Video-MME options carry their letters: printed once, not "A. A. darker"
    assert "\nA. darker\nB. constant\n" in by["Q-VM1"].text and "A. A." not in by["Q-VM1"].text
    assert by["Q-VM1"].text.startswith("<video>\n") and by["Q-VM1"].images == []   # GLM's native video input
    assert by["Q-VM1"].videos[0].endswith("videomme/videos/fixvid01.mp4")
    assert by["Q-CP1"].text.index("P-CP1 The chart shows") < by["Q-CP1"].text.index("Q-CP1")  # Paragraph context
    assert "Q: Q-CP2 What is the first value?\nA: 10\nQ-CP2b" in by["Q-CP2b"].text
    assert "Q-RC2c box on the right" in by["Q-RC2c"].text and by["Q-RC2c"].images[0].size == (200, 100)
    assert by["S-1"].text.startswith("<image>\nS-1 What is the value")
    assert "\nA. red\nB. blue\nC. green\nAnswer with" in by["Q-TB1"].text           # TreeBench A-F columns
    assert by["Q-TB1"].images[0].size == (32, 32)                                    # base64 cell decoded
    assert "A. left\nB. right\nC. back" in by["Q-OS1"].text and len(by["Q-OS1"].images) == 1  # image from the zip
    assert len(by["Q-CM1"].images) == 1                                              # path into the dataset folder
    more = {k: next(r for r in gen.seen if k in r.text) for k in ("Q-BL2", "Q-MR2", "Q-ER1", "Q-WM-P1-1", "Q-MU-V1", "Q-VMM2")}
    assert len(more["Q-BL2"].images) == 2 and len(more["Q-MR2"].images) == 3 and len(more["Q-ER1"].images) == 2
    assert "A. 30; B. 45; C. 60" in more["Q-WM-P1-1"].text
    assert more["Q-MU-V1"].videos and "E. none" in more["Q-MU-V1"].text
    assert "Answer with" not in more["Q-VMM2"].text  # an open row of a multiple-choice benchmark
    assert sum("Q-MB-V" in r.text for r in gen.seen) == 2                            # MotionBench's NA row not asked


def test_results_json_samples_and_push_format(run):
    m, _, out = run
    data = json.loads((out / "results.json").read_text())
    assert data["results"]["glmv_mmstar"]["n"] == 4
    assert data["published"]["glmv_mmstar"] == {"glm41v": 72.9, "glm45v": 75.3}
    lines = [json.loads(x) for x in (out / "samples" / "glmv_mmstar.jsonl").read_text().splitlines()]
    assert [ln["answer"] for ln in lines] == ["(B)", None, "C", "B"]
    assert [ln["score"] for ln in lines] == [1.0, 0.0, 1.0, 0.0]
    assert lines[0]["doc"]["question"].startswith("Q-MS1") and lines[0]["key"] == "val/0"
    assert data["results"]["glmv_hallusionbench"]["headline"] == "mean of aAcc, fAcc, qAcc"
    mvb = [e for e in data["errors"] if e["task"] == "glmv_mvbench"]
    assert len(mvb) == 1 and mvb[0]["row"] == "train/2"
    assert "is not one of the options" in mvb[0]["error"] and "column" not in mvb[0]["error"]
    assert data["results"]["glmv_motionbench"]["unlabeled_not_asked"] == 1
    assert data["results"]["glmv_ocrbench"]["breakdown"]["question_type"]["Regular Text Recognition"] == {"n": 2, "acc": 0.5}
    # glmv push reads metrics["results"][task][metric] as numbers
    for task, metrics in m.metrics["results"].items():
        assert isinstance(metrics["acc"], float), task
    assert m.data["inputs"] == []  # "scripted" is not an artifact


def test_synth_eval_equals_glmv_reward_on_the_same_generations(run, tmp_path):
    from glmv_cli.stages.reward import RewardOptions, reward

    m, _, out = run
    lines = [json.loads(x) for x in (out / "samples" / "glmv_synth.jsonl").read_text().splitlines()]
    inp = tmp_path / "responses.jsonl"
    inp.write_text("".join(json.dumps({"response": ln["response"], "reference": ln["doc"]["answer"],
                                       "domain": ln["doc"]["domain"], "id": ln["doc"]["id"]}) + "\n" for ln in lines))
    rm = reward(RewardOptions(input=inp, out=tmp_path / "rw"))
    allm = rm.metrics["domains"]["all"]
    ev = m.metrics["results"]["glmv_synth"]
    assert allm["n"] == 5
    assert ev["acc"] == pytest.approx(allm["pass_rate"]) == pytest.approx(0.6)
    assert ev["mean_reward"] == pytest.approx(allm["mean_reward"])


def test_specs_name_their_dataset_and_required_columns():
    """Each runnable benchmark has a spec whose scorer, prompt and aggregate exist and which declares the
    columns its rows must have."""
    from glmv_cli.evaluation.protocols import AGGREGATES, SCORERS
    from glmv_cli.evaluation.spec import PROMPT_KINDS, load_spec

    files = {p.stem for p in TASKS_DIR.glob("glmv_*.yaml")}
    runnable = {b.task for b in BENCHMARKS.values() if b.kind == "task"}
    assert files == runnable
    for task in sorted(files):
        spec = load_spec(task)
        assert spec.benchmark == task[5:] and spec.required
        assert spec.scorer in SCORERS and spec.prompt in PROMPT_KINDS and spec.aggregate in AGGREGATES
        assert spec.hub.get("path") or task == "glmv_synth"
        assert "lmms-lab/" not in str(spec.hub.get("path"))  # moved to lmms-lab-encoder / lmms-eval


def test_missing_row_fields_are_reported_per_column(tmp_path, monkeypatch):
    """A field the task needs, missing in one row, fails the run before any generation."""
    import shutil

    from glmv_cli.errors import GlmvError
    from glmv_cli.evaluation.adapter import ScriptedGenerator
    from glmv_cli.stages.eval import EvalOptions, run_eval

    shutil.copytree(FIXTURES / "ai2d", tmp_path / "ai2d")
    rows = [json.loads(x) for x in (tmp_path / "ai2d" / "test.jsonl").read_text().splitlines()]
    rows[1]["options"] = []
    (tmp_path / "ai2d" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = ScriptedGenerator({})
    with pytest.raises(GlmvError) as e:
        run_eval(EvalOptions(model="m", out=tmp_path / "o", tasks="ai2d", data_dir=tmp_path), generator=gen)
    assert "dataset 'lmms-lab-encoder/ai2d' split 'test' row 1 column 'options': empty" in str(e.value)
    assert gen.seen == [] and not (tmp_path / "o").exists()
