"""``--engine hf|server|vllm``: one option group, one meaning, for every stage that generates.

- ``hf``: ``HFEngine`` in the stage's own process (CPU or GPU; the default).
- ``server``: ``ServerEngine`` over one or more rollout servers (``--server-url``, repeatable):
  ``glmv serve``, ``vllm serve`` or SGLang (``--server-dialect``), least-loaded dispatch, retries
  with backoff. The stage never decodes itself; docs/rollout-servers.md has the launch commands.
- ``vllm``: ``VLLMEngine`` in process (GPU, ``pip install vllm``).

Every engine keeps the same rollout contract (``glmv_cli.generation.sampling``): per-rollout seeds,
token ids, per-token log-probs, finish reasons, forced answering, banned multimodal tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmv_cli.errors import GlmvError
from glmv_cli.options import opt

ENGINES = ("hf", "server", "vllm")


@dataclass
class EngineOptions:
    engine: str = opt("hf", "Rollout engine: hf (in this process), server (rollout servers at --server-url: "
                            "glmv serve, vllm serve or SGLang) or vllm (in process, GPU).", choices=ENGINES)
    server_url: list[str] = opt([], "Base URL of a rollout server, e.g. http://127.0.0.1:8000 (repeatable; "
                                    "requests go to the least-loaded).", metavar="URL")
    server_dialect: str = opt("vllm", "Request dialect of the servers: vllm (vllm serve and glmv serve) or sglang.",
                              choices=("vllm", "sglang"))
    server_timeout_s: float = opt(600.0, "Seconds a rollout request may take before it is retried.", gt=0)
    server_retries: int = opt(3, "Retries of a failed request (connection error, 429, 5xx) before the stage stops "
                                 "with an error naming the servers.", min=0)

    def check(self) -> None:
        if self.engine == "server" and not self.server_url:
            raise GlmvError("--engine server needs at least one --server-url (e.g. http://127.0.0.1:8000; start one "
                            "with glmv serve MODEL, vllm serve or SGLang: docs/rollout-servers.md)")
        if self.engine != "server" and self.server_url:
            raise GlmvError(f"--server-url is given but --engine is {self.engine}; pass --engine server")
        if self.engine == "vllm":
            from glmv_cli.generation.vllm import vllm_available

            if not vllm_available():
                raise GlmvError("--engine vllm needs the 'vllm' package and a GPU (pip install vllm); use --engine hf "
                                "or --engine server")


def server_engine(opts: EngineOptions, tokenizer: Any, config: Any, generation_config: Any,
                  model_tag: str) -> Any:
    """The ``ServerEngine`` these options describe, after every server answered ``/health``."""
    from glmv_cli.generation.server import ServerEngine

    engine = ServerEngine(opts.server_url, tokenizer, dialect=opts.server_dialect, config=config,
                          generation_config=generation_config, model_tag=model_tag,
                          timeout_s=opts.server_timeout_s, retries=opts.server_retries)
    engine.pool.wait_ready(timeout_s=min(120.0, opts.server_timeout_s))
    return engine
