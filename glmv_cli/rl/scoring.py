"""Scoring a whole RL step's responses in one call: ``Scorer.score(items) -> results in input order``.

An item is ``(prompt, response, reference, domain, extra)``, the arguments of
``rewards.score_detailed``; the result is its ``RewardResult``. With ``workers = 0`` the items are
scored one after the other in this process. With ``workers = N > 0``:

- rule verifiers (math-verify under its own timeout, OCR, counting, ...) are CPU-bound and hold
  the GIL: they go to a pool of ``min(N, cpu count)`` processes (spawned, so no forked copy of
  the training process with its threads and process group). Items travel as JSON text, results
  come back as JSON text: no data object is ever pickled, and every float survives the round trip
  exactly (``json`` writes the shortest repr), so results are bit-identical to serial scoring;
- LLM-judge items are network-bound: they run on ``N`` threads in this process, sharing the
  domain's one ``Judge`` (its cache and request counter are thread-safe).

Results are put back in input order. Judge-bound steps are the case that matters: one judge call
takes ~1 s, and a rank scores 256-1,024 responses per step, so serial scoring costs 4-17 minutes
where 32 threads cost seconds (``benchmarks/rl_update_bench.py`` measures it against a local
judge server).

This is the trainer's one call site for rewards; the rewards package's own batch scorer can
replace the pool behind it without touching the trainer.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Sequence

from glmv_cli.rewards.scoring import RewardConfig, RewardResult, config_from_dict, score_detailed

Item = tuple  # (prompt, response, reference, domain, extra)

_WORKER_CONFIG: RewardConfig | None = None


def config_payload(cfg: RewardConfig) -> str:
    """The JSON that ``config_from_dict`` rebuilds ``cfg`` from (in a worker process)."""
    gates = {k: v for k, v in cfg.as_dict()["gates"].items() if k != "style"}
    return json.dumps({"style": cfg.style, "gates": gates, "domains": cfg.domains, "aliases": cfg.aliases})


def _init_worker(payload: str, source: str) -> None:
    global _WORKER_CONFIG
    _WORKER_CONFIG = config_from_dict(json.loads(payload), source)


def _result_from_dict(d: dict[str, Any]) -> RewardResult:
    return RewardResult(d["reward"], d["domain"], d["verifier"], d["answer"], d["gate"], d["error"])


def _score_chunk(items_json: str) -> str:
    items = json.loads(items_json)
    return json.dumps([score_detailed(*it, config=_WORKER_CONFIG).to_dict() for it in items])


class Scorer:
    """Scores item lists for one run (pools are created on first use and kept until ``close``)."""

    def __init__(self, config: RewardConfig, workers: int = 0):
        self.config, self.workers = config, max(0, int(workers))
        self._procs: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None

    def score(self, items: Sequence[Item]) -> list[RewardResult]:
        items = [tuple(it) for it in items]
        if self.workers == 0 or len(items) <= 1:
            return [score_detailed(*it, config=self.config) for it in items]
        cfg = self.config
        judged = [i for i, it in enumerate(items) if cfg.verifier_name(it[3]) == "judge"]
        ruled = [i for i, it in enumerate(items) if cfg.verifier_name(it[3]) != "judge"]
        out: list[RewardResult | None] = [None] * len(items)
        futures = []
        if ruled:
            pool = self._process_pool()
            n_chunks = min(len(ruled), 4 * self._procs_n())
            chunks = [ruled[k::n_chunks] for k in range(n_chunks)]
            futures = [(c, pool.submit(_score_chunk, json.dumps([items[i] for i in c]))) for c in chunks]
        if judged:
            for it in {items[i][3] for i in judged}:
                cfg.verifier(it)  # build each judge once, before the threads share it
            res = self._thread_pool().map(lambda i: score_detailed(*items[i], config=cfg), judged)
            for i, r in zip(judged, res):
                out[i] = r
        for c, f in futures:
            for i, d in zip(c, json.loads(f.result())):
                out[i] = _result_from_dict(d)
        return [r for r in out if r is not None]

    def _procs_n(self) -> int:
        return max(1, min(self.workers, os.cpu_count() or 1))

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._procs is None:
            import multiprocessing as mp

            self._procs = ProcessPoolExecutor(self._procs_n(), mp_context=mp.get_context("spawn"),
                                              initializer=_init_worker,
                                              initargs=(config_payload(self.config), self.config.source))
        return self._procs

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="glmv-judge")
        return self._threads

    def close(self) -> None:
        for p in (self._procs, self._threads):
            if p is not None:
                p.shutdown(wait=True, cancel_futures=True)
        self._procs = self._threads = None


def group_outcome(results: Sequence[RewardResult]) -> tuple[list[float], bool, int]:
    """(rewards, judge_failed, gate failures) of one group's results.

    A judge failure (``JudgeError``: no endpoint produced a verdict) on any response marks the
    whole group: its zeros are not the policy's fault, so training on them would teach noise."""
    failed = any(r.error is not None and r.error.startswith("JudgeError") for r in results)
    return [float(r.reward) for r in results], failed, sum(1 for r in results if r.gate is not None)
