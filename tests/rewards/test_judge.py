"""The LLM judge against real HTTP servers on 127.0.0.1 (http.server in threads)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from glmv_cli.errors import GlmvError
from glmv_cli.rewards import Endpoint, Judge, JudgeConfig, JudgeError, config_from_dict, parse_verdict, score_detailed

B, E = "<|begin_of_box|>", "<|end_of_box|>"
SECRET = "sk-test-0123456789abcdef"


def resp(ans: str) -> str:
    return f"<think>work</think><answer>{B}{ans}{E}</answer>"


class Server:
    """An OpenAI-compatible endpoint whose behaviour is set by ``mode``:
    correct / wrong / malformed / prose / slow / flaky (500 once, then correct) / grade (compares)."""

    def __init__(self, mode: str, target: str | None = None):
        self.mode = mode
        self.target = target  # where mode "redirect" sends the client
        self.calls = 0
        self.auth: list[str | None] = []
        self.bodies: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # where urllib sends a POST after a 302: record it, answer with a verdict
                outer.calls += 1
                outer.auth.append(self.headers.get("Authorization"))
                data = json.dumps({"choices": [{"message": {"content": "CORRECT"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                outer.calls += 1
                outer.auth.append(self.headers.get("Authorization"))
                outer.bodies.append(body)
                mode = outer.mode
                if mode.startswith("redirect"):
                    self.send_response(307 if mode == "redirect307" else 302)
                    self.send_header("Location", outer.target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                if mode == "slow":
                    time.sleep(1.0)
                    mode = "correct"
                if mode == "flaky":
                    if outer.calls == 1:
                        self.send_response(500)
                        self.end_headers()
                        return
                    mode = "correct"
                if mode == "grade":
                    user = body["messages"][-1]["content"]
                    ref = user.split("Reference answer:\n")[1].split("\n")[0]
                    cand = user.split("Candidate answer:\n")[1]
                    mode = "correct" if ref.strip().lower() == cand.strip().lower() else "wrong"
                if mode == "malformed":
                    data = b'{"choices": []}'
                elif mode == "prose":
                    data = json.dumps({"choices": [{"message": {"content": "Well, it depends."}}]}).encode()
                else:
                    word = "CORRECT" if mode == "correct" else "INCORRECT"
                    data = json.dumps({"choices": [{"message": {"role": "assistant", "content": word}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a timed-out client's broken pipe
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(mode):
        s = Server(mode)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1/chat/completions"


def judge(*urls, **kw) -> Judge:
    cfg = JudgeConfig(endpoints=[Endpoint(u, "judge-model") for u in urls], timeout_s=kw.pop("timeout_s", 2.0),
                      retries=kw.pop("retries", 1), backoff_s=0.01, **kw)
    return Judge(cfg)


@pytest.mark.parametrize("text,want", [("CORRECT", True), ("incorrect.", False), ("Yes", True), ("no", False),
                                       ("**Correct**", True), ("It is correct", None), ("", None)])
def test_parse_verdict(text, want):
    assert parse_verdict(text) is want


def test_correct_and_wrong(servers):
    ok, bad = servers("correct"), servers("wrong")
    assert judge(ok.url).score("q", "Paris", "Paris") == 1.0
    assert judge(bad.url).score("q", "Paris", "Lyon") == 0.0
    body = ok.bodies[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert "Reference answer:\nParis" in body["messages"][1]["content"]


def test_malformed_reply_is_retried_then_an_error(servers):
    s = servers("malformed")
    j = judge(s.url, retries=2)
    with pytest.raises(JudgeError, match="no verdict from any of 1 judge endpoint"):
        j.score("q", "a", "a")
    assert s.calls == 3
    p = servers("prose")
    with pytest.raises(JudgeError):
        judge(p.url, retries=0).score("q", "a", "a")


def test_timeout(servers):
    s = servers("slow")
    t0 = time.perf_counter()
    with pytest.raises(JudgeError):
        judge(s.url, timeout_s=0.2, retries=1).score("q", "a", "a")
    assert time.perf_counter() - t0 < 1.5


def test_server_down():
    t0 = time.perf_counter()
    with pytest.raises(JudgeError):
        judge(dead_url(), retries=2).score("q", "a", "a")
    assert time.perf_counter() - t0 < 2.0


def test_retry_after_a_5xx(servers):
    s = servers("flaky")
    assert judge(s.url, retries=1).score("q", "a", "a") == 1.0
    assert s.calls == 2


def test_404_is_not_retried(servers):
    s = servers("correct")
    j = judge(s.url.replace("/v1/chat/completions", "/wrong"), retries=3)
    with pytest.raises(JudgeError):
        j.score("q", "a", "a")
    assert s.calls == 1


@pytest.mark.parametrize("modes,want", [
    (("correct", "correct", "wrong"), 1.0),
    (("correct", "wrong", "wrong"), 0.0),
    (("correct", "down", "wrong"), 0.0),  # 1-1 tie among the verdicts that came back
    (("correct", "down", "malformed"), 1.0),  # the only verdict
    (("wrong", "correct", "correct"), 1.0),
    (("down", "down", "wrong"), 0.0),
])
def test_majority_vote_over_three_endpoints(servers, modes, want):
    urls = [dead_url() if m == "down" else servers(m).url for m in modes]
    assert judge(*urls, retries=0).score("q", "ref", "ans") == want


def test_memory_cache_avoids_repeat_requests(servers):
    s = servers("correct")
    j = judge(s.url)
    assert j.score("q", "a", "b") == 1.0
    assert j.score("q", "a", "b") == 1.0
    assert s.calls == 1 and j.requests == 1
    j.score("q", "a", "c")
    assert s.calls == 2


def test_disk_cache_and_api_key_never_stored(servers, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    s = servers("correct")
    cache = tmp_path / "cache"
    cfg = JudgeConfig(endpoints=[Endpoint(s.url, "m", api_key_env="JUDGE_KEY")], cache_dir=str(cache))
    assert Judge(cfg).score("q", "a", "a") == 1.0
    assert s.auth == [f"Bearer {SECRET}"]
    files = list(cache.rglob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == {"reply": "CORRECT"}
    assert SECRET not in files[0].read_text()
    j2 = Judge(cfg)  # a fresh judge reads the disk cache
    assert j2.score("q", "a", "a") == 1.0 and s.calls == 1 and j2.requests == 0
    assert SECRET not in repr(cfg) and SECRET not in repr(cfg.endpoints)


@pytest.mark.parametrize("mode", ["redirect", "redirect307"])
def test_redirects_are_refused_and_the_key_goes_nowhere_else(servers, monkeypatch, mode):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    elsewhere = servers("correct")  # another port of 127.0.0.1: another origin, answering GET and POST
    hop = Server(mode, target=elsewhere.url)
    try:
        cfg = JudgeConfig(endpoints=[Endpoint(hop.url, "m", api_key_env="JUDGE_KEY")], retries=2, backoff_s=0.01)
        j = Judge(cfg)
        with pytest.raises(JudgeError, match="no verdict from any of 1 judge endpoint"):
            j.score("q", "a", "a")
        assert hop.calls == 1 and hop.auth == [f"Bearer {SECRET}"]  # a 3xx is not retried
        assert elsewhere.calls == 0 and elsewhere.auth == []  # never reached, so never saw the key
        same_origin = Server("redirect", target=hop.url.replace("/v1/chat/completions", "/v2/chat"))
        try:
            with pytest.raises(JudgeError):
                Judge(JudgeConfig(endpoints=[Endpoint(same_origin.url, "m")], retries=0)).score("q", "a", "a")
            assert same_origin.calls == 1  # same origin is refused too: the reply at the new path is no verdict
        finally:
            same_origin.close()
    finally:
        hop.close()


def test_a_redirecting_endpoint_is_outvoted_not_trusted(servers):
    good, bad_target = servers("correct"), servers("wrong")
    hop = Server("redirect", target=bad_target.url)
    try:
        assert judge(good.url, hop.url, retries=0).score("q", "a", "a") == 1.0  # the only verdict is good's
        assert bad_target.calls == 0
    finally:
        hop.close()


def test_judge_domain_from_config(servers, tmp_path):
    s1, s2, s3 = servers("grade"), servers("grade"), servers("wrong")
    cfg = config_from_dict({"domains": {"open": {
        "verifier": "judge", "retries": 0, "timeout_s": 2,
        "endpoints": [{"url": s.url, "model": "m"} for s in (s1, s2, s3)]}}})
    assert score_detailed("Capital of France?", resp("paris"), "Paris", "open", config=cfg).reward == 1.0
    assert score_detailed("Capital of France?", resp("Lyon"), "Paris", "open", config=cfg).reward == 0.0
    down = config_from_dict({"domains": {"open": {"verifier": "judge", "retries": 0,
                                                  "endpoints": [{"url": dead_url(), "model": "m"}]}}})
    res = score_detailed("q", resp("x"), "y", "open", config=down)
    assert res.reward == 0.0 and res.error == "JudgeError: no verdict from any of 1 judge endpoint(s)"


def test_judge_config_errors():
    with pytest.raises(GlmvError, match="domains.open: 'endpoints' must be a non-empty list"):
        config_from_dict({"domains": {"open": {"verifier": "judge"}}})
    with pytest.raises(GlmvError, match=r"endpoints\[0\]: unknown key\(s\) api_key; put keys in the environment"):
        config_from_dict({"domains": {"open": {"verifier": "judge",
                                               "endpoints": [{"url": "http://x", "model": "m", "api_key": "k"}]}}})
