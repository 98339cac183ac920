#!/usr/bin/env bash
# Runs the tests that need torchvision: the video-processor parity test against transformers'
# Glm4vVideoProcessor, and plain AutoProcessor (no glmv imported) on models glmv saved.
# torchvision cannot live beside the project's CPU torch 2.13.0, so this builds a separate
# environment (torch 2.14.1 + torchvision 0.29.1, ~5.5 GB on x86_64; at $GLMV_TV_VENV, default
# .venv-tv) and runs glmv from the source tree in it. Not part of CI; run by hand where disk allows.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${GLMV_TV_VENV:-.venv-tv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$venv/bin/python" -m pip install -q transformers==5.23.0 pillow==13.0.0 av==18.1.0 pytest==9.2.0 \
    pyyaml==6.0.3 typer==0.29.2 rich==15.0.0 safetensors==0.8.0 tokenizers==0.23.3
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONPATH="$here:$here/kernels"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_video_processor.py \
  tests/test_saved_processor_torchvision.py "$@"
