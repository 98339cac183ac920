"""RLCS vs uniform sampling at the same rollout budget, side by side in one run.

Two arms start from the same model and data and may roll out the same number of prompts
(``--budget-prompts``; each prompt is one group of ``--group-size`` rollouts):

- ``rlcs``:    tiered curriculum sampling + dynamic sampling expansion (the defaults of
               ``glmv rlcs``): each step rolls ~B/(1−r) prompts and trains on B informative groups;
- ``uniform``: uniform prompt sampling, no expansion and no top-up: each step rolls exactly B
               prompts and trains on whichever groups happen to be informative.

An arm stops when its next step would exceed the budget. Reported: the informative-group
fraction per step (of the groups rolled), informative groups trained on per step, total
informative groups per rolled prompt, and the held-out reward (mean ± SE over eval prompts) at the
start and the end of each arm, with RLCS/uniform ratios. Writes ``ablation.json`` and
``ablation.md`` to ``--out``.

    python benchmarks/rlcs_ablation.py --model SFT_MODEL_DIR --data SYNTH_DIR --out /tmp/abl \\
        --batch-prompts 8 --group-size 8 --budget-prompts 240

Measured (tiny preset SFT'd 204 steps on 600 synth counting records, levels 1-2; B = 8, n = 8,
budget 200 prompts, lr 2e-4, eval 64 held-out prompts × 4 samples at T = 1; 11 min 47 s wall on
the shared 2-core machine): informative fraction per step 0.895 (RLCS) vs 0.835 (uniform), ratio
1.07; informative groups per rolled prompt 0.892 vs 0.835; RLCS trained on exactly 8 groups in
each of its 19 steps, uniform on 4-8 (mean 6.7) in 25 steps; held-out reward at the end 0.316 ±
0.029 (RLCS) vs 0.398 ± 0.044 (uniform), from 0.336 ± 0.030 — at this starting pass rate (~0.3,
85 % of groups already informative) expansion buys little, and the difference in held-out reward
is within 1.6 SE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def run_arm(name: str, args: argparse.Namespace, flat: dict[str, Any]) -> dict[str, Any]:
    import torch

    from glmv_cli.data.chat import style_for_model_type
    from glmv_cli.modeling import load
    from glmv_cli.rewards.scoring import load_config
    from glmv_cli.rl.config import RLCSConfig
    from glmv_cli.rl.records import load_data, load_rl_records
    from glmv_cli.rl.trainer import RLCSTrainer, TrainerOptions
    from glmv_cli.stages.rlcs import _forget_deepspeed_groups
    from glmv_cli.training import dist
    from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig
    from glmv_cli.training.engine import Engine

    torch.manual_seed(args.seed)
    cfg = RLCSConfig.from_flat(flat, source=f"arm {name}")
    model, proc = load(args.model)
    style = style_for_model_type(getattr(model.config, "model_type", "glm4v"))
    rcfg = load_config(args.reward_config).with_style(style)
    data = load_data(args.data, rcfg)
    ev_path = Path(args.eval_data) if args.eval_data else data.eval_default
    evals = load_rl_records(ev_path, rcfg, what="--eval-data")[0][: args.eval_limit or None]
    max_steps = args.budget_prompts  # an upper bound: every step rolls at least one prompt
    tc = TrainConfig(optim=OptimConfig(lr=args.lr, weight_decay=0.0, schedule="constant", betas=(0.9, 0.999)),
                     batch=BatchConfig(1, 1), max_steps=max_steps, seed=args.seed)
    engine = Engine(model, tc, total_steps=max_steps)
    tr = RLCSTrainer(engine, proc, data.records, cfg, rcfg,
                     TrainerOptions(seed=args.seed, rollout_batch=args.rollout_batch, micro_batch=args.micro_batch,
                                    eval_samples=args.eval_samples, eval_temperature=args.eval_temperature,
                                    style=style))
    t0 = time.perf_counter()
    start = tr.evaluate(evals)
    steps: list[dict[str, Any]] = []
    rolled = 0
    try:
        while True:
            # the next step rolls at least what the controller asks for; stop before the budget breaks
            if rolled + tr.controller.prompts_to_roll() > args.budget_prompts:
                break
            m = tr.train_step()
            rolled += m["prompts_rolled"]
            steps.append({k: m[k] for k in ("step", "prompts_rolled", "groups_valid", "groups_all_equal",
                                            "batch_groups", "informative_frac", "expansion_ratio", "reward",
                                            "loss", "response_length")})
            print(f"[{name}] step {m['step']} rolled {m['prompts_rolled']} informative "
                  f"{m['informative_frac']:.2f} trained-on {m['batch_groups']} reward {m['reward']:.3f}", flush=True)
        end = tr.evaluate(evals)
    finally:
        engine.close()
        dist.shutdown()
        _forget_deepspeed_groups()
    informative = sum(s["groups_valid"] - s["groups_all_equal"] for s in steps)
    return {"arm": name, "options": flat, "steps": steps, "prompts_rolled": rolled,
            "informative_groups": informative, "trained_groups": sum(s["batch_groups"] for s in steps),
            "informative_per_prompt": informative / max(1, rolled),
            "mean_informative_frac": sum(s["informative_frac"] for s in steps) / max(1, len(steps)),
            "eval_start": {"reward": start["reward"], "se": start["reward_se"], "n": start["prompts"]},
            "eval_end": {"reward": end["reward"], "se": end["reward_se"], "n": end["prompts"]},
            "seconds": time.perf_counter() - t0}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def report(res: dict[str, Any]) -> str:
    a, u = res["rlcs"], res["uniform"]
    lines = ["| step | RLCS informative frac | RLCS rolled | RLCS trained groups | uniform informative frac | "
             "uniform rolled | uniform trained groups |", "|---|---|---|---|---|---|---|"]
    for i in range(max(len(a["steps"]), len(u["steps"]))):
        def cell(arm: dict[str, Any]) -> str:
            if i >= len(arm["steps"]):
                return "– | – | –"
            s = arm["steps"][i]
            return f"{s['informative_frac']:.3f} | {s['prompts_rolled']} | {s['batch_groups']}"
        lines.append(f"| {i + 1} | {cell(a)} | {cell(u)} |")
    lines += ["", "| | RLCS | uniform | RLCS / uniform |", "|---|---|---|---|"]
    for key, label in (("prompts_rolled", "prompts rolled (budget)"), ("informative_groups", "informative groups"),
                       ("trained_groups", "groups trained on"), ("informative_per_prompt", "informative groups per prompt"),
                       ("mean_informative_frac", "mean informative fraction per step")):
        r = _ratio(a[key], u[key])
        lines.append(f"| {label} | {a[key]:.4g} | {u[key]:.4g} | {'–' if r is None else f'{r:.3f}'} |")
    for key in ("eval_start", "eval_end"):
        r = _ratio(a[key]["reward"], u[key]["reward"])
        lines.append(f"| held-out reward, {key[5:]} (n={a[key]['n']}) | {a[key]['reward']:.4f} ± {a[key]['se']:.4f} | "
                     f"{u[key]['reward']:.4f} ± {u[key]['se']:.4f} | {'–' if r is None else f'{r:.3f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="start model (e.g. a glmv sft artifact)")
    p.add_argument("--data", required=True, help="RL records: JSONL or synth artifact")
    p.add_argument("--eval-data", default=None, help="held-out records (default: the synth artifact's eval.jsonl)")
    p.add_argument("--eval-limit", type=int, default=64)
    p.add_argument("--eval-samples", type=int, default=4)
    p.add_argument("--eval-temperature", type=float, default=1.0)
    p.add_argument("--reward-config", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-prompts", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--budget-prompts", type=int, default=240)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--thinking-budget", type=int, default=80)
    p.add_argument("--answer-budget", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rollout-batch", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    except ImportError:
        pass
    common = {"batch_prompts": args.batch_prompts, "group_size": args.group_size,
              "max_new_tokens": args.max_new_tokens, "thinking_budget": args.thinking_budget,
              "answer_budget": args.answer_budget}
    arms = {"rlcs": {**common},
            "uniform": {**common, "curriculum": "uniform", "expansion": False, "max_topup_rounds": 0}}
    res = {name: run_arm(name, args, flat) for name, flat in arms.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    md = report(res)
    (out / "ablation.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
