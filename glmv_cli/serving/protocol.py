"""Request parsing and response building for ``glmv serve``: vLLM's OpenAI dialect and SGLang's
native ``/generate``, reduced to one internal request (:class:`GenSpec`).

Every field is checked here, before anything reaches the model; a bad field raises
:class:`RequestError` with the HTTP status (400/404/413/422) and a message that names the field and
what was expected. Unknown fields are ignored, as vLLM and SGLang ignore them (one client can talk
to all three servers). Supported (the exact names of ``docs/rollout-servers.md``):

- completions: ``prompt`` (token ids, a list of token-id lists, or text), ``max_tokens``, ``n``,
  ``seed``, ``temperature``, ``top_p``, ``stop_token_ids``, ``ignore_eos``, ``logit_bias``,
  ``logprobs`` (0: the sampled token), ``prompt_logprobs`` (0), ``return_token_ids``,
  ``return_tokens_as_token_ids``, ``skip_special_tokens``, ``vllm_xargs``;
- chat: the same sampling fields with ``max_completion_tokens`` or ``max_tokens``, ``messages``
  (text and ``image_url`` parts with ``data:`` URLs), ``logprobs`` (bool) + ``top_logprobs`` (0),
  ``add_generation_prompt``, ``continue_final_message``, ``chat_template_kwargs.enable_thinking``;
- SGLang ``/generate``: ``input_ids`` or ``text``, ``image_data``, ``sampling_params``
  (``max_new_tokens``, ``temperature``, ``top_p``, ``n``, ``stop_token_ids``, ``ignore_eos``,
  ``logit_bias``, ``sampling_seed``, ``skip_special_tokens``, ``custom_params``),
  ``return_logprob``, ``logprob_start_len``, ``top_logprobs_num`` (0), ``return_text_in_logprobs``.

Seeds. Choice j of a request with ``seed`` s uses generator seed ``s + j`` (vLLM's rule for
n > 1). The glmv extension ``vllm_xargs`` / ``custom_params`` ``{"glmv_seed": s, "glmv_rng_offset":
k}`` replaces the seed by s and skips the generator's first k draws: a continuation request then
draws exactly the uniforms the in-process engine would have drawn after k tokens, which makes
two-phase forced answering through the server equal to ``HFEngine`` bit for bit. vLLM and SGLang
ignore the extension and use ``seed``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

MAX_N = 64
MAX_BIAS = 1.0e4          # |logit_bias| bound; -1e4 is exp-underflow-exact "banned" in fp32
MAX_PROMPTS = 64          # prompts in one batched completions request
SEED_MAX = (1 << 63) - 1


class RequestError(Exception):
    """A client error: HTTP ``status`` with ``message`` naming the field at fault."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass
class GenSpec:
    """One prompt of a request, ready for the engine. ``images`` are PIL images to process;
    ``prompt_ids`` may hold single ``<|image|>`` placeholders (SGLang's input_ids) that the
    runtime expands to the processed image's token count."""

    prompt_ids: list[int]
    images: list = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    rng_offset: int = 0
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop_ids: frozenset = frozenset()
    request_stop_ids: frozenset = frozenset()
    ignore_eos: bool = False
    bias: dict[int, float] | None = None
    prompt_logprobs: bool = False
    skip_special_tokens: bool = True

    def choice_seeds(self) -> list[int]:
        base = self.seed if self.seed is not None else int.from_bytes(os.urandom(8), "little") & SEED_MAX
        return [(base + j) & SEED_MAX for j in range(self.n)]


@dataclass
class Limits:
    """What one request may ask for (``glmv serve`` options)."""

    vocab_size: int
    max_model_len: int
    max_tokens: int = 4096


# ----------------------------------------------------------------------------- field checks


def _int(body: dict, key: str, default: Any, lo: int | None = None, hi: int | None = None,
         where: str = "") -> Any:
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise RequestError(f"'{where}{key}' must be an integer, got {v!r}", 400, key)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise RequestError(f"'{where}{key}' must be in {rng}, got {v}", 400, key)
    return v


def _float(body: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False,
           where: str = "") -> float:
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RequestError(f"'{where}{key}' must be a finite number, got {v!r}", 400, key)
    if v < lo or v > hi or (lo_open and v == lo):
        raise RequestError(f"'{where}{key}' must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}", 400, key)
    return float(v)


