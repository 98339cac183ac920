"""Build, load and save GLM-4V models with their processors, in Hugging Face format.

``load(x)`` accepts a preset name (random init from a fixed seed), a local directory (one that
glmv saved, or a zai-org checkpoint: its own tokenizer, image-processor config and chat
template are used), or a Hub id (resolved from the local Hugging Face cache; offline machines
get an error that says how to provide the files). The processor glmv builds is its own
``GlmvProcessor`` (transformers' ``Glm4vProcessor`` without the torchvision video part): that choice
is made here at load time and never written into a model's files.

``save`` writes what plain ``transformers`` reads, and what it writes depends on where the model came from:

- from a checkpoint directory (``source``): the weights (safetensors shards +
  ``model.safetensors.index.json``, also for a single shard) and, byte for byte, every other model
  file of the source: ``config.json``, ``generation_config.json`` (its eos list included), the
  tokenizer files, ``chat_template.jinja`` and every processor / image-processor / video-processor
  config. Only a different ``dtype`` changes a file: the dtype key of config.json.
- from a preset (no source): config, generation config (GLM's stop tokens), tokenizer, chat
  template, ``processor_config.json``, ``preprocessor_config.json`` and
  ``video_preprocessor_config.json``, all naming transformers' own classes (``Glm4vProcessor``,
  ``Glm46VProcessor`` for ``glm46v``), so ``AutoProcessor.from_pretrained`` without glmv loads a
  processor that handles images (and videos, given torchvision).

Weights keep the source's dtype unless ``dtype`` says otherwise (training runs in fp32 and would
otherwise double a bf16 checkpoint's size).

Tied embeddings: transformers v5 reads ``tie_word_embeddings`` from the top-level config; a
tied model saves only ``embed_tokens`` and re-ties on load, which ``save`` relies on (the index
lists exactly the tensors in the shards). The presets are untied, as the checkpoints are.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
MODEL_TYPES = ("glm4v", "glm4v_moe", "glm46v")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: the files of a model besides its weights, carried from a source checkpoint to a saved model unchanged
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
               "chat_template.json", "processor_config.json", "preprocessor_config.json",
               "video_preprocessor_config.json")
#: transformers' processor class per model type (what a saved model's files name)
PROCESSOR_CLASSES = {"glm4v": "Glm4vProcessor", "glm4v_moe": "Glm4vProcessor", "glm46v": "Glm46VProcessor"}
_IMAGE_PROCESSOR_TYPES = {"Glm4vProcessor": "Glm4vImageProcessor", "Glm46VProcessor": "Glm46VImageProcessor"}
_VIDEO_PROCESSOR_TYPES = {"Glm4vProcessor": "Glm4vVideoProcessor", "Glm46VProcessor": "Glm46VVideoProcessor"}


def model_class_for(config) -> type:
    """The transformers class of ``config``: ``Glm4vForConditionalGeneration`` (GLM-4.1V, GLM-4.6V-Flash),
    ``Glm4vMoeForConditionalGeneration`` (GLM-4.5V) or ``Glm46VForConditionalGeneration`` (model type
    ``glm46v``: the GLM-4.6V family, its LM dense or MoE as its ``text_config`` says)."""
    import transformers

    mt = getattr(config, "model_type", None)
    if mt == "glm4v":
        return transformers.Glm4vForConditionalGeneration
    if mt == "glm4v_moe":
        return transformers.Glm4vMoeForConditionalGeneration
    if mt == "glm46v":
        return transformers.Glm46VForConditionalGeneration
    raise GlmvError(f"model type {mt!r} is not a GLM-4V model (expected one of: {', '.join(MODEL_TYPES)})")


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if str(dtype) not in names:
        raise GlmvError(f"unknown dtype {dtype!r} (expected one of: {', '.join(names)})")
    return names[str(dtype)]


def build_model(config, *, seed: int = 0, dtype: Any = None, device: Any = None):
    """A randomly initialised model for ``config``; the same seed gives the same weights.

    ``device="meta"`` builds the structure without memory (for the 9B / 106B presets).
    The global RNG state is left untouched.
    """
    import torch

    cls = model_class_for(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device is not None and str(device) == "meta":
            with torch.device("meta"):
                model = cls(config)
        else:
            model = cls(config)
    torch_dtype = _torch_dtype(dtype)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    if device is not None and str(device) != "meta":
        model = model.to(device)
    model.eval()
    return model


def _set_generation_ids(model, tokenizer) -> None:
    """GLM stops on <|endoftext|>, <|user|> and <|observation|>; pads with <|endoftext|>. For a model
    whose generation config gives no eos list (a preset); a checkpoint's own list is kept."""
    from glmv_cli.modeling.tokenizer import stop_token_ids

    gc = model.generation_config
    stops = stop_token_ids(tokenizer)
    if stops:
        gc.eos_token_id = stops
    if tokenizer.pad_token_id is not None:
        gc.pad_token_id = tokenizer.pad_token_id


