"""The benchmark registry: every benchmark of the paper, its category, how glmv runs it, and the
published GLM-4.1V-9B-Thinking / GLM-4.5V scores with the table row each was read from.

Three kinds of entry:

- ``task``: a spec under ``glmv_cli/evaluation/tasks/`` (``glmv_<key>.yaml``) that ``glmv eval`` runs.
  ``fixture=True`` means tests/fixtures/eval/<key>/ holds rows in the benchmark's real layout and a
  test checks the metric against hand-computed scores.
- ``external``: needs an agent environment or an external harness (OSWorld, AndroidWorld, ...).
  ``glmv eval --list`` shows what it needs; asking for it is an error that says so.
- ``needs``: the data is public but scoring or input needs components glmv does not carry
  (PDF rendering, a browser, subtitles); asking for it is an error that names them.

Published scores. Both tables are images in zai-org/GLM-V's README: ``resources/bench.jpeg`` (the
GLM-4.1V-9B-Thinking table of the 28 benchmarks, also the paper's) and ``resources/bench_45v.jpeg``
(the GLM-4.5V table of 42, with a GLM-4.1V column). ``glm41v`` is the 4.1V table's figure where that
table has the benchmark, else the 4.5V table's GLM-4.1V column; the two differ for RefCOCO-avg (87.4
vs 85.3) and LVBench (45.1 vs 44.0), noted in ``note``. ``source41`` / ``source45`` name the row read.
The suites are those tables' rows: ``glm41v-28`` and ``glm45v-42``.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("general", "stem", "ocr_chart", "long_doc", "grounding", "spatial", "gui", "coding", "video", "synth")


@dataclass(frozen=True)
class Benchmark:
    key: str
    name: str
    category: str
    kind: str = "task"                 # task | external | needs
    glm41v: float | None = None
    glm45v: float | None = None
    verified: tuple[str, ...] = ("glm41v", "glm45v")  # read from the tables named in source41/source45
    fixture: bool = False
    source41: str = ""
    source45: str = ""
    note: str = ""
    needs: str = ""
    suites: tuple[str, ...] = ()
    metric_scale: float = 100.0        # acc in [0, 1] -> the paper's scale

    @property
    def task(self) -> str:
        return f"glmv_{self.key}"


_B = Benchmark
_41 = ("glm41v-28", "glm45v-42")
_45 = ("glm45v-42",)
T41 = "GLM-V README resources/bench.jpeg (GLM-4.1V-9B-Thinking table), row '{}'"
T45 = "GLM-V README resources/bench_45v.jpeg (GLM-4.5V table), row '{}'"


def _src(row41: str | None, row45: str) -> dict[str, str]:
    return {"source41": T41.format(row41) if row41 else T45.format(row45) + ", GLM-4.1V column",
            "source45": T45.format(row45)}


BENCHMARKS: dict[str, Benchmark] = {b.key: b for b in [
    # general VQA
    _B("mmbench_en", "MMBench-EN dev (Hub v1.0 rows; published: V1.1)", "general", glm41v=85.8, glm45v=88.2, fixture=True,
       suites=_41, **_src("MMBench-V1.1-EN", "MMBench v1.1")),
    _B("mmbench_cn", "MMBench-CN dev (Hub v1.0 rows; published: V1.1)", "general", glm41v=84.7, glm45v=88.3, fixture=True,
       suites=_41, **_src("MMBench-V1.1-CN", "MMBench v1.1 (CN)")),
    _B("mmstar", "MMStar", "general", glm41v=72.9, glm45v=75.3, fixture=True, suites=_41, **_src("MMStar", "MMStar")),
    _B("blink", "BLINK (val)", "general", glm41v=65.1, glm45v=65.3, fixture=True, suites=_41, **_src("BLINK", "BLINK (val)")),
    _B("muirbench", "MUIRBench", "general", glm41v=74.7, glm45v=75.3, fixture=True, suites=_41,
       **_src("MUIRBENCH", "MUIRBENCH")),
    _B("hallusionbench", "HallusionBench", "general", glm41v=63.2, glm45v=65.4, fixture=True, suites=_45,
       **_src(None, "HallusionBench")),
    _B("zerobench", "ZeroBench (sub)", "general", glm41v=19.2, glm45v=23.4, fixture=True, suites=_45,
       **_src(None, "ZeroBench (sub)")),
    _B("geobench", "GeoBench", "general", kind="external", glm41v=76.0, glm45v=79.7, suites=_45, **_src(None, "GeoBench"),
       needs="GeoBench's geo-localisation distance scoring and its image set (not on the Hub as a table)"),
    # STEM
    _B("mmmu_val", "MMMU (val)", "stem", glm41v=68.0, glm45v=75.4, fixture=True, suites=_41, **_src("MMMU", "MMMU (val)")),
    _B("mmmu_pro", "MMMU-Pro", "stem", glm41v=57.1, glm45v=65.2, fixture=True, suites=_41, **_src("MMMU-Pro", "MMMU Pro")),
    _B("mathvista", "MathVista (testmini)", "stem", glm41v=80.7, glm45v=84.6, fixture=True, suites=_41,
       **_src("MathVista", "MathVista")),
    _B("mathvision", "MathVision", "stem", glm41v=54.4, glm45v=65.6, fixture=True, suites=_45, **_src(None, "MathVision")),
    _B("mathverse", "MathVerse (testmini)", "stem", glm41v=68.4, glm45v=72.1, fixture=True, suites=_45,
       **_src(None, "MathVerse")),
    _B("dynamath", "DynaMath (worst case)", "stem", glm41v=42.5, glm45v=53.9, fixture=True, suites=_45,
       **_src(None, "DynaMath")),
    _B("logicvista", "LogicVista", "stem", glm41v=60.4, glm45v=62.4, fixture=True, suites=_45, **_src(None, "LogicVista")),
    _B("ai2d", "AI2D", "stem", glm41v=87.9, glm45v=88.1, fixture=True, suites=_41, **_src("AI2D", "AI2D")),
    _B("wemath", "WeMath (strict)", "stem", glm41v=63.8, glm45v=68.8, fixture=True, suites=_41, **_src("WeMath", "WeMath")),
    # OCR & chart
    _B("ocrbench", "OCRBench", "ocr_chart", glm41v=84.2, glm45v=86.5, fixture=True, suites=_41,
       **_src("OCRBench", "OCRBench")),
    _B("chartqapro", "ChartQAPro", "ocr_chart", glm41v=59.5, glm45v=64.0, fixture=True, suites=_41,
       **_src("ChartQAPro", "ChartQAPro")),
    _B("chartmuseum", "ChartMuseum", "ocr_chart", glm41v=48.8, glm45v=55.3, fixture=True, suites=_41,
       **_src("ChartMuseum", "ChartMuseum")),
    # long documents
    _B("mmlongbench_doc", "MMLongBench-Doc", "long_doc", kind="needs", glm41v=42.4, glm45v=44.7, suites=_41,
       **_src("MMLongBench-Doc", "MMLongBench-Doc"),
       needs="PDF page rendering (the dataset ships PDFs) and the benchmark's GPT-4o answer extraction; "
             "neither is carried by glmv"),
    # grounding
    _B("refcoco_val", "RefCOCO (val)", "grounding", fixture=True, suites=_41),
    _B("refcocoplus_val", "RefCOCO+ (val)", "grounding", fixture=True, suites=_41),
    _B("refcocog_val", "RefCOCOg (val)", "grounding", fixture=True, suites=_41),
    _B("refcoco_avg", "RefCOCO-avg (val)", "grounding", kind="needs", glm41v=87.4, glm45v=91.3, suites=(),
       **_src("RefCOCO-avg (val)", "RefCOCO-avg (val)"), note="the 4.5V table's GLM-4.1V column lists 85.3",
       needs="the mean of glmv_refcoco_val, glmv_refcocoplus_val and glmv_refcocog_val: run those three"),
    _B("treebench", "TreeBench", "grounding", glm41v=37.5, glm45v=50.1, fixture=True, suites=_45, **_src(None, "TreeBench")),
    _B("ref_l4", "Ref-L4 (test)", "grounding", kind="external", glm41v=86.8, glm45v=89.5, suites=_45,
       **_src(None, "Ref-L4-test"),
       needs="Ref-L4's own evaluation scripts (per-size-bucket IoU protocol); not packaged as a table"),
    # spatial
    _B("omnispatial", "OmniSpatial", "spatial", glm41v=47.7, glm45v=51.0, fixture=True, suites=_45,
       **_src(None, "OmniSpatial")),
    _B("cvbench", "CV-Bench", "spatial", glm41v=85.0, glm45v=87.3, fixture=True, suites=_45, **_src(None, "CV-Bench")),
    _B("erqa", "ERQA", "spatial", glm41v=45.8, glm45v=50.0, fixture=True, suites=_45, **_src(None, "ERQA")),
    _B("all_angles", "All-Angles Bench", "spatial", kind="external", glm41v=52.7, glm45v=56.9, suites=_45,
       **_src(None, "All-Angles Bench"),
       needs="All-Angles Bench's multi-view video frames and its official evaluation harness"),
    # GUI agents
    _B("osworld", "OSWorld", "gui", kind="external", glm41v=14.9, glm45v=35.8, suites=_41, **_src("OSWorld", "OSWorld"),
       needs="an OSWorld virtual-machine environment (desktop VMs, the task executor and checkers)"),
    _B("androidworld", "AndroidWorld", "gui", kind="external", glm41v=41.7, glm45v=57.0, suites=_41,
       **_src("AndroidWorld", "AndroidWorld"),
       needs="an Android emulator with the AndroidWorld task suite and its agent loop"),
    _B("webvoyager", "WebVoyager (SoM)", "gui", kind="external", glm41v=69.0, glm45v=84.4, suites=_41,
       **_src("WebVoyageSom", "WebVoyagerSom"),
       needs="a live browser environment (Playwright/Selenium) and WebVoyager's judge"),
    _B("webquest_single", "WebQuest-SingleQA", "gui", kind="external", glm41v=72.1, glm45v=76.9, suites=_41,
       **_src("Webquest-SingleQA", "Webquest-SingleQA"),
       needs="WebQuest's web screenshots and its LLM-judged evaluation harness"),
    _B("webquest_multi", "WebQuest-MultiQA", "gui", kind="external", glm41v=54.7, glm45v=60.6, suites=_41,
       **_src("Webquest-MultiQA", "Webquest-MultiQA"),
       needs="WebQuest's web screenshots and its LLM-judged evaluation harness"),
    # coding
    _B("design2code", "Design2Code", "coding", kind="needs", glm41v=64.7, glm45v=82.2, suites=_41,
       **_src("Design2Code", "Design2Code"),
       needs="rendering the generated HTML in a headless browser (Playwright) and CLIP-based visual scores"),
    _B("flame_react", "Flame-React-Eval", "coding", kind="external", glm41v=72.5, glm45v=82.5, suites=_41,
       **_src("Flame-VLM-Code", "Flame-React-Eval"),
       needs="the Flame-React-Eval harness (React build + rendering checks)"),
    # video
    _B("videomme", "VideoMME (w/o sub)", "video", glm41v=68.2, glm45v=74.6, fixture=True, suites=_41,
       **_src("VideoMME (w/o)", "VideoMME (w/o sub)")),
    _B("videomme_sub", "VideoMME (w/ sub)", "video", kind="needs", glm41v=73.6, glm45v=80.7, suites=_41,
       **_src("VideoMME (w/)", "VideoMME (w/ sub)"),
       needs="Video-MME's subtitle files (.srt) aligned to the sampled frames"),
    _B("mmvu", "MMVU", "video", glm41v=59.4, glm45v=68.7, fixture=True, suites=_41, **_src("MMVU", "MMVU")),
    _B("videommmu", "VideoMMMU", "video", glm41v=61.0, glm45v=72.4, fixture=True, suites=_41,
       **_src("VideoMMMU", "VideoMMMU")),
    _B("lvbench", "LVBench", "video", glm41v=45.1, glm45v=53.8, fixture=True, suites=_41, **_src("LVBench", "LVBench"),
       note="the 4.5V table's GLM-4.1V column lists 44.0"),
    _B("motionbench", "MotionBench", "video", glm41v=59.0, glm45v=62.4, fixture=True, suites=_41,
       **_src("MotionBench", "MotionBench")),
    _B("mvbench", "MVBench", "video", glm41v=68.4, glm45v=73.0, fixture=True, suites=_45, **_src(None, "MVBench")),
    # glmv's own
    _B("synth", "glmv synth eval split", "synth", fixture=True, suites=("synth",), verified=()),
]}

SUITES = ("glm41v-28", "glm45v-42", "synth")


def suite(name: str) -> list[Benchmark]:
    return [b for b in BENCHMARKS.values() if name in b.suites]


def by_task(task: str) -> Benchmark | None:
    key = task[5:] if task.startswith("glmv_") else task
    return BENCHMARKS.get(key)
