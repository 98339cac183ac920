"""GLM-4V models for glmv: presets, the offline tokenizer, the image-only processor, load/save.

Importing this package imports transformers and registers ``GlmvProcessor`` with
``AutoProcessor`` for directories that older glmv versions saved naming it (new saves name
transformers' own classes). Stage modules import it inside their functions, keeping ``glmv --help`` fast.
"""

from glmv_cli.modeling.io import (build_model, load, load_config, load_processor, model_class_for, model_dir,
                                  model_type, save, weights_dtype)
from glmv_cli.modeling.presets import list_presets, preset_config, resolve_preset
from glmv_cli.modeling.processor import (
    GlmvProcessor,
    ImageSizeError,
    build_processor,
    image_grid_for_size,
    image_to_patches,
    image_token_count,
    resized_size,
)
from glmv_cli.modeling.tokenizer import SPECIAL_TOKENS, offline_tokenizer, special_token_ids, stop_token_ids

__all__ = [
    "GlmvProcessor",
    "ImageSizeError",
    "SPECIAL_TOKENS",
    "build_model",
    "build_processor",
    "image_grid_for_size",
    "image_to_patches",
    "image_token_count",
    "list_presets",
    "load",
    "load_config",
    "load_processor",
    "model_class_for",
    "model_dir",
    "model_type",
    "offline_tokenizer",
    "preset_config",
    "resized_size",
    "resolve_preset",
    "save",
    "special_token_ids",
    "stop_token_ids",
    "weights_dtype",
]
