#!/usr/bin/env bash
# GLM-4.1V-9B-Thinking, the paper's pipeline (arXiv 2507.01006) on glmv, stage by stage:
#   pack-pretrain -> pretrain -> pack-long -> extend-context -> pack-sft -> sft -> grade-difficulty -> rlcs -> eval
# The YAML recipes beside this script hold the hyper-parameters (each commented with its source); this
# script supplies the paths, the launcher and --resume auto.
#
# Usage: LAUNCHER=torchrun (default): run the same command on every node, with MASTER_ADDR, MASTER_PORT
# and NODE_RANK set; LAUNCHER=deepspeed: run it on node 0 only, with HOSTFILE (pdsh reaches the rest).
#   recipes/glm41v-9b/launch.sh --work /shared/run1 \
#       --init-vision AIMV2_HUGE_DIR --init-llm GLM4_9B_0414_DIR --processor GLM41V_TOKENIZER_DIR \
#       --pretrain-input captions.jsonl:2 --pretrain-input interleaved.jsonl ... \
#       --long-input long_docs.jsonl --long-input video.jsonl ... \
#       --sft-input cot.jsonl ... --rl-data rl.jsonl --rl-eval rl_heldout.jsonl \
#       --grader OTHER_VLM_DIR [--human-labels labels.jsonl] [--bench-dir BENCH_DIR] [STAGE ...]
# With no STAGE every stage runs in order. Re-running the same command resumes: a stage whose artifact
# has a manifest.json is skipped, training stages continue from their newest checkpoint (--resume auto)
# and grade-difficulty keeps its finished chunks. DRY_RUN=1 prints the commands instead of running them.
# --work must be on a filesystem every node sees: the other nodes wait for node 0's artifacts there.
#
# Wall-time estimates (H100 SXM, 989 TFLOP/s bf16 dense peak, assumed MFU 40 % = 395.6 TFLOP/s/GPU):
# training FLOPs = 6 * N * tokens with N = 10.29e9 (the glm-4.1v-9b preset, vision tower included).
# Attention adds 12 * layers * hidden * ctx per token (ctx = mean attended length, as glmv's logged mfu
# counts it): at most +13 % at 8k and +52 % at 32k when every sample fills its pack, less with
# short samples -- the second figure of each range below.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAUNCHER="${LAUNCHER:-torchrun}"          # torchrun (rendezvous, run on every node) | deepspeed (hostfile, run on node 0)
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
HOSTFILE="${HOSTFILE:-}"
RUN_ID="${RUN_ID:-glmv-glm41v-9b}"
PYTHON="${PYTHON:-python}"
DRY_RUN="${DRY_RUN:-0}"
# nodes per distributed stage (x GPUS_PER_NODE processes); the global batches of the recipes
# (1536, 1536, 32) must be multiples of the process count -- tests/test_recipes.py checks these defaults
PRETRAIN_NODES="${PRETRAIN_NODES:-64}"
LONG_NODES="${LONG_NODES:-64}"
SFT_NODES="${SFT_NODES:-4}"
RL_NODES="${RL_NODES:-1}"   # glmv rlcs: ZeRO-2 data parallel (docs/memory-plan.md)
GRADE_NODES="${GRADE_NODES:-1}"   # glmv grade-difficulty: one shard of the records per GPU

ALL_STAGES=(pack-pretrain pretrain pack-long extend-context pack-sft sft grade-difficulty rlcs eval)

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

die() { echo "launch.sh: $*" >&2; exit 2; }

