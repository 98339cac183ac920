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


SCRIPT = {
    # MMBench CircularEval (4 + 3 + 4 = 11 asked copies): Q-MB1 reads the letter of "red" from the
    # rotated prompt (4/4), "square" matches the option text (3/3), a fixed "D" is right only in the
    # rotation where the gold "3" sits at D (1/4) -> acc 8/11, circular score 2/3
    "Q-MB1": lambda req: R(letter_of(req.text, "red")), "Q-MB2": R("square"), "Q-MB3": R("D"),
    # MMStar: (B) right; thinking never closed -> no answer; GLM-4.5V style C right; B wrong -> 2/4
    "Q-MS1": R("(B)"), "Q-MS2": "<think>still thinking about A", "Q-MS3": "<think>r</think>It is <|begin_of_box|>C<|end_of_box|>",
    "Q-MS4": R("B"),
    # HallusionBench: yes/1 right, no/0 right, no/1 wrong, maybe/0 wrong -> 2/4
    "Q-HB1": R("Yes"), "Q-HB2": R("No."), "Q-HB3": R("no"), "Q-HB4": R("maybe"),
    # MMMU: letter B right, 3/4 == 0.75 right, B vs A wrong -> 2/3
    "Q-MU1": R("B"), "Q-MU2": R("\\frac{3}{4}"), "Q-MU3": R("B"),
    # MathVista: B -> "4" right, 7 right, 1.54 ~ 1.5 at precision 1 right, 2.3 != 2.35 wrong -> 3/4
    "Q-MV1": R("B"), "Q-MV2": R("7"), "Q-MV3": R("1.54"), "Q-MV4": R("2.3"),
    # AI2D: C == index 2 right, "leaf" == index 0 right, A != index 1 wrong -> 2/3
    "Q-AI1": R("C"), "Q-AI2": R("leaf"), "Q-AI3": R("A"),
    # OCRBench: substring right, HME100k without spaces right, GO wrong -> 2/3
    "Q-OC1": R("hello world"), "Q-OC2": R("x^2+1"), "Q-OC3": R("GO"),
    # ChartQAPro: 43 within 5 % of 42 right, year 2020 != 2019 wrong, france right -> 2/3
    "Q-CP1": R("43"), "Q-CP2b": R("2020"), "Q-CP3": R("france"),
    # RefCOCO: IoU 1 right, IoU 0.93 right, no box wrong, IoU 0.375 wrong -> 2/4
    "Q-RC1": R("[100, 100, 500, 500]"), "Q-RC2": R("[110, 100, 500, 520]"), "Q-RC3": R("the cat"),
    "Q-RC4": R("[100, 100, 250, 500]"),
    # CV-Bench: ADE20K right, COCO wrong ("3" is option B, gold A), Omni3D right -> acc 2/3,
    # score ((1 + 0) / 2 + 1) / 2 = 0.75
    "Q-CV1": R("B"), "Q-CV2": R("3"), "Q-CV3": R("A"),
    # Video-MME: C right, "B. two" is B but gold A wrong -> 1/2
    "Q-VM1": R("C"), "Q-VM2": R("B. two"),
    # synth: stem 12 right, counting 4 != 3, ocr exact, grounding exact box, \boxed fails the format gate -> 3/5
    "S-1": R("12"), "S-2": R("4"), "S-3": R("ABC"), "S-4": R("[100, 200, 400, 500]"),
    "S-5": "<think>r</think><answer>\\boxed{7/2}</answer>",
    # one right + one wrong unless noted
    # MMBench-CN circular: "A" right in 1 of 4 rotations, "C" is no option of a 2-option row (0/2)
    "Q-MC1": R("A"), "Q-MC2": R("C"),
    "Q-BL1": R("D"), "Q-BL2": R("B"),
    "Q-MR1": R("B"), "Q-MR2": R("2"),                     # "2" is option C, gold A
    "Q-ZB1": R("12.0"), "Q-ZB2": R("apple."),             # both right: numbers by value, case/period-free
    "Q-MP1": R("J"), "Q-MP2": R("3"),                     # 10 options; "3" is option D, gold C
    "Q-MVS1": R("C"), "Q-MVS2": R("4.5"),                 # both right: letter; 4.5 == 9/2
    "Q-MVE1": R("B"), "Q-MVE2": R("\\sqrt{12}"),          # both right: letter; sqrt(12) == 2 sqrt(3)
    "Q-DM1": R("5.0"), "Q-DM2": R("A"),
    "Q-LV1": R("C, A"), "Q-LV2": R("B and C"),            # letter sets {A, C} right, {B, C} != {B}
    "Q-WM1": R("B"), "Q-WM2": R("B"),
    "Q-CM1": R("2015"), "Q-CM2": R("300"),
    "Q-refcocoplus_val-1": R("[0, 0, 500, 1000]"), "Q-refcocoplus_val-2": R("[0, 0, 500, 1000]"),
    "Q-refcocog_val-1": R("[0, 0, 500, 1000]"), "Q-refcocog_val-2": R("[0, 0, 500, 1000]"),
    "Q-TB1": R("B"), "Q-TB2": R("B"),
    "Q-OS1": R("right"), "Q-OS2": R("B"),                 # gold is a 0-based index
    "Q-ER1": R("B"), "Q-ER2": R("B"),
    "Q-MU-V1": R("A"), "Q-MU-V2": R("mitosis"),           # both right: open answer by text
    "Q-VMM1": R("B"), "Q-VMM2": R("4"),                   # both right
    "Q-LB1": R("C"), "Q-LB2": R("B"),
    "Q-MB-V1": R("D"), "Q-MB-V2": R("A"),
    "Q-MVB1": R("B"), "Q-MVB2": R("cup"),                 # both right: gold is the option text
}

