"""Agreement and throughput of glmv's rewards beside plain math-verify, on a hand-written case file.

    OMP_NUM_THREADS=1 python benchmarks/reward_agreement.py [--cases benchmarks/data/reward_cases.jsonl]
        [--n 2000] [--seed 0] [--show 10]

The case file holds one JSON object per line: ``domain``, ``response`` (a bare answer, wrapped
here as ``<think>…</think><answer><|begin_of_box|>X<|end_of_box|></answer>``, or a full response
with ``"raw": true``), ``reference``, ``expected`` (the right reward, written by hand from the
rules in docs/rewards.md), ``kind`` (integer, decimal, fraction, percent, text, symbolic, interval,
relation, hedge, gate, ... ) and optionally ``extra``. A score agrees when it is within 0.01 of
``expected`` (partial-credit domains: OCR edit similarity, diluted grounding).

Both scorers see the same cases in the same run:

* glmv: ``score_detailed`` with the built-in config, its verdict cache and per-group reference
  cache off (every case verified from scratch, as math-verify does);
* plain math-verify: ``verify(parse(reference), parse(answer))`` on the answer ``extract_answer``
  reads, with its default timeout, for every domain (what one gets using math-verify alone).

sympy's own result cache is cleared before each timed run; sympy is imported before any.

It prints, per domain, agreement and cases per CPU second of both; then two resampled math mixes
of ``--n`` cases: the realistic one (kinds weighted like RL math answers: integers 40 %, decimals
15 %, fractions 15 %, percentages 5 %, text 5 %, closed forms 10 %, intervals 3 %, relations 3 %,
hedges 4 %) and a symbolic-heavy one (closed forms 60 %, intervals 20 %, relations 20 %), with the
share the fast path decides, and the symbolic cases once each (no repeats for sympy's cache to
help). ``--show`` lists glmv's disagreements.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = Path(__file__).resolve().parent / "data" / "reward_cases.jsonl"
REALISTIC = {"integer": 0.40, "decimal": 0.15, "fraction": 0.15, "percent": 0.05, "text": 0.05, "symbolic": 0.10,
             "interval": 0.03, "relation": 0.03, "hedge": 0.04}
SYMBOLIC = {"symbolic": 0.6, "interval": 0.2, "relation": 0.2}
B, E = "<|begin_of_box|>", "<|end_of_box|>"


def load_cases(path: Path) -> list[dict]:
    out = []
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        c = json.loads(line)
        for key in ("domain", "response", "reference", "expected"):
            if key not in c:
                raise SystemExit(f"{path}:{ln}: field '{key}' is missing")
        c["full"] = c["response"] if c.get("raw") else f"<think>Let me work it out.</think><answer>{B}{c['response']}{E}</answer>"
        out.append(c)
    return out


def _clear_sympy_cache() -> None:
    """sympy memoises results across calls; each timed run starts from an empty cache."""
    from sympy.core.cache import clear_cache

    clear_cache()


def glmv_scores(cases: list[dict]) -> tuple[list[float], float]:
    from glmv_cli.rewards import RewardConfig, score_detailed
    from glmv_cli.rewards import mathv

    cfg = RewardConfig(cache_references=False)
    for d in ("math", "stem"):
        cfg.domains[d] = {**cfg.domains[d], "cache": False}
    mathv.clear_caches()
    _clear_sympy_cache()
    c0 = time.process_time()
    scores = [score_detailed(None, c["full"], c["reference"], c["domain"], c.get("extra"), config=cfg).reward
              for c in cases]
    return scores, time.process_time() - c0


def mv_scores(cases: list[dict]) -> tuple[list[float], float]:
    from math_verify import parse, verify

    from glmv_cli.rewards import extract_answer

    out = []
    _clear_sympy_cache()
    c0 = time.process_time()
    for c in cases:
        ans = extract_answer(c["full"])
        try:
            ok = ans is not None and bool(verify(parse("$" + c["reference"] + "$"), parse("$" + ans + "$")))
        except Exception:  # math-verify's own timeouts and parse failures are a miss
            ok = False
        out.append(1.0 if ok else 0.0)
    return out, time.process_time() - c0


def agrees(score: float, expected: float) -> bool:
    return abs(score - float(expected)) <= 0.01


def resample(cases: list[dict], weights: dict[str, float], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pools = {k: [c for c in cases if c["domain"] == "math" and c.get("kind") == k] for k in weights}
    kinds = [k for k in weights if pools[k]]
    picks = rng.choices(kinds, weights=[weights[k] for k in kinds], k=n)
    return [rng.choice(pools[k]) for k in picks]


def report(name: str, cases: list[dict], show: int = 0) -> None:
    g, gc = glmv_scores(cases)
    m, mc = mv_scores(cases)
    ga = sum(agrees(s, c["expected"]) for s, c in zip(g, cases))
    ma = sum(agrees(s, c["expected"]) for s, c in zip(m, cases))
    rate = lambda t: f"{len(cases) / t:8.0f}" if t > 0 else "     inf"  # noqa: E731
    print(f"{name:22s} n={len(cases):5d} | agree glmv {ga:5d} ({ga / len(cases):6.1%})  math-verify {ma:5d} "
          f"({ma / len(cases):6.1%}) | cases per CPU s: glmv {rate(gc)}  math-verify {rate(mc)}  "
          f"ratio {mc / gc if gc > 0 else float('inf'):5.1f}x")
    if show:
        bad = [(c["id"], c["response"][:50], c["reference"][:30], c["expected"], s)
               for s, c in zip(g, cases) if not agrees(s, c["expected"])]
        for row in sorted(set(bad))[:show]:
            print("    glmv disagrees:", row)


def fast_share(cases: list[dict]) -> float:
    from glmv_cli.rewards import extract_answer
    from glmv_cli.rewards.mathv import fast_equal

    n = 0
    for c in cases:
        ans = extract_answer(c["full"])
        n += ans is not None and fast_equal(c["reference"], ans) is not None
    return n / len(cases)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--n", type=int, default=2000, help="cases drawn for each resampled math mix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=10, help="glmv disagreements to list per line (0: none)")
    args = ap.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    cases = load_cases(args.cases)
    glmv_scores(cases[:40])  # import sympy and warm both code paths before timing
    mv_scores(cases[:40])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {len(cases)} cases in {args.cases}")
    for dom in sorted({c["domain"] for c in cases}):
        report(f"domain {dom}", [c for c in cases if c["domain"] == dom], args.show)
    report("all cases", cases)
    report("symbolic, once each", [c for c in cases if c["domain"] == "math" and c.get("kind") in SYMBOLIC])
    for name, weights in (("realistic math mix", REALISTIC), ("symbolic-heavy mix", SYMBOLIC)):
        drawn = resample(cases, weights, args.n, args.seed)
        report(name, drawn, args.show)
        print(f"{'':22s} decided by the fast path: {fast_share(drawn):.0%}")


if __name__ == "__main__":
    main()
