#!/usr/bin/env bash
# Creates .venv (if missing) and installs glmv into it: torch FIRST (pinned CPU/CUDA wheel
# chosen by the local index; an unpinned resolve would pull a multi-GB CUDA build), then the
# pinned dependencies from pyproject.toml. Idempotent: a second run only checks the pins.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.glmv-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
echo "$want" > "$stamp"
