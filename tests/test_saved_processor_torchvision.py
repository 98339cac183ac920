"""A model glmv saved is a standard HF model: with torchvision installed, plain ``AutoProcessor`` in a
fresh interpreter (no glmv imported) loads transformers' own processor, and it turns an image into
``pixel_values``. Runs where torchvision is installed (scripts/test_torchvision_parity.sh builds
such an environment); elsewhere tests/test_published.py checks that the same load fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchvision")
torch.set_num_threads(1)

_FRESH = """
import json, sys
import numpy as np
from PIL import Image
from transformers import AutoProcessor
p = AutoProcessor.from_pretrained(sys.argv[1])
img = Image.fromarray((np.arange(112 * 112 * 3) % 251).astype("uint8").reshape(112, 112, 3))
msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many shapes?"}]}]
text = p.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
enc = p(images=[img], text=[text], return_tensors="pt")
print(json.dumps({"class": type(p).__name__, "glmv": any(k.startswith("glmv_cli") for k in sys.modules),
                  "pixel_values": list(enc["pixel_values"].shape), "grid": enc["image_grid_thw"].tolist(),
                  "image_tokens": int((enc["input_ids"] == p.image_token_id).sum())}))
"""


def _fresh(out) -> dict:
    r = subprocess.run([sys.executable, "-c", _FRESH, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["glm41v", "glm46v"])
def test_saved_checkpoint_processor_handles_images_without_glmv(published, tmp_path, kind):
    from glmv_cli.modeling import load, save

    src = published(kind)
    model, proc = load(src, dtype="fp32")
    save(model, proc, tmp_path, source=src)
    got = _fresh(tmp_path)
    want_class = "Glm46VProcessor" if kind == "glm46v" else "Glm4vProcessor"
    # 112x112 -> 8x8 patches of 14 px (64 rows of 3*2*14*14 values), 2x2 merged -> 16 image tokens
    assert got == {"class": want_class, "glmv": False, "pixel_values": [64, 1176], "grid": [[1, 8, 8]],
                   "image_tokens": 16}


def test_saved_preset_processor_handles_images_without_glmv(tmp_path):
    from glmv_cli.modeling import load, save

    model, proc = load("tiny")
    save(model, proc, tmp_path)
    got = _fresh(tmp_path)
    assert got == {"class": "Glm4vProcessor", "glmv": False, "pixel_values": [64, 1176], "grid": [[1, 8, 8]],
                   "image_tokens": 16}
