#!/usr/bin/env bash
# The test command: set up .venv, then run the CPU test suite (GPU tests skip without CUDA).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup.sh"
cd "$here"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DS_ACCELERATOR=cpu TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
