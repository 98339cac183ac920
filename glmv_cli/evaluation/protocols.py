"""Per-row scorers (``scorer:`` in a task spec) and the benchmark-level aggregates (``aggregate:``).

A scorer reads one row in its benchmark's schema and the answer glmv extracted, and returns a score
in [0, 1]; it raises (GlmvError / ValueError ...) when the row cannot be scored -- the runner counts
and lists that row instead of stopping. The rules themselves are in :mod:`scoring` (generic) and
:mod:`scoring_official` (benchmark-specific). Scorers that the official protocol runs through an LLM
judge (ChartMuseum, MathVerse, MMVU open questions, MathVista's extraction fallback) use the
``--judge-url`` judge when one is given, and otherwise glmv's rule-based default; each sample
records which (``judged``).

An aggregate turns the per-row items into the benchmark's headline and its sub-metrics; items carry
``score`` and the ``facts`` the aggregate declared in :data:`AGG_FACTS` (row values by column role).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from glmv_cli.errors import GlmvError


@dataclass
class ScoreContext:
    spec: Any
    row: dict[str, Any]
    pred: str | None          # extracted answer (None: nothing to extract)
    response: str
    question: str = ""        # the prompt text (for a judge)
    judge: Any = None         # EvalJudge or None
    judged: bool = False      # set when the judge decided this row

    def gold(self) -> Any:
        g = self.row.get(self.spec.col("answer"))
        if isinstance(g, (list, tuple)) and self.spec.get("answer_list") == "last":
            return g[-1] if g else ""
        return g

    def value(self, role: str, default: Any = None) -> Any:
        c = self.spec.col(role)
        return self.row.get(c, default) if c else default


def _options(ctx: ScoreContext) -> list[str]:
    from glmv_cli.evaluation.prompts import options_of

    return options_of(ctx.spec, ctx.row)


def _judge_or(ctx: ScoreContext, rule: Callable[[], float], reference: Any = None) -> float:
    """The judge's verdict when configured, else the rule-based default."""
    if ctx.judge is None or ctx.pred is None:
        return rule()
    ctx.judged = True
    return float(ctx.judge.equivalent(ctx.question, str(ctx.gold() if reference is None else reference), ctx.pred))


