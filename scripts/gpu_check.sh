#!/usr/bin/env bash
# The GPU check in one command: install the carried wheels, pytest -m gpu, the GPU benchmarks;
# every figure into $OUT/gpu_check.json, a short log into $OUT/gpu_check.log (and pytest's XML).
#
#   bash scripts/gpu_check.sh             # on the GPU machine, .whl/ carried (docs/gpu-check.md)
#   bash scripts/gpu_check.sh --dry-run   # the same steps at toy sizes on the CPU (CI tests this)
#
# Steps, each under its own time limit (seconds; the sum stays under 8 minutes on an H200):
#   install 30 | pytest -m gpu 100 | exact 60 | sft 130 | kernels 70 | rollout 70
# A step that fails or runs out of time records {"error": ...} under its name and the next runs.
# GPU_CHECK_PARTS="sft rollout" runs only those parts (install and meta always run): a rerun of
# what broke, within the device time that is left.
# Wheels: $WHEEL_DIR (default .whl, filled by scripts/gpu_wheels.sh), installed --no-deps into
# $GLMV_TARGET (default a fresh temporary dir), which becomes PYTHONPATH: glmv is then imported
# from its wheel, not from the source tree; the run stops if that wheel was built from other
# sources than the tree's (a stamp written by gpu_wheels.sh). The dry run builds glmv's wheel
# afresh and installs it with those carried wheels that fit the Python it runs on. Exit status: 0 when every step ran and pytest had no failure, 1 otherwise.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; elif [ $# -gt 0 ]; then echo "usage: $0 [--dry-run]" >&2; exit 2; fi
OUT="${OUT:-$here/runs/gpu-check}"
mkdir -p "$OUT"
json="$OUT/gpu_check.json"
logf="$OUT/gpu_check.log"
: >"$logf"
rm -f "$json" "$OUT/pytest.xml"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-470}"  # seconds for all steps together
PARTS="${GPU_CHECK_PARTS:-pytest exact sft kernels rollout}"
declare -A LIMIT=([pytest]=100 [exact]=60 [sft]=130 [kernels]=70 [rollout]=70)
for part in $PARTS; do
  [ -n "${LIMIT[$part]:-}" ] || { echo "unknown part '$part' in GPU_CHECK_PARTS" >&2; exit 2; }
done
dflag=()
[ $dry = 1 ] && dflag=(--dry-run)
status=0
log() { echo "[+${SECONDS}s] $*" | tee -a "$logf"; }
left() { local cap=$1 rest=$((BUDGET - SECONDS)); [ "$rest" -lt "$cap" ] && cap=$rest; echo "$cap"; }
record_error() {  # part message
  "$PY" benchmarks/gpu_check.py --part "$1" --out "$json" "${dflag[@]}" --record-error "$2" >>"$logf" 2>&1
  status=1
}

