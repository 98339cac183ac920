"""Evaluation: glmv's lm-eval model adapter (``glmv``), the benchmark registry with published
scores, the task YAMLs (``glmv_cli/evaluation/tasks``) and the results table.

Importing :mod:`glmv_cli.evaluation.adapter` registers the ``glmv`` model with lm-eval; the stage
``glmv eval`` (``glmv_cli/stages/eval.py``) wires them together.
"""

from glmv_cli.evaluation.registry import BENCHMARKS, SUITES, Benchmark, by_task, suite
from glmv_cli.evaluation.tasks import TASKS_DIR

__all__ = ["BENCHMARKS", "Benchmark", "SUITES", "TASKS_DIR", "by_task", "suite"]
