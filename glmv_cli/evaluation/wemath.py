"""WeMath's four-dimensional metrics (We-Math ``four_dimensional_metrics``), from per-row scores.

WeMath splits multi-step problems into sub-problems: rows with ``key`` ``2steps_1``, ``2steps_2``,
``2steps_multi`` (and ``3steps_*``) share an ``ID``. Per composite problem, with the sub-problems
and the whole problem each right or wrong:

- IK (insufficient knowledge): some sub-problem wrong and the whole wrong;
- IG (inadequate generalisation): every sub-problem right, the whole wrong;
- CM (complete mastery): strict -- every sub-problem and the whole right; loose -- at least one
  sub-problem and the whole right;
- RM (rote memorisation): strict -- some sub-problem wrong but the whole right; loose -- every
  sub-problem wrong but the whole right.

Score = (N - 0.5 IG - RM - IK) / N over the N composite problems (We-Math fixes N = 525, the count
on testmini; glmv uses the count in the run, which is 525 there). Strict is the headline (the
We-Math leaderboard's order). Also reported: S1 (sub-problem accuracy), S2 / S3 (whole two- and
three-step problems), and the counts. A problem with a missing part is left out and counted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _problems(items: list[dict[str, Any]]) -> tuple[list[tuple[int, list[bool], bool]], int]:
    by: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    for it in items:
        key = str(it["facts"].get("key") or "")
        if "steps_" not in key:
            continue
        steps, part = key.split("steps_", 1)
        by[(int(steps), str(it["facts"]["id"]))][part] = it["score"] >= 1.0
    out, incomplete = [], 0
    for (steps, _), parts in sorted(by.items()):
        need = [str(i) for i in range(1, steps + 1)] + ["multi"]
        if any(p not in parts for p in need):
            incomplete += 1
            continue
        out.append((steps, [parts[str(i)] for i in range(1, steps + 1)], parts["multi"]))
    return out, incomplete


def wemath_metrics(items: list[dict[str, Any]]) -> dict[str, Any]:
    probs, incomplete = _problems(items)
    n = len(probs)
    ik = sum(1 for _, subs, whole in probs if not all(subs) and not whole)
    ig = sum(1 for _, subs, whole in probs if all(subs) and not whole)
    cm_strict = sum(1 for _, subs, whole in probs if all(subs) and whole)
    cm_loose = sum(1 for _, subs, whole in probs if any(subs) and whole)
    rm_strict = sum(1 for _, subs, whole in probs if not all(subs) and whole)
    rm_loose = sum(1 for _, subs, whole in probs if not any(subs) and whole)
    subs_all = [s for _, subs, _ in probs for s in subs]

    def score(rm: int) -> float:
        return (n - 0.5 * ig - rm - ik) / n if n else 0.0

    def whole_acc(k: int) -> float | None:
        w = [whole for steps, _, whole in probs if steps == k]
        return sum(w) / len(w) if w else None

    return {"headline": "Score (Strict)", "score": score(rm_strict), "strict": score(rm_strict),
            "loose": score(rm_loose), "problems": n, "incomplete_problems": incomplete,
            "IK": ik, "IG": ig, "CM_strict": cm_strict, "CM_loose": cm_loose, "RM_strict": rm_strict,
            "RM_loose": rm_loose, "S1": sum(subs_all) / len(subs_all) if subs_all else None,
            "S2": whole_acc(2), "S3": whole_acc(3)}
