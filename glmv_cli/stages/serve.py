"""``glmv serve MODEL``: serve a model over HTTP in vLLM's OpenAI dialect and SGLang's ``/generate``.

Load the model (a glmv model artifact, a Hugging Face directory, or a preset) → one worker thread
that batches requests through the HF engine → a bounded ``ThreadingHTTPServer`` on ``--host``
(loopback by default: the server has no authentication) until SIGINT / SIGTERM. With ``--port 0``
the system picks a free port; the ``listening on`` line names it. A server started from a
directory reloads that directory on ``POST /collective_rpc {"method": "reload_weights"}`` (what
the ``server`` rollout engine's disk weight sync sends); any server reloads a given directory on
``POST /update_weights_from_disk``. Wire protocol: docs/rollout-servers.md.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError
from glmv_cli.options import opt

DOC = ("Serve a model over HTTP (vLLM's /v1/completions and /v1/chat/completions, SGLang's /generate, "
       "weight reload) for the server rollout engine or as a small-model server.")


@dataclass
class ServeOptions:
    model: str = opt(help="Model: a glmv model artifact, a Hugging Face model directory, or a preset (tiny).",
                     argument=True, metavar="MODEL")
    host: str = opt("127.0.0.1", "Address to bind. The server has no authentication: keep it on loopback or a "
                                 "private network.")
    port: int = opt(8000, "Port to bind (0: a free port, printed on the 'listening on' line).", min=0, max=65535)
    served_model_name: str = opt("", "Model name in /v1/models and the 'model' field (default: MODEL).")
    dtype: str = opt("fp32", "Weights dtype.", choices=("fp32", "bf16"))
    device: str = opt("cpu", "Device, e.g. cpu or cuda:0.")
    max_batch_rows: int = opt(64, "Most sequences (all choices of all waiting requests) decoded in one batch.",
                              min=1)
    batch_window_ms: float = opt(10.0, "How long the worker waits after a request for more to batch with it.",
                                 min=0, max=10000)
    max_connections: int = opt(256, "Requests handled at once; one more gets 503 with Retry-After.", min=1)
    max_request_mb: float = opt(64.0, "Largest request body (MiB); larger gets 413.", gt=0)
    max_tokens: int = opt(4096, "Largest max_tokens a request may ask for.", min=1)
    seed: int = opt(0, "Random init seed of a preset model.")

    def check(self) -> None:
        if not self.host:
            raise GlmvError("--host must not be empty")


def build_server(opts: ServeOptions, log=None):
    """(HTTP server, runtime) for ``opts``, bound but not yet serving."""
    import torch

    from glmv_cli.modeling import load
    from glmv_cli.serving.http import GlmvHTTPServer
    from glmv_cli.serving.runtime import ModelRuntime

    p = Path(opts.model)
    model_dir = str(p.resolve()) if p.is_dir() else None
    if p.exists() and not (p / "config.json").is_file():
        raise GlmvError(f"MODEL '{p}' is not a model directory (no config.json)")
    model, processor = load(opts.model, dtype=opts.dtype, seed=opts.seed)
    if processor is None:
        raise GlmvError(f"MODEL '{opts.model}' has no tokenizer; serve a directory with its tokenizer files")
    try:
        model.to(torch.device(opts.device))
    except (RuntimeError, AssertionError) as e:
        raise GlmvError(f"--device '{opts.device}' is not usable ({e})") from None
    model.eval()
    runtime = ModelRuntime(model, processor, name=opts.served_model_name or opts.model, model_dir=model_dir,
                           max_batch_rows=opts.max_batch_rows, batch_window_s=opts.batch_window_ms / 1000.0,
                           max_tokens=opts.max_tokens)
    try:
        server = GlmvHTTPServer((opts.host, opts.port), runtime, max_connections=opts.max_connections,
                                max_request_bytes=int(opts.max_request_mb * (1 << 20)), log=log)
    except OSError as e:
        runtime.close()
        raise GlmvError(f"cannot bind {opts.host}:{opts.port} ({e})") from None
    return server, runtime


def serve(opts: ServeOptions) -> None:
    from glmv_cli import options as O

    O.validate(opts, 1)
    server, runtime = build_server(opts, log=lambda s: print(s, file=sys.stderr, flush=True))
    host, port = server.server_address[:2]
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"listening on http://{host}:{port} (model {runtime.name})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        runtime.close()


def register(app: Any) -> None:
    from glmv_cli.cli import add_command

    add_command(app, "serve", serve, ServeOptions, doc=DOC)
