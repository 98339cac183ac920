"""A reward scoring process for :class:`glmv_cli.rewards.pool.RewardPool` (``python -m`` this).

Protocol, one JSON object per line: the first line on stdin is ``{"config": <rewards.yaml mapping>,
"source": ...}``, answered, once sympy is imported and warm, by ``{"ready": true}`` (or ``{"error": ...}`` and exit 1); then each
``{"i": n, "item": [prompt, response, reference, domain, extra]}`` is answered by ``{"i": n,
"result": RewardResult.to_dict()}``. An empty line or EOF ends the process. File descriptor 1 is
moved to stderr first, so prints from a user's reward function cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys


def _warm_up() -> None:
    """Imports sympy and math-verify and runs one comparison before the first item: a cold import
    takes 1-3 s, which would put a worker's first symbolic verification past its 1 s timeout where
    the warm parent process would not time out (pooled results must equal serial ones)."""
    from math_verify import parse, verify

    verify(parse("$x+1$"), parse("$1+x$"))


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = open(0, encoding="utf-8", closefd=False)
    first = stdin.readline()
    if not first.strip():
        return 0
    try:
        from glmv_cli.rewards.config import config_from_dict
        from glmv_cli.rewards.scoring import score_detailed

        head = json.loads(first)
        cfg = config_from_dict(head["config"], head.get("source", "<reward pool>"))
        _warm_up()
    except Exception as e:  # reported to the parent, which raises a GlmvError
        proto.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        return 1
    proto.write('{"ready": true}\n')
    for line in stdin:
        if not line.strip():
            break
        req = json.loads(line)
        prompt, response, reference, domain, extra = req["item"]
        res = score_detailed(prompt, response, reference, domain, extra, config=cfg)
        proto.write(json.dumps({"i": req["i"], "result": res.to_dict()}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