def _hub_or_error(name: str) -> Path:
    """A Hub id resolved through the local cache (or the network when it is allowed)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    how = (
        f"download it where there is network (`hf download {name} --local-dir DIR`) "
        "and pass DIR, or pass a preset"
    )
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise GlmvError(
            f"model {name!r} is not a preset ({', '.join(_presets())}), "
            f"not an existing directory, and not a Hub id (owner/name)"
        )
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id=name, local_files_only=offline)
    except Exception as e:  # noqa: BLE001 - every hub failure becomes the same user error
        mode = "HF_HUB_OFFLINE=1 and it is not in the local Hugging Face cache" if offline else str(e)
        raise GlmvError(f"model {name!r}: cannot fetch from the Hub ({mode}); {how}") from None
    return Path(path)


def _presets() -> list[str]:
    from glmv_cli.modeling.presets import list_presets

    return list_presets()


def _resolve(path_or_preset: str | os.PathLike) -> tuple[str | None, Path | None]:
    """(preset name, None) or (None, directory)."""
    from glmv_cli.modeling.presets import resolve_preset

    s = str(path_or_preset)
    p = Path(s).expanduser()
    if p.is_dir():
        return None, p
    preset = resolve_preset(s)
    if preset is not None:
        return preset, None
    if p.exists():
        raise GlmvError(f"{s}: expected a model directory (with config.json), got a file")
    looks_like_path = s.startswith((".", "/", "~")) or (os.sep in s and s.count("/") != 1)
    if looks_like_path:
        raise GlmvError(f"{s}: no such model directory")
    return None, _hub_or_error(s)


def model_dir(path_or_preset: str | os.PathLike) -> Path | None:
    """The local directory of a model (a directory, or a Hub id's cached snapshot); None for a preset."""
    _, directory = _resolve(path_or_preset)
    return directory


def model_type(path_or_preset: str | os.PathLike) -> str:
    """The model type (glm4v, glm4v_moe, glm46v) of a preset, directory or Hub id, from its config."""
    from glmv_cli.modeling.presets import preset_config

    preset, directory = _resolve(path_or_preset)
    if preset is not None:
        return preset_config(preset).model_type
    assert directory is not None
    cfg = directory / "config.json"
    if not cfg.is_file():
        raise GlmvError(f"{directory}: not a model directory (no config.json)")
    try:
        mt = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as e:
        raise GlmvError(f"{cfg}: invalid JSON ({e})") from None
    if mt not in MODEL_TYPES:
        raise GlmvError(f"{cfg}: model type {mt!r} is not a GLM-4V model (expected one of: {', '.join(MODEL_TYPES)})")
    return mt


def _read_config(directory: Path):
    from transformers import AutoConfig

    if not (directory / "config.json").is_file():
        raise GlmvError(f"{directory}: not a model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(directory))
    except (ValueError, OSError, KeyError) as e:
        raise GlmvError(f"{directory / 'config.json'}: cannot read the model config ({e})") from None
    model_class_for(config)  # validates the model type
    return config


def _offline_processor_for(config, where: str):
    """The offline tokenizer's processor, when ``config`` was built for that tokenizer."""
    from glmv_cli.data.chat import style_for_model_type
    from glmv_cli.modeling.presets import TINY_IMAGE_SIZE
    from glmv_cli.modeling.processor import build_processor
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    tok = offline_tokenizer(style_for_model_type(config.model_type))
    if config.image_token_id != tok.convert_tokens_to_ids("<|image|>") or config.text_config.vocab_size < len(tok):
        raise GlmvError(
            f"{where}: no tokenizer files (tokenizer.json, tokenizer_config.json) and the config's "
            f"token ids are not glmv's offline tokenizer's (image_token_id {config.image_token_id}); "
            "copy the tokenizer and preprocessor files of the checkpoint into the directory"
        )
    return build_processor(tok, size=TINY_IMAGE_SIZE)


def _processor_from_dir(directory: Path, config=None):
    """GlmvProcessor for a glmv-saved or zai-org directory (no torchvision needed)."""
    from transformers import AutoTokenizer

    from glmv_cli.data.chat import chat_template, style_for_model_type
    from glmv_cli.modeling.processor import GlmvProcessor, image_processor_for

    proc_cfg = directory / "processor_config.json"
    if proc_cfg.is_file():
        try:
            cls_name = json.loads(proc_cfg.read_text(encoding="utf-8")).get("processor_class")
        except json.JSONDecodeError as e:
            raise GlmvError(f"{proc_cfg}: invalid JSON ({e})") from None
        if cls_name == "GlmvProcessor":
            return GlmvProcessor.from_pretrained(str(directory))
    if config is None and (directory / "config.json").is_file():
        config = _read_config(directory)
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        if config is None:
            raise GlmvError(f"{directory}: no tokenizer files and no config.json")
        return _offline_processor_for(config, str(directory))
    tok = AutoTokenizer.from_pretrained(str(directory))
    ip = _image_processor_from_dir(directory) or image_processor_for()
    template = tok.chat_template
    jinja = directory / "chat_template.jinja"
    if not template and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    if not template:
        template = chat_template(style_for_model_type(getattr(config, "model_type", "glm4v")))
    return GlmvProcessor(image_processor=ip, tokenizer=tok, chat_template=template)


def _image_processor_from_dir(directory: Path):
    """Glm4vImageProcessorPil from preprocessor_config.json / processor_config.json, if any."""
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    for name in ("preprocessor_config.json", "processor_config.json"):
        f = directory / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GlmvError(f"{f}: invalid JSON ({e})") from None
        data = data.get("image_processor", data)
        keys = set(Glm4vImageProcessorPil.valid_kwargs.__annotations__) | {
            "size", "do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize",
            "image_mean", "image_std", "do_convert_rgb",
        }
        kwargs = {k: v for k, v in data.items() if k in keys}
        size = kwargs.get("size")
        if isinstance(size, dict) and not (size.get("shortest_edge") and size.get("longest_edge")):
            # Older configs spell the limits min_pixels / max_pixels.
            lo, hi = data.get("min_pixels"), data.get("max_pixels")
            if lo and hi:
                kwargs["size"] = {"shortest_edge": lo, "longest_edge": hi}
        return Glm4vImageProcessorPil(**kwargs)
    return None


def load_processor(path_or_preset: str | os.PathLike):
    """The processor (tokenizer + image processor + chat template) of a preset or directory."""
    from glmv_cli.modeling.presets import preset_image_size
    from glmv_cli.modeling.processor import build_processor
    from glmv_cli.modeling.tokenizer import offline_tokenizer

    preset, directory = _resolve(path_or_preset)
    if preset is not None:
        if preset != "tiny":
            raise GlmvError(
                f"preset {preset!r} uses GLM-4's 151k-token tokenizer, which glmv cannot build "
                "offline; load the processor from a checkpoint directory instead"
            )
        return build_processor(offline_tokenizer("glm41v"), size=preset_image_size(preset))
    assert directory is not None
    return _processor_from_dir(directory)


def load(
    path_or_preset: str | os.PathLike,
    *,
    dtype: Any = None,
    device: Any = None,
    seed: int = 0,
    processor_from: str | os.PathLike | None = None,
):
    """``(model, processor)`` from a preset, a local directory or a Hub id.

    - preset: random init with ``seed``. ``tiny`` comes with the offline tokenizer. The 9B and
      106B presets need a tokenizer from a checkpoint (``processor_from``), else the processor
      is None; build them with ``device="meta"`` to inspect the structure without memory.
    - directory: weights in the checkpoint's dtype unless ``dtype`` is given (``fp32``,
      ``bf16``, ``fp16`` or a torch dtype).
    """
    from glmv_cli.modeling.presets import preset_config

    preset, directory = _resolve(path_or_preset)
    if preset is not None:
        config = preset_config(preset)
        model = build_model(config, seed=seed, dtype=dtype, device=device)
        if processor_from is not None:
            processor = load_processor(processor_from)
        elif preset == "tiny":
            processor = load_processor("tiny")
        else:
            processor = None
        if processor is not None:
            _check_compatible(config, processor.tokenizer, str(processor_from or preset))
            _set_generation_ids(model, processor.tokenizer)
        return model, processor

    assert directory is not None
    config = _read_config(directory)
    processor = _processor_from_dir(directory, config) if processor_from is None else load_processor(processor_from)
    cls = model_class_for(config)
    torch_dtype = _torch_dtype(dtype)
    try:
        model = cls.from_pretrained(str(directory), dtype=torch_dtype if torch_dtype is not None else "auto")
    except OSError as e:
        raise GlmvError(f"{directory}: cannot load the weights ({e})") from None
    if device is not None:
        model = model.to(device)
    model.eval()
    _check_compatible(config, processor.tokenizer, str(directory))
    if not (directory / "generation_config.json").is_file():
        _set_generation_ids(model, processor.tokenizer)
    return model, processor


def load_config(path_or_preset: str | os.PathLike, processor: Any = None):
    """``(config, generation config)`` of a preset, directory or Hub id without loading weights: what
    a stage that generates through rollout servers needs of the policy (ids, stops, model type)."""
    from transformers import GenerationConfig

    from glmv_cli.modeling.presets import preset_config

    preset, directory = _resolve(path_or_preset)
    if preset is not None:
        config = preset_config(preset)
        gen = GenerationConfig.from_model_config(config)
    else:
        assert directory is not None
        config = _read_config(directory)
        if (directory / "generation_config.json").is_file():
            gen = GenerationConfig.from_pretrained(str(directory))
            return config, gen
        gen = GenerationConfig.from_model_config(config)
    if processor is not None:  # as load() does for a model without its own eos list
        _set_generation_ids(type("_M", (), {"generation_config": gen})(), processor.tokenizer)
    return config, gen


def _check_compatible(config, tokenizer, where: str) -> None:
    image_id = tokenizer.convert_tokens_to_ids("<|image|>")
    if image_id != config.image_token_id:
        raise GlmvError(
            f"{where}: the tokenizer's <|image|> is id {image_id} but the model config says "
            f"image_token_id {config.image_token_id}; tokenizer and model do not belong together"
        )
    if len(tokenizer) > config.text_config.vocab_size:
        raise GlmvError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{config.text_config.vocab_size}"
        )


def _write_single_shard_index(out: Path) -> None:
    """Renames a lone model.safetensors to a 1-of-1 shard and writes its index."""
    from safetensors import safe_open

    single = out / SINGLE_NAME
    if not single.is_file() or (out / INDEX_NAME).is_file():
        return
    shard = "model-00001-of-00001.safetensors"
    total = 0
    weight_map = {}
    with safe_open(str(single), framework="pt") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            n = 1
            for d in sl.get_shape():
                n *= int(d)
            total += n * _dtype_bytes(sl.get_dtype())
            weight_map[key] = shard
    os.replace(single, out / shard)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _dtype_bytes(name: str) -> int:
    sizes = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
             "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
    return sizes.get(name, 4)


def weights_dtype(directory: str | os.PathLike) -> str | None:
    """The dtype of a model directory's weights (``bf16``, ``fp32``, ``fp16``) from the header of its
    first safetensors shard (no tensor is read); None without safetensors."""
    d = Path(directory)
    index = d / INDEX_NAME
    if index.is_file():
        try:
            first = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))[0]
        except (json.JSONDecodeError, KeyError, IndexError):
            return None
        path = d / first
    else:
        path = d / SINGLE_NAME
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    names = {"BF16": "bf16", "F32": "fp32", "F16": "fp16"}
    for key, meta in header.items():
        if key != "__metadata__":
            return names.get(meta.get("dtype"))
    return None


