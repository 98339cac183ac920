"""lm-eval task YAMLs for glmv (package data; load with ``TaskManager(include_path=TASKS_DIR)``).

Each ``glmv_<benchmark>.yaml`` includes ``_glmv_template.yaml`` and names the real dataset, its
split and columns, the prompt format and the scoring rule; ``utils.py`` forwards lm-eval's hooks
to :mod:`glmv_cli.evaluation.taskdata`.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
