"""One set of records written in every layout glmv reads, for the format tests and benchmarks.

:func:`truth_records` makes small chat records (0-2 PNG images each, a GLM-4.1V answer, a
reference answer and a domain). Each ``write_*`` function writes them the way the named tool
lays its data out -- built by hand from each tool's documentation -- so a test can read every
layout back and compare the result with the glmv JSONL of the same records:

==================  =================================================================
``glmv``            glmv JSONL, images as PNG files next to it
``finetune``        GLM-V's ``finetune.json``: a JSON array of {messages, images}
``sharegpt``        LLaMA-Factory ShareGPT JSON: conversations from/value, system, images
``trl``             HF / TRL parquet: content parts, ``images`` as an HF Image list (bytes)
``openai``          JSONL with ``image_url`` parts: data URLs, ``file://`` URLs and paths
``verl``            verl RL parquet: prompt, images as {bytes, path}, reward_model, data_source
``easyr1``          EasyR1 parquet: problem, answer, images
``saved``           a ``save_to_disk`` folder of the TRL rows
==================  =================================================================

:func:`hub_cache_entry` places a parquet file in a ``datasets`` cache the way a download leaves
it, so ``hf:owner/name`` loads offline.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SIZES = [(56, 56), (84, 40), (40, 96), (112, 70), (30, 30), (64, 128)]
VERL_SOURCE = "acme/ocr-set"


def png_bytes(w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def truth_records(n: int = 6, *, boxed: bool = False) -> list[dict[str, Any]]:
    """``n`` records: ``id, system?, question (with <image> placeholders first), images (PNG
    bytes), reply (GLM-4.1V answer), reference, domain``. ``boxed`` makes the questions ask for
    ``\\boxed{}`` answers as verl's and EasyR1's prompt sets do."""
    out = []
    for i in range(n):
        k = i % 3
        imgs = [png_bytes(*SIZES[(i + j) % len(SIZES)], seed=10 * i + j) for j in range(k)]
        ask = " Put the final answer in \\boxed{}." if boxed else ""
        rec = {"id": f"q{i}", "question": "<image>" * k + f"Spell item {i}.{ask}", "images": imgs,
               "reply": f"<think>look</think><answer>it is <|begin_of_box|>abc{i}<|end_of_box|></answer>",
               "reference": f"abc{i}", "domain": "ocr"}
        if i == 1:
            rec["system"] = "You are a careful reader."
        out.append(rec)
    return out


def _files(d: Path, rec: dict) -> list[str]:
    names = []
    for j, b in enumerate(rec["images"]):
        name = f"img_{rec['id']}_{j}.png"
        (d / name).write_bytes(b)
        names.append(name)
    return names


def _messages(rec: dict) -> list[dict]:
    msgs = [{"role": "system", "content": rec["system"]}] if "system" in rec else []
    return msgs + [{"role": "user", "content": rec["question"]}, {"role": "assistant", "content": rec["reply"]}]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_glmv(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return _jsonl(d / "data.jsonl", [{"id": r["id"], "messages": _messages(r), "images": _files(d, r),
                                      "domain": r["domain"], "answer": r["reference"]} for r in recs])


def write_finetune(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": _messages(r), "images": _files(d, r), "id": r["id"], "domain": r["domain"],
             "answer": r["reference"]} for r in recs]
    (d / "finetune.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return d / "finetune.json"


def write_sharegpt(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in recs:
        row = {"conversations": [{"from": "human", "value": r["question"]}, {"from": "gpt", "value": r["reply"]}],
               "images": _files(d, r), "id": r["id"], "domain": r["domain"], "answer": r["reference"]}
        if "system" in r:
            row["system"] = r["system"]
        rows.append(row)
    (d / "sharegpt.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    return d / "sharegpt.json"


def _parts(rec: dict) -> list[dict]:
    k = len(rec["images"])
    text = rec["question"][len("<image>") * k:]
    # parquet stores parts as structs: every part has every key, unused ones null
    return [{"type": "image", "text": None}] * k + [{"type": "text", "text": text}]


def trl_dataset(recs: list[dict]) -> Any:
    """The records as an HF Dataset in TRL's vision layout (content parts + an Image list)."""
    import datasets

    rows: dict[str, list] = {"id": [], "messages": [], "images": [], "domain": [], "answer": []}
    for r in recs:
        msgs = [{"role": "system", "content": [{"type": "text", "text": r["system"]}]}] if "system" in r else []
        msgs += [{"role": "user", "content": _parts(r)},
                 {"role": "assistant", "content": [{"type": "text", "text": r["reply"]}]}]
        rows["id"].append(r["id"])
        rows["messages"].append(msgs)
        rows["images"].append([{"bytes": b, "path": None} for b in r["images"]])
        rows["domain"].append(r["domain"])
        rows["answer"].append(r["reference"])
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    features = datasets.Features({
        "id": datasets.Value("string"),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.List(part)}),
        "images": datasets.List(datasets.Image()), "domain": datasets.Value("string"),
        "answer": datasets.Value("string")})
    return datasets.Dataset.from_dict(rows, features=features)