WORK="" INIT_VISION="" INIT_LLM="" PROCESSOR="" RL_DATA="" RL_EVAL="" HUMAN_LABELS="" BENCH_DIR="" REWARD_CONFIG=""
PRETRAIN_INPUTS=() LONG_INPUTS=() SFT_INPUTS=() GRADERS=() STAGES=()
while (($#)); do
  case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --init-vision) INIT_VISION="$2"; shift 2 ;;
    --init-llm) INIT_LLM="$2"; shift 2 ;;
    --processor) PROCESSOR="$2"; shift 2 ;;
    --pretrain-input) PRETRAIN_INPUTS+=("$2"); shift 2 ;;
    --long-input) LONG_INPUTS+=("$2"); shift 2 ;;
    --sft-input) SFT_INPUTS+=("$2"); shift 2 ;;
    --rl-data) RL_DATA="$2"; shift 2 ;;
    --rl-eval) RL_EVAL="$2"; shift 2 ;;
    --grader) GRADERS+=("$2"); shift 2 ;;
    --human-labels) HUMAN_LABELS="$2"; shift 2 ;;
    --bench-dir) BENCH_DIR="$2"; shift 2 ;;
    --reward-config) REWARD_CONFIG="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) die "unknown flag $1 (see --help)" ;;
    all) STAGES+=("${ALL_STAGES[@]}"); shift ;;
    *) STAGES+=("$1"); shift ;;
  esac
