"""The LLM judge of ``glmv eval --judge-url``: the reward system's judge client, asked per row.

Official protocols that use an LLM (ChartMuseum's answer comparison, MathVerse's and MMVU's
answer judging, MathVista's answer extraction) are run through :class:`glmv_cli.rewards.judge.Judge`
with one endpoint: it is asked whether glmv's extracted answer means the same as the gold answer for
the question (retries, backoff and a reply cache are the client's). A judge that gives no verdict
raises ``JudgeError``; the runner lists that row under ``errors`` and scores it 0 rather than
guessing. The API key is read from the environment variable named by ``--judge-api-key-env`` by the
client and never stored.
"""

from __future__ import annotations


class EvalJudge:
    """``equivalent(question, reference, answer) -> bool`` over one OpenAI-compatible endpoint."""

    def __init__(self, url: str, model: str, api_key_env: str | None = None, cache_dir: str | None = None):
        from glmv_cli.rewards.judge import Endpoint, Judge, JudgeConfig

        self.judge = Judge(JudgeConfig(endpoints=[Endpoint(url, model, api_key_env)], cache_dir=cache_dir))

    @property
    def requests(self) -> int:
        return self.judge.requests

    def equivalent(self, question: str, reference: str, answer: str) -> bool:
        return self.judge.score(question, reference, answer) >= 1.0
