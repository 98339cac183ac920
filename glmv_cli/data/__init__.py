"""Data layer: record schema and validation, chat templates, tokenization, packing, packed reader."""

from glmv_cli.data.packed import PackedDataset  # noqa: E402,F401
from glmv_cli.data.packing import best_fit_decreasing  # noqa: E402,F401
from glmv_cli.data.schema import RecordError, parse_record  # noqa: E402,F401