def _bool(body: dict, key: str, default: bool, where: str = "") -> bool:
    v = body.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise RequestError(f"'{where}{key}' must be true or false, got {v!r}", 400, key)
    return v


def token_ids(value: Any, key: str, limits: Limits) -> list[int]:
    if not isinstance(value, list) or not value:
        raise RequestError(f"'{key}' must be a non-empty list of token ids", 400, key)
    for i, t in enumerate(value):
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < limits.vocab_size:
            raise RequestError(f"'{key}[{i}]' must be a token id in [0, {limits.vocab_size}), got {t!r}", 400, key)
    return list(value)


def _stop_ids(value: Any, key: str, limits: Limits) -> frozenset:
    if value is None:
        return frozenset()
    if not isinstance(value, (list, tuple)):
        raise RequestError(f"'{key}' must be a list of token ids, got {type(value).__name__}", 400, key)
    return frozenset(token_ids(list(value), key, limits)) if value else frozenset()


def _logit_bias(value: Any, key: str, limits: Limits) -> dict[int, float] | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise RequestError(f"'{key}' must be an object mapping token ids to biases", 400, key)
    out = {}
    for k, b in value.items():
        try:
            t = int(k)
        except (TypeError, ValueError):
            raise RequestError(f"'{key}' key {k!r} is not a token id", 400, key) from None
        if not 0 <= t < limits.vocab_size:
            raise RequestError(f"'{key}' token id {t} is outside [0, {limits.vocab_size})", 400, key)
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or abs(b) > MAX_BIAS:
            raise RequestError(f"'{key}[{k}]' must be a number in [-{MAX_BIAS:g}, {MAX_BIAS:g}], got {b!r}", 400, key)
        out[t] = float(b)
    return out


def _extension(value: Any, key: str) -> tuple[int | None, int]:
    """(glmv_seed, glmv_rng_offset) from ``vllm_xargs`` / ``custom_params``."""
    if value is None:
        return None, 0
    if not isinstance(value, dict):
        raise RequestError(f"'{key}' must be an object", 400, key)
    seed = _int(value, "glmv_seed", None, 0, SEED_MAX, where=f"{key}.")
    off = _int(value, "glmv_rng_offset", 0, 0, 1 << 20, where=f"{key}.")
    return seed, off


def _sampling(body: dict, limits: Limits, *, max_key: str, default_max: int, seed_key: str, ext_key: str,
              where: str = "") -> dict[str, Any]:
    """The sampling fields both dialects share (names differ: ``max_key``, ``seed_key``, ``ext_key``)."""
    out: dict[str, Any] = {}
    out["n"] = _int(body, "n", 1, 1, MAX_N, where)
    out["max_tokens"] = _int(body, max_key, default_max, 1, limits.max_tokens, where)
    out["temperature"] = _float(body, "temperature", 1.0, 0.0, 100.0, where=where)
    out["top_p"] = _float(body, "top_p", 1.0, 0.0, 1.0, lo_open=True, where=where)
    out["seed"] = _int(body, seed_key, None, -(1 << 63), SEED_MAX, where)
    out["ignore_eos"] = _bool(body, "ignore_eos", False, where)
    out["skip_special_tokens"] = _bool(body, "skip_special_tokens", True, where)
    out["request_stop_ids"] = _stop_ids(body.get("stop_token_ids"), f"{where}stop_token_ids", limits)
    out["bias"] = _logit_bias(body.get("logit_bias"), f"{where}logit_bias", limits)
    glmv_seed, off = _extension(body.get(ext_key), f"{where}{ext_key}")
    if glmv_seed is not None:
        out["seed"], out["rng_offset"] = glmv_seed, off
    if out["seed"] is not None:
        out["seed"] &= SEED_MAX
    stop = body.get("stop")
    if stop not in (None, [], ""):
        raise RequestError(f"'{where}stop' (stop strings) is not supported by glmv serve; use stop_token_ids",
                           400, "stop")
    if body.get("stream"):
        raise RequestError("'stream' is not supported by glmv serve", 400, "stream")
    return out


# ----------------------------------------------------------------------------- vLLM dialect


@dataclass
class OpenAIRequest:
    specs: list[GenSpec]
    logprobs: bool
    return_token_ids: bool
    tokens_as_ids: bool


