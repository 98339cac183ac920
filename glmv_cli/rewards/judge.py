"""LLM judge for open answers over OpenAI-compatible ``/v1/chat/completions`` endpoints.

Each endpoint is asked whether the candidate answer matches the reference and must reply with a
verdict word first (``CORRECT`` / ``INCORRECT``, also ``YES`` / ``NO``). Per endpoint: up to
``1 + retries`` attempts with exponential backoff (``backoff_s`` * 2^k) on connection errors,
timeouts, HTTP 429/5xx and unreadable replies; a 4xx other than 429 is not retried. Endpoints that
give no verdict abstain. The reward is 1 when a strict majority of the verdicts that came back say
correct, so with 3 endpoints one broken server cannot flip the result and a 1-1 tie earns 0. When
no endpoint answers, :class:`JudgeError` is raised (the scorer turns it into reward 0 and counts it).

Replies are cached by the SHA-256 of the request (url, model, messages, sampling params — never the
API key) in memory, or on disk as one JSON file per key under ``cache_dir`` (written atomically),
so re-scoring a file or a repeated rollout costs no request. HTTP is the standard library's urllib.
API keys come from the environment variable named by ``api_key_env``; they are sent in the
Authorization header only and appear in no log, cache file, error message or manifest.

Redirects are refused, never followed: urllib's default handler would re-send the request,
Authorization header included, to whatever host a 3xx names, and return that host's reply as if
it were the endpoint's. A 3xx is a non-retried failure of that endpoint (it abstains; with no
verdict from any endpoint the score is a counted ``JudgeError``), so the key only ever goes to the
configured URL and a verdict only ever comes from it. Configure the final URL instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM = ("You grade answers. Compare the candidate answer with the reference answer for the "
          "question. Reply with exactly one word first: CORRECT if the candidate means the same as "
          "the reference, INCORRECT otherwise (hedged or multiple answers are INCORRECT).")
_VERDICT = re.compile(r"^\W*(correct|incorrect|yes|no|true|false)\b", re.IGNORECASE)


class JudgeError(RuntimeError):
    """No endpoint produced a verdict."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    model: str
    api_key_env: str | None = None

    def __repr__(self) -> str:  # never shows a key; there is none stored here anyway
        return f"Endpoint({self.url!r}, model={self.model!r})"


@dataclass
class JudgeConfig:
    endpoints: list[Endpoint]
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.5
    temperature: float = 0.0
    max_tokens: int = 16
    cache_dir: str | None = None  # None: in-memory cache
    system_prompt: str = SYSTEM


def parse_verdict(text: str) -> bool | None:
    """True/False from the reply's first word, None when it is not a verdict."""
    m = _VERDICT.match(text or "")
    if not m:
        return None
    return m.group(1).lower() in ("correct", "yes", "true")


