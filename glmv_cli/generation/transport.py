"""JSON over HTTP to a pool of rollout servers: least-loaded dispatch, bounded concurrency,
timeouts, retries with exponential backoff.

Dispatch picks the server with the fewest requests in flight (ties: fewest recent failures, then
list order) among those below ``max_inflight``; a caller blocks while every server is full. This
spreads a burst evenly and lets a faster server take more. A request that fails for a reason that
may pass (connection refused or reset, timeout, HTTP 429 / 5xx) is retried up to ``retries`` times,
waiting ``backoff_s * 2**attempt`` (at most 30 s) before each retry, on the least-loaded server
again (so a dead server's work moves to the live ones: a server that just failed ranks last).
Any other 4xx is the request's fault and raises at once with the server's message. When every
attempt failed, :class:`GlmvError` names the servers, the attempts and the last error.

Standard library only (``http.client``): one connection per request, which costs ~1 ms on
loopback against decode times of seconds.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any, Sequence
from urllib.parse import urlparse

from glmv_cli.errors import GlmvError

RETRYABLE_STATUS = (429, 500, 502, 503, 504)
HINT = "Check that the servers are running (glmv serve, vllm serve or sglang) and reachable"
MAX_BACKOFF_S = 30.0


class RetryableError(Exception):
    """A failure that may pass on retry (the server is down, busy or broke mid-request)."""


def _server_message(status: int, raw: bytes) -> str:
    """The message of an error body in any of the dialects' shapes, else the raw text."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        for k in ("error", "message", "detail"):
            if k in obj:
                return str(obj[k])
    return str(obj)[:500]


def check_url(url: str) -> str:
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise GlmvError(f"--server-url '{url}' must look like http://HOST:PORT")
    return url.rstrip("/")


class ServerPool:
    """The servers of one engine. ``post(path, body)`` returns the decoded JSON of a 200 answer."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 600.0, connect_timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.5, max_inflight: int = 64):
        if not urls:
            raise GlmvError("the server engine needs at least one --server-url")
        self.urls = [check_url(u) for u in urls]
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.retries, self.backoff_s, self.max_inflight = int(retries), float(backoff_s), max(1, int(max_inflight))
        self.inflight = [0] * len(self.urls)
        self.failures = [0] * len(self.urls)
        self.requests = [0] * len(self.urls)
        self._cv = threading.Condition()

    # ------------------------------------------------------------------ one attempt

    def request(self, url: str, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        """One HTTP exchange with one server; raises RetryableError or GlmvError."""
        u = urlparse(url)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=self.connect_timeout_s)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        try:
            conn.connect()
            conn.sock.settimeout(timeout_s if timeout_s is not None else self.timeout_s)
            conn.request(method, (u.path or "") + path, body=data,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut off
            kind = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else type(e).__name__
            raise RetryableError(f"{url}{path}: {kind}: {e}") from None
        finally:
            conn.close()
        if resp.status == 200:
            try:
                return json.loads(raw.decode("utf-8")) if raw else {}
            except (UnicodeDecodeError, ValueError):
                raise RetryableError(f"{url}{path}: answer is not JSON: {raw[:200]!r}") from None
        msg = _server_message(resp.status, raw)
        if resp.status in RETRYABLE_STATUS:
            raise RetryableError(f"{url}{path}: HTTP {resp.status}: {msg}")
        raise GlmvError(f"rollout server {url} refused {method} {path} (HTTP {resp.status}): {msg}")

    # ------------------------------------------------------------------ dispatch

    def _acquire(self, avoid: int | None) -> int:
        with self._cv:
            while True:
                free = [i for i in range(len(self.urls)) if self.inflight[i] < self.max_inflight]
                if free:
                    i = min(free, key=lambda k: (k == avoid and len(free) > 1, self.failures[k] > 0,
                                                 self.inflight[k], self.failures[k], k))
                    self.inflight[i] += 1
                    self.requests[i] += 1
                    return i
                self._cv.wait()

    def _release(self, i: int, ok: bool) -> None:
        with self._cv:
            self.inflight[i] -= 1
            self.failures[i] = 0 if ok else self.failures[i] + 1
            self._cv.notify()

    def post(self, path: str, body: Any) -> Any:
        """POSTs to the least-loaded server, retrying as the module docstring says."""
        errors: list[str] = []
        last: int | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1)))
            i = self._acquire(last)
            try:
                out = self.request(self.urls[i], "POST", path, body)
            except RetryableError as e:
                self._release(i, False)
                errors.append(str(e))
                last = i
                continue
            except BaseException:
                self._release(i, True)
                raise
            self._release(i, True)
            return out
        tried = sorted({e.split(path)[0] for e in errors})
        raise GlmvError(f"rollout request POST {path} failed after {len(errors)} attempts on {', '.join(tried)}; "
                        f"last error: {errors[-1]}. {HINT}")

    def call(self, i: int, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        """One request to server ``i`` with the same retries and backoff."""
        err = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1)))
            try:
                return self.request(self.urls[i], method, path, body, timeout_s)
            except RetryableError as e:
                err = str(e)
        raise GlmvError(f"rollout request {method} {path} failed after {self.retries + 1} attempts on "
                        f"{self.urls[i]}; last error: {err}. {HINT}")

    def each(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> list[Any]:
        """The same request to every server, in parallel (``call``); answers in URL order."""
        results: list[Any] = [None] * len(self.urls)
        errs: list[BaseException | None] = [None] * len(self.urls)

        def one(i: int) -> None:
            try:
                results[i] = self.call(i, method, path, body, timeout_s)
            except BaseException as e:
                errs[i] = e

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(self.urls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errs:
            if e is not None:
                raise e
        return results

    def wait_ready(self, timeout_s: float = 60.0, path: str = "/health") -> None:
        """Blocks until every server answers ``GET /health`` with 200."""
        end = time.monotonic() + timeout_s
        for url in self.urls:
            while True:
                try:
                    self.request(url, "GET", path, timeout_s=5.0)
                    break
                except (RetryableError, GlmvError) as e:
                    if time.monotonic() > end:
                        raise GlmvError(f"rollout server {url} is not ready after {timeout_s:.0f}s ({e})") from None
                    time.sleep(0.2)
