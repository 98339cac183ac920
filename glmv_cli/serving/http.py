"""The HTTP layer of ``glmv serve``: standard-library ``ThreadingHTTPServer``, bounded and defensive.

Bounds: at most ``max_connections`` requests are handled at once (one more gets ``503`` at once,
with ``Retry-After``); a body needs ``Content-Length`` (411) of at most ``max_request_bytes`` (413,
the body is not read); a client that sends nothing for ``read_timeout_s`` is dropped. Every failure
is a JSON error object (OpenAI's ``{"error": {"message", "type", "param", "code"}}``; SGLang's
``{"success": false, "message"}`` on its weight endpoint) and the connection is closed; no request
can stop the server. Routes (see docs/rollout-servers.md):

    GET  /health  /v1/models  /get_world_size
    POST /v1/completions  /v1/chat/completions           vLLM / OpenAI dialect
    POST /generate                                         SGLang dialect
    POST /collective_rpc {"method": "reload_weights"}      vLLM: reload the served directory
    POST /update_weights_from_disk {"model_path": DIR}     SGLang: reload from DIR
    POST /reset_prefix_cache  /flush_cache                 accepted (glmv serve caches no prefixes)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from glmv_cli.serving import protocol as P
from glmv_cli.serving.runtime import ModelRuntime


class GlmvHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog of 5 makes Linux drop the SYNs of a burst of clients,
    # which then retry after a second: a rollout client opens dozens of connections at once
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], runtime: ModelRuntime, *, max_connections: int = 256,
                 max_request_bytes: int = 64 << 20, read_timeout_s: float = 60.0, log=None):
        self.runtime, self.max_request_bytes, self.read_timeout_s = runtime, max_request_bytes, read_timeout_s
        self.slots = threading.BoundedSemaphore(max(1, max_connections))
        self._active_lock = threading.Lock()
        self.active = 0  # requests being handled now (a test and /health can read it)
        self.log = log or (lambda s: None)
        super().__init__(addr, Handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                body = json.dumps(P.error_body("server busy: too many concurrent requests", 503)).encode()
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                                str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._active_lock:
            self.active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self.active -= 1
            self.slots.release()


class Handler(BaseHTTPRequestHandler):
    server: GlmvHTTPServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout_s)

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request, through the stage's log
        self.server.log(f"{self.address_string()} {fmt % args}")

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _error(self, status: int, message: str, param: str | None = None) -> None:
        self._send(status, P.error_body(message, status, param))

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            raise P.RequestError("a request body needs a Content-Length header", 411)
        try:
            n = int(length)
        except ValueError:
            raise P.RequestError(f"bad Content-Length {length!r}", 400) from None
        if n < 0 or n > self.server.max_request_bytes:
            raise P.RequestError(f"request body of {n} bytes exceeds the limit of {self.server.max_request_bytes}",
                                 413)
        raw = self.rfile.read(n)
        if len(raw) != n:
            raise P.RequestError(f"request body ended after {len(raw)} of {n} bytes", 400)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, ValueError) as e:
            raise P.RequestError(f"request body is not valid JSON ({e})", 400) from None
        if not isinstance(body, dict):
            raise P.RequestError("request body must be a JSON object", 400)
        return body

    def _check_model(self, body: dict) -> None:
        m = body.get("model")
        if m is not None and m != self.server.runtime.name:
            raise P.RequestError(f"The model `{m}` does not exist; this server serves `{self.server.runtime.name}`",
                                 404, "model")

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        rt = self.server.runtime
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in ("/health", "/health_generate"):
            self._send(200, {"status": "ok", "weight_version": rt.weight_version, **rt.stats})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": rt.name, "object": "model", "created": 0,
                                                         "owned_by": "glmv", "max_model_len": rt.limits.max_model_len}]})
        elif path == "/get_world_size":
            self._send(200, {"world_size": 1})
        else:
            self._error(404, f"no route GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        routes = {"/v1/completions": self._completions, "/v1/chat/completions": self._chat,
                  "/generate": self._generate, "/collective_rpc": self._collective_rpc,
                  "/update_weights_from_disk": self._update_from_disk,
                  "/reset_prefix_cache": self._accept, "/flush_cache": self._accept}
        fn = routes.get(path)
        try:
            if fn is None:
                self.rfile.read(min(int(self.headers.get("Content-Length") or 0), self.server.max_request_bytes))
                raise P.RequestError(f"no route POST {path}", 404)
            fn(self._body())
        except P.RequestError as e:
            if path == "/update_weights_from_disk":
                self._send(e.status, {"success": False, "message": str(e)})
            else:
                self._error(e.status, str(e), e.param)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # never let a request take the server down
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _completions(self, body: dict) -> None:
        rt = self.server.runtime
        self._check_model(body)
        req = P.parse_completions(body, rt.limits, rt.tokenize)
        res = rt.run(req.specs)
        self._send(200, P.completions_response(req, res, rt.tok, rt.name, f"cmpl-{uuid.uuid4().hex}", int(time.time())))

    def _chat(self, body: dict) -> None:
        rt = self.server.runtime
        self._check_model(body)
        chat = P.parse_chat(body, rt.limits, rt.decode_image)
        spec = chat.request.specs[0]
        rt.render_chat(chat, spec)
        res = rt.run([spec])[0]
        self._send(200, P.chat_response(chat.request, res, rt.tok, rt.name, f"chatcmpl-{uuid.uuid4().hex}",
                                        int(time.time())))

    def _generate(self, body: dict) -> None:
        rt = self.server.runtime
        req = P.parse_generate(body, rt.limits, rt.tokenize, rt.decode_image)
        res = rt.run([req.spec])[0]
        self._send(200, P.generate_response(req, res, rt.tok, uuid.uuid4().hex))

    def _collective_rpc(self, body: dict) -> None:
        rt = self.server.runtime
        method = body.get("method")
        if method != "reload_weights":
            raise P.RequestError(f"method {method!r} is not supported by glmv serve (supported: reload_weights)",
                                 400, "method")
        if rt.model_dir is None:
            raise P.RequestError("this server was started from a preset, not a directory: reload_weights reloads "
                                 "the served directory; use /update_weights_from_disk with a model_path", 400, "method")
        info = rt.reload(rt.model_dir)
        self.server.log(f"reloaded {info['tensors']} tensors from {rt.model_dir} in {info['seconds']:.3f}s")
        self._send(200, {"results": [None]})

    def _update_from_disk(self, body: dict) -> None:
        rt = self.server.runtime
        path = body.get("model_path")
        if not isinstance(path, str) or not path:
            raise P.RequestError("'model_path' must be the path of a safetensors directory", 400, "model_path")
        info = rt.reload(path)
        self.server.log(f"reloaded {info['tensors']} tensors from {path} in {info['seconds']:.3f}s")
        self._send(200, {"success": True, "message": f"loaded {info['tensors']} tensors ({info['bytes']} bytes) "
                         f"from {path}", "num_paused_requests": 0, "weight_version": info["weight_version"]})

    def _accept(self, body: dict) -> None:
        self._send(200, {"success": True, "message": "glmv serve keeps no prefix cache"})