def write_trl(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    trl_dataset(recs).to_parquet(str(d / "trl.parquet"))
    return d / "trl.parquet"


def write_saved(d: Path, recs: list[dict]) -> Path:
    trl_dataset(recs).save_to_disk(str(d / "saved"))
    return d / "saved"


def write_openai(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(recs):
        names = _files(d, r)
        parts = []
        for j, (b, name) in enumerate(zip(r["images"], names)):
            how = (i + j) % 3
            url = ("data:image/png;base64," + base64.b64encode(b).decode() if how == 0 else
                   (d / name).resolve().as_uri() if how == 1 else name)
            parts.append({"type": "image_url", "image_url": {"url": url}})
        k = len(r["images"])
        parts.append({"type": "text", "text": r["question"][len("<image>") * k:]})
        msgs = [{"role": "developer", "content": r["system"]}] if "system" in r else []
        msgs += [{"role": "user", "content": parts}, {"role": "assistant", "content": r["reply"]}]
        rows.append({"id": r["id"], "messages": msgs, "domain": r["domain"], "answer": r["reference"]})
    return _jsonl(d / "openai.jsonl", rows)


def verl_dataset(recs: list[dict], source: str = VERL_SOURCE) -> Any:
    """verl's RL layout (as its geo3k preprocessing writes it): no assistant turn."""
    import datasets

    rows: dict[str, list] = {"data_source": [], "prompt": [], "images": [], "ability": [], "reward_model": [],
                             "extra_info": []}
    for i, r in enumerate(recs):
        msgs = [{"role": "system", "content": r["system"]}] if "system" in r else []
        rows["data_source"].append(source)
        rows["prompt"].append(msgs + [{"role": "user", "content": r["question"]}])
        rows["images"].append([{"bytes": b, "path": None} for b in r["images"]])
        rows["ability"].append(r["domain"])
        rows["reward_model"].append({"style": "rule", "ground_truth": r["reference"]})
        rows["extra_info"].append({"split": "train", "index": i, "question": r["question"]})
    features = datasets.Features({
        "data_source": datasets.Value("string"),
        "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "images": datasets.List(datasets.Image()), "ability": datasets.Value("string"),
        "reward_model": {"style": datasets.Value("string"), "ground_truth": datasets.Value("string")},
        "extra_info": {"split": datasets.Value("string"), "index": datasets.Value("int64"),
                       "question": datasets.Value("string")}})
    return datasets.Dataset.from_dict(rows, features=features)


def write_verl(d: Path, recs: list[dict], source: str = VERL_SOURCE) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    verl_dataset(recs, source).to_parquet(str(d / "verl.parquet"))
    return d / "verl.parquet"


def write_easyr1(d: Path, recs: list[dict]) -> Path:
    import datasets

    d.mkdir(parents=True, exist_ok=True)
    rows = {"problem": [r["question"] for r in recs], "answer": [r["reference"] for r in recs],
            "images": [[{"bytes": b, "path": None} for b in r["images"]] for r in recs]}
    features = datasets.Features({"problem": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "images": datasets.List(datasets.Image())})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(d / "easyr1.parquet"))
    return d / "easyr1.parquet"


def hub_cache_entry(cache_dir: Path, repo: str, parquet: Path, config: str = "default", split: str = "train") -> Path:
    """Prepares ``parquet`` as the cached download of ``repo`` in a datasets cache (what a first
    online ``load_dataset(repo)`` leaves behind); returns the entry's directory."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    owner, name = repo.split("/")
    build = cache_dir / "_build"
    builder = Parquet(cache_dir=str(build), dataset_name=name, config_name=config,
                      data_files={split: str(parquet)}, hash="0" * 16)
    builder.download_and_prepare()
    target = cache_dir / f"{owner}___{name}" / config / "0.0.0" / ("0" * 16)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(builder.cache_dir, target)
    shutil.rmtree(build, ignore_errors=True)
    return target


WRITERS = {"glmv": write_glmv, "finetune": write_finetune, "sharegpt": write_sharegpt, "trl": write_trl,
           "openai": write_openai, "verl": write_verl, "easyr1": write_easyr1, "saved": write_saved}