done
[[ -n "$WORK" ]] || die "--work DIR is required"
((${#STAGES[@]})) || STAGES=("${ALL_STAGES[@]}")
for s in "${STAGES[@]}"; do
  [[ " ${ALL_STAGES[*]} " == *" $s "* ]] || die "unknown stage '$s'; stages: ${ALL_STAGES[*]}"
done
[[ "$LAUNCHER" == torchrun || "$LAUNCHER" == deepspeed ]] || die "LAUNCHER must be torchrun or deepspeed"

run() {  # prints the command under DRY_RUN=1, else runs it
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@"; printf '\n'; else "$@"; fi
}

done_already() {  # a complete artifact (manifest.json is written last) is never redone
  if [[ -f "$1/manifest.json" ]]; then echo "launch.sh: skip $(basename "$1"): complete" >&2; return 0; fi
  return 1
}

wait_for() {  # nodes that do not run a stage wait for its artifact on the shared filesystem
  [[ "$DRY_RUN" == 1 ]] && return 0
  echo "launch.sh: node $NODE_RANK waits for $1/manifest.json" >&2
  until [[ -f "$1/manifest.json" ]]; do sleep 60; done
}

single() {  # single-process stage on node 0 (torchrun: the other nodes wait); args: OUT, glmv args...
  local out="$1"; shift
  done_already "$out" && return 0
  if [[ "$LAUNCHER" == torchrun && "$NODE_RANK" != 0 ]]; then wait_for "$out"; return 0; fi
  run "$PYTHON" -m glmv_cli.main "$@"
}

distributed() {  # args: NODES, OUT, glmv args... ; every process runs the same glmv command
  local nodes="$1" out="$2"; shift 2
  done_already "$out" && return 0
  if [[ "$LAUNCHER" == torchrun ]]; then
    if ((NODE_RANK >= nodes)); then wait_for "$out"; return 0; fi
    run torchrun --nnodes "$nodes" --nproc_per_node "$GPUS_PER_NODE" --rdzv_backend c10d \
      --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$RUN_ID-$1" -m glmv_cli.main "$@"
  else
    [[ -n "$HOSTFILE" || "$nodes" == 1 ]] || die "LAUNCHER=deepspeed needs HOSTFILE for $nodes nodes"
    # --no_local_rank: glmv reads LOCAL_RANK from the environment, it takes no --local_rank flag
    run deepspeed ${HOSTFILE:+--hostfile "$HOSTFILE"} --num_nodes "$nodes" --num_gpus "$GPUS_PER_NODE" \
      --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no_local_rank --module glmv_cli.main "$@"
  fi
}

need() { [[ -n "$2" ]] || die "stage $1 needs $3"; }
inputs() { for x in "$@"; do printf '%s\n%s\n' --input "$x"; done; }  # one --input per spec

W="$WORK"
for stage in "${STAGES[@]}"; do
  case "$stage" in
    pack-pretrain)
      # CPU, one node (16 cores): tokenising ~1.5e12 tokens is the cost, not the packing; split the
      # mixture into several --pretrain-input files and run more --workers if it is too slow.
      need "$stage" "$PROCESSOR" "--processor (the GLM-4.1V tokenizer + image processor directory)"
      ((${#PRETRAIN_INPUTS[@]})) || die "stage $stage needs --pretrain-input"
      mapfile -t args < <(inputs "${PRETRAIN_INPUTS[@]}")
      single "$W/packed-pretrain" pack --recipe "$HERE/pack-pretrain.yaml" --model "$PROCESSOR" \
        "${args[@]}" --out "$W/packed-pretrain" ;;
    pretrain)
      # 64 nodes x 8 H100 = 512 GPUs. tokens = 120,000 x 1,536 x 8,192 = 1.510e12;
      # FLOPs = 6 x 10.29e9 x 1.510e12 = 9.32e22 (+13 % attention: 1.05e23);
      # 9.32e22 / 3.956e14 FLOP/s = 2.36e8 GPU-s = 65,500 GPU-h (74,000 with attention);
      # / 512 GPUs = 128 h = 5.3 days (144 h = 6.0 days), ~3.8 s per step.
      need "$stage" "$INIT_VISION" "--init-vision"; need "$stage" "$INIT_LLM" "--init-llm"
      distributed "$PRETRAIN_NODES" "$W/pretrain" pretrain --recipe "$HERE/pretrain.yaml" \
        --data "$W/packed-pretrain" --init-vision "$INIT_VISION" --init-llm "$INIT_LLM" \
        --out "$W/pretrain" --resume auto ;;
    pack-long)
      # CPU, one node: packs the long-context mixture (video + >8k interleaved + pre-training data).
      ((${#LONG_INPUTS[@]})) || die "stage $stage needs --long-input"
      mapfile -t args < <(inputs "${LONG_INPUTS[@]}")
      single "$W/packed-long" pack --recipe "$HERE/pack-long.yaml" --model "$W/pretrain" \
        "${args[@]}" --out "$W/packed-long" ;;
    extend-context)
      # 64 nodes x 8 H100 = 512 GPUs. tokens = 10,000 x 1,536 x 32,768 = 5.03e11;
      # FLOPs = 6 x 10.29e9 x 5.03e11 = 3.11e22 (+52 % attention: 4.73e22);
      # 3.11e22 / 3.956e14 = 7.86e7 GPU-s = 21,800 GPU-h (33,200); / 512 = 43 h = 1.8 days (65 h = 2.7 days).
      distributed "$LONG_NODES" "$W/long" extend-context --recipe "$HERE/extend-context.yaml" \
        --model "$W/pretrain" --data "$W/packed-long" --out "$W/long" --resume auto ;;
    pack-sft)
      # CPU, one node: the long-CoT cold-start set (minutes to hours, by its size).
      ((${#SFT_INPUTS[@]})) || die "stage $stage needs --sft-input"
      mapfile -t args < <(inputs "${SFT_INPUTS[@]}")
      single "$W/packed-sft" pack --recipe "$HERE/pack-sft.yaml" --model "$W/long" \
        "${args[@]}" --out "$W/packed-sft" ;;
    sft)
      # 4 nodes x 8 H100 = 32 GPUs (global batch 32: one pack per GPU, no accumulation).
      # tokens = 2,000 x 32 x 32,768 = 2.10e9; FLOPs = 6 x 10.29e9 x 2.10e9 = 1.29e20 (+52 %: 1.97e20);
      # 1.29e20 / 3.956e14 = 3.27e5 GPU-s = 91 GPU-h (138); / 32 = 2.8 h (4.3 h), ~5 s per step.
      distributed "$SFT_NODES" "$W/sft" sft --recipe "$HERE/sft.yaml" \
        --model "$W/long" --data "$W/packed-sft" --out "$W/sft" --resume auto ;;
    grade-difficulty)
      # Data parallel over GRADE_NODES x GPUS_PER_NODE processes: rank r grades the chunks j with
      # j mod N = r (each rank its own vLLM on its GPU) and rank 0 merges one artifact. Cost =
      # generation: R records x k=8 rollouts x (1 + number of --grader models) responses of up to
      # 12,288 tokens. At an assumed 5,000 generated tokens/s per GPU (vLLM, 9B, one H100) and ~3,000
      # tokens per response: 100,000 records x 8 x 2 models x 3,000 = 4.8e9 tokens / 5,000 = 9.6e5
      # GPU-s = 11 GPU-days, ~1.4 days on one 8-GPU node. A rerun keeps every finished chunk.
      need "$stage" "$RL_DATA" "--rl-data"
      gargs=(--model "$W/sft")
      for g in ${GRADERS[@]+"${GRADERS[@]}"}; do gargs+=(--model "$g"); done
      if [[ -n "$HUMAN_LABELS" ]]; then gargs+=(--human-labels "$HUMAN_LABELS"); fi
      if [[ -n "$REWARD_CONFIG" ]]; then gargs+=(--reward-config "$REWARD_CONFIG"); fi
      distributed "$GRADE_NODES" "$W/grades" grade-difficulty --recipe "$HERE/grade-difficulty.yaml" \
        --data "$RL_DATA" "${gargs[@]}" --out "$W/grades" --resume auto ;;
    rlcs)
      # Data parallel over RL_NODES x GPUS_PER_NODE processes with ZeRO-2 (rlcs.yaml): each rank rolls
      # out and updates on 1/N of the prompts and rows; scored groups are all-gathered so every rank
      # keeps the same sampler. Memory per H100 on 1 node (docs/memory-plan.md): 37.9 GiB resident
      # (bf16 weights 19.2 replicated, gradients 2.4 + buckets, fp32 master and AdamW 14.4) + the KV
      # cache of 64 decoded rows (33.7 GiB), or in the update ~24 GiB of checkpointed activations.
      # Per step: 256 groups x 8 = 2,048 responses (more with expansion, up to 4x) of up to 12,288
      # tokens. Update FLOPs = 6 x 10.29e9 x (2,048 x ~3,000 tokens) = 3.8e17 = 16 min at 395.6 TFLOP/s
      # on one GPU; rollouts dominate (paper §5.3): 6.1e6 tokens at an assumed 5,000 tokens/s per GPU =
      # 20 min (glmv rlcs decodes with transformers in the training process, slower than vLLM).
      # ~36 min of GPU time per step: ~4.5 min per step on one 8-GPU node, 1,000 steps ~ 3 days.
      need "$stage" "$RL_DATA" "--rl-data"
      rargs=(--grades "$W/grades")
      if [[ -n "$RL_EVAL" ]]; then rargs+=(--eval-data "$RL_EVAL"); fi
      if [[ -n "$REWARD_CONFIG" ]]; then rargs+=(--reward-config "$REWARD_CONFIG"); fi
      distributed "$RL_NODES" "$W/rlcs" rlcs --recipe "$HERE/rlcs.yaml" --model "$W/sft" --data "$RL_DATA" \
        "${rargs[@]}" --out "$W/rlcs" --resume auto ;;
    eval)
      # One GPU, node 0: the GLM-4.1V benchmark suite, generation-bound (hours per benchmark set).
      eargs=()
      if [[ -n "$BENCH_DIR" ]]; then eargs+=(--data-dir "$BENCH_DIR"); fi
      single "$W/eval" eval --recipe "$HERE/eval.yaml" --model "$W/rlcs" \
        ${eargs[@]+"${eargs[@]}"} --out "$W/eval" ;;
  esac
done
