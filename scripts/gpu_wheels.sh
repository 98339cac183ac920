#!/usr/bin/env bash
# Fills .whl/ with what the GPU check carries: the wheels of scripts/gpu-wheels.txt for CPython
# 3.12 on manylinux x86_64 (binary only, no dependencies resolved: the list is complete), plus
# glmv's own wheel. Prints each wheel with its size and the total, and fails above 64 MiB (what
# travels with the working tree). Run on any machine that reaches the package index.
#   bash scripts/gpu_wheels.sh            # then: see docs/gpu-check.md for the device command
# WHEEL_PY=3.11 WHEEL_DIR=/tmp/whl311 bash scripts/gpu_wheels.sh: the same list for another CPython
# (to rehearse the install in a local venv of that version).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY="${PYTHON:-.venv/bin/python}"
out="${WHEEL_DIR:-.whl}"
py="${WHEEL_PY:-3.12}"
abi="cp${py/./}"
rm -rf "$out"
mkdir -p "$out"
"$PY" -m pip download -q -d "$out" --no-deps --only-binary=:all: \
  --python-version "$py" --implementation cp --abi "$abi" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -r scripts/gpu-wheels.txt 2> >(grep -v "is ignored: it is neither" >&2)
# glmv itself (installed --no-deps there): setuptools from this environment, no network build env
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$out" .
rm -rf build ./*.egg-info kernels/*.egg-info
"$PY" benchmarks/gpu_check.py --source-hash >"$out/glmv-source.sha256"  # gpu_check.sh checks it
total=0
for f in "$out"/*.whl; do
  n=$(stat -c %s "$f")
  total=$((total + n))
  printf '%9.2f MiB  %s\n' "$(echo "$n / 1048576" | bc -l)" "$(basename "$f")"
done
printf '%9.2f MiB  total (%d wheels)\n' "$(echo "$total / 1048576" | bc -l)" "$(ls "$out"/*.whl | wc -l)"
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "error: the wheels exceed 64 MiB, the most that travels with the working tree" >&2
  exit 1
fi
