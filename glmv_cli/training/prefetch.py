"""One-step-ahead loading of the packed micro batches, into pinned memory on CUDA.

While the device runs optimizer step s, a background thread reads the packs of step s + 1 from
the dataset, joins them into micro batches (``loss.concat_packs``) and, when training on CUDA,
copies every tensor into page-locked (pinned) host memory. The engine's
``tensor.to(device, non_blocking=True)`` is then a real asynchronous DMA copy instead of a
synchronous copy from pageable memory, and the reading and joining overlap with the step.

The batches are exactly those the loop would build itself (the same function makes them, in
step order), so training numbers do not change; only where the host-side work happens. One
thread and a queue of ``depth`` steps: the data order is a pure function of the step
(``loop.batch_indices``), so there is nothing to gain from more workers, and a deeper queue
would only hold more pinned memory. An exception in the thread (a corrupt pack, a GlmvError) is
re-raised in the training loop by ``get``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

import torch

Batches = list[dict[str, Any]]


def wants_pinned(device: Any) -> bool:
    """Pinned host memory only helps (and only works) for copies to a CUDA device."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def pin(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with every tensor in pinned host memory (other values unchanged)."""
    return {k: (v.pin_memory() if isinstance(v, torch.Tensor) and v.device.type == "cpu" else v)
            for k, v in batch.items()}


class StepPrefetcher:
    """Builds ``make(step)`` for each step of ``steps`` in a background thread, ``depth`` ahead.

    ``start()`` (or use as a context manager), then ``get(step)`` for each step in order;
    ``close()`` stops the thread.
    """

    _DONE = object()

    def __init__(self, make: Callable[[int], Batches], steps: Iterable[int], *, pin_memory: bool,
                 depth: int = 1):
        self._make = make
        self._steps = list(steps)
        self._pin = pin_memory
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="glmv-prefetch", daemon=True)

    def start(self) -> "StepPrefetcher":
        self._thread.start()
        return self

    def __enter__(self) -> "StepPrefetcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for step in self._steps:
            try:
                mbs = self._make(step)
                if self._pin:
                    mbs = [pin(mb) for mb in mbs]
                item: Any = (step, mbs)
            except BaseException as e:  # handed to the training loop, which re-raises it
                self._put(("error", e))
                return
            if not self._put(item):
                return
        self._put(self._DONE)

    def get(self, step: int) -> Batches:
        """The micro batches of ``step`` (the steps must be asked for in order)."""
        item = self._q.get()
        if item is self._DONE:
            raise RuntimeError(f"prefetcher exhausted before step {step}")
        tag, value = item
        if tag == "error":
            raise value
        if tag != step:
            raise RuntimeError(f"prefetcher produced step {tag} but step {step} was asked for")
        return value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
