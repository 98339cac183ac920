"""``glmv serve`` subprocesses on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Sequence


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_servers(model: str, count: int = 1, args: Sequence[str] = (), timeout_s: float = 120.0,
                  threads: int = 1) -> list[ServerProcess]:
    """Starts ``count`` servers of ``model`` on free ports (``--port 0``) at once and waits until each
    prints its ``listening on`` line; raises RuntimeError with the server's stderr otherwise."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "glmv_cli.main", "serve", model, "--host", "127.0.0.1",
                               "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(count)]
    out = []
    end = time.monotonic() + timeout_s
    try:
        for p in procs:
            line = ""
            while "listening on" not in line:
                if p.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"glmv serve did not start: {p.stderr.read() if p.poll() is not None else ''}")
                line = p.stdout.readline()
            url = line.split("listening on ", 1)[1].split()[0]
            # drain the pipes so a chatty server never blocks on a full pipe
            for stream in (p.stdout, p.stderr):
                threading.Thread(target=stream.read, daemon=True).start()
            out.append(ServerProcess(p, url))
    except BaseException:
        for p in procs:
            p.kill()
        raise
    return out