EXPECTED = {
    "mmbench_en": (8 / 11, 0.0), "mmstar": (2 / 4, 1 / 4), "hallusionbench": (2 / 4, 0.0), "mmmu_val": (2 / 3, 0.0),
    "mathvista": (3 / 4, 0.0), "ai2d": (2 / 3, 0.0), "ocrbench": (2 / 3, 0.0), "chartqapro": (2 / 3, 0.0),
    "refcoco_val": (2 / 4, 0.0), "cvbench": (2 / 3, 0.0), "videomme": (1 / 2, 0.0), "synth": (3 / 5, 0.0),
    "mmbench_cn": (1 / 6, 0.0), "blink": (0.5, 0.0), "muirbench": (0.5, 0.0), "zerobench": (1.0, 0.0),
    "mmmu_pro": (0.5, 0.0), "mathvision": (1.0, 0.0), "mathverse": (1.0, 0.0), "dynamath": (0.5, 0.0),
    "logicvista": (0.5, 0.0), "wemath": (0.5, 0.0), "chartmuseum": (0.5, 0.0), "refcocoplus_val": (0.5, 0.0),
    "refcocog_val": (0.5, 0.0), "treebench": (0.5, 0.0), "omnispatial": (0.5, 0.0), "erqa": (0.5, 0.0),
    "mmvu": (1.0, 0.0), "videommmu": (1.0, 0.0), "lvbench": (0.5, 0.0), "motionbench": (0.5, 0.0),
    "mvbench": (1.0, 0.0),
}


SCORES = {"mmbench_en": 2 / 3, "mmbench_cn": 0.0, "cvbench": 0.75}  # the benchmarks' own aggregates


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
    acc, no_answer = EXPECTED[key]
    assert res["acc"] == pytest.approx(acc)
    assert res["no_answer"] == pytest.approx(no_answer)
    assert res["failed_generations"] == 0
    if key in SCORES:
        assert res["score"] == pytest.approx(SCORES[key])
    else:
        assert "score" not in res


