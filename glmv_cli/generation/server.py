"""``ServerEngine``: the rollout contract through HTTP rollout servers (``glmv serve``, ``vllm serve``,
SGLang), one or many.

Every rollout is its own request (n = 1) with ``seed = rollout_seed(seed, prompt id, model tag,
index)``, exactly the seed ``HFEngine`` gives that rollout, so results do not depend on how requests
are spread over servers. All requests of a call are sent at once (bounded by the pool's
``max_inflight`` per server, least-loaded dispatch; ``transport.ServerPool``), which is what lets a
server batch them.

Forced answering runs client-side in two phases (as ``VLLMEngine``): phase 1 samples up to the
thinking budget; a rollout that stopped is done; one that closed ``</think>`` continues for the rest
of ``max_new_tokens``; one that did not gets the forced tokens appended and continues for
``answer_budget`` tokens. The continuation carries the rollout's seed in the glmv extension
(``vllm_xargs`` / ``custom_params``: ``glmv_seed`` + ``glmv_rng_offset`` = tokens already decided), so
``glmv serve`` draws exactly the uniforms ``HFEngine`` would have drawn and the rollout equals the
in-process one; vLLM and SGLang ignore the extension and use ``seed`` = a fresh hash of (seed,
offset), an independent stream. The forced tokens' log-probs come from the continuation's prompt
log-probs (``prompt_logprobs: 0`` / SGLang ``logprob_start_len``), so they are the model's, not NaN.

Dialects (docs/rollout-servers.md has the exact fields):

- ``vllm`` (vLLM's OpenAI server; ``glmv serve`` speaks it): a text-only prompt goes to
  ``/v1/completions`` as token ids (prompt + decided tokens: nothing is re-tokenised); a prompt with
  images goes to ``/v1/chat/completions`` as messages with ``data:`` URL images, rendered by the
  server's chat template; its continuation is a partial assistant message
  (``continue_final_message``), re-tokenised by the server. The returned ``prompt_token_ids`` are
  checked: a first-phase prompt the server rendered differently from ``Prompt.input_ids`` is an
  error (the learner would train on a prompt the policy never saw); a continuation whose text
  re-tokenised differently is counted in ``stats["retokenized"]``.
- ``sglang`` (SGLang's native ``/generate``): token ids always (image runs collapsed to one
  ``<|image|>``, which SGLang expands) plus ``image_data``; continuations are exact.

Banned multimodal tokens get ``logit_bias`` ``VLLM_BAN_BIAS`` on every request; a server that still
returns one (e.g. one that clamps biases) is reported as an error rather than trained on.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from glmv_cli.errors import GlmvError
from glmv_cli.generation.sampling import (VLLM_BAN_BIAS, Prompt, Rollout, SamplingParams, banned_token_ids,
                                          control_stop_ids, response_ids, rollout_seed, special_ids)
from glmv_cli.generation.transport import ServerPool

DIALECTS = ("vllm", "sglang")
SEED_MASK = (1 << 63) - 1


def continuation_seed(seed: int, offset: int) -> int:
    """The ``seed`` a continuation sends to servers without the glmv extension: a fresh stream."""
    h = hashlib.sha256(f"{seed}\x1fcontinue\x1f{offset}".encode()).digest()
    return int.from_bytes(h[:8], "little") & SEED_MASK


@dataclass
class _Call:
    """One request: ``prefix`` (tokens already decided) is appended to the prompt; ``score`` trailing
    prefix tokens (the forced ones) need their log-probs."""

    prompt: Prompt
    prefix: list[int]
    max_tokens: int
    seed: int
    score: int = 0


@dataclass
class _Out:
    token_ids: list[int]
    logprobs: list[float]
    finish: str
    scored: list[float] = field(default_factory=list)
    prompt_ids: list[int] | None = None


def _image_url(img: Any, cache: dict | None = None) -> str:
    """A ``data:`` URL of a PIL image or an image file (bytes sent as they are); ``cache`` keeps
    the URLs of one call (a prompt's image goes out once per rollout)."""
    key = id(img) if hasattr(img, "save") else str(img)
    if cache is not None and key in cache:
        return cache[key]
    if hasattr(img, "save"):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        raw, mime = buf.getvalue(), "image/png"
    elif isinstance(img, (bytes, bytearray)):  # embedded bytes of a parquet / datasets row
        raw = bytes(img)
        mime = ("image/jpeg" if raw[:2] == b"\xff\xd8" else "image/webp" if raw[8:12] == b"WEBP"
                else "image/gif" if raw[:4] == b"GIF8" else "image/png")
    else:
        p = Path(img)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise GlmvError(f"image '{p}' cannot be read ({e})") from None
        mime = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}.get(p.suffix.lower(),
                                                                                        "image/png")
    url = f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"
    if cache is not None:
        cache[key] = url
    return url


