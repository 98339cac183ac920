"""Judge-bound scoring time, serial vs pooled, against a local judge with a fixed latency.

    python benchmarks/judge_pool_bench.py [--n 64] [--latency 0.2] [--threads 16] [--workers 2]

A local OpenAI-compatible judge (``http.server`` on 127.0.0.1, one thread per request) sleeps
``--latency`` seconds per request, then answers CORRECT when the candidate equals the reference
(case-insensitive). ``--n`` distinct responses of a judge domain (no cache hits) are scored

* serially: ``score_detailed`` in a loop, one request at a time (what the trainer did per response);
* pooled: ``score_many(items, cfg, workers=..., judge_threads=...)``, judge calls in threads.

Each run gets a fresh config (an empty judge cache). Prints wall seconds of both, the ratio, and
whether the results are identical. A second line adds as many math responses to the batch, which
``score_many`` sends to ``--workers`` processes while the judge threads wait on HTTP.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
B, E = "<|begin_of_box|>", "<|end_of_box|>"


def start_judge(latency: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            user = body["messages"][-1]["content"]
            ref = user.split("Reference answer:\n")[1].split("\n")[0]
            cand = user.split("Candidate answer:\n")[1]
            time.sleep(latency)
            word = "CORRECT" if ref.strip().lower() == cand.strip().lower() else "INCORRECT"
            data = json.dumps({"choices": [{"message": {"content": word}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default 5 would make concurrent clients wait on SYN retries

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1/chat/completions"


def make_config(url: str):
    from glmv_cli.rewards import config_from_dict

    return config_from_dict({"domains": {"open": {"verifier": "judge", "retries": 0, "timeout_s": 30,
                                                  "endpoints": [{"url": url, "model": "judge"}]}}})


def items(n: int, with_math: bool) -> list[tuple]:
    out = [(f"What is item {i}?", f"<think>w</think><answer>{B}{'answer ' + str(i) if i % 3 else 'wrong'}{E}</answer>",
            f"answer {i}", "open", None) for i in range(n)]
    if with_math:
        out += [("q", f"<think>w</think><answer>{B}\\frac{{{i}}}{{\\sqrt{{2}}}}{E}</answer>", f"\\frac{{{i}\\sqrt{{2}}}}{{2}}",
                 "math", None) for i in range(1, n + 1)]
    return out


def run(url: str, batch: list[tuple], threads: int, workers: int) -> tuple[float, float, bool]:
    from glmv_cli.rewards import score_detailed, score_many

    cfg = make_config(url)
    t0 = time.perf_counter()
    serial = [score_detailed(*it[:4], it[4], config=cfg).to_dict() for it in batch]
    t_serial = time.perf_counter() - t0
    cfg = make_config(url)
    t0 = time.perf_counter()
    pooled = [r.to_dict() for r in score_many(batch, cfg, workers=workers, judge_threads=threads)]
    return t_serial, time.perf_counter() - t0, pooled == serial


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="judge-domain responses per batch")
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the judge takes per request")
    ap.add_argument("--threads", type=int, default=16, help="judge threads of score_many")
    ap.add_argument("--workers", type=int, default=2, help="verifier processes for the mixed batch")
    args = ap.parse_args(argv)
    from glmv_cli.rewards import score

    score(None, f"<answer>{B}1{E}</answer>", "\\sqrt{2}", "math")  # import sympy before timing
    httpd, url = start_judge(args.latency)
    try:
        s, p, same = run(url, items(args.n, False), args.threads, 1)
        print(f"judge-bound, {args.n} responses, judge latency {args.latency * 1000:.0f} ms: serial {s:.2f} s | "
              f"score_many with {args.threads} judge threads {p:.2f} s | {s / p:.1f}x | identical results: {same}")
        s, p, same = run(url, items(args.n, True), args.threads, args.workers)
        print(f"mixed, {args.n} judge + {args.n} math responses: serial {s:.2f} s | score_many with {args.threads} "
              f"judge threads and {args.workers} worker processes {p:.2f} s (incl. worker start) | {s / p:.1f}x | "
              f"identical results: {same}")
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    main()