def parse_completions(body: dict, limits: Limits, tokenize) -> OpenAIRequest:
    """``/v1/completions``: ``tokenize(text, add_special_tokens)`` encodes text prompts."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        if not prompt:
            raise RequestError("'prompt' must not be empty", 400, "prompt")
        prompts = [tokenize(prompt, _bool(body, "add_special_tokens", True))]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        if len(prompt) > MAX_PROMPTS:
            raise RequestError(f"'prompt' holds {len(prompt)} prompts; at most {MAX_PROMPTS} per request",
                               400, "prompt")
        prompts = [token_ids(p, f"prompt[{i}]", limits) for i, p in enumerate(prompt)]
    elif isinstance(prompt, list):
        prompts = [token_ids(prompt, "prompt", limits)]
    else:
        raise RequestError("'prompt' must be text, a list of token ids or a list of token-id lists", 400, "prompt")
    lp = body.get("logprobs")
    if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int) or lp != 0):
        raise RequestError(f"'logprobs' must be 0 (the sampled token's log-prob) or null; glmv serve returns "
                           f"no top-k alternatives, got {lp!r}", 400, "logprobs")
    plp = _prompt_logprobs(body)
    common = _sampling(body, limits, max_key="max_tokens", default_max=16, seed_key="seed", ext_key="vllm_xargs")
    specs = [GenSpec(prompt_ids=p, prompt_logprobs=plp, **common) for p in prompts]
    return OpenAIRequest(specs, lp is not None, _bool(body, "return_token_ids", False),
                         _bool(body, "return_tokens_as_token_ids", False))


def _prompt_logprobs(body: dict) -> bool:
    v = body.get("prompt_logprobs")
    if v is None:
        return False
    if isinstance(v, bool) or not isinstance(v, int) or v != 0:
        raise RequestError(f"'prompt_logprobs' must be 0 (each prompt token's own log-prob) or null, got {v!r}",
                           400, "prompt_logprobs")
    return True


@dataclass
class ChatRequest:
    request: OpenAIRequest
    messages: list[dict]           # record-format messages (image parts as {"type": "image"})
    continue_final: bool
    enable_thinking: bool


def parse_chat(body: dict, limits: Limits, decode_image) -> ChatRequest:
    """``/v1/chat/completions``; ``decode_image(url)`` turns a ``data:`` URL into a PIL image."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RequestError("'messages' must be a non-empty list", 400, "messages")
    out, images = [], []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"'messages[{i}]' must be an object with role system, user or assistant", 400,
                               "messages")
        out.append({"role": m["role"], "content": _content(m.get("content"), i, images, decode_image)})
    add_gen = _bool(body, "add_generation_prompt", True)
    cont = _bool(body, "continue_final_message", False)
    if cont and add_gen:
        raise RequestError("'continue_final_message' needs 'add_generation_prompt': false", 400,
                           "continue_final_message")
    if cont and out[-1]["role"] != "assistant":
        raise RequestError("'continue_final_message' needs the last message to be the assistant's", 400,
                           "continue_final_message")
    if not cont and out[-1]["role"] == "assistant":
        raise RequestError("the last message is the assistant's: set 'continue_final_message': true and "
                           "'add_generation_prompt': false to continue it", 400, "messages")
    kw = body.get("chat_template_kwargs") or {}
    if not isinstance(kw, dict):
        raise RequestError("'chat_template_kwargs' must be an object", 400, "chat_template_kwargs")
    thinking = _bool(kw, "enable_thinking", True, "chat_template_kwargs.")
    if body.get("logprobs") not in (None, False, True):
        raise RequestError("'logprobs' must be true or false", 400, "logprobs")
    top = body.get("top_logprobs")
    if top not in (None, 0):
        raise RequestError(f"'top_logprobs' must be 0 or null; glmv serve returns no top-k alternatives, "
                           f"got {top!r}", 400, "top_logprobs")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    common = _sampling(body, limits, max_key=key, default_max=limits.max_tokens, seed_key="seed",
                       ext_key="vllm_xargs")
    spec = GenSpec(prompt_ids=[], images=images, prompt_logprobs=_prompt_logprobs(body), **common)
    req = OpenAIRequest([spec], bool(body.get("logprobs")), _bool(body, "return_token_ids", False),
                        _bool(body, "return_tokens_as_token_ids", False))
    return ChatRequest(req, out, cont, thinking)