def s_mcq(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import score_mcq

    return score_mcq(ctx.pred, ctx.gold(), _options(ctx), ctx.spec.get("answer_kind", "letter"))


def s_yesno(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import score_yesno

    return score_yesno(ctx.pred, ctx.gold())


def s_exact(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import score_exact

    return score_exact(ctx.pred, ctx.gold())


def s_letters(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import score_letters

    return score_letters(ctx.pred, ctx.gold())


def s_ocrbench(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import score_ocrbench

    return score_ocrbench(ctx.pred, ctx.gold(), str(ctx.value("subset", "") or ""))


def s_math(ctx: ScoreContext) -> float:
    """Letter for a multiple-choice row, else the reward system's math equivalence, then text."""
    from glmv_cli.evaluation.scoring import LETTERS, score_math, score_mcq

    gold = ctx.gold()
    if len(str(gold).strip()) == 1 and str(gold).strip() in LETTERS:
        return score_mcq(ctx.pred, gold, _options(ctx), "letter")
    return _judge_or(ctx, lambda: score_math(ctx.pred, gold))


def s_mmmu(ctx: ScoreContext) -> float:
    """MMMU / MMMU-Pro: letter for multiple choice, MMMU's ``eval_open`` for open questions."""
    from glmv_cli.evaluation.scoring import score_mcq
    from glmv_cli.evaluation.scoring_official import score_mmmu_open

    qtype = str(ctx.value("type", "multiple-choice") or "multiple-choice")
    if qtype == "open":
        return score_mmmu_open(ctx.pred, ctx.gold())
    return score_mcq(ctx.pred, ctx.gold(), _options(ctx) or list("ABCDEFGHIJ"), "letter")


def s_mathvista(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring_official import score_mathvista

    opts = _options(ctx)
    qt, at = str(ctx.value("question_type", "")), str(ctx.value("answer_type", ""))
    s = score_mathvista(ctx.pred, ctx.gold(), qt, at, opts, ctx.value("precision"))
    if s == 0.0 and ctx.judge is not None and ctx.pred is not None:  # MathVista's LLM extraction step
        return _judge_or(ctx, lambda: s)
    return s


def s_chartqapro(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring_official import score_chartqapro

    return score_chartqapro(ctx.pred, ctx.row.get(ctx.spec.col("answer")), str(ctx.value("type", "")),
                            ctx.value("year", ["NO"]))


def s_dynamath(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring_official import score_dynamath

    return score_dynamath(ctx.pred, ctx.gold(), str(ctx.value("answer_type", "")))


def s_chartmuseum(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring_official import score_chartmuseum

    return _judge_or(ctx, lambda: score_chartmuseum(ctx.pred, ctx.gold()))


def s_iou(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.scoring import parse_options, score_iou

    box = ctx.gold()
    box = [float(x) for x in (box if isinstance(box, (list, tuple)) else parse_options(box))]
    if len(box) != 4:
        raise GlmvError(f"bbox {box!r} is not [x, y, w, h]")
    w, h = ctx.value("width"), ctx.value("height")
    if not (w and h):
        w, h = ctx.row["_image_size"]
    return score_iou(ctx.pred, box, int(w), int(h), float(ctx.spec.get("iou_threshold", 0.5)))


def s_reward(ctx: ScoreContext) -> float:
    from glmv_cli.evaluation.prompts import body_text
    from glmv_cli.rewards import score_detailed

    res = score_detailed(body_text(ctx.spec, ctx.row), ctx.response, str(ctx.gold()), str(ctx.value("domain")))
    return float(res.reward)


SCORERS: dict[str, Callable[[ScoreContext], float]] = {
    "mcq": s_mcq, "yesno": s_yesno, "exact": s_exact, "letters": s_letters, "ocrbench": s_ocrbench, "math": s_math,
    "mmmu": s_mmmu, "mathvista": s_mathvista, "chartqapro": s_chartqapro, "dynamath": s_dynamath,
    "chartmuseum": s_chartmuseum, "iou": s_iou, "reward": s_reward,
}
JUDGED = {"math", "mathvista", "chartmuseum"}  # scorers whose official protocol uses an LLM judge


# ------------------------------------------------------------------------------------ aggregates

Items = list[dict[str, Any]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _all_right(groups: dict[Any, list[float]]) -> float:
    return _mean([float(all(s >= 1.0 for s in v)) for v in groups.values()])


def a_mean(items: Items) -> dict[str, Any]:
    return {"headline": "accuracy", "score": _mean([it["score"] for it in items])}


def a_circular(items: Items) -> dict[str, Any]:
    """MMBench CircularEval: the Hub rows already hold every rotation (index + k * 1e6); a question
    (index % 1e6) counts only when all its rows are right."""
    groups: dict[int, list[float]] = defaultdict(list)
    for it in items:
        groups[int(float(it["facts"]["id"])) % 1_000_000].append(it["score"])
    return {"headline": "CircularEval accuracy", "score": _all_right(groups), "questions": len(groups)}


def a_hallusion(items: Items) -> dict[str, Any]:
    """HallusionBench: aAcc per question; fAcc per figure (category, subcategory, set, figure; VS rows
    without a figure left out); qAcc per question pair (category, subcategory, set, question); the
    headline is their mean (the OpenVLM leaderboard's HallusionBench score)."""
    figs: dict[tuple, list[float]] = defaultdict(list)
    pairs: dict[tuple, list[float]] = defaultdict(list)
    for it in items:
        f = it["facts"]
        base = (str(f["category"]), str(f["subcategory"]), str(f["set_id"]))
        if not (f["category"] == "VS" and str(f["figure_id"]) == "0"):
            figs[base + (str(f["figure_id"]),)].append(it["score"])
        pairs[base + (str(f["question_id"]),)].append(it["score"])
    a, fa, qa = _mean([it["score"] for it in items]), _all_right(figs), _all_right(pairs)
    return {"headline": "mean of aAcc, fAcc, qAcc", "score": (a + fa + qa) / 3, "aAcc": a, "fAcc": fa, "qAcc": qa}


def a_dynamath(items: Items) -> dict[str, Any]:
    """DynaMath: worst-case accuracy (a seed question counts when right in every variant it was asked
    in) and average accuracy over all asked variants."""
    by_q: dict[str, list[float]] = defaultdict(list)
    for it in items:
        by_q[str(it["facts"]["id"])].append(it["score"])
    variants = sorted({it["facts"]["split"] for it in items})
    return {"headline": "worst-case accuracy", "score": _all_right(by_q), "average": _mean([it["score"] for it in items]),
            "questions": len(by_q), "variants": len(variants)}


def a_cvbench(items: Items) -> dict[str, Any]:
    """CV-Bench: ((ADE20K + COCO) / 2 + Omni3D) / 2 over per-source accuracies."""
    by: dict[str, list[float]] = defaultdict(list)
    for it in items:
        by[str(it["facts"]["source"])].append(it["score"])
    means = {k: _mean(v) for k, v in by.items()}
    d2 = [means[k] for k in ("ADE20K", "COCO") if k in means]
    d3 = [means[k] for k in ("Omni3D",) if k in means]
    parts = [_mean(d) for d in (d2, d3) if d]
    return {"headline": "(2D + 3D) / 2", "score": _mean(parts), "2D": _mean(d2) if d2 else None,
            "3D": _mean(d3) if d3 else None}


def a_settings(items: Items) -> dict[str, Any]:
    """MMMU-Pro: the mean of the per-setting accuracies (standard 10 options, vision)."""
    by: dict[str, list[float]] = defaultdict(list)
    for it in items:
        by[str(it["facts"]["config"])].append(it["score"])
    per = {k: _mean(v) for k, v in by.items()}
    return {"headline": "mean over settings", "score": _mean(list(per.values())), "settings": per}


def a_wemath(items: Items) -> dict[str, Any]:
    from glmv_cli.evaluation.wemath import wemath_metrics

    return wemath_metrics(items)


AGGREGATES: dict[str, Callable[[Items], dict[str, Any]]] = {
    "mean": a_mean, "circular": a_circular, "hallusion": a_hallusion, "dynamath": a_dynamath,
    "cvbench": a_cvbench, "settings": a_settings, "wemath": a_wemath,
}
#: row values (by column role) each aggregate reads; ``split`` / ``config`` are always there
AGG_FACTS: dict[str, tuple[str, ...]] = {
    "mean": (), "circular": ("id",), "hallusion": ("category", "subcategory", "set_id", "figure_id", "question_id"),
    "dynamath": ("id",), "cvbench": ("source",), "settings": (), "wemath": ("id", "key"),
}


def breakdown(items: Items, columns: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-value accuracy of each breakdown column: ``{column: {value: {n, acc}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c in columns:
        by: dict[str, list[float]] = defaultdict(list)
        for it in items:
            by[str(it["facts"].get(c))].append(it["score"])
        out[c] = {k: {"n": len(v), "acc": _mean(v)} for k, v in sorted(by.items())}
    return out


def aggregate(spec: Any, items: Items) -> dict[str, Any]:
    """The headline and sub-metrics of one task from its scored items."""
    res = AGGREGATES[spec.aggregate](items) if items else {"headline": "accuracy", "score": 0.0}
    res["acc"] = _mean([it["score"] for it in items])
    if spec.breakdown:
        res["breakdown"] = breakdown(items, spec.breakdown)
    return res
