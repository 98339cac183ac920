"""glmv's task specs (package data): one ``glmv_<benchmark>.yaml`` per runnable benchmark, naming
the real dataset, its configs, splits and columns, the columns every row must have, the prompt
format, the scoring rule and the aggregate (see :mod:`glmv_cli.evaluation.spec`).
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