def _content(content: Any, i: int, images: list, decode_image) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"'messages[{i}].content' must be text or a list of parts", 400, "messages")
    parts = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text" and isinstance(p.get("text"), str):
            parts.append({"type": "text", "text": p["text"]})
        elif kind == "image_url" and isinstance(p.get("image_url"), dict) and isinstance(p["image_url"].get("url"), str):
            images.append(decode_image(p["image_url"]["url"], f"messages[{i}].content[{j}].image_url.url"))
            parts.append({"type": "image"})
        else:
            raise RequestError(f"'messages[{i}].content[{j}]' must be a text part or an image_url part with a "
                               "data: URL", 400, "messages")
    return parts


# ----------------------------------------------------------------------------- SGLang dialect


@dataclass
class SGLangRequest:
    spec: GenSpec
    return_logprob: bool
    logprob_start_len: int
    text_in_logprobs: bool


def parse_generate(body: dict, limits: Limits, tokenize, decode_image) -> SGLangRequest:
    """SGLang's ``/generate`` (one prompt per request)."""
    if body.get("input_ids") is not None:
        ids = body["input_ids"]
        if isinstance(ids, list) and ids and isinstance(ids[0], list):
            raise RequestError("batched 'input_ids' are not supported by glmv serve; send one prompt per request",
                               400, "input_ids")
        prompt = token_ids(ids, "input_ids", limits)
    elif isinstance(body.get("text"), str) and body["text"]:
        prompt = tokenize(body["text"], False)
    else:
        raise RequestError("give 'input_ids' (a list of token ids) or 'text'", 400, "input_ids")
    raw = body.get("image_data")
    raw = [] if raw is None else raw if isinstance(raw, list) else [raw]
    images = []
    for j, item in enumerate(raw):
        if not isinstance(item, str):
            raise RequestError(f"'image_data[{j}]' must be a data: URL or base64 string", 400, "image_data")
        images.append(decode_image(item if item.startswith("data:") else "data:image/png;base64," + item,
                                   f"image_data[{j}]"))
    sp = body.get("sampling_params") or {}
    if not isinstance(sp, dict):
        raise RequestError("'sampling_params' must be an object", 400, "sampling_params")
    if _int(body, "top_logprobs_num", 0, 0, 0) != 0:
        raise RequestError("'top_logprobs_num' must be 0", 400, "top_logprobs_num")
    common = _sampling(sp, limits, max_key="max_new_tokens", default_max=128, seed_key="sampling_seed",
                       ext_key="custom_params", where="sampling_params.")
    start = _int(body, "logprob_start_len", -1, -1, len(prompt) + 4096)
    want = _bool(body, "return_logprob", False)
    spec = GenSpec(prompt_ids=prompt, images=images, prompt_logprobs=want and start >= 0, **common)
    return SGLangRequest(spec, want, start, _bool(body, "return_text_in_logprobs", False))


# ----------------------------------------------------------------------------- responses


