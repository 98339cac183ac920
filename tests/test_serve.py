"""``glmv serve`` and the ``server`` rollout engine, end to end on 127.0.0.1 (tiny model, CPU).

Real server subprocesses; every check compares with the in-process engine or a full forward of the
learner: token ids and log-probs equal the learner's forward, forced answering equals HFEngine,
seeds reproduce, a disk weight sync changes the server's log-probs to the updated model's, a killed
server is retried and then reported, and bad requests get 4xx JSON errors.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
from urllib.parse import urlparse

import pytest
import torch

from glmv_cli.testing.tiny import full_forward_logprobs

from glmv_cli.errors import GlmvError
from glmv_cli.generation import HFEngine, Prompt, SamplingParams
from glmv_cli.generation.server import ServerEngine, continuation_seed
from glmv_cli.testing.serve import start_servers

# fp32 on CPU: the server's batched KV-cache decode and the learner's single full forward add the
# same terms in a different order; the observed gap is ~1e-6
TOL = 1e-5
IMAGE_ID = 2039  # the tiny preset's <|image|>


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from glmv_cli.modeling import load, save

    model, proc = load("tiny")
    d = tmp_path_factory.mktemp("tiny-model")
    save(model, proc, d)
    return model.eval(), proc, d


@pytest.fixture(scope="module")
def servers(tiny):
    srv = start_servers(str(tiny[2]), count=2)
    yield srv
    for s in srv:
        s.stop()


def _image_prompts(proc, tmp_path):
    from PIL import Image

    from glmv_cli.data.chat_tokens import encode_chat

    out = []
    g = torch.Generator().manual_seed(0)
    for i, (q, wh) in enumerate([("How many circles?", (56, 56)), ("Read the text, carefully.", (84, 56))]):
        px = (torch.rand(wh[1], wh[0], 3, generator=g) * 255).to(torch.uint8).numpy()
        path = tmp_path / f"img{i}.png"
        Image.fromarray(px).save(path)
        msgs = [{"role": "user", "content": f"<image>{q}"}]
        with Image.open(path) as im:
            enc = proc.image_processor(images=[im.convert("RGB")], return_tensors="pt")
        counts = [int(enc["image_grid_thw"][0].prod()) // 4]
        ids = encode_chat(proc.tokenizer, msgs, image_token_counts=counts, add_generation_prompt=True)["input_ids"]
        out.append(Prompt(f"img{i}", ids, enc["pixel_values"], enc["image_grid_thw"], messages=msgs,
                          images=[str(path)]))
    return out


def _text_prompts(proc):
    from glmv_cli.data.chat_tokens import encode_chat

    out = []
    for i, q in enumerate(["What is 2+3?", "Name three colours, then stop."]):
        msgs = [{"role": "user", "content": q}]
        ids = encode_chat(proc.tokenizer, msgs, add_generation_prompt=True)["input_ids"]
        out.append(Prompt(f"txt{i}", ids, messages=msgs))
    return out


def _engine(tiny, servers, dialect="vllm", **kw):
    model, proc, _ = tiny
    return ServerEngine([s.url for s in servers], proc.tokenizer, dialect=dialect, config=model.config,
                        generation_config=model.generation_config, retries=kw.pop("retries", 2),
                        backoff_s=kw.pop("backoff_s", 0.05), **kw)




def _same(a, b, tol=TOL):
    for ra, rb in zip(sum(a, []), sum(b, [])):
        assert (ra.prompt_id, ra.index, ra.seed) == (rb.prompt_id, rb.index, rb.seed)
        assert ra.token_ids == rb.token_ids and ra.forced == rb.forced
        assert ra.finish_reason == rb.finish_reason and ra.text == rb.text
        assert max(abs(x - y) for x, y in zip(ra.logprobs, rb.logprobs)) < tol


def test_server_tokens_and_logprobs_equal_the_learner_forward(tiny, servers, tmp_path):
    model, proc, _ = tiny
    prompts = _text_prompts(proc) + _image_prompts(proc, tmp_path)
    sp = SamplingParams(max_new_tokens=10)
    eng = _engine(tiny, servers)
    out = eng.generate(prompts, sp, n=3, seed=11)
    ref = HFEngine(model, proc, batch_size=16).generate(prompts, sp, n=3, seed=11)
    _same(out, ref)
    worst, n_tok = 0.0, 0
    for p, rs in zip(prompts, out):
        for r in rs:
            full = full_forward_logprobs(model, p, r, eng.banned_token_ids)
            worst = max(worst, (full - torch.tensor(r.logprobs)).abs().max().item())
            n_tok += len(r.token_ids)
            assert r.prompt_ids == p.input_ids
    assert worst < TOL and n_tok >= 12 * 4
    assert eng.stats["requests"] == 12 and eng.banned_token_ids == HFEngine(model, proc).banned_token_ids
    # both servers took part (least-loaded dispatch spreads a burst)
    assert all(k > 0 for k in eng.pool.requests)


@pytest.mark.parametrize("dialect", ["vllm", "sglang"])
def test_forced_answering_through_the_server_equals_the_in_process_engine(tiny, servers, tmp_path, dialect):
    model, proc, _ = tiny
    # vllm dialect: text prompts (token ids end to end); sglang dialect: image prompts too (token ids +
    # image_data). The vllm dialect's image continuations re-tokenise text, see the next test.
    prompts = _text_prompts(proc) + (_image_prompts(proc, tmp_path) if dialect == "sglang" else [])
    tok = proc.tokenizer
    end, ans = tok.convert_tokens_to_ids("</think>"), tok.convert_tokens_to_ids("<answer>")
    sp = SamplingParams(max_new_tokens=12, thinking_budget=5, answer_budget=4)
    out = _engine(tiny, servers, dialect).generate(prompts, sp, n=3, seed=5)
    ref = HFEngine(model, proc, batch_size=16).generate(prompts, sp, n=3, seed=5)
    _same(out, ref)
    forced = [r for rs in out for r in rs if r.finish_reason == "forced"]
    assert len(forced) >= 4
    for r in forced:
        assert r.token_ids[5:7] == [end, ans] and r.forced[5:7] == [True, True]
        assert all(math.isfinite(x) for x in r.logprobs)


def test_vllm_dialect_image_continuation_and_seeds(tiny, servers, tmp_path):
    model, proc, _ = tiny
    prompts = _image_prompts(proc, tmp_path)
    sp = SamplingParams(max_new_tokens=10, thinking_budget=4, answer_budget=3)
    eng = _engine(tiny, servers)
    a = eng.generate(prompts, sp, n=2, seed=3)
    b = eng.generate(prompts, sp, n=2, seed=3)
    c = eng.generate(prompts, sp, n=2, seed=4)
    assert [[r.token_ids for r in x] for x in a] == [[r.token_ids for r in x] for x in b]
    assert [[r.token_ids for r in x] for x in a] != [[r.token_ids for r in x] for x in c]
    ref = HFEngine(model, proc, batch_size=16).generate(prompts, sp, n=2, seed=3)
    for ra, rb in zip(sum(a, []), sum(ref, [])):
        # phase 1 (up to the budget) is token ids end to end and must match; a continuation is a partial
        # assistant message the server re-tokenises, so it matches when the text round-trips
        assert ra.token_ids[:4] == rb.token_ids[:4] and ra.finish_reason == rb.finish_reason
        assert ra.forced == rb.forced or eng.stats["retokenized"] > 0
    assert sum(r.finish_reason == "forced" for rs in a for r in rs) >= 2


def test_continuation_seed_is_a_fresh_stream():
    assert continuation_seed(7, 5) == continuation_seed(7, 5) and 0 <= continuation_seed(7, 5) < 2 ** 63
    assert len({continuation_seed(7, 5), continuation_seed(7, 6), continuation_seed(8, 5), 7}) == 4


def _post(url, path, body, raw=None, headers=None):
    u = urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    data = raw if raw is not None else json.dumps(body).encode()
    c.request("POST", path, body=data, headers=headers or {"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    c.close()
    return out


def test_bad_requests_get_4xx_with_a_message(servers):
    url = servers[0].url
    cases = [
        ("/v1/completions", {"prompt": [1, 2, 99999], "max_tokens": 2}, 400, "must be a token id in [0, 2048)"),
        ("/v1/completions", {"prompt": [1, 2], "max_tokens": 0}, 400, "'max_tokens' must be in [1, 4096]"),
        ("/v1/completions", {"prompt": [1, 2], "top_p": 0}, 400, "'top_p' must be in (0.0, 1.0]"),
        ("/v1/completions", {"prompt": [1, 2], "n": 1000}, 400, "'n' must be in [1, 64]"),
        ("/v1/completions", {"prompt": [1, 2], "logit_bias": {"x": 1}}, 400, "key 'x' is not a token id"),
        ("/v1/completions", {"prompt": [1, 2], "logprobs": 5}, 400, "no top-k alternatives"),
        ("/v1/completions", {"prompt": [1, 2], "stream": True}, 400, "'stream' is not supported"),
        ("/v1/completions", {"prompt": [1, 2], "model": "other"}, 404, "The model `other` does not exist"),
        ("/v1/completions", {"prompt": {"a": 1}}, 400, "'prompt' must be text"),
        ("/v1/completions", {"prompt": [1] * 4200, "max_tokens": 4096}, 400, "exceeds the model's context"),
        ("/v1/chat/completions", {"messages": []}, 400, "'messages' must be a non-empty list"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}, 400, "must be a data: URL"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, 400, "not a decodable image"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "continue_final_message": True,
                                  "add_generation_prompt": False}, 400, "last message to be the assistant's"),
        ("/generate", {"input_ids": [1, 2], "sampling_params": {"temperature": -1}}, 400,
         "'sampling_params.temperature' must be in [0.0, 100.0]"),
        ("/generate", {"input_ids": [[1, 2], [3]]}, 400, "batched 'input_ids' are not supported"),
        ("/generate", {"input_ids": [1, IMAGE_ID, 2]}, 400, "image placeholder run(s)"),
        ("/collective_rpc", {"method": "sleep"}, 400, "method 'sleep' is not supported"),
        ("/nowhere", {}, 404, "no route POST /nowhere"),
    ]
    for path, body, status, msg in cases:
        got, obj = _post(url, path, body)
        assert got == status, (path, body, obj)
        assert msg in obj["error"]["message"], (msg, obj)
    got, obj = _post(url, "/v1/completions", None, raw=b"{not json")
    assert got == 400 and "not valid JSON" in obj["error"]["message"]
    got, obj = _post(url, "/update_weights_from_disk", {"model_path": "/nonexistent/dir"})
    assert got == 400 and obj["success"] is False and "does not exist" in obj["message"]
    got, obj = _post(url, "/v1/completions", None, raw=b"x" * 10, headers={"Content-Length": str(1 << 40)})
    assert got == 413 and "exceeds the limit" in obj["error"]["message"]
    # the server is still there and answers a good request
    got, obj = _post(url, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2, "seed": 1})
    assert got == 200 and len(obj["choices"][0]["text"]) >= 0 and obj["usage"]["completion_tokens"] == 2


def test_disk_weight_sync_changes_the_server_to_the_updated_model(tiny, tmp_path):
    from glmv_cli.generation.weight_sync import DiskWeightSync
    from glmv_cli.serving.weights import write_snapshot

    model, proc, src = tiny
    shared = tmp_path / "shared"
    learner = copy.deepcopy(model)
    write_snapshot(learner, proc, shared)  # step 0: the shared directory the servers serve
    (srv,) = start_servers(str(shared))
    try:
        prompts = _text_prompts(proc)
        sp = SamplingParams(max_new_tokens=8)
        for dialect in ("vllm", "sglang"):
            eng = _engine(tiny, [srv], dialect)
            before = eng.generate(prompts, sp, n=2, seed=1)
            with torch.no_grad():  # an optimizer step's worth of change
                for p in learner.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
            info = DiskWeightSync(eng, shared, proc).sync(learner)
            assert info["bytes"] >= 4 * sum(p.numel() for p in learner.parameters())
            assert info["seconds"] >= info["write_seconds"] > 0 and info["reload_seconds"] > 0
            after = eng.generate(prompts, sp, n=2, seed=1)
            ref = HFEngine(learner, proc, batch_size=8).generate(prompts, sp, n=2, seed=1)
            _same(after, ref)
            assert [r.token_ids for rs in after for r in rs] != [r.token_ids for rs in before for r in rs]
            for p, rs in zip(prompts, after):
                for r in rs:
                    full = full_forward_logprobs(learner, p, r, eng.banned_token_ids)
                    assert (full - torch.tensor(r.logprobs)).abs().max().item() < TOL
        assert sorted(x.name for x in shared.glob("*.safetensors")) == ["model-00001-of-00001.safetensors"]
    finally:
        srv.stop()


def test_killed_server_is_retried_then_reported(tiny, servers):
    _, proc, _ = tiny
    prompts = _text_prompts(proc)
    sp = SamplingParams(max_new_tokens=4)
    both = _engine(tiny, servers)
    ref = both.generate(prompts, sp, n=2, seed=9)
    servers[1].kill()
    again = _engine(tiny, servers).generate(prompts, sp, n=2, seed=9)  # the dead server's share moves over
    _same(again, ref)
    dead = _engine(tiny, servers[1:], retries=2)
    with pytest.raises(GlmvError, match=r"failed after 3 attempts on http://127\.0\.0\.1:\d+.*Check that the "
                                        r"servers are running"):
        dead.generate(prompts, sp, n=1, seed=9)


def test_nccl_weight_sync_refuses_what_it_cannot_do(tiny):
    from glmv_cli.generation.weight_sync import NcclWeightSync

    _, proc, _ = tiny
    with pytest.raises(GlmvError, match="with SGLang servers use --weight-sync disk"):
        NcclWeightSync(ServerEngine(["http://127.0.0.1:9"], proc.tokenizer, dialect="sglang"), master_address="x")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(GlmvError, match="needs the vllm package on the learner"):
            NcclWeightSync(ServerEngine(["http://127.0.0.1:9"], proc.tokenizer), master_address="127.0.0.1")


def test_n_choices_use_seed_plus_index(servers):
    url = servers[0].url
    _, many = _post(url, "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 6, "n": 3, "seed": 40,
                                               "return_token_ids": True})
    for j in range(3):
        _, one = _post(url, "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 6, "seed": 40 + j,
                                                  "return_token_ids": True})
        assert many["choices"][j]["token_ids"] == one["choices"][0]["token_ids"]
    assert len({tuple(c["token_ids"]) for c in many["choices"]}) == 3


class _Scripted:
    """A local HTTP server answering POSTs with a scripted list of (status, body)."""

    def __init__(self, script):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script, self.hits = list(script), 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = outer.script[min(outer.hits, len(outer.script) - 1)]
                outer.hits += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_pool_retries_transient_errors_and_not_client_errors():
    from glmv_cli.generation.transport import ServerPool

    flaky = _Scripted([(503, {"error": {"message": "busy"}}), (500, {"detail": "oops"}), (200, {"ok": 1})])
    bad = _Scripted([(422, {"message": "field 'x' is wrong"})])
    try:
        pool = ServerPool([flaky.url], retries=3, backoff_s=0.01)
        assert pool.post("/v1/completions", {}) == {"ok": 1} and flaky.hits == 3
        pool = ServerPool([bad.url], retries=3, backoff_s=0.01)
        with pytest.raises(GlmvError, match=r"refused POST /v1/completions \(HTTP 422\): field 'x' is wrong"):
            pool.post("/v1/completions", {})
        assert bad.hits == 1
        flaky.script, flaky.hits = [(503, {"error": {"message": "still busy"}})], 0
        with pytest.raises(GlmvError, match="failed after 3 attempts.*HTTP 503: still busy"):
            ServerPool([flaky.url], retries=2, backoff_s=0.01).post("/v1/completions", {})
    finally:
        flaky.close()
        bad.close()


def test_pool_dispatches_to_the_least_loaded_server():
    from glmv_cli.generation.transport import ServerPool

    pool = ServerPool(["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"], max_inflight=2)
    order = [pool._acquire(None) for _ in range(6)]
    assert order == [0, 1, 2, 0, 1, 2]
    pool._release(1, True)
    assert pool._acquire(None) == 1
    pool._release(0, False)
    pool._release(2, True)
    assert pool._acquire(None) == 2  # server 0 just failed: a healthy one first
    with pytest.raises(GlmvError, match="must look like http://HOST:PORT"):
        ServerPool(["localhost:8000"])


def test_server_bounds_concurrency_and_body_size(tiny):
    import socket
    import threading

    from glmv_cli.serving.http import GlmvHTTPServer
    from glmv_cli.serving.runtime import ModelRuntime

    model, proc, _ = tiny
    rt = ModelRuntime(model, proc, name="tiny")
    srv = GlmvHTTPServer(("127.0.0.1", 0), rt, max_connections=1, max_request_bytes=1000, read_timeout_s=5)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        got, obj = _post(url, "/v1/completions", {"prompt": [1] * 400})
        assert got == 413 and "exceeds the limit of 1000" in obj["error"]["message"]
        import time

        def until(cond):  # the handler threads run on their own; wait (bounded) instead of sleeping blind
            deadline = time.monotonic() + 20
            while not cond():
                assert time.monotonic() < deadline, "server did not reach the expected state"
                time.sleep(0.02)

        until(lambda: srv.active == 0)  # the 413's handler thread gives its slot back after answering
        hold = socket.create_connection(srv.server_address[:2])  # takes the only slot, sends no body
        hold.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        until(lambda: srv.active == 1)
        for _ in range(5):  # the 503 comes before the server reads the body: the send may see a reset
            try:
                got, obj = _post(url, "/v1/completions", {"prompt": [1, 2]})
                break
            except (BrokenPipeError, ConnectionResetError):
                time.sleep(0.1)
        assert got == 503 and "too many concurrent requests" in obj["error"]["message"]
        hold.close()
        until(lambda: srv.active == 0)
        got, obj = _post(url, "/v1/completions", {"prompt": [1, 2], "max_tokens": 2})
        assert got == 200 and obj["usage"]["completion_tokens"] == 2
        u = urlparse(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.putrequest("POST", "/v1/completions")
        c.endheaders()
        r = c.getresponse()
        assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]["message"]
    finally:
        srv.shutdown()
        srv.server_close()
        rt.close()


def test_prompts_the_server_engine_cannot_send_are_refused(tiny):
    model, proc, _ = tiny
    eng = ServerEngine(["http://127.0.0.1:9"], proc.tokenizer, model="tiny", config=model.config)
    p = Prompt("p", [1, 2, IMAGE_ID, 3], pixel_values=torch.zeros(4, 1176), image_grid_thw=torch.tensor([[1, 2, 2]]))
    with pytest.raises(GlmvError, match="prompt 'p' has pixel values but no image files"):
        eng.generate([p], SamplingParams(max_new_tokens=2))
    with pytest.raises(GlmvError, match="--server-dialect must be one of vllm, sglang, got 'tgi'"):
        ServerEngine(["http://127.0.0.1:9"], proc.tokenizer, dialect="tgi")
