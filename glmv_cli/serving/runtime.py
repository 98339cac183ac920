"""The model side of ``glmv serve``: prompt preparation and a batching worker over ``HFEngine.decode``.

One worker thread owns the model. HTTP threads turn requests into :class:`~glmv_cli.serving.protocol.GenSpec`
(images decoded and processed, chat rendered with glmv's own template code) and hand them to the
worker as a job; the worker keeps collecting jobs while each arrives within ``batch_window_s`` of the
previous one (at most ``BATCH_WAIT_CAP`` windows in all), then decodes up to ``max_batch_rows`` rows (all choices of all waiting jobs with the same temperature / top-p) in one
KV-cache loop and answers each job. This is static batching: a job that arrives while a batch runs
waits for the next one. Equal prompts in a batch (a rollout client sends each prompt n times) share
one prefill, and a processed image is cached by content hash, as vLLM's prefix and multimodal caches
would spare them. It buys the batching gain for the burst a rollout client sends (all prompts
of a step at once) without continuous batching's bookkeeping. A weight reload is a job too, so it
runs between batches: requests in flight finish on the old weights, later ones see the new ones.

Rows are independent of their batch neighbours up to float round-off (each row has its own
generator), so a request's output does not depend on what else the server was doing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from glmv_cli.generation.hf import DecodeRow, HFEngine
from glmv_cli.generation.sampling import Prompt, _RowState
from glmv_cli.serving.protocol import Choice, GenSpec, Limits, RequestError, SpecResult

MAX_IMAGE_BYTES = 32 << 20
MAX_IMAGE_PIXELS = 64 << 20
BATCH_WAIT_CAP = 20  # a batch waits at most this many windows for stragglers
IMAGE_CACHE = 256  # processed images kept (a rollout burst sends each prompt's image n times)


@dataclass
class _Image:
    """A request's image: its content hash (the cache key) and the decoded picture, if not cached."""

    key: str
    pil: Any = None