class _Retryable(Exception):
    pass


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an HTTPError instead of a new request (see the module docstring)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class Judge:
    """A majority-vote judge over several endpoints with a response cache."""

    def __init__(self, cfg: JudgeConfig):
        if not cfg.endpoints:
            raise ValueError("the judge needs at least one endpoint")
        self.cfg = cfg
        self._mem: dict[str, str] = {}
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests actually sent (tests and the manifest read this)

    # -- cache ------------------------------------------------------------------------------
    def _get(self, key: str) -> str | None:
        if self.cfg.cache_dir is None:
            with self._lock:
                return self._mem.get(key)
        f = Path(self.cfg.cache_dir) / key[:2] / f"{key}.json"
        try:
            return json.loads(f.read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _put(self, key: str, reply: str) -> None:
        if self.cfg.cache_dir is None:
            with self._lock:
                self._mem[key] = reply
            return
        d = Path(self.cfg.cache_dir) / key[:2]
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"reply": reply}), encoding="utf-8")
        os.replace(tmp, d / f"{key}.json")

    # -- one endpoint ---------------------------------------------------------------------------
    def body(self, ep: Endpoint, question: str, reference: str, answer: str) -> dict[str, Any]:
        user = f"Question:\n{question}\n\nReference answer:\n{reference}\n\nCandidate answer:\n{answer}"
        return {"model": ep.model, "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens,
                "messages": [{"role": "system", "content": self.cfg.system_prompt},
                             {"role": "user", "content": user}]}

    @staticmethod
    def cache_key(ep: Endpoint, body: dict[str, Any]) -> str:
        blob = json.dumps({"url": ep.url, "body": body}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _post(self, ep: Endpoint, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(ep.api_key_env) if ep.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(ep.url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                     method="POST")
        with self._lock:
            self.requests += 1
        try:
            with _OPENER.open(req, timeout=self.cfg.timeout_s) as resp:
                if resp.geturl() != ep.url:  # belt and braces: a reply from elsewhere is no verdict
                    raise JudgeError(f"{ep.url}: the reply came from another URL; refused")
                raw = resp.read(1 << 20)
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}") from None
            if 300 <= e.code < 400:
                raise JudgeError(f"{ep.url}: HTTP {e.code} redirect refused (the judge never follows "
                                 "redirects; configure the final URL)") from None
            raise JudgeError(f"{ep.url}: HTTP {e.code}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise _Retryable(f"{type(reason).__name__}: {reason}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("malformed reply (no choices[0].message.content)") from None
        if not isinstance(content, str) or parse_verdict(content) is None:
            raise _Retryable("reply holds no verdict")
        return content

    def ask(self, ep: Endpoint, question: str, reference: str, answer: str) -> bool | None:
        """One endpoint's verdict, or None when it gave none after its retries."""
        body = self.body(ep, question, reference, answer)
        key = self.cache_key(ep, body)
        cached = self._get(key)
        if cached is not None:
            return parse_verdict(cached)
        for attempt in range(self.cfg.retries + 1):
            try:
                reply = self._post(ep, body)
            except _Retryable:
                if attempt < self.cfg.retries:
                    time.sleep(self.cfg.backoff_s * (2 ** attempt))
                continue
            except JudgeError:
                return None
            self._put(key, reply)
            return parse_verdict(reply)
        return None

    def verdicts(self, question: str, reference: str, answer: str) -> list[bool | None]:
        if len(self.cfg.endpoints) == 1:
            return [self.ask(self.cfg.endpoints[0], question, reference, answer)]
        out: list[bool | None] = [None] * len(self.cfg.endpoints)

        def run(i: int, ep: Endpoint) -> None:
            out[i] = self.ask(ep, question, reference, answer)

        threads = [threading.Thread(target=run, args=(i, ep), daemon=True)
                   for i, ep in enumerate(self.cfg.endpoints)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def score(self, question: str, reference: str, answer: str) -> float:
        votes = [v for v in self.verdicts(question, reference, answer) if v is not None]
        if not votes:
            raise JudgeError(f"no verdict from any of {len(self.cfg.endpoints)} judge endpoint(s)")
        return 1.0 if sum(votes) * 2 > len(votes) else 0.0


def judge_config(d: dict[str, Any]) -> JudgeConfig:
    """Builds a JudgeConfig from the ``judge`` options of rewards.yaml (already key-checked)."""
    eps = d.get("endpoints")
    if not isinstance(eps, list) or not eps:
        raise ValueError("'endpoints' must be a non-empty list of {url, model, api_key_env?}")
    endpoints = []
    for i, e in enumerate(eps):
        if not isinstance(e, dict) or not isinstance(e.get("url"), str) or not isinstance(e.get("model"), str):
            raise ValueError(f"endpoints[{i}] must have string 'url' and 'model'")
        extra = set(e) - {"url", "model", "api_key_env"}
        if extra:
            raise ValueError(f"endpoints[{i}]: unknown key(s) {', '.join(sorted(extra))}; "
                             "put keys in the environment and name the variable with 'api_key_env'")
        endpoints.append(Endpoint(e["url"], e["model"], e.get("api_key_env")))
    cfg = JudgeConfig(endpoints=endpoints)
    for k in ("timeout_s", "backoff_s", "temperature"):
        if k in d:
            setattr(cfg, k, float(d[k]))
    for k in ("retries", "max_tokens"):
        if k in d:
            setattr(cfg, k, int(d[k]))
    if d.get("cache_dir") is not None:
        cfg.cache_dir = str(d["cache_dir"])
    if "system_prompt" in d:
        cfg.system_prompt = str(d["system_prompt"])
    return cfg


JUDGE_OPTIONS = ("endpoints", "timeout_s", "retries", "backoff_s", "temperature", "max_tokens",
                 "cache_dir", "system_prompt")
