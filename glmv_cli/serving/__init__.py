"""``glmv serve``: an OpenAI-compatible (vLLM dialect) and SGLang-compatible HTTP server over the
in-process HF engine.

It is the CPU stand-in for a vLLM or SGLang server in tests, and a small-model server on its own.
Modules: ``protocol`` (request fields of both dialects -> one internal request, responses),
``runtime`` (prompt preparation, a batching worker over ``HFEngine.decode``, weight reload),
``http`` (the bounded ``ThreadingHTTPServer``), ``weights`` (write / load safetensors snapshots).
The client is ``glmv_cli.generation.server.ServerEngine``; the wire protocol, the fields it shares
with vLLM and SGLang, and the launch commands for real servers are in docs/rollout-servers.md.
"""
