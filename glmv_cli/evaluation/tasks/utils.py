"""lm-eval ``!function`` targets of the glmv task YAMLs.

lm-eval executes this file afresh for every ``!function`` tag, so it only re-exports the hooks
of :mod:`glmv_cli.evaluation.taskdata` (where the state and the logic live).
"""

from glmv_cli.evaluation.taskdata import (  # noqa: F401
    aggregate_score,
    doc_to_image,
    doc_to_target,
    doc_to_text,
    load_dataset,
    process_results,
)
