"""Results of one ``glmv eval`` run: per-task metrics, generation accounting, and the table beside
the published GLM-4.1V-9B-Thinking / GLM-4.5V scores.

Scale: task metrics are fractions in [0, 1] (lm-eval's mean of per-row scores, or the benchmark's
own aggregate ``score`` — MMBench CircularEval, CV-Bench's source-balanced mean); the table shows
the headline (``score`` when present, else ``acc``) ``x metric_scale`` (100 for every benchmark) so it reads like the paper. RefCOCO-avg is shown
as the mean of the three RefCOCO tasks when all three ran. Published numbers that were not
checked against a source carry a "?" (see :mod:`glmv_cli.evaluation.registry`).
"""

from __future__ import annotations

from typing import Any

from glmv_cli.evaluation.registry import BENCHMARKS, by_task

METRICS = ("acc", "score", "mean_reward", "no_answer")


def task_metrics(lm_results: dict[str, dict[str, Any]], stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task: {acc, no_answer, [mean_reward], n, failed_generations, truncated, forced}}``."""
    out: dict[str, dict[str, Any]] = {}
    for task, r in sorted(lm_results.items()):
        m: dict[str, Any] = {}
        for name in METRICS:
            v = r.get(f"{name},none")
            if isinstance(v, (int, float)):
                m[name] = float(v)
        st = stats.get(task, {})
        m["n"] = int(r.get("sample_len", st.get("requests", 0)) or 0)
        m["failed_generations"] = int(st.get("error", 0))
        m["truncated"] = int(st.get("length", 0))
        m["forced"] = int(st.get("forced", 0))
        out[task] = m
    return out


def refcoco_avg(metrics: dict[str, dict[str, Any]]) -> float | None:
    parts = [metrics.get(f"glmv_{k}", {}).get("acc") for k in ("refcoco_val", "refcocoplus_val", "refcocog_val")]
    if any(p is None for p in parts):
        return None
    return sum(parts) / 3  # type: ignore[arg-type]


def published_cell(b, which: str) -> str:
    v = getattr(b, which)
    if v is None:
        return "-"
    return f"{v:.1f}" + ("" if which in b.verified else "?")


def table_rows(metrics: dict[str, dict[str, Any]], not_run: dict[str, str]) -> list[list[str]]:
    rows = []
    for task, m in metrics.items():
        b = by_task(task)
        name = b.name if b else task
        scale = b.metric_scale if b else 100.0
        headline = m.get("score", m.get("acc", 0.0))  # a benchmark's own aggregate when it has one
        rows.append([name, b.category if b else "?", str(m["n"]), f"{headline * scale:.1f}",
                     f"{m.get('no_answer', 0.0) * 100:.1f}", str(m["failed_generations"]), str(m["truncated"]),
                     published_cell(b, "glm41v") if b else "-", published_cell(b, "glm45v") if b else "-"])
    avg = refcoco_avg(metrics)
    if avg is not None:
        b = BENCHMARKS["refcoco_avg"]
        rows.append([b.name, b.category, "-", f"{avg * 100:.1f}", "-", "-", "-", published_cell(b, "glm41v"), published_cell(b, "glm45v")])
    from rich.markup import escape

    for key, why in not_run.items():
        b = BENCHMARKS.get(key)
        rows.append([b.name if b else key, b.category if b else "?", "not run", escape(why), "", "", "",
                     published_cell(b, "glm41v") if b else "-", published_cell(b, "glm45v") if b else "-"])
    return rows


def print_table(metrics: dict[str, dict[str, Any]], not_run: dict[str, str], console: Any = None,
                title: str = "glmv eval") -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    t = Table(title=title)
    for col in ("benchmark", "category", "n", "score", "no answer %", "failed gens", "truncated",
                "GLM-4.1V-9B-Thinking", "GLM-4.5V"):
        t.add_column(col, justify="left" if col in ("benchmark", "category") else "right")
    for r in table_rows(metrics, not_run):
        t.add_row(*r)
    console.print(t)
    console.print('published scores marked "?" are recorded from the model cards and not re-verified')
