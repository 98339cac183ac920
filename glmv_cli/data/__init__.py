"""Data layer: record schema and validation, chat templates, tokenization, packing, packed reader."""