@dataclass
class _Job:
    specs: list[GenSpec] | None = None
    prompts: list[Prompt] | None = None
    reload_dir: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class ModelRuntime:
    """Owns model, processor and the worker thread; ``run(specs)`` blocks until they are decoded."""

    def __init__(self, model: Any, processor: Any, *, name: str, model_dir: str | None = None,
                 max_batch_rows: int = 64, batch_window_s: float = 0.01, max_tokens: int = 4096):
        from glmv_cli.data.chat import style_for_model_type

        self.model, self.processor, self.name, self.model_dir = model, processor, name, model_dir
        self.tok = getattr(processor, "tokenizer", processor)
        self.engine = HFEngine(model, self.tok, batch_size=max_batch_rows)
        self.max_batch_rows, self.batch_window_s = max(1, max_batch_rows), max(0.0, batch_window_s)
        text = model.config.get_text_config()
        self.limits = Limits(vocab_size=int(text.vocab_size), max_model_len=int(text.max_position_embeddings),
                             max_tokens=max_tokens)
        self.style = style_for_model_type(model.config.model_type)
        self.image_token_id = int(model.config.image_token_id)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos_ids = set([eos] if isinstance(eos, int) else list(eos or []))
        if self.tok.eos_token_id is not None:
            eos_ids.add(int(self.tok.eos_token_id))
        self.eos_ids = frozenset(eos_ids)
        self.weight_version = 0
        self.stats = {"batches": 0, "rows": 0, "prompts": 0, "prefills": 0}
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._front: list[_Job] = []  # taken off the queue but left for the next batch (worker only)
        self._images: OrderedDict[str, tuple[Any, Any, int]] = OrderedDict()
        self._images_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._loop, name="glmv-serve-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ request preparation

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = self.tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        if not ids:
            raise RequestError("the prompt text encodes to no tokens", 400, "prompt")
        return list(ids)

    def decode_image(self, url: str, where: str) -> _Image:
        """An image from a ``data:`` URL (base64). Other URLs are refused: the server never fetches
        or opens files on a client's behalf. An image seen recently is not decoded again."""
        from PIL import Image, UnidentifiedImageError

        if not url.startswith("data:") or ";base64," not in url[:200]:
            raise RequestError(f"'{where}' must be a data: URL with base64 content (the server fetches nothing)",
                               400, where)
        payload = url.split(",", 1)[1]
        if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise RequestError(f"'{where}': image larger than {MAX_IMAGE_BYTES >> 20} MiB", 413, where)
        key = hashlib.sha1(payload.encode("ascii", "replace")).hexdigest()
        with self._images_lock:
            if key in self._images:
                return _Image(key)
        try:
            raw = base64.b64decode(payload, validate=True)
            with Image.open(io.BytesIO(raw)) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise RequestError(f"'{where}': image of {im.width}x{im.height} pixels is too large", 413, where)
                return _Image(key, im.convert("RGB"))
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as e:
            raise RequestError(f"'{where}': not a decodable image ({e})", 400, where) from None

    def _processed(self, img: _Image) -> tuple[Any, Any, int]:
        """(pixel values, grid, token count) of one image, from the cache when it was seen."""
        with self._images_lock:
            hit = self._images.get(img.key)
            if hit is not None:
                self._images.move_to_end(img.key)
                return hit
        if img.pil is None:  # evicted between decode and use: the client must send it again
            raise RequestError("an image left the server's cache before use; send the request again", 503)
        ip = self.processor.image_processor
        enc = ip(images=[img.pil], return_tensors="pt")
        merge = int(getattr(ip, "merge_size", 2))
        out = (enc["pixel_values"], enc["image_grid_thw"], int(enc["image_grid_thw"][0].prod()) // (merge * merge))
        with self._images_lock:
            self._images[img.key] = out
            while len(self._images) > IMAGE_CACHE:
                self._images.popitem(last=False)
        return out

    def _process_images(self, images: list) -> tuple[Any, Any, list[int]]:
        if not images:
            return None, None, []
        import torch

        done = [self._processed(im) for im in images]
        return torch.cat([d[0] for d in done]), torch.cat([d[1] for d in done]), [d[2] for d in done]

    def render_chat(self, chat, spec: GenSpec) -> None:
        """Fills ``spec.prompt_ids`` from record-format messages: glmv's ``encode_chat`` with the
        generation prompt; a continued final assistant message is that prompt plus its text's tokens."""
        from glmv_cli.data.chat import ChatFormatError, encode_chat

        _, _, counts = self._process_images(spec.images)
        msgs = chat.messages[:-1] if chat.continue_final else chat.messages
        try:
            ids = encode_chat(self.tok, msgs, image_token_counts=counts, style=self.style,
                              add_generation_prompt=True, enable_thinking=chat.enable_thinking)["input_ids"]
        except ChatFormatError as e:
            raise RequestError(f"'messages': {e}", 400, "messages") from None
        if chat.continue_final:
            partial = chat.messages[-1]["content"]
            if not isinstance(partial, str):
                raise RequestError("the continued assistant message must be text", 400, "messages")
            ids = ids + (self.tok(partial, add_special_tokens=False)["input_ids"] if partial else [])
        spec.prompt_ids = list(ids)

    def _prompt(self, spec: GenSpec) -> Prompt:
        """The engine's Prompt: images processed, single ``<|image|>`` placeholders expanded."""
        pv, grid, counts = self._process_images(spec.images)
        ids, runs, i = [], [], 0
        src = spec.prompt_ids
        while i < len(src):
            if src[i] == self.image_token_id:
                j = i
                while j < len(src) and src[j] == self.image_token_id:
                    j += 1
                runs.append(j - i)
                k = len(runs) - 1
                n = counts[k] if k < len(counts) and j - i == 1 else j - i
                ids.extend([self.image_token_id] * n)
                i = j
            else:
                ids.append(src[i])
                i += 1
        if len(runs) != len(counts) or any(r not in (1, c) for r, c in zip(runs, counts)):
            raise RequestError(f"the prompt has {len(runs)} image placeholder run(s) {runs} but {len(counts)} "
                               f"image(s) of {counts} tokens; give one <|image|> (or the full run) per image",
                               400, "image_data")
        if len(ids) + spec.max_tokens > self.limits.max_model_len:
            raise RequestError(f"prompt of {len(ids)} tokens + max_tokens {spec.max_tokens} exceeds the model's "
                               f"context of {self.limits.max_model_len}", 400, "max_tokens")
        # the id identifies the prompt's content: equal prompts in a batch share one prefill
        h = hashlib.sha1(repr((ids, [im.key for im in spec.images])).encode())
        if spec.prompt_logprobs and spec.bias:
            h.update(repr(sorted(spec.bias.items())).encode())
        return Prompt(h.hexdigest(), ids, pv, grid)

    # ------------------------------------------------------------------ jobs

    def run(self, specs: list[GenSpec]) -> list[SpecResult]:
        prompts = [self._prompt(s) for s in specs]
        return self._submit(_Job(specs=specs, prompts=prompts))

    def reload(self, directory: str) -> dict[str, Any]:
        return self._submit(_Job(reload_dir=directory))

    def _submit(self, job: _Job):
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(_Job())

    def _next(self, timeout: float | None) -> _Job:
        if self._front:
            return self._front.pop(0)
        return self._jobs.get(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._next(None)
            if self._stop.is_set():
                break
            if job.reload_dir is not None:
                self._finish([job], self._reload)
                continue
            if job.specs is None:
                continue
            batch, rows = [job], sum(s.n for s in job.specs)
            cap = time.monotonic() + BATCH_WAIT_CAP * self.batch_window_s
            while rows < self.max_batch_rows:
                try:  # wait for a next request as long as they keep coming, up to the cap
                    nxt = self._next(max(0.0, min(self.batch_window_s, cap - time.monotonic())))
                except queue.Empty:
                    break
                if nxt.specs is None or not self._same_params(job, nxt) or \
                        rows + sum(s.n for s in nxt.specs) > self.max_batch_rows:
                    self._front.insert(0, nxt)  # a reload, other sampling params or too many rows: next
                    break
                batch.append(nxt)
                rows += sum(s.n for s in nxt.specs)
            self._finish(batch, self._decode)

    @staticmethod
    def _same_params(a: _Job, b: _Job) -> bool:
        keys = {(s.temperature, s.top_p) for s in (a.specs or []) + (b.specs or [])}
        return len(keys) == 1

    @staticmethod
    def _finish(jobs: list[_Job], fn) -> None:
        try:
            results = fn(jobs)
            for j, r in zip(jobs, results):
                j.result = r
        except RequestError as e:
            for j in jobs:
                j.error = e
        except Exception as e:  # a bug or an out-of-memory: the request fails, the server lives
            for j in jobs:
                j.error = RuntimeError(f"{type(e).__name__}: {e}")
        for j in jobs:
            j.done.set()

    def _reload(self, jobs: list[_Job]) -> list[dict]:
        from glmv_cli.errors import GlmvError
        from glmv_cli.serving.weights import load_snapshot

        t0 = time.perf_counter()
        try:
            info = load_snapshot(self.model, jobs[0].reload_dir)
        except GlmvError as e:
            raise RequestError(str(e), 400, "model_path") from None
        self.weight_version += 1
        return [{**info, "seconds": time.perf_counter() - t0, "weight_version": self.weight_version}]

    def _decode(self, jobs: list[_Job]) -> list[list[SpecResult]]:
        import torch

        specs = [s for j in jobs for s in j.specs]
        prompts = [p for j in jobs for p in j.prompts]
        uniq: dict[str, int] = {}
        for p in prompts:
            uniq.setdefault(p.id, len(uniq))
        distinct = [None] * len(uniq)
        for p in prompts:
            distinct[uniq[p.id]] = p
        want = [False] * len(uniq)
        for s, p in zip(specs, prompts):
            want[uniq[p.id]] |= s.prompt_logprobs
        rows, owner = [], []
        for si, s in enumerate(specs):
            stops = s.request_stop_ids | (frozenset() if s.ignore_eos else self.eos_ids)
            for seed in s.choice_seeds():
                g = torch.Generator().manual_seed(seed)
                for _ in range(s.rng_offset):  # the draws an earlier phase already consumed
                    torch.rand((), generator=g, dtype=torch.float64)
                rows.append(DecodeRow(uniq[prompts[si].id], g, _RowState(None, 1, s.max_tokens, -1, (), stops),
                                      bias=s.bias))
                owner.append(si)
        t, p = specs[0].temperature, specs[0].top_p
        order = sorted(range(len(rows)), key=lambda k: rows[k].prompt)  # a prompt's rows together (cache expand)
        scored = self.engine.decode(distinct, [rows[k] for k in order], t, p, prompt_logprobs=want)
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        self.stats["prompts"] += len(specs)
        self.stats["prefills"] += len(distinct)
        per_spec: list[list[Choice]] = [[] for _ in specs]
        for si, row in zip(owner, rows):
            s, toks = specs[si], row.token_ids
            fin = "stop" if row.state.finish == "stop" else "length"
            body = toks[:-1] if fin == "stop" else toks
            per_spec[si].append(Choice(toks, row.logprobs, fin, toks[-1] if fin == "stop" and toks[-1] in
                                       s.request_stop_ids else None,
                                       self.tok.decode(body, skip_special_tokens=s.skip_special_tokens)))
        results = [SpecResult(list(pr.input_ids), ch, scored[uniq[pr.id]] if s.prompt_logprobs else None)
                   for s, pr, ch in zip(specs, prompts, per_spec)]
        out, k = [], 0
        for j in jobs:
            out.append(results[k:k + len(j.specs)])
            k += len(j.specs)
        return out
