"""PNG plots of an RLCS run from its ``metrics.jsonl`` and ``eval.jsonl`` (matplotlib, Agg).

One figure per quantity, each with one line per domain where the metric is per domain, written
to ``plots/<name>.png``. The held-out reward is drawn with ±1 standard-error bars. Plotting reads
only the JSON lines, so ``plot_run`` also works on a finished or interrupted run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

# (file name, metric key, title, per-domain?)
PANELS = (
    ("reward", "reward", "rollout reward (mean over rollouts)", True),
    ("pass_rate", "pass_rate", "rollout pass rate (reward >= 0.5)", True),
    ("informative_frac", "informative_frac", "informative group fraction", True),
    ("expansion_ratio", "expansion_ratio", "expansion ratio (prompts rolled / B)", False),
    ("response_length", "response_length", "response length (tokens)", True),
    ("truncated_rate", "truncated_rate", "truncation rate", True),
    ("forced_rate", "forced_rate", "forced-answer rate", True),
    ("clip_frac", "clip_frac", "clip fraction", False),
    ("grad_norm", "grad_norm", "grad norm", False),
    ("tokens_per_s", "tokens_per_s", "tokens/s (rollout + update)", False),
)


def _fig():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    return plt, fig, ax


def _save(plt, fig, ax, title: str, path: Path) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_run(metrics: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]], out_dir: Path) -> list[str]:
    """Writes the PNGs into ``out_dir``; returns their file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    steps = [m["step"] for m in metrics]
    domains = sorted({d for m in metrics for d in m.get("domains", {})})
    for name, key, title, per_domain in PANELS:
        if not metrics:
            break
        plt, fig, ax = _fig()
        ax.plot(steps, [m.get(key, float("nan")) for m in metrics], label="all", color="black")
        if per_domain and len(domains) > 1:
            for d in domains:
                xs = [m["step"] for m in metrics if d in m.get("domains", {})]
                ys = [m["domains"][d].get(key, float("nan")) for m in metrics if d in m.get("domains", {})]
                ax.plot(xs, ys, label=d, alpha=0.7)
        _save(plt, fig, ax, title, out_dir / f"{name}.png")
        written.append(f"{name}.png")
    if metrics:
        from glmv_cli.rl.curriculum import TIER_NAMES

        plt, fig, ax = _fig()
        bottom = [0.0] * len(metrics)
        for t in TIER_NAMES:
            ys = [float(m.get(f"sampler_tier_{t}", 0.0)) for m in metrics]
            ax.bar(steps, ys, bottom=bottom, label=t, width=0.9)
            bottom = [b + y for b, y in zip(bottom, ys)]
        _save(plt, fig, ax, "curriculum tier histogram (samples per tier)", out_dir / "tiers.png")
        written.append("tiers.png")
    if evals:
        plt, fig, ax = _fig()
        xs = [e["step"] for e in evals]
        ax.errorbar(xs, [e["reward"] for e in evals], yerr=[e["reward_se"] for e in evals], label="all",
                    color="black", capsize=3, marker="o")
        edoms = sorted({d for e in evals for d in e.get("domains", {})})
        if len(edoms) > 1:
            for d in edoms:
                ex = [e["step"] for e in evals if d in e.get("domains", {})]
                ax.errorbar(ex, [e["domains"][d]["reward"] for e in evals if d in e.get("domains", {})],
                            yerr=[e["domains"][d]["reward_se"] for e in evals if d in e.get("domains", {})],
                            label=d, capsize=2, alpha=0.7)
        _save(plt, fig, ax, "held-out reward (mean ± SE)", out_dir / "eval_reward.png")
        written.append("eval_reward.png")
    return written