# 1. install
target="${GLMV_TARGET:-$(mktemp -d /tmp/glmv-gpu-target.XXXXXX)}"
fresh=""
cleanup() { [ -n "${GLMV_TARGET:-}" ] || rm -rf "$target"; [ -z "$fresh" ] || rm -rf "$fresh"; }
trap cleanup EXIT
wheels="${WHEEL_DIR:-.whl}"
mapfile -t whls < <(ls "$wheels"/*.whl 2>/dev/null | grep -v '/glmv-[^/]*\.whl$')
if [ $dry = 1 ]; then
  # glmv's wheel is built fresh from this tree; .whl holds CPython 3.12 wheels, so a rehearsal on
  # another Python installs only those that fit it
  fresh="$(mktemp -d /tmp/glmv-wheel.XXXXXX)"
  log "dry run: building glmv's wheel into $fresh"
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$fresh" . >>"$logf" 2>&1
  rm -rf build ./*.egg-info kernels/*.egg-info
  if [ ${#whls[@]} -gt 0 ]; then
    mapfile -t whls < <("$PY" - "${whls[@]}" <<'PYEOF'
import sys
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename
ok = {str(t) for t in sys_tags()}
for f in sys.argv[1:]:
    tags = parse_wheel_filename(f.rsplit("/", 1)[-1])[3]
    (print(f) if any(str(t) in ok for t in tags) else print(f"skipped (not for this Python): {f}", file=sys.stderr))
PYEOF
    )
  fi
  whls+=("$fresh"/glmv-*.whl)
else
  if ! ls "$wheels"/glmv-*.whl >/dev/null 2>&1; then
    log "error: no glmv wheel in $wheels (run scripts/gpu_wheels.sh and carry .whl)"; exit 1
  fi
  if [ "$(cat "$wheels/glmv-source.sha256" 2>/dev/null)" != "$("$PY" benchmarks/gpu_check.py --source-hash)" ]; then
    log "error: $wheels/glmv-*.whl was built from other sources than this tree; rerun scripts/gpu_wheels.sh"; exit 1
  fi
  whls+=("$wheels"/glmv-*.whl)
fi
log "installing ${#whls[@]} wheels from $wheels into $target"
if ! timeout "$(left 30)" "$PY" -m pip install -q --no-index --no-deps --target "$target" "${whls[@]}" \
    >>"$logf" 2>&1; then
  log "error: the wheel install failed"; exit 1
fi
export PYTHONPATH="$target" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ $dry = 1 ]; then
  # the GPU machine has no DeepSpeed: train on the same torch path here; keep CPU threads few
  export GLMV_TRAIN_BACKEND=torch OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" DS_ACCELERATOR=cpu
fi
where="$("$PY" -P -c 'import glmv_cli, os; print(os.path.dirname(glmv_cli.__file__))' 2>>"$logf")"
case "$where" in
  "$target"/*) log "glmv imports from $where" ;;
  *) log "error: glmv imports from '$where', not from the installed wheel"; exit 1 ;;
esac

run_pytest() {  # limit: pytest -m gpu over the test files that hold GPU tests (the others need
  # packages that are not carried)
  local files rc
  files=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
  log "pytest -m gpu (limit $1s): $files"
  timeout -k 5 "$1" "$PY" -P -m pytest -m gpu -q -p no:cacheprovider --junitxml "$OUT/pytest.xml" $files \
    >>"$logf" 2>&1
  rc=$?
  tail -n 3 "$logf" | sed 's/^/    /'
  if [ -f "$OUT/pytest.xml" ]; then
    "$PY" benchmarks/gpu_check.py --part pytest --junit "$OUT/pytest.xml" --out "$json" "${dflag[@]}" >>"$logf" 2>&1
    [ $rc = 0 ] || status=1
  else
    record_error pytest "pytest exited $rc without a report (timeout $1s?)"
  fi
}

run_part() {  # part limit: one benchmark part of benchmarks/gpu_check.py
  local rc
  log "$1 (limit $2s)"
  timeout -k 5 "$2" "$PY" benchmarks/gpu_check.py --part "$1" --out "$json" --timeout $(($2 - 5)) "${dflag[@]}" \
    >"$OUT/$1.out" 2>&1
  rc=$?
  tail -c 600 "$OUT/$1.out" >>"$logf"; echo >>"$logf"
  rm -f "$OUT/$1.out"
  if [ $rc != 0 ]; then
    log "$1: exit $rc"; record_error "$1" "exit $rc$([ $rc = 124 ] && echo ' (timed out)')"
  fi
}

# 2. the parts: pytest -m gpu, then the benchmarks
"$PY" benchmarks/gpu_check.py --part meta --out "$json" "${dflag[@]}" >>"$logf" 2>&1 || record_error meta "failed"
for part in $PARTS; do
  t=$(left "${LIMIT[$part]}")
  if [ "$t" -lt 10 ]; then
    log "$part: skipped, the ${BUDGET}s budget is spent"; record_error "$part" "skipped: budget spent"; continue
  fi
  if [ "$part" = pytest ]; then run_pytest "$t"; else run_part "$part" "$t"; fi
done
log "done in ${SECONDS}s; figures in $json"
"$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' "$json"
exit $status
