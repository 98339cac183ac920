"""Reward-system throughput on one core: fast path vs plain math-verify, per-domain rates, and the
worst-case latency with the math timeout in force.

    OMP_NUM_THREADS=1 python benchmarks/reward_bench.py [--n 3000] [--seed 0] [--timeout 1.0]

1. Math equivalence on a realistic mix (what GLM-style RL answers look like: mostly integers, then
   decimals, fractions, percentages, short strings, and ~20 % LaTeX expressions; about half of the
   predictions right, often in another spelling). The same pairs go through plain math-verify
   (``verify(parse("$g$"), parse("$p$"))`` with its default signal timeouts) and through
   ``math_equal`` (fast path, then math-verify in a guarded worker thread) with every cache cleared,
   so no pair is helped by repetition. Prints pairs/s of both, the
   ratio and how many verdicts agree.
2. ``score()`` verifications/s per domain (gates + verifier) on generated responses.
3. GRPO groups of 8 rollouts per prompt: reward time with the per-group reference cache on vs off
   (same work, same run), with the verdict cache on (as in training) and off, for the realistic mix
   and for symbolic references only.
4. Worst case: adversarial expressions whose sympy evaluation runs away (10^{10^{10}}, …) scored
   with the timeout; prints the max latency.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def math_mix(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(gold, pred) pairs; kinds weighted like RL math answers."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    symbolic = [  # (gold, right spellings, wrong spellings)
        ("\\frac{\\sqrt{2}}{2}", ["\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}"], ["\\sqrt{2}", "\\frac{\\sqrt{3}}{2}"]),
        ("2\\pi", ["2\\pi", "\\pi \\cdot 2"], ["\\pi", "4\\pi"]),
        ("2x+1", ["2x+1", "1+2x"], ["2x-1", "x+1"]),
        ("3\\sqrt{3}", ["3\\sqrt{3}", "\\sqrt{27}"], ["3\\sqrt{2}", "9"]),
        ("(0,1]", ["(0,1]"], ["[0,1]", "(0,1)"]),
        ("\\{1,2\\}", ["\\{1,2\\}", "\\{2,1\\}"], ["\\{1,3\\}"]),
        ("\\frac{\\pi}{3}", ["\\frac{\\pi}{3}", "\\pi/3"], ["\\frac{\\pi}{6}", "60"]),
        ("x^2-1", ["x^2-1", "(x-1)(x+1)"], ["x^2+1"]),
        ("\\sqrt{5}", ["\\sqrt{5}", "\\sqrt5"], ["5", "\\sqrt{6}"]),
        ("e^{2}", ["e^{2}", "e^2"], ["e", "2e"]),
    ]
    words = ["east", "\\text{blue}", "x", "\\text{Tuesday}"]
    for _ in range(n):
        u = rng.random()
        right = rng.random() < 0.5
        if u < 0.40:
            g = rng.randint(-50, 2000)
            if right:
                p = rng.choice([str(g), str(g), str(g), f"{g}.0", f"+{g}" if g >= 0 else str(g).replace("-", "\u2212")])
            else:
                p = str(g + rng.choice([-10, -2, -1, 1, 3, 100]))
            out.append((str(g), p))
        elif u < 0.55:
            g = round(rng.uniform(-100, 100), rng.choice([1, 2, 3]))
            p = repr(g) if right else repr(round(g + rng.choice([-1, 0.5, 0.01, 2.5]), 3))
            out.append((repr(g), p))
        elif u < 0.70:
            a, b = rng.randint(1, 30), rng.randint(2, 30)
            g = rng.choice([f"{a}/{b}", f"\\frac{{{a}}}{{{b}}}"])
            if right:
                p = rng.choice([f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"])
            else:
                p = rng.choice([f"\\frac{{{b}}}{{{a}}}", f"{a + 1}/{b}", f"{a / b + 0.1:.3f}"])
            out.append((g, p))
        elif u < 0.75:
            v = rng.randint(1, 99)
            g = rng.choice([f"{v}\\%", f"{v}%"])
            p = rng.choice([f"{v}\\%", f"{v / 100:g}", f"{v}"]) if right else f"{v + rng.randint(1, 9)}\\%"
            out.append((g, p))
        elif u < 0.80:
            w = rng.choice(words)
            out.append((w, w if right else rng.choice([x for x in words if x != w])))
        else:
            g, goods, bads = rng.choice(symbolic)
            out.append((g, rng.choice(goods if right else bads)))
    return out


def bench_math(pairs: list[tuple[str, str]], timeout_s: float) -> dict:
    import logging

    from math_verify import parse, verify

    from glmv_cli.rewards import mathv

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    mathv.clear_caches()
    t0, c0 = time.perf_counter(), time.process_time()
    plain = [bool(verify(parse("$" + g + "$"), parse("$" + p + "$"))) for g, p in pairs]
    t_plain, c_plain = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    fast, n_fast, n_timeout = [], 0, 0
    for g, p in pairs:
        v = mathv.fast_equal(g, p)
        if v is None:
            try:
                v = mathv.symbolic_equal(g, p, timeout_s=timeout_s)
            except mathv.VerifierTimeout:  # math-verify's own timeout also yields False
                v, n_timeout = False, n_timeout + 1
        else:
            n_fast += 1
        fast.append(v)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    disagree = [(g, p, a, b) for (g, p), a, b in zip(pairs, plain, fast) if a != b]
    return {"n": len(pairs), "plain_per_s": len(pairs) / t_plain, "fast_per_s": len(pairs) / t_fast,
            "ratio": t_plain / t_fast, "plain_per_cpu_s": len(pairs) / c_plain,
            "fast_per_cpu_s": len(pairs) / c_fast, "cpu_ratio": c_plain / c_fast, "agree": len(pairs) - len(disagree), "decided_fast": n_fast, "timeouts": n_timeout,
            "disagreements": disagree[:10]}


def _resp(ans: str) -> str:
    return ("<think>" + "Let me look at the image and work it out step by step. " * 8 +
            f"</think><answer>The answer is <|begin_of_box|>{ans}<|end_of_box|></answer>")


def domain_cases(n: int, seed: int = 0) -> dict[str, list[tuple[str, str, dict | None]]]:
    rng = random.Random(seed)
    cases: dict[str, list] = {k: [] for k in ("math", "mcq", "counting", "chart", "ocr", "grounding", "gui", "yesno")}
    for g, p in math_mix(n, seed):
        cases["math"].append((_resp(p), g, None))
    for _ in range(n):
        L = rng.choice("ABCD")
        cases["mcq"].append((_resp(rng.choice([L, f"({L})", f"{L}. option", rng.choice("ABCD")])), L, None))
        c = rng.randint(0, 30)
        cases["counting"].append((_resp(str(c + rng.choice([0, 0, 1]))), str(c), None))
        v = rng.uniform(1, 1000)
        cases["chart"].append((_resp(f"{v * rng.uniform(0.97, 1.03):.1f}"), f"{v:.1f}", None))
        text = " ".join(rng.choice(["total", "revenue", "2023", "Q4", "net", "income", "$1,204"]) for _ in range(12))
        noisy = text.replace("e", "c", rng.randint(0, 3))
        cases["ocr"].append((_resp(noisy), text, None))
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        d = rng.randint(-30, 30)
        cases["grounding"].append((_resp(f"[{x + d}, {y}, {x + 150 + d}, {y + 120}]"), f"[{x}, {y}, {x + 150}, {y + 120}]", None))
        ref = f'{{"action": "click", "box_2d": [[{x}, {y}, {x + 100}, {y + 60}]]}}'
        cases["gui"].append((_resp(f'{{"action": "click", "point_2d": [{x + rng.randint(-20, 120)}, {y + 30}]}}'), ref, None))
        cases["yesno"].append((_resp(rng.choice(["Yes", "No", "yes."])), rng.choice(["yes", "no"]), None))
    return cases


def bench_domains(n: int, seed: int) -> dict[str, tuple[float, float]]:
    """score() per domain with the math caches off (every pair verified from scratch):
    {name: (verifications per wall second, per CPU second)}."""
    from glmv_cli.rewards import RewardConfig, score
    from glmv_cli.rewards import mathv

    score(None, _resp("\\sqrt{2}/2"), "\\frac{1}{\\sqrt{2}}", "math")  # import sympy before timing
    out = {}
    cases = domain_cases(n, seed)
    plain = [c for c in cases["math"] if mathv.parse_number(mathv.normalize(c[1])) is not None]
    cases = {"math (numbers only)": plain, **cases}
    for name, cs in cases.items():
        dom = name.split(" ")[0]
        mathv.clear_caches()
        cfg = RewardConfig(cache_references=False)
        cfg.domains["math"] = {"verifier": "math", "cache": False}
        t0, c0 = time.perf_counter(), time.process_time()
        for resp, ref, extra in cs:
            score(None, resp, ref, dom, extra, config=cfg)
        out[name] = (len(cs) / (time.perf_counter() - t0), len(cs) / (time.process_time() - c0))
    return out


def _group_work(n_prompts: int, group: int, seed: int, symbolic: bool) -> list[tuple[str, str]]:
    """``group`` rollouts per prompt; each answers the reference's own spelling or one of the mix's
    predictions for it (right or wrong), so answers repeat within a group as they do in GRPO."""
    rng = random.Random(seed)
    golds: dict[str, list[str]] = {}
    for gold, pred in math_mix(n_prompts * 8, seed + 1):
        golds.setdefault(gold, []).append(pred)
    keys = [g for g in golds if not symbolic or mathv_is_symbolic(g)]
    rng.shuffle(keys)
    work = []
    for gold in keys[:n_prompts]:
        work += [(_resp(rng.choice([gold] + golds[gold])), gold) for _ in range(group)]
    return work


def mathv_is_symbolic(gold: str) -> bool:
    from glmv_cli.rewards import mathv

    return mathv.parse_number(mathv.normalize(gold)) is None


def bench_groups(n_prompts: int, group: int, seed: int, symbolic: bool = False) -> dict[tuple[bool, bool], tuple]:
    """score() on GRPO-like groups with the per-group reference cache on and off, each with the
    verdict cache on (as in training) and off: {(verdict cache, reference cache): (verifications
    per CPU s, CPU s)}. Same work, same process, sympy's cache cleared before each run."""
    from sympy.core.cache import clear_cache

    from glmv_cli.rewards import RewardConfig, mathv, score

    work = _group_work(n_prompts, group, seed, symbolic)
    out = {}
    for verdicts in (True, False):
        for refs in (True, False):
            mathv.clear_caches()
            clear_cache()
            cfg = RewardConfig(cache_references=refs)
            cfg.domains["math"] = {"verifier": "math", "cache": verdicts}
            c0 = time.process_time()
            for resp, gold in work:
                score(None, resp, gold, "math", config=cfg)
            dc = time.process_time() - c0
            out[(verdicts, refs)] = (len(work) / dc, dc)
    return out


