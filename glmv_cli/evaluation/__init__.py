"""Evaluation: task specs (``glmv_cli/evaluation/tasks/*.yaml``), one loading path for Hub and local
data (``data``), layout checks (``check``), prompts, the benchmarks' official scoring rules and
aggregates (``scoring``, ``scoring_official``, ``protocols``, ``wemath``), the streaming, resumable
loop (``runner``), the generators and glmv's lm-eval model adapter (``adapter``), the benchmark
registry with published scores and the results table. ``glmv eval`` (``glmv_cli/stages/eval.py``)
wires them together.
"""

from glmv_cli.evaluation.registry import BENCHMARKS, SUITES, Benchmark, by_task, suite
from glmv_cli.evaluation.tasks import TASKS_DIR

__all__ = ["BENCHMARKS", "Benchmark", "SUITES", "TASKS_DIR", "by_task", "suite"]
