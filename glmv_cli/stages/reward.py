"""``glmv reward``: score a JSONL file of responses with the reward system and report per domain.

Practitioners run it to audit a verifier before RL: feed it rollouts (or hand-written adversarial
answers) and look at the per-domain mean reward, gate failures and verifier errors. Each input line
is ``{"response", "reference" (or "answer"), "domain", "prompt"?, "extra"?, "id"?}``. Bad lines get
an error naming ``file:line: field``, including a reference the domain's verifier cannot read
(``glmv_cli.rewards.check_reference``: ``"one"`` for counting); ``--on-bad fail`` (default) stops
before writing anything, ``--on-bad skip`` scores the rest and counts the skipped lines in the
manifest. ``--workers N`` scores in N processes (judge calls in ``--judge-threads`` threads) with
results identical to one process; ``--reward-fn package.module:function`` scores every line with
the user's own function (it runs your code). When prompts ask for ``\\boxed{}`` answers that the
config's answer format scores 0, the run says so (and records it in the manifest).

Output artifact: ``scores.jsonl`` (one line per scored input: line, id, domain, reward, answer, gate,
error) and ``manifest.json`` whose metrics hold, per domain and overall: n, mean reward, pass rate
(reward >= 1), gate failures by reason, verifier errors, timeouts, and verifications per second.
"""

from __future__ import annotations

import time
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from glmv_cli.artifacts import ArtifactWriter, Manifest
from glmv_cli.errors import GlmvError, where
from glmv_cli.names import STYLE_CHOICES
from glmv_cli.options import opt

@dataclass
class RewardOptions:
    input: Path = opt(help="JSONL of {response, reference, domain, prompt?, extra?}.")
    out: Path = opt(help="Output artifact directory.")
    config: Optional[Path] = opt(None, "rewards.yaml: gates, domains, judge endpoints.")
    style: str = opt("auto", "Answer format: auto (the config's, default glm41v), glm41v (<answer> tags) or "
                             "glm45v.", choices=STYLE_CHOICES)
    on_bad: str = opt("fail", "fail: stop at the first bad line; skip: count and go on.", choices=("fail", "skip"))
    workers: int = opt(1, "Verifier processes (results identical to 1).", min=1)
    judge_threads: int = opt(16, "Threads for LLM-judge calls.", min=1)
    reward_fn: Optional[str] = opt(None, "package.module:function scoring every line instead of the built-in "
                                         "verifiers (runs your own code; same signature as glmv_cli.rewards.score).")
    overwrite: bool = opt(False, "Replace an existing --out.")

    def check(self) -> None:
        if not Path(self.input).is_file():
            raise GlmvError(f"--input '{self.input}' does not exist or is not a file")

    def validate(self) -> "RewardOptions":
        from glmv_cli import options

        return options.validate(self)


def _check_line(path: Path, lineno: int, rec: dict[str, Any], cfg: Any) -> str | None:
    """The problem with one parsed line, or None (the reference is normalised in place)."""
    from glmv_cli.rewards import check_reference

    if "reference" not in rec and "answer" in rec:
        rec["reference"] = rec["answer"]
    for key in ("response", "reference", "domain"):
        if key not in rec:
            return f"{where(path, lineno, key)} is missing"
        if not isinstance(rec[key], str):
            return f"{where(path, lineno, key)} must be a string, got {type(rec[key]).__name__}"
    if rec.get("prompt") is not None and not isinstance(rec["prompt"], str):
        return f"{where(path, lineno, 'prompt')} must be a string, got {type(rec['prompt']).__name__}"
    if rec.get("extra") is not None and not isinstance(rec["extra"], dict):
        return f"{where(path, lineno, 'extra')} must be an object, got {type(rec['extra']).__name__}"
    if not cfg.accepts(rec["domain"]):
        return (f"{where(path, lineno, 'domain')}: unknown domain '{rec['domain']}'; "
                f"known: {', '.join(cfg.known_domains())}")
    try:
        rec["reference"] = check_reference(rec["reference"], rec["domain"], cfg, rec.get("extra"))
    except GlmvError as e:
        return f"{where(path, lineno, 'reference')}: {e}"
    return None