def _openai_messages(prompt: Prompt, cache: dict) -> list[dict]:
    """Record-format messages -> OpenAI messages, images (in placeholder order) as ``image_url`` parts."""
    from glmv_cli.data.chat import IMAGE_PLACEHOLDER

    images = list(prompt.images or [])
    out = []
    for m in prompt.messages or []:
        c = m["content"]
        segs = ([{"type": "text", "text": t} if k % 2 == 0 else {"type": "image"}
                 for k, t in enumerate(_split(c, IMAGE_PLACEHOLDER))] if isinstance(c, str) else list(c))
        parts = []
        for part in segs:
            if part.get("type") == "image" or "image" in part:
                if not images:
                    raise GlmvError(f"prompt '{prompt.id}': more image placeholders than images")
                parts.append({"type": "image_url", "image_url": {"url": _image_url(images.pop(0), cache)}})
            elif part.get("type") == "text":
                if part["text"]:
                    parts.append({"type": "text", "text": part["text"]})
            else:
                raise GlmvError(f"prompt '{prompt.id}': a {part.get('type')!r} part cannot go to a rollout server")
        out.append({"role": m["role"], "content": parts})
    if images:
        raise GlmvError(f"prompt '{prompt.id}': {len(images)} image(s) without a placeholder")
    return out


