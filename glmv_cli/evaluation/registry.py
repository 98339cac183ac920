"""The benchmark registry: every benchmark of the paper, its category, how glmv runs it, and the
published GLM-4.1V-9B-Thinking / GLM-4.5V scores.

Three kinds of entry:

- ``task``: a task YAML under ``glmv_cli/evaluation/tasks/`` (``glmv_<key>.yaml``) runs it in
  lm-eval with glmv's adapter. ``fixture=True`` means tests/fixtures/eval/<key>/ holds rows in the
  benchmark's real schema and a test checks the metric against hand-computed scores; the other
  YAMLs name the dataset and columns as documented by the benchmark but have not run on its data.
- ``external``: needs an agent environment or an external harness (OSWorld, AndroidWorld, ...).
  ``glmv eval --list`` shows what it needs; asking for it is an error that says so.
- ``needs``: the data is public but scoring or input needs components glmv does not carry
  (PDF rendering, a browser, subtitles); asking for it is an error that names them.

Published scores. The numbers are those reported for the two models (arXiv 2507.01006 and the
zai-org model cards). In this build only MathVista (80.7) and MMMU-Pro (57.1) for GLM-4.1V-9B-Thinking
were confirmed against a source quoting arXiv v1; every other number is recorded from the model
cards' tables without a second check and is flagged ``verified=False`` (the results table marks
it with "?"). ``None`` means not reported / not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CATEGORIES = ("general", "stem", "ocr_chart", "long_doc", "grounding", "spatial", "gui", "coding", "video", "synth")


@dataclass(frozen=True)
class Benchmark:
    key: str
    name: str
    category: str
    kind: str = "task"                 # task | external | needs
    glm41v: float | None = None
    glm45v: float | None = None
    verified: tuple[str, ...] = ()     # which of ("glm41v", "glm45v") were checked against a source
    fixture: bool = False
    needs: str = ""
    suites: tuple[str, ...] = ()
    metric_scale: float = 100.0        # acc in [0, 1] -> the paper's scale

    @property
    def task(self) -> str:
        return f"glmv_{self.key}"


_B = Benchmark
_41 = ("glm41v-28", "glm45v-42")
_45 = ("glm45v-42",)

BENCHMARKS: dict[str, Benchmark] = {b.key: b for b in [
    # general VQA
    _B("mmbench_en", "MMBench-V1.1-EN (dev)", "general", glm41v=85.8, glm45v=88.2, fixture=True, suites=_41),
    _B("mmbench_cn", "MMBench-V1.1-CN (dev)", "general", glm41v=84.7, glm45v=88.3, fixture=True, suites=_41),
    _B("mmstar", "MMStar", "general", glm41v=72.9, glm45v=75.3, fixture=True, suites=_41),
    _B("blink", "BLINK (val)", "general", glm41v=65.1, glm45v=65.3, fixture=True, suites=_41),
    _B("muirbench", "MUIRBench", "general", glm41v=74.7, glm45v=75.3, fixture=True, suites=_41),
    _B("hallusionbench", "HallusionBench", "general", glm41v=63.2, glm45v=65.4, fixture=True, suites=_45),
    _B("zerobench", "ZeroBench (sub)", "general", glm41v=19.2, glm45v=23.4, fixture=True, suites=_45),
    # STEM
    _B("mmmu_val", "MMMU (val)", "stem", glm41v=68.0, glm45v=75.4, fixture=True, suites=_41),
    _B("mmmu_pro", "MMMU-Pro", "stem", glm41v=57.1, glm45v=65.2, verified=("glm41v",), fixture=True, suites=_41),
    _B("mathvista", "MathVista (testmini)", "stem", glm41v=80.7, glm45v=84.6, verified=("glm41v",), fixture=True,
       suites=_41),
    _B("mathvision", "MathVision", "stem", glm41v=54.4, glm45v=65.6, fixture=True, suites=_45),
    _B("mathverse", "MathVerse (testmini)", "stem", glm41v=68.4, glm45v=72.1, fixture=True, suites=_45),
    _B("dynamath", "DynaMath", "stem", glm41v=42.5, glm45v=53.9, fixture=True, suites=_45),
    _B("logicvista", "LogicVista", "stem", glm41v=60.4, glm45v=62.4, fixture=True, suites=_45),
    _B("ai2d", "AI2D", "stem", glm41v=87.9, glm45v=88.1, fixture=True, suites=_41),
    _B("wemath", "WeMath", "stem", glm41v=63.8, glm45v=68.8, fixture=True, suites=_41),
    # OCR & chart
    _B("ocrbench", "OCRBench", "ocr_chart", glm41v=84.2, glm45v=86.5, fixture=True, suites=_41),
    _B("chartqapro", "ChartQAPro", "ocr_chart", glm41v=59.5, glm45v=64.0, fixture=True, suites=_41),
    _B("chartmuseum", "ChartMuseum", "ocr_chart", glm41v=48.8, glm45v=55.3, fixture=True, suites=_41),
    # long documents
    _B("mmlongbench_doc", "MMLongBench-Doc", "long_doc", kind="needs", glm41v=42.4, glm45v=44.7, suites=_41,
       needs="PDF page rendering (the dataset ships PDFs) and the benchmark's GPT-4o answer extraction; "
             "neither is carried by glmv"),
    # grounding
    _B("refcoco_val", "RefCOCO (val)", "grounding", fixture=True, suites=_41),
    _B("refcocoplus_val", "RefCOCO+ (val)", "grounding", fixture=True, suites=_41),
    _B("refcocog_val", "RefCOCOg (val)", "grounding", fixture=True, suites=_41),
    _B("refcoco_avg", "RefCOCO-avg (val)", "grounding", kind="needs", glm41v=85.3, glm45v=91.3, suites=(),
       needs="the mean of glmv_refcoco_val, glmv_refcocoplus_val and glmv_refcocog_val: run those three"),
    _B("treebench", "TreeBench", "grounding", glm41v=37.5, glm45v=50.1, fixture=True, suites=_45),
    _B("ref_l4", "Ref-L4 (test)", "grounding", kind="external", glm45v=89.5, suites=_45,
       needs="Ref-L4's own evaluation scripts (per-size-bucket IoU protocol); not packaged for lm-eval"),
    # spatial
    _B("omnispatial", "OmniSpatial", "spatial", glm41v=47.7, glm45v=51.0, fixture=True, suites=_45),
    _B("cvbench", "CV-Bench", "spatial", glm41v=85.5, glm45v=87.3, fixture=True, suites=_45),
    _B("erqa", "ERQA", "spatial", glm41v=45.8, glm45v=50.0, fixture=True, suites=_45),
    _B("all_angles", "All-Angles Bench", "spatial", kind="external", glm41v=52.7, glm45v=56.9, suites=_45,
       needs="All-Angles Bench's multi-view video frames and its official evaluation harness"),
    # GUI agents
    _B("osworld", "OSWorld", "gui", kind="external", glm41v=14.9, glm45v=35.8, suites=_41,
       needs="an OSWorld virtual-machine environment (desktop VMs, the task executor and checkers)"),
    _B("androidworld", "AndroidWorld", "gui", kind="external", glm41v=41.7, glm45v=57.0, suites=_41,
       needs="an Android emulator with the AndroidWorld task suite and its agent loop"),
    _B("webvoyager", "WebVoyager (SoM)", "gui", kind="external", glm41v=69.0, glm45v=84.4, suites=_41,
       needs="a live browser environment (Playwright/Selenium) and WebVoyager's judge"),
    _B("webquest_single", "WebQuest-SingleQA", "gui", kind="external", glm41v=72.1, glm45v=76.9, suites=_41,
       needs="WebQuest's web screenshots and its LLM-judged evaluation harness"),
    _B("webquest_multi", "WebQuest-MultiQA", "gui", kind="external", glm41v=54.7, glm45v=60.5, suites=_41,
       needs="WebQuest's web screenshots and its LLM-judged evaluation harness"),
    # coding
    _B("design2code", "Design2Code", "coding", kind="needs", glm41v=64.7, glm45v=82.2, suites=_41,
       needs="rendering the generated HTML in a headless browser (Playwright) and CLIP-based visual scores"),
    _B("flame_react", "Flame-React-Eval", "coding", kind="external", glm41v=72.5, glm45v=82.5, suites=_41,
       needs="the Flame-React-Eval harness (React build + rendering checks)"),
    # video
    _B("videomme", "VideoMME (w/o sub)", "video", glm41v=68.2, glm45v=74.6, fixture=True, suites=_41),
    _B("videomme_sub", "VideoMME (w/ sub)", "video", kind="needs", glm41v=73.6, glm45v=80.7, suites=_41,
       needs="Video-MME's subtitle files (.srt) aligned to the sampled frames"),
    _B("mmvu", "MMVU", "video", glm41v=59.4, glm45v=68.7, fixture=True, suites=_45),
    _B("videommmu", "VideoMMMU", "video", glm41v=68.4, glm45v=72.4, fixture=True, suites=_41),
    _B("lvbench", "LVBench", "video", glm41v=44.0, glm45v=53.8, fixture=True, suites=_41),
    _B("motionbench", "MotionBench", "video", glm41v=59.0, glm45v=62.4, fixture=True, suites=_41),
    _B("mvbench", "MVBench", "video", glm41v=68.4, glm45v=73.0, fixture=True, suites=_41),
    # other
    _B("geobench", "GeoBench", "spatial", kind="external", glm45v=79.7, suites=_45,
       needs="GeoBench's geo-localisation distance scoring and its image set (not on the Hub as a table)"),
    # glmv's own
    _B("synth", "glmv synth eval split", "synth", fixture=True, suites=("synth",)),
]}

SUITES = ("glm41v-28", "glm45v-42", "synth")


def suite(name: str) -> list[Benchmark]:
    return [b for b in BENCHMARKS.values() if name in b.suites]


def by_task(task: str) -> Benchmark | None:
    key = task[5:] if task.startswith("glmv_") else task
    return BENCHMARKS.get(key)