def _dtype_name(torch_dtype) -> str:
    import torch

    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[torch_dtype]


def save(model, processor, out_dir: str | os.PathLike, *, max_shard_size: int | str = "2GB",
         source: str | os.PathLike | None = None, dtype: Any = None) -> list[str]:
    """Writes ``model`` and ``processor`` to ``out_dir`` in Hugging Face format.

    ``source``: the checkpoint directory the model was loaded from; its model files (``MODEL_FILES``)
    are copied unchanged and ``processor`` is not written. ``dtype`` (``auto``/None, ``fp32``, ``bf16``,
    ``fp16``): of the saved weights; auto keeps the source's (the model's own without a source).
    Other files in ``out_dir`` are kept, except earlier weight shards and their index.
    Returns the names of the files written (all directly in ``out_dir``), sorted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(source) if source is not None else None
    src_dtype = weights_dtype(src) if src is not None else None
    if dtype in (None, "auto"):
        target = _torch_dtype(src_dtype) if src_dtype else next(model.parameters()).dtype
    else:
        target = _torch_dtype(dtype)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    for stale in list(out.glob("model*.safetensors")) + [out / INDEX_NAME]:
        if stale.is_file():
            stale.unlink()
    if processor is not None and model.generation_config.eos_token_id is None:
        _set_generation_ids(model, processor.tokenizer)
    state = {k: v.detach().to(target) for k, v in model.state_dict().items()}
    model.save_pretrained(str(out), max_shard_size=max_shard_size, state_dict=state)
    _write_single_shard_index(out)
    if src is not None:
        carried = _carry_model_files(src, out, _dtype_name(target), model.config.to_dict())
    else:  # transformers writes the dtype of the parameters in memory, not of the saved state
        carried = []
        cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
        cfg["dtype"] = _dtype_name(target)
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if processor is not None and not any(f in carried for f in _TOKENIZER_FILES):
        save_processor(processor, out, model.config.model_type, keep=carried)
    return sorted(
        p.name for p in out.iterdir() if p.is_file() and before.get(p.name) != p.stat().st_mtime_ns
    )


def _carry_model_files(src: Path, out: Path, dtype: str, config: dict) -> list[str]:
    """Copies ``MODEL_FILES`` of ``src`` into ``out`` byte for byte. config.json is rewritten only where
    the model's config (``config``, ``to_dict()``) now says otherwise (another weight dtype,
    extend-context's max_position_embeddings), in the source's own layout. Returns the names copied."""
    done = []
    for name in MODEL_FILES:
        f = src / name
        if not f.is_file():
            continue
        if name == "config.json":
            source = json.loads(f.read_text(encoding="utf-8"))
            patched = _patched_config(source, config, dtype)
            if patched != source:
                (out / name).write_text(json.dumps(patched, indent=2) + "\n", encoding="utf-8")
                done.append(name)
                continue
        shutil.copyfile(f, out / name)
        if name in _LEGACY_NAMED and '"GlmvProcessor"' in f.read_text(encoding="utf-8"):
            _rename_legacy_processor(out / name, config.get("model_type", "glm4v"))
        done.append(name)
    return done


_LEGACY_NAMED = ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json")


def _rename_legacy_processor(path: Path, model_type: str) -> None:
    """A file older glmv versions wrote naming ``GlmvProcessor``: named transformers' class instead."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("processor_class") == "GlmvProcessor":
        data["processor_class"] = PROCESSOR_CLASSES.get(model_type, "Glm4vProcessor")
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _patched_config(source: dict, new: dict, dtype: str) -> dict:
    """``source`` (a config.json) with each value it holds replaced by ``new``'s where they differ, and
    every dtype key set to ``dtype``; keys only ``new`` has (transformers' defaults) are not added."""
    out = {}
    for k, v in source.items():
        if k in ("dtype", "torch_dtype"):
            out[k] = dtype
        elif k == "transformers_version" or k not in new:
            out[k] = v
        elif isinstance(v, dict) and isinstance(new[k], dict):
            out[k] = _patched_config(v, new[k], dtype)
        else:
            out[k] = new[k]
    return out