@dataclass
class Choice:
    """One sampled sequence: ``token_ids`` end with the stop token when there is one (vLLM keeps it
    in ``token_ids`` and the log-probs); ``text`` does not hold it."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str            # "stop" | "length"
    stop_reason: int | None       # the stop_token_ids entry that ended it (None for EOS or length)
    text: str


@dataclass
class SpecResult:
    prompt_ids: list[int]                       # as the model saw them (image tokens expanded)
    choices: list[Choice]
    prompt_logprobs: list | None = None         # [None, (logprob, rank), ...] per prompt token


def _token_name(tok, t: int, as_ids: bool) -> str:
    return f"token_id:{t}" if as_ids else str(tok.convert_ids_to_tokens(int(t)))


def _vllm_prompt_logprobs(tok, res: SpecResult) -> list | None:
    if res.prompt_logprobs is None:
        return None
    out: list = []
    for t, v in zip(res.prompt_ids, res.prompt_logprobs):
        out.append(None if v is None else {str(t): {"logprob": v[0], "rank": v[1],
                                                     "decoded_token": tok.decode([t], skip_special_tokens=False)}})
    return out


def _usage(results: list[SpecResult]) -> dict:
    p = sum(len(r.prompt_ids) for r in results)
    c = sum(len(ch.token_ids) for r in results for ch in r.choices)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completions_response(req: OpenAIRequest, results: list[SpecResult], tok, model: str, rid: str,
                         created: int) -> dict:
    choices = []
    for res in results:  # prompt-major, as vLLM orders them
        for ch in res.choices:
            c: dict[str, Any] = {"index": len(choices), "text": ch.text, "finish_reason": ch.finish_reason,
                                 "stop_reason": ch.stop_reason, "logprobs": None}
            if req.logprobs:
                names = [_token_name(tok, t, req.tokens_as_ids) for t in ch.token_ids]
                pieces = [tok.decode([t], skip_special_tokens=False) for t in ch.token_ids]
                offsets, at = [], 0
                for s in pieces:
                    offsets.append(at)
                    at += len(s)
                c["logprobs"] = {"tokens": names, "token_logprobs": list(ch.logprobs),
                                 "top_logprobs": [{n: lp} for n, lp in zip(names, ch.logprobs)],
                                 "text_offset": offsets}
            if req.return_token_ids:
                c["token_ids"] = list(ch.token_ids)
                c["prompt_token_ids"] = list(res.prompt_ids)
            plp = _vllm_prompt_logprobs(tok, res)
            if plp is not None:
                c["prompt_logprobs"] = plp
            choices.append(c)
    return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": _usage(results)}


def chat_response(req: OpenAIRequest, res: SpecResult, tok, model: str, rid: str, created: int) -> dict:
    choices = []
    for j, ch in enumerate(res.choices):
        c: dict[str, Any] = {"index": j, "message": {"role": "assistant", "content": ch.text},
                             "finish_reason": ch.finish_reason, "stop_reason": ch.stop_reason, "logprobs": None}
        if req.logprobs:
            c["logprobs"] = {"content": [
                {"token": _token_name(tok, t, req.tokens_as_ids), "logprob": lp,
                 "bytes": list(tok.decode([t], skip_special_tokens=False).encode("utf-8")), "top_logprobs": []}
                for t, lp in zip(ch.token_ids, ch.logprobs)]}
        if req.return_token_ids:
            c["token_ids"] = list(ch.token_ids)
        choices.append(c)
    out = {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
           "usage": _usage([res])}
    if req.return_token_ids:
        out["prompt_token_ids"] = list(res.prompt_ids)
    plp = _vllm_prompt_logprobs(tok, res)
    if plp is not None:
        out["prompt_logprobs"] = plp
    return out


def generate_response(req: SGLangRequest, res: SpecResult, tok, rid: str) -> dict | list:
    """SGLang's shape: one object for n = 1, a list of n objects otherwise."""
    outs = []
    for j, ch in enumerate(res.choices):
        fin: dict[str, Any] = ({"type": "stop", "matched": ch.token_ids[-1]} if ch.finish_reason == "stop"
                               else {"type": "length", "length": len(ch.token_ids)})
        meta: dict[str, Any] = {"id": f"{rid}-{j}" if len(res.choices) > 1 else rid, "finish_reason": fin,
                                "prompt_tokens": len(res.prompt_ids), "completion_tokens": len(ch.token_ids)}
        if req.return_logprob:
            def name(t: int) -> str | None:
                return tok.decode([t], skip_special_tokens=False) if req.text_in_logprobs else None

            meta["output_token_logprobs"] = [[lp, t, name(t)] for t, lp in zip(ch.token_ids, ch.logprobs)]
            if res.prompt_logprobs is not None and req.logprob_start_len >= 0:
                k = min(req.logprob_start_len, len(res.prompt_ids))
                meta["input_token_logprobs"] = [[None if v is None else v[0], t, name(t)] for t, v in
                                                zip(res.prompt_ids[k:], res.prompt_logprobs[k:])]
        outs.append({"text": ch.text, "output_ids": list(ch.token_ids), "meta_info": meta})
    return outs[0] if len(outs) == 1 else outs


def error_body(message: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error object, which vLLM also returns."""
    kind = {400: "BadRequestError", 404: "NotFoundError", 405: "MethodNotAllowed", 411: "LengthRequired",
            413: "RequestTooLarge", 422: "UnprocessableEntity", 503: "ServiceUnavailable"}.get(status, "ServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}
