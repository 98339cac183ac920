"""Scoring many responses at once: a bounded process pool for verifiers, a thread pool for judges.

``score_many(items, cfg, workers=4, judge_threads=16)`` returns one :class:`RewardResult` per item,
in input order, equal field for field (floats bit for bit) to ``score_detailed`` called in a loop.
An item is ``(prompt, response, reference, domain, extra)`` (``extra`` may be left off).

* Judge-bound items (a ``judge`` domain, or a domain with a ``judge`` fallback such as ``stem``)
  wait on HTTP, not on the CPU: they run in ``judge_threads`` threads of this process, sharing the
  judge's cache.
* Everything else runs in ``workers`` processes (``python -m glmv_cli.rewards.worker``), which
  sidestep the GIL for sympy. Each worker rebuilds the config from its rewards.yaml mapping
  (:meth:`RewardConfig.to_dict`) and talks JSON lines over its pipes: no pickle, nothing but plain
  strings and numbers crosses, and JSON writes floats as their shortest repr so they come back
  identical. Items go out in contiguous chunks, so a GRPO group usually lands on one worker and
  shares its prepared reference.
* math-verify keeps its per-call timeout inside the worker. A worker that sends nothing for
  ``hard_timeout_s`` (sympy stuck in C code, which no thread timeout can stop, or a user's reward
  function that ignores its timeout) is killed and replaced; the item it was on scores 0 with
  ``error = "timeout (worker stopped)"`` (``"worker exited with code N"`` when it crashed) and the
  rest of its chunk is re-sent.

``workers <= 1`` scores the verifier items in this process. Keep a :class:`RewardPool` open across
calls (an RL trainer scores every step) so workers start once: a worker needs ~1-2 s to import
math-verify and sympy.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from glmv_cli.errors import GlmvError
from glmv_cli.rewards.registry import REWARD_FN, RewardConfig, default_config
from glmv_cli.rewards.scoring import RewardResult, score_detailed

Item = tuple  # (prompt, response, reference, domain, extra)
_PKG_ROOT = str(Path(__file__).resolve().parents[2])


def uses_judge(cfg: RewardConfig, domain: str) -> bool:
    name = cfg.verifier_name(domain)
    if name == REWARD_FN:
        return False
    return name == "judge" or cfg.domains[cfg.resolve(domain)].get("judge") is not None


class _Worker:
    """One scoring process and the thread that drains its stdout into a queue."""

    def __init__(self, config: dict[str, Any], source: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_PKG_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([sys.executable, "-m", "glmv_cli.rewards.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8", bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.send({"config": config, "source": source})

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # EOF: the worker exited

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None on timeout or exit."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)

    def stop(self, kill: bool = False) -> None:
        try:
            if not kill and self.proc.stdin is not None:
                self.proc.stdin.write("\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
                return
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.proc.kill()
        self.proc.wait()


class RewardPool:
    """``workers`` scoring processes (started on first use) and ``judge_threads`` judge threads."""

    def __init__(self, cfg: RewardConfig | None = None, workers: int = 1, judge_threads: int = 16,
                 hard_timeout_s: float | None = None, startup_timeout_s: float = 120.0):
        if workers < 1 or judge_threads < 1:
            raise GlmvError(f"workers and judge threads must be >= 1, got {workers} and {judge_threads}")
        self.cfg = cfg or default_config()
        self.workers = workers
        self.judge_threads = judge_threads
        self.hard_timeout_s = hard_timeout_s if hard_timeout_s is not None else self._default_hard_timeout()
        self.startup_timeout_s = startup_timeout_s
        self._procs: list[_Worker] = []
        self._config = self.cfg.to_dict()
        self.restarts = 0  # workers replaced after a hard timeout or an exit

    @property
    def started(self) -> int:
        """Worker processes running now."""
        return sum(1 for w in self._procs if w.proc.poll() is None)

    def _default_hard_timeout(self) -> float:
        limits = [float(s.get("timeout_s", 1.0)) for s in self.cfg.domains.values()]
        return max(limits + [self.cfg.reward_fn_timeout_s]) + 10.0

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for w in self._procs:
            w.stop()
        self._procs = []

    def _start(self) -> _Worker:
        w = _Worker(self._config, self.cfg.source)
        msg = w.receive(self.startup_timeout_s)
        if msg is None or not msg.get("ready"):
            w.stop(kill=True)
            why = msg.get("error") if msg else "no reply"
            raise GlmvError(f"a reward worker process failed to start ({why})")
        return w

    def score_many(self, items: Sequence[Item]) -> list[RewardResult]:
        out: list[RewardResult | None] = [None] * len(items)
        judged, local, remote = [], [], []
        for i, it in enumerate(items):
            if uses_judge(self.cfg, it[3]):
                judged.append(i)
            elif self.workers <= 1 or not _json_safe(it):
                local.append(i)
            else:
                remote.append(i)

        def one(i: int) -> None:
            p, r, ref, dom, extra = _five(items[i])
            out[i] = score_detailed(p, r, ref, dom, extra, config=self.cfg)

        with ThreadPoolExecutor(self.judge_threads) as threads:
            futures = [threads.submit(one, i) for i in judged]
            if remote:
                self._run_remote(items, remote, out)
            for i in local:
                one(i)
            for f in futures:
                f.result()
        return out  # type: ignore[return-value]

    def _run_remote(self, items: Sequence[Item], idx: list[int], out: list) -> None:
        n = min(self.workers, len(idx))
        size = max(1, min(64, -(-len(idx) // (4 * n))))
        chunks: queue.Queue = queue.Queue()
        for k in range(0, len(idx), size):
            chunks.put(idx[k:k + size])
        while len(self._procs) < n:
            self._procs.append(self._start())
        errors: list[BaseException] = []

        def drive(slot: int) -> None:
            try:
                while True:
                    try:
                        chunk = chunks.get_nowait()
                    except queue.Empty:
                        return
                    self._run_chunk(slot, chunk, items, out)
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)

        drivers = [threading.Thread(target=drive, args=(s,), daemon=True) for s in range(n)]
        for t in drivers:
            t.start()
        for t in drivers:
            t.join()
        if errors:
            raise errors[0]

    def _run_chunk(self, slot: int, chunk: list[int], items: Sequence[Item], out: list) -> None:
        while chunk:
            w = self._procs[slot]
            try:
                for i in chunk:
                    w.send({"i": i, "item": list(_five(items[i]))})
            except (OSError, ValueError):  # the worker had exited: a fresh one gets the chunk
                self._replace(slot)
                continue
            done = 0
            for _ in chunk:
                msg = w.receive(self.hard_timeout_s)
                if msg is None:
                    break
                out[msg["i"]] = RewardResult.from_dict(msg["result"])
                done += 1
            if done == len(chunk):
                return
            stuck = chunk[done]
            try:  # EOF comes a moment before the exit status: give a crashed worker time to be reaped
                code = w.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            why = "timeout (worker stopped)" if code is None else f"worker exited with code {code}"
            self._replace(slot)  # killed, not waited for: it may be stuck in C code
            d = self.cfg.resolve(items[stuck][3])
            out[stuck] = RewardResult(0.0, d, self.cfg.verifier_name(items[stuck][3]), error=why)
            chunk = chunk[done + 1:]

    def _replace(self, slot: int) -> None:
        self._procs[slot].stop(kill=True)
        self.restarts += 1
        self._procs[slot] = self._start()


def _five(item: Item) -> tuple:
    return tuple(item) if len(item) == 5 else (*item, None)


def _json_safe(item: Item) -> bool:
    try:
        json.dumps(list(item))
    except (TypeError, ValueError):
        return False
    return True


def score_many(items: Sequence[Item], cfg: RewardConfig | None = None, *, workers: int = 1,
               judge_threads: int = 16, hard_timeout_s: float | None = None) -> list[RewardResult]:
    """Scores ``items`` with a pool made for this call (see the module docstring)."""
    with RewardPool(cfg, workers, judge_threads, hard_timeout_s) as pool:
        return pool.score_many(items)
