"""Results of one ``glmv eval`` run: the table beside the published GLM-4.1V-9B-Thinking / GLM-4.5V scores.

Task metrics are fractions in [0, 1]; the table shows each benchmark's headline ``score`` (named as
the benchmark names it: CircularEval accuracy, mean of aAcc/fAcc/qAcc, worst-case accuracy, Score
(Strict), ...) ``x metric_scale`` so it reads like the paper, with the protocol that decided the
row scores (``official rule``, ``LLM judge``, or ``rule-based (official: LLM judge)`` where glmv
stands in for a judge). RefCOCO-avg is the mean of the three RefCOCO tasks when all three ran.
"""

from __future__ import annotations

from typing import Any

from glmv_cli.evaluation.registry import BENCHMARKS, by_task


def refcoco_avg(metrics: dict[str, dict[str, Any]]) -> float | None:
    parts = [metrics.get(f"glmv_{k}", {}).get("score") for k in ("refcoco_val", "refcocoplus_val", "refcocog_val")]
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
        scale = b.metric_scale if b else 100.0
        rows.append([b.name if b else task, str(m["n"]), f"{m['score'] * scale:.1f}", str(m.get("headline", "")),
                     str(m.get("protocol", "")), f"{m.get('no_answer', 0.0) * 100:.1f}", str(m["failed_generations"]),
                     str(m.get("errors", 0)), published_cell(b, "glm41v") if b else "-",
                     published_cell(b, "glm45v") if b else "-"])
    avg = refcoco_avg(metrics)
    if avg is not None:
        b = BENCHMARKS["refcoco_avg"]
        rows.append([b.name, "-", f"{avg * 100:.1f}", "mean of the three", "official rule", "-", "-", "-",
                     published_cell(b, "glm41v"), published_cell(b, "glm45v")])
    from rich.markup import escape

    for key, why in not_run.items():
        b = BENCHMARKS.get(key)
        rows.append([b.name if b else key, "not run", escape(why), "", "", "", "", "",
                     published_cell(b, "glm41v") if b else "-", published_cell(b, "glm45v") if b else "-"])
    return rows


def print_table(metrics: dict[str, dict[str, Any]], not_run: dict[str, str], console: Any = None,
                title: str = "glmv eval") -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    t = Table(title=title)
    for col in ("benchmark", "n", "score", "headline", "protocol", "no answer %", "failed gens", "row errors",
                "GLM-4.1V-9B-Thinking", "GLM-4.5V"):
        t.add_column(col, justify="left" if col in ("benchmark", "headline", "protocol") else "right")
    for r in table_rows(metrics, not_run):
        t.add_row(*r)
    console.print(t)