def _split(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` with the separators kept as odd entries (text, img, text, ...)."""
    pieces = text.split(sep)
    out = []
    for k, p in enumerate(pieces):
        out.append(p)
        if k < len(pieces) - 1:
            out.append(sep)
    return out


class ServerEngine:
    """The rollout contract on HTTP servers (see the module docstring).

    ``urls``: one or more server base URLs. ``tokenizer``: the policy's (decodes texts and finds
    the special ids). ``config`` / ``generation_config``: the policy's, for the banned ids and stop
    ids exactly as ``HFEngine`` computes them. ``model``: the served model name (default: what the
    first server's ``/v1/models`` lists; the sglang dialect sends none).
    """

    def __init__(self, urls: Sequence[str], tokenizer: Any, *, dialect: str = "vllm", model: str | None = None,
                 config: Any = None, generation_config: Any = None, model_tag: str = "model",
                 timeout_s: float = 600.0, retries: int = 3, backoff_s: float = 0.5, max_inflight: int = 64):
        if dialect not in DIALECTS:
            raise GlmvError(f"--server-dialect must be one of {', '.join(DIALECTS)}, got '{dialect}'")
        self.pool = ServerPool(urls, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                               max_inflight=max_inflight)
        self.dialect, self.model_tag = dialect, model_tag
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        vocab = getattr(config.get_text_config(), "vocab_size", None) if config is not None else None
        self.banned_token_ids = banned_token_ids(self.tokenizer, config, vocab)
        self.image_token_id = int(self.tokenizer.convert_tokens_to_ids("<|image|>"))
        self._gen = type("_HasGenerationConfig", (), {"generation_config": generation_config})() \
            if generation_config is not None else None
        self._model = model
        self.stats = {"requests": 0, "retokenized": 0}
        self._urls: dict = {}  # image data URLs of the current call

    @property
    def model(self) -> str | None:
        if self._model is None and self.dialect == "vllm":
            data = self.pool.call(0, "GET", "/v1/models", timeout_s=30.0).get("data") or []
            if not data:
                raise GlmvError(f"rollout server {self.pool.urls[0]} lists no model in /v1/models")
            self._model = str(data[0]["id"])
        return self._model

    # ------------------------------------------------------------------ the contract

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, n: int = 1,
                 seed: int = 0) -> list[list[Rollout]]:
        """For each prompt its n rollouts (index 0..n-1), as ``HFEngine.generate`` returns them."""
        params.validate()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        think_end, forced_seq, stops = special_ids(self.tokenizer, self._gen, params.style)
        keys = [(pi, j) for pi in range(len(prompts)) for j in range(n)]
        seeds = [rollout_seed(seed, prompts[pi].id, self.model_tag, j) for pi, j in keys]
        budget, mnt = params.thinking_budget, params.max_new_tokens
        first = self._run([_Call(prompts[pi], [], min(budget or mnt, mnt), s) for (pi, _), s in zip(keys, seeds)],
                          params, stops)
        states, follow = [], []
        for r, ((pi, _), out) in enumerate(zip(keys, first)):
            ids = out.token_ids
            st = {"ids": list(ids), "lps": list(out.logprobs), "forced": [False] * len(ids), "finish": None}
            if out.finish == "stop" or (ids and ids[-1] in stops):
                st["finish"] = "stop"
            elif budget is not None and budget <= mnt and len(ids) >= budget and think_end not in ids:
                st["finish"] = "forced"
                follow.append((r, _Call(prompts[pi], ids + list(forced_seq), params.answer_budget, seeds[r],
                                        score=len(forced_seq))))
            elif len(ids) < mnt:
                follow.append((r, _Call(prompts[pi], list(ids), mnt - len(ids), seeds[r])))
            else:
                st["finish"] = "length"
            states.append(st)
        if follow:
            for (r, call), out in zip(follow, self._run([c for _, c in follow], params, stops)):
                st = states[r]
                if call.score:
                    st["ids"] += list(forced_seq)
                    st["lps"] += out.scored
                    st["forced"] += [True] * call.score
                st["ids"] += out.token_ids
                st["lps"] += out.logprobs
                st["forced"] += [False] * len(out.token_ids)
                if st["finish"] is None:
                    ids = out.token_ids
                    st["finish"] = "stop" if out.finish == "stop" or (ids and ids[-1] in stops) else "length"
        res: list[list[Rollout]] = [[] for _ in prompts]
        for r, (pi, j) in enumerate(keys):
            st = states[r]
            bad = sorted(set(st["ids"]) & set(self.banned_token_ids))
            if bad:
                raise GlmvError(f"rollout server returned banned multimodal token(s) {bad} for prompt "
                                f"'{prompts[pi].id}' although logit_bias {VLLM_BAN_BIAS:g} was sent; the server "
                                "may clamp logit_bias (check its version and options)")
            ids = st["ids"]
            body = response_ids(ids, st["forced"], control_stop_ids(self.tokenizer))  # content stops stay
            res[pi].append(Rollout(prompts[pi].id, j, seeds[r], list(prompts[pi].input_ids), ids, st["lps"],
                                   st["forced"], st["finish"], self.tokenizer.decode(body, skip_special_tokens=False)))
        return res

    def _run(self, calls: list[_Call], params: SamplingParams, stops: frozenset) -> list[_Out]:
        if not calls:
            return []
        if self.dialect == "vllm":
            self.model  # resolve the served name once, before the burst
        self._urls = {}

        def one(call: _Call) -> _Out:
            path, body = self._request(call, params, stops)
            return self._parse(call, self.pool.post(path, body))

        workers = min(len(calls), len(self.pool.urls) * self.pool.max_inflight)
        with ThreadPoolExecutor(max_workers=workers) as ex:
            outs = list(ex.map(one, calls))
        self.stats["requests"] += len(calls)
        return outs

    # ------------------------------------------------------------------ dialects

    def _request(self, call: _Call, params: SamplingParams, stops: frozenset) -> tuple[str, dict]:
        offset = len(call.prefix)
        seed = call.seed if offset == 0 else continuation_seed(call.seed, offset)
        ext = {"glmv_seed": call.seed, "glmv_rng_offset": offset} if offset else None
        bias = {str(i): VLLM_BAN_BIAS for i in self.banned_token_ids}
        sampling = {"temperature": params.temperature, "top_p": params.top_p, "n": 1,
                    "stop_token_ids": sorted(stops), "skip_special_tokens": False}
        if bias:
            sampling["logit_bias"] = bias
        p = call.prompt
        if p.pixel_values is not None and not p.images:
            raise GlmvError(f"prompt '{p.id}' has pixel values but no image files: a rollout server processes the "
                            "images itself (build prompts with prompt_from_record)")
        if self.dialect == "sglang":
            sp = {**sampling, "max_new_tokens": call.max_tokens, "sampling_seed": seed}
            if ext:
                sp["custom_params"] = ext
            ids = self._collapse_images(p.input_ids) + call.prefix
            body: dict[str, Any] = {"input_ids": ids, "sampling_params": sp, "return_logprob": True,
                                    "logprob_start_len": len(ids) - call.score if call.score else -1}
            if p.images:
                body["image_data"] = [_image_url(im, self._urls) for im in p.images]
            return "/generate", body
        body = {"model": self.model, **sampling, "max_tokens": call.max_tokens, "seed": seed,
                "return_token_ids": True, "return_tokens_as_token_ids": True}
        if ext:
            body["vllm_xargs"] = ext
        if call.score:
            body["prompt_logprobs"] = 0
        if not p.images:
            return "/v1/completions", {**body, "prompt": list(p.input_ids) + call.prefix, "logprobs": 0}
        if not p.messages:
            raise GlmvError(f"prompt '{p.id}' has images but no messages; the vllm dialect sends images as chat "
                            "messages (build prompts with prompt_from_record)")
        msgs = _openai_messages(p, self._urls)
        if call.prefix:
            msgs.append({"role": "assistant",
                         "content": self.tokenizer.decode(call.prefix, skip_special_tokens=False)})
        return "/v1/chat/completions", {**body, "messages": msgs, "logprobs": True, "top_logprobs": 0,
                                        "add_generation_prompt": not call.prefix,
                                        "continue_final_message": bool(call.prefix),
                                        "chat_template_kwargs": {"enable_thinking": p.enable_thinking}}

    def _collapse_images(self, ids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for t in ids:
            if not (t == self.image_token_id and out and out[-1] == self.image_token_id):
                out.append(int(t))
        return out

    def _parse(self, call: _Call, resp: Any) -> _Out:
        try:
            if self.dialect == "sglang":
                return self._parse_sglang(call, resp)
            return self._parse_vllm(call, resp)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise GlmvError(f"rollout server answer for prompt '{call.prompt.id}' lacks the expected fields "
                            f"({type(e).__name__}: {e}); is --server-dialect '{self.dialect}' right?") from None

    def _parse_vllm(self, call: _Call, resp: dict) -> _Out:
        ch = resp["choices"][0]
        if ch.get("token_ids") is None:
            raise GlmvError("the rollout server returned no 'token_ids' (vLLM >= 0.10 answers return_token_ids)")
        ids = [int(t) for t in ch["token_ids"]]
        lp = ch.get("logprobs") or {}
        vals = lp.get("token_logprobs") if "token_logprobs" in lp else [e["logprob"] for e in lp.get("content") or []]
        lps = [float("nan") if v is None else float(v) for v in vals]
        if len(lps) != len(ids):
            raise GlmvError(f"rollout server returned {len(ids)} tokens but {len(lps)} log-probs")
        chat = "message" in ch
        prompt_ids = resp.get("prompt_token_ids") if chat else ch.get("prompt_token_ids")
        plp = resp.get("prompt_logprobs") if chat else ch.get("prompt_logprobs")
        scored = ([self._entry_logprob(e, t) for e, t in zip((plp or [])[-call.score:], call.prefix[-call.score:])]
                  if call.score else [])
        if call.score and len(scored) != call.score:
            raise GlmvError("rollout server returned no prompt_logprobs for the forced tokens")
        self._check_prompt(call, prompt_ids)
        return _Out(ids, lps, "stop" if ch.get("finish_reason") == "stop" else "length", scored, prompt_ids)

    @staticmethod
    def _entry_logprob(entry: dict | None, token: int) -> float:
        """The log-prob of ``token`` in one ``prompt_logprobs`` position (keys are token ids as text)."""
        v = (entry or {}).get(str(token))
        v = v.get("logprob") if isinstance(v, dict) else v
        if v is None or not math.isfinite(float(v)):
            raise GlmvError(f"rollout server's prompt_logprobs hold no finite log-prob for forced token {token}")
        return float(v)

    def _check_prompt(self, call: _Call, prompt_ids: list[int] | None) -> None:
        """A server-rendered prompt (chat) must equal the learner's ids (see the module docstring)."""
        if prompt_ids is None or not call.prompt.images:
            return
        want = list(call.prompt.input_ids) + call.prefix
        if list(prompt_ids) == want:
            return
        if call.prefix:
            self.stats["retokenized"] += 1
            return
        k = next((i for i, (a, b) in enumerate(zip(prompt_ids, want)) if a != b), min(len(prompt_ids), len(want)))
        raise GlmvError(f"rollout server rendered prompt '{call.prompt.id}' as {len(prompt_ids)} tokens, the learner "
                        f"as {len(want)}; first difference at token {k} (server {prompt_ids[k:k + 3]}, learner "
                        f"{want[k:k + 3]}): serve the policy's own tokenizer, chat template and image processor")

    def _parse_sglang(self, call: _Call, resp: Any) -> _Out:
        r = resp[0] if isinstance(resp, list) else resp
        meta = r["meta_info"]
        ids = [int(t) for t in r["output_ids"]]
        lps = [float("nan") if e[0] is None else float(e[0]) for e in meta.get("output_token_logprobs") or []]
        if len(lps) != len(ids):
            raise GlmvError(f"rollout server returned {len(ids)} tokens but {len(lps)} log-probs")
        fin = (meta.get("finish_reason") or {}).get("type")
        if fin == "abort":
            raise GlmvError(f"rollout server aborted the request for prompt '{call.prompt.id}': "
                            f"{meta['finish_reason'].get('message', '')}")
        scored = []
        if call.score:
            inp = meta.get("input_token_logprobs") or []
            scored = [float("nan") if e[0] is None else float(e[0]) for e in inp[-call.score:]]
            if len(scored) != call.score:
                raise GlmvError("rollout server returned no input_token_logprobs for the forced tokens")
        return _Out(ids, lps, "stop" if fin == "stop" else "length", scored)

    # ------------------------------------------------------------------ weights

    def reload_weights(self, directory: str | None = None) -> list[Any]:
        """Tells every server to reload its weights from disk and waits for all of them.

        vllm dialect: ``POST /collective_rpc {"method": "reload_weights"}`` (vLLM with
        ``VLLM_SERVER_DEV_MODE=1``; it reloads the directory it was started from, so the shared
        directory must be that one) then ``POST /reset_prefix_cache``. sglang dialect:
        ``POST /update_weights_from_disk {"model_path": directory}``.
        """
        if self.dialect == "sglang":
            if directory is None:
                raise GlmvError("the sglang dialect reloads from a model_path: give the shared directory")
            outs = self.pool.each("POST", "/update_weights_from_disk",
                                  {"model_path": str(Path(directory).resolve()), "flush_cache": True},
                                  timeout_s=self.pool.timeout_s)
            failed = [(u, o) for u, o in zip(self.pool.urls, outs) if not (o or {}).get("success", False)]
            if failed:
                raise GlmvError(f"weight reload failed on {failed[0][0]}: {(failed[0][1] or {}).get('message')}")
            return outs
        outs = self.pool.each("POST", "/collective_rpc", {"method": "reload_weights"}, timeout_s=self.pool.timeout_s)
        self.pool.each("POST", "/reset_prefix_cache", {}, timeout_s=60.0)
        return outs
