"""Task specs: what one benchmark's rows look like and how glmv asks and scores them.

Each runnable benchmark has ``glmv_cli/evaluation/tasks/glmv_<key>.yaml``::

    benchmark: mmstar                   # registry key (published scores, category)
    hub: {path: Lin-Chen/MMStar, split: val}     # name / names (configs), splits, data_files
    layout: null                        # qa_list | zip_json | hub_folder (see glmv_cli.evaluation.data)
    prompt: mcq                         # mcq | open | yesno | grounding | chat (glmv_cli.evaluation.prompts)
    scorer: mcq                         # a per-row rule (glmv_cli.evaluation.protocols.SCORERS)
    aggregate: mean                     # the benchmark's headline (protocols.AGGREGATES)
    breakdown: [category]               # columns the official tool reports per-value accuracy for
    columns: {id: index, question: question, images: [image], answer: answer}
    required: [question, image, answer] # source columns every row must have (checked before generation)

``columns`` maps glmv's roles (question, answer, options, images, video, hint, ...) to the
benchmark's own column names; ``required`` lists the source columns a row may not lack (missing,
None, NaN or empty is an error naming dataset, split, row and column). Media roles (``images``,
``video``) are also resolved and, with ``--check``, decoded. Everything else in the file is a
setting of its prompt, scorer or aggregate (``answer_kind``, ``instruction``, ``video_dir`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

PROMPT_KINDS = ("mcq", "open", "yesno", "grounding", "chat")
LAYOUTS = ("qa_list", "zip_json", "hub_folder")
MEDIA_ROLES = ("images", "video")
KNOWN_KEYS = {"benchmark", "hub", "local", "layout", "prompt", "scorer", "aggregate", "breakdown", "columns",
              "required", "settings", "note"}


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark's data and protocol (see the module docstring)."""

    task: str
    benchmark: str
    prompt: str
    scorer: str
    columns: dict[str, Any]
    required: tuple[str, ...]
    hub: dict[str, Any] = field(default_factory=dict)
    local: tuple[str, ...] = ()
    layout: str | None = None
    aggregate: str = "mean"
    breakdown: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def col(self, role: str, default: Any = None) -> Any:
        return self.columns.get(role, default)

    def cols(self, role: str) -> list[str]:
        v = self.columns.get(role)
        if v is None:
            return []
        return [str(c) for c in v] if isinstance(v, (list, tuple)) else [str(v)]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def configs(self) -> list[str | None]:
        names = self.hub.get("names")
        return list(names) if names else [self.hub.get("name")]

    @property
    def splits(self) -> list[str]:
        s = self.hub.get("splits") or [self.hub.get("split", "test")]
        return [str(x) for x in s]

    def dataset_label(self) -> str:
        return str(self.hub.get("path") or self.benchmark)


def parse_spec(task: str, d: dict[str, Any], where: str) -> TaskSpec:
    """A TaskSpec from a YAML mapping; every problem is a GlmvError naming the file and key."""
    from glmv_cli.evaluation.protocols import AGGREGATES, SCORERS

    if not isinstance(d, dict):
        raise GlmvError(f"{where}: expected a mapping of task settings")
    for key in ("benchmark", "prompt", "scorer", "columns", "required"):
        if key not in d:
            raise GlmvError(f"{where}: '{key}' is missing")
    if d["prompt"] not in PROMPT_KINDS:
        raise GlmvError(f"{where}: prompt is '{d['prompt']}'; expected one of {', '.join(PROMPT_KINDS)}")
    if d["scorer"] not in SCORERS:
        raise GlmvError(f"{where}: scorer is '{d['scorer']}'; expected one of {', '.join(sorted(SCORERS))}")
    agg = d.get("aggregate", "mean")
    if agg not in AGGREGATES:
        raise GlmvError(f"{where}: aggregate is '{agg}'; expected one of {', '.join(sorted(AGGREGATES))}")
    if d.get("layout") is not None and d["layout"] not in LAYOUTS:
        raise GlmvError(f"{where}: layout is '{d['layout']}'; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(d["columns"], dict) or not isinstance(d["required"], list) or not d["required"]:
        raise GlmvError(f"{where}: 'columns' must be a mapping and 'required' a non-empty list of column names")
    extra = {k: v for k, v in d.items() if k not in KNOWN_KEYS}
    settings = {**dict(d.get("settings") or {}), **extra}
    return TaskSpec(task=task, benchmark=str(d["benchmark"]), prompt=d["prompt"], scorer=d["scorer"],
                    columns=dict(d["columns"]), required=tuple(str(c) for c in d["required"]),
                    hub=dict(d.get("hub") or {}), local=tuple(d.get("local") or ()), layout=d.get("layout"),
                    aggregate=agg, breakdown=tuple(d.get("breakdown") or ()), settings=settings,
                    note=str(d.get("note", "")))


def spec_file(task: str) -> Path:
    from glmv_cli.evaluation.tasks import TASKS_DIR

    return TASKS_DIR / f"{task}.yaml"


@lru_cache(maxsize=None)
def load_spec(task: str) -> TaskSpec:
    """The spec of a task name (``glmv_<key>``) from its YAML."""
    import yaml

    f = spec_file(task)
    if not f.is_file():
        raise GlmvError(f"task {task}: no spec file {f.name} under glmv_cli/evaluation/tasks/")
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise GlmvError(f"{f}: invalid YAML ({e})") from None
    spec = parse_spec(task, data, str(f))
    if spec.benchmark != task.removeprefix("glmv_"):
        raise GlmvError(f"{f}: benchmark '{spec.benchmark}' does not match the file name")
    return spec


def is_missing(v: Any) -> bool:
    """None, NaN, an empty string or "nan" (pandas-written tables), or an empty list."""
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    if isinstance(v, str) and v.strip() in ("", "nan", "NaN", "None"):
        return True
    return isinstance(v, (list, tuple)) and len(v) == 0
