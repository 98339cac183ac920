"""The bad inputs of the reliability corpus (see :mod:`glmv_cli.testing.corpus`), in table order.

Families repeat one fault over every stage that reads that kind of input (a FIFO as a data file,
a damaged model directory, a hand-edited manifest ...); single cases cover what only one stage
reads. ``expect`` fragments name the file, line or field the message must point at.
"""

from __future__ import annotations

from glmv_cli.testing import corpus_inputs, corpus_outputs
from glmv_cli.testing.corpus import Case

CASES: list[Case] = [*corpus_inputs.CASES, *corpus_outputs.CASES]