def worst_case(timeout_s: float) -> tuple[float, list[tuple[str, float, str | None]]]:
    from glmv_cli.rewards import RewardConfig, score_detailed

    cfg = RewardConfig()
    rows = []
    for pred in ["10^{10^{10}}", "9^{9^{9^{9}}}", "(10^{100})!", "2^{999999}", "\\frac{1}{" * 100 + "1" + "}" * 100,
                 "x^{2}" * 40, "\\sin(x)^2+\\cos(x)^2" * 8]:
        t0 = time.perf_counter()
        r = score_detailed(None, _resp(pred), "1", "math", config=cfg)
        rows.append((pred[:24], time.perf_counter() - t0, r.error or f"reward {r.reward}"))
    big = _resp("7") + "x" * (1 << 20)
    t0 = time.perf_counter()
    r = score_detailed(None, big, "7", "math", config=cfg)
    rows.append(("1 MiB response", time.perf_counter() - t0, r.gate))
    return max(t for _, t, _ in rows), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1.0, help="math timeout for score() and the worst case")
    ap.add_argument("--agree-timeout", type=float, default=5.0,
                    help="timeout of the guarded path when comparing verdicts (math-verify's default is 5 s)")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; rates are per wall second and, "
          f"in brackets, per CPU second of this process (robust to other load)")
    m = bench_math(math_mix(args.n, args.seed), args.agree_timeout)
    print(f"math mix n={m['n']}: plain math-verify {m['plain_per_s']:.0f} [{m['plain_per_cpu_s']:.0f}] pairs/s | "
          f"fast path + math-verify {m['fast_per_s']:.0f} [{m['fast_per_cpu_s']:.0f}] pairs/s | ratio "
          f"{m['ratio']:.1f}x [{m['cpu_ratio']:.1f}x] | verdicts agree {m['agree']}/{m['n']} | decided by the fast "
          f"path {m['decided_fast']}/{m['n']} | timeouts {m['timeouts']}")
    for d in m["disagreements"]:
        print("  disagreement:", d)
    ints = [(str(i), str(i + (i % 2))) for i in range(args.n)]
    mi = bench_math(ints, args.agree_timeout)
    print(f"integers n={mi['n']}: plain {mi['plain_per_s']:.0f} [{mi['plain_per_cpu_s']:.0f}]/s | fast "
          f"{mi['fast_per_s']:.0f} [{mi['fast_per_cpu_s']:.0f}]/s | ratio {mi['ratio']:.1f}x [{mi['cpu_ratio']:.1f}x] | "
          f"agree {mi['agree']}/{mi['n']}")
    for dom, (rate, cpu_rate) in bench_domains(max(200, args.n // 3), args.seed).items():
        print(f"score() {dom:20s} {rate:8.0f} [{cpu_rate:8.0f}] verifications/s")
    for label, symbolic in (("realistic", False), ("symbolic references", True)):
        g = bench_groups(max(40, args.n // 24), 8, args.seed, symbolic)
        for verdicts in (True, False):
            on, off = g[(verdicts, True)], g[(verdicts, False)]
            print(f"score() math, GRPO groups of 8, {label}, verdict cache {'on ' if verdicts else 'off'}: "
                  f"reference cache on {on[0]:.0f} / off {off[0]:.0f} verifications per CPU s -> reward time "
                  f"off/on {off[1] / on[1]:.2f}x")
    worst, rows = worst_case(args.timeout)
    for name, t, why in rows:
        print(f"worst case {name!r:28s} {t * 1000:8.1f} ms  ({why})")
    print(f"worst-case latency with timeout {args.timeout:g} s: {worst * 1000:.0f} ms")


if __name__ == "__main__":
    main()