def test_prompts_carry_images_options_and_dialogue(run):
    _, gen, _ = run
    by = {k: next(r for r in gen.seen if k in r.text) for k in ("Q-MU1", "Q-MU3", "Q-MB2", "Q-VM1", "Q-CP2b", "Q-RC1", "S-1")}
    assert len(by["Q-MU1"].images) == 1 and len(by["Q-MU3"].images) == 2      # MMMU image_1..7, Nones dropped
    assert by["Q-MU3"].text.startswith("<image><image>\n")
    assert "Hint: The picture is simple." in by["Q-MB2"].text
    rot = sorted(r.text.split("Q-MB2 Which shape is shown?\n")[1].split("\nAnswer with")[0]
                 for r in gen.seen if "Q-MB2" in r.text)          # D is None: three options, three rotations
    assert rot == ["A. circle\nB. square\nC. triangle", "A. square\nB. triangle\nC. circle",
                   "A. triangle\nB. circle\nC. square"]
    assert len(by["Q-VM1"].images) == 8                                       # 8-frame video, 16 asked
    assert by["Q-VM1"].images[0].size == (32, 32)
    assert "Q: Q-CP2 What is the first value?\nA: 10\nQ-CP2b" in by["Q-CP2b"].text
    assert "Q-RC1 the grey box on the left" in by["Q-RC1"].text and by["Q-RC1"].images[0].size == (200, 100)
    assert by["S-1"].text.startswith("<image>\nS-1 What is the value")
    more = {k: next(r for r in gen.seen if k in r.text) for k in ("Q-BL2", "Q-MR2", "Q-ER1", "Q-WM1", "Q-MU-V1", "Q-VMM2")}
    assert len(more["Q-BL2"].images) == 2 and len(more["Q-MR2"].images) == 3 and len(more["Q-ER1"].images) == 2
    assert "A. 30°; B. 45°; C. 60°" in more["Q-WM1"].text
    assert len(more["Q-MU-V1"].images) == 6 and "E. none" in more["Q-MU-V1"].text
    assert "Answer with" not in more["Q-VMM2"].text  # an open row of a multiple-choice benchmark


def test_results_json_samples_and_push_format(run):
    m, _, out = run
    data = json.loads((out / "results.json").read_text())
    assert data["results"]["glmv_mmstar"]["n"] == 4
    assert data["published"]["glmv_mmstar"] == {"glm41v": 72.9, "glm45v": 75.3}
    lines = [json.loads(x) for x in (out / "samples" / "glmv_mmstar.jsonl").read_text().splitlines()]
    assert [ln["answer"] for ln in lines] == ["(B)", None, "C", "B"]
    assert [ln["acc"] for ln in lines] == [1.0, 0.0, 1.0, 0.0]
    assert lines[0]["doc"]["question"].startswith("Q-MS1")
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


def test_yamls_name_their_dataset_consistently():
    """Each runnable benchmark has a YAML whose dataset_path/name/split match its glmv spec and
    whose scorer and prompt exist."""
    from glmv_cli.evaluation.taskdata import PROMPT_KINDS, SCORERS
    from glmv_cli.stages.eval import _yaml_spec

    files = {p.stem for p in TASKS_DIR.glob("glmv_*.yaml")}
    runnable = {b.task for b in BENCHMARKS.values() if b.kind == "task"}
    assert files == runnable
    for task in sorted(files):
        y = _yaml_spec(task)
        g = y["metadata"]["glmv"]
        assert y["task"] == task and g["benchmark"] == task[5:]
        assert y["include"] == "_glmv_template.yaml"
        assert y["test_split"] == g["hub"]["split"]
        assert y.get("dataset_path") == g["hub"].get("path")
        assert y.get("dataset_name") == g["hub"].get("name")
        assert g["scorer"] in SCORERS and g["prompt"] in PROMPT_KINDS
        assert "answer" in g["columns"]