def read_lines(path: Path, cfg: Any, on_bad: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Parses and checks every line against the reward config ``cfg``; returns (records,
    problems). Raises on the first problem when ``on_bad == 'fail'``."""
    from glmv_cli.data.jsonl import iter_lines, parse_object

    records, problems = [], []
    for lineno, raw in iter_lines(path, "--input"):
        try:
            rec = parse_object(raw, path, lineno)
            err = _check_line(path, lineno, rec, cfg)
        except GlmvError as e:
            err = str(e)
        if err is not None:
            if on_bad == "fail":
                raise GlmvError(err)
            problems.append(err)
            continue
        rec["_line"] = lineno
        records.append(rec)
    return records, problems


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Per-domain metrics: n, mean_reward, pass_rate, gate_failures (+ reasons), verifier_errors,
    timeouts, and unverifiable (STEM answers no verifier reads and no judge is configured for)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["domain"]].append(r)
    out: dict[str, Any] = {}
    for name, rs in sorted(groups.items()) + [("all", rows)]:
        n = len(rs)
        gates = Counter(r["gate"] for r in rs if r["gate"])
        out[name] = {
            "n": n,
            "mean_reward": round(sum(r["reward"] for r in rs) / n, 6) if n else 0.0,
            "pass_rate": round(sum(r["reward"] >= 1.0 for r in rs) / n, 6) if n else 0.0,
            "gate_failures": sum(gates.values()),
            "gate_reasons": dict(sorted(gates.items())),
            "verifier_errors": sum(1 for r in rs if r["error"] and not r["error"].startswith("unverifiable")),
            "timeouts": sum(1 for r in rs if r["error"] and r["error"].startswith("timeout")),
            "unverifiable": sum(1 for r in rs if r["error"] and r["error"].startswith("unverifiable")),
        }
    out["all"]["verifications_per_s"] = round(len(rows) / seconds, 1) if seconds > 0 else None
    return out


def reward(opts: RewardOptions, console: Any = None) -> Manifest:
    """Scores ``opts.input`` and writes the artifact at ``opts.out``."""
    from glmv_cli.rewards import check_answer_format, load_config, score_many

    opts.validate()
    cfg = load_config(opts.config, reward_fn=opts.reward_fn)
    if opts.style != "auto":
        cfg = cfg.with_style(opts.style)
    records, problems = read_lines(opts.input, cfg, opts.on_bad)
    warning = check_answer_format(((str(r.get("id", r["_line"])), r["domain"], r.get("prompt") or "")
                                   for r in records), cfg)

    from glmv_cli import options as O

    resolved = O.flat_dict(opts)
    art = ArtifactWriter(opts.out, "reward", options=resolved, overwrite=opts.overwrite).open()  # --out checked first
    try:
        t0 = time.perf_counter()
        items = [(r.get("prompt"), r["response"], r["reference"], r["domain"], r.get("extra")) for r in records]
        results = score_many(items, cfg, workers=opts.workers, judge_threads=opts.judge_threads)
        rows = []
        for rec, res in zip(records, results):
            row = {"line": rec["_line"], "id": rec.get("id"), **res.to_dict()}
            row["domain"] = rec["domain"]  # group by the user's label (an alias stays itself)
            rows.append(row)
        metrics = summarize(rows, time.perf_counter() - t0)
        with open(art.path / "scores.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        art.metrics.update({"domains": metrics, "skipped_lines": len(problems)})
        art.extra["reward_config"] = cfg.as_dict()
        if problems:
            art.extra["skipped"] = problems[:100]
        if warning:
            art.extra["warnings"] = [warning]
        m = art.commit()
    except BaseException:
        art.abort()
        raise
    print_table(metrics, console)
    if warning:
        (console or _console()).print(f"warning: {warning}", markup=False)
    return m


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def print_table(metrics: dict[str, Any], console: Any = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    t = Table(title="rewards per domain", box=box.SIMPLE_HEAD, pad_edge=False,
              caption="reward = mean reward; pass = share with reward 1; gate fail = format or language "
                      "gate failures; errors = verifier errors (timeouts included); unverif. = STEM answers "
                      "no verifier reads (configure a judge)")
    for col in ("domain", "n", "reward", "pass", "gate fail", "errors", "timeouts", "unverif."):
        t.add_column(col, justify="left" if col == "domain" else "right", no_wrap=True)
    for name, m in metrics.items():
        t.add_row(name, str(m["n"]), f"{m['mean_reward']:.3f}", f"{m['pass_rate']:.3f}", str(m["gate_failures"]),
                  str(m["verifier_errors"]), str(m["timeouts"]), str(m["unverifiable"]))
    console.print(t)


DOC = """Score a file of responses with the reward gates and domain verifiers.

Writes OUT/scores.jsonl and a manifest with per-domain n, mean reward, pass rate, gate
failures and verifier errors, and prints them as a table. Use it to audit a verifier on
adversarial answers before an RL run.
"""


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "reward", reward, RewardOptions, doc=DOC)