def save_processor(processor, out: Path, model_type: str = "glm4v", keep: tuple | list = ()) -> None:
    """Writes a glmv-built processor as transformers' own processor of ``model_type`` would be saved:
    tokenizer files, chat template, ``processor_config.json`` / ``preprocessor_config.json`` /
    ``video_preprocessor_config.json``, each naming the transformers class (never ``GlmvProcessor``).
    Files named in ``keep`` (carried from a source) are left as they are."""
    from glmv_cli.modeling.video_processor import GlmvVideoProcessor

    cls = PROCESSOR_CLASSES.get(model_type, "Glm4vProcessor")
    saved = {f: (out / f).read_bytes() for f in keep if (out / f).is_file()}
    processor.save_pretrained(str(out))
    # Tools that predate processor_config.json (vLLM, older transformers) read this file.
    processor.image_processor.save_pretrained(str(out))
    vp = GlmvVideoProcessor.from_image_processor(processor)
    video = {"size": dict(vp.size), "patch_size": vp.patch_size, "temporal_patch_size": vp.temporal_patch_size,
             "merge_size": vp.merge_size, "image_mean": list(vp.image_mean), "image_std": list(vp.image_std),
             "do_rescale": True, "rescale_factor": vp.rescale_factor, "do_normalize": True, "do_resize": True,
             "do_convert_rgb": True, "do_sample_frames": True, "resample": 3, "fps": vp.fps,
             "max_duration": int(vp.max_duration), "video_processor_type": _VIDEO_PROCESSOR_TYPES[cls]}
    (out / "video_preprocessor_config.json").write_text(json.dumps({**video, "processor_class": cls}, indent=2) + "\n",
                                                         encoding="utf-8")
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        f = out / name
        if not f.is_file():
            continue
        data = json.loads(f.read_text(encoding="utf-8"))
        data["processor_class"] = cls
        if name == "processor_config.json":
            data["video_processor"] = video
        for d in (data, data.get("image_processor") or {}):
            if "image_processor_type" in d:
                d["image_processor_type"] = _IMAGE_PROCESSOR_TYPES[cls]
        f.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for f, blob in saved.items():
        (out / f).write_bytes(blob)
