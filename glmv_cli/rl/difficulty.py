"""Offline difficulty grading: pass@k, a combined grade over several models, tiers, human labels.

Per model m and sample, k rollouts give rewards r_1..r_k in [0, 1]:

- ``pass_rate`` = mean reward. For 0/1 rewards this is the fraction solved; for graded rewards
  (IoU, edit similarity) the mean score. It is the quantity the RL curriculum tracks online
  (``glmv_cli.rl.curriculum``), so the offline grade and the online estimate are on one scale.
- ``c`` = rollouts with reward ≥ ``threshold`` (default 0.5) count as correct, and the unbiased
  pass@j estimator (Chen et al. 2021) for j ≤ k is

      pass@j = 1 − C(k − c, j) / C(k, j) = 1 − Π_{i = k−c+1}^{k} (1 − j / i)

  computed as the product to stay exact in floats for large k (C(100, 50) overflows nothing
  here, but the product never forms it). E.g. k = 8, c = 2: pass@1 = 0.25, pass@4 = 1 − C(6,4)/C(8,4)
  = 1 − 15/70 = 0.7857.

Combined grade. ``grade`` = weighted mean of the models' pass rates (equal weights by default, so
a strong and a weak model count alike however many rollouts each ran): a sample only the strong
model solves lands in the middle, one both solve is easy. ``difficulty`` = 1 − grade, and a
5-level scale comparable to synthetic levels: ``level = 1 + min(4, floor(5 · (1 − grade)))``
(grade 1 → level 1, grade 0 → level 5, bands of width 0.2; a boundary belongs to the harder
level: 0.8 is level 2).

Tier = ``curriculum.assign_tier(grade)`` with the curriculum's boundaries
(0.05, 0.3, 0.7, 0.95): impossible / hard / medium / easy / trivial. There is one tier definition
in glmv; this module only names it.

Human labels (``--human-labels``, JSONL, one ``{"id": ..., ...}`` per line):

- ``"difficulty": h`` (1..5) *shifts* the estimate: the label counts as ``W`` pseudo-rollouts
  (``--human-weight``, default 8, i.e. one model's group) at the level's band centre
  q(h) = (5.5 − h) / 5 (h = 1 → 0.9, 3 → 0.5, 5 → 0.1):
  ``grade' = (N · grade + W · q(h)) / (N + W)`` with N the sample's total rollouts over all models.
  Two models × 8 rollouts at grade 0.75 with h = 5: (16 · 0.75 + 8 · 0.1) / 24 = 0.5333.
- ``"tier": name`` *overrides*: the tier is the label's; the grade is kept if it already lies in
  that tier's interval, else moved to the interval's centre (so the RL sampler, which re-derives
  tiers from the grade, agrees). A record may carry both: the shift is applied first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from glmv_cli.errors import GlmvError, where
from glmv_cli.rl.curriculum import DEFAULT_BOUNDARIES, TIER_NAMES, assign_tier

GRADED_TIERS = TIER_NAMES[:-1]  # "unseen" never applies to a graded sample


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021)."""
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def count_correct(rewards: Sequence[float], threshold: float = 0.5) -> int:
    return sum(1 for r in rewards if r >= threshold)


def pass_rate(rewards: Sequence[float]) -> float:
    if not rewards:
        raise ValueError("no rewards")
    return float(sum(rewards)) / len(rewards)


def combine(rates: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Weighted mean of per-model pass rates (equal weights when ``weights`` is None)."""
    if not rates:
        raise ValueError("no model pass rates to combine")
    w = [1.0] * len(rates) if weights is None else [float(x) for x in weights]
    if len(w) != len(rates) or any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"weights must be {len(rates)} non-negative numbers with a positive sum, got {w}")
    return sum(r * x for r, x in zip(rates, w)) / sum(w)


def level_of(grade: float) -> int:
    """1 (easiest) .. 5 (hardest) from a grade in [0, 1]."""
    return 1 + min(4, int(math.floor(5.0 * (1.0 - grade) + 1e-12)))


def human_level_rate(h: int) -> float:
    """Centre of difficulty level h's grade band: (5.5 − h) / 5."""
    return (5.5 - h) / 5.0


def tier_name(grade: float, boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> str:
    return TIER_NAMES[assign_tier(grade, boundaries)]


def tier_interval(name: str, boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> tuple[float, float]:
    """[lo, hi) of a tier's grades (the last tier is closed at 1)."""
    if name not in GRADED_TIERS:
        raise ValueError(f"unknown tier '{name}'; tiers: {', '.join(GRADED_TIERS)}")
    edges = [0.0, *boundaries, 1.0]
    i = GRADED_TIERS.index(name)
    return edges[i], edges[i + 1]


def apply_human_label(grade: float, n_rollouts: int, label: Mapping[str, Any] | None, *,
                      weight: float = 8.0, boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> tuple[float, str, str]:
    """Returns (grade', tier, rule) with rule in {"none", "shift", "override", "shift+override"}."""
    if not label:
        return grade, tier_name(grade, boundaries), "none"
    rule = []
    g = grade
    if label.get("difficulty") is not None:
        q = human_level_rate(int(label["difficulty"]))
        g = (n_rollouts * g + weight * q) / (n_rollouts + weight)
        rule.append("shift")
    if label.get("tier") is not None:
        lo, hi = tier_interval(label["tier"], boundaries)
        inside = lo <= g < hi or (hi == 1.0 and g == 1.0)
        if not inside:
            g = (lo + hi) / 2
        rule.append("override")
        return g, label["tier"], "+".join(rule)
    return g, tier_name(g, boundaries), "+".join(rule)


def read_human_labels(path: str | Path) -> dict[str, dict[str, Any]]:
    """Reads ``{"id", "difficulty"?: 1..5, "tier"?: name}`` lines; errors name file:line:field."""
    from glmv_cli.data.jsonl import iter_objects

    p = Path(path)
    out: dict[str, dict[str, Any]] = {}
    for ln, d in iter_objects(p, "--human-labels"):
        rid = d.get("id")
        if not isinstance(rid, str) or not rid:
            raise GlmvError(f"{where(p, ln, 'id')}: expected a non-empty string")
        h = d.get("difficulty")
        if h is not None and (isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 5):
            raise GlmvError(f"{where(p, ln, 'difficulty')}: expected an integer 1..5, got {h!r}")
        t = d.get("tier")
        if t is not None and t not in GRADED_TIERS:
            raise GlmvError(f"{where(p, ln, 'tier')}: expected one of {', '.join(GRADED_TIERS)}, got {t!r}")
        if h is None and t is None:
            raise GlmvError(f"{where(p, ln)}: a label needs 'difficulty' (1..5) or 'tier'")
        if rid in out:
            raise GlmvError(f"{where(p, ln, 'id')}: id '{rid}' is labelled twice")
        out[rid] = {"difficulty": h, "tier": t}
    return out


def _ranks(x: Sequence[float]) -> list[float]:
    """1-based ranks; ties get their average rank."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for t in range(i, j + 1):
            r[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ with average ranks for ties (Pearson on ranks); None if undefined."""
    if len(x) != len(y):
        raise ValueError(f"length mismatch {len(x)} vs {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def tier_histograms(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """{domain: {tier: count}} with every graded tier listed, plus an ``all`` entry."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        for d in (r.get("domain") or "default", "all"):
            h = out.setdefault(d, {t: 0 for t in GRADED_TIERS})
            h[r["tier"]] += 1
    return dict(sorted(out.items()))


def grade_sample(per_model_rewards: Sequence[Sequence[float]], *, threshold: float = 0.5,
                 pass_ks: Sequence[int] = (1,), weights: Sequence[float] | None = None,
                 label: Mapping[str, Any] | None = None, human_weight: float = 8.0,
                 boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> dict[str, Any]:
    """Everything ``grade-difficulty`` reports for one sample, from its rewards per model."""
    models = []
    for rewards in per_model_rewards:
        n = len(rewards)
        c = count_correct(rewards, threshold)
        models.append({
            "pass_rate": pass_rate(rewards), "correct": c, "n": n,
            "pass_at": {str(j): pass_at_k(n, c, j) for j in pass_ks if j <= n},
        })
    est = combine([m["pass_rate"] for m in models], weights)
    n_total = sum(m["n"] for m in models)
    g, tier, rule = apply_human_label(est, n_total, label, weight=human_weight, boundaries=boundaries)
    return {
        "models": models, "estimate": est, "grade": g, "difficulty": 1.0 - g, "level": level_of(g),
        "tier": tier, "tier_index": GRADED_TIERS.index(tier), "human_rule": rule,
    }


def load_grades(path: str | Path) -> dict[str, float]:
    """``{id: grade}`` from a ``glmv grade-difficulty`` artifact, the offline pass-rate prior that
    ``CurriculumSampler(offline_pass_rates=...)`` takes."""
    from glmv_cli.artifacts import read_manifest

    m = read_manifest(path, expect_stage="grade-difficulty", what="--grades")
    f = m.path / "results.jsonl"
    if not f.is_file():
        raise GlmvError(f"--grades '{path}' has no results.jsonl")
    from glmv_cli.data.jsonl import iter_objects

    out: dict[str, float] = {}
    for ln, d in iter_objects(f, "--grades results.jsonl"):
        g = d.get("grade")
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= 1:  # NaN fails too
            raise GlmvError(f"{where(f, ln, 'grade')}: expected a number in [0, 1], got {g!r}")
        if not isinstance(d.get("id"), str):
            raise GlmvError(f"{where(f, ln, 'id')}: expected a string, got {d.get('id')!r}")
        out[d["id"]] = float(g)
    return out
