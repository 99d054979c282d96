#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one go (one H200, no network): SFT MFU at the 7B config, the rollout
# engine at small size and one 7B-config rollout batch, RL steps at small size and at the 7B config. Each part
# writes its log to $OUT (or ./gpu_logs) and a failure in one does not stop the others.
#   bash benchmarks/gpu_suite.sh [part ...]      parts: mfu rollout_small rollout_7b rl_small rl_7b (default: all)
set -uo pipefail
out=${OUT:-gpu_logs}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
parts=${*:-mfu rollout_small rollout_7b rl_small rl_7b}
run() {  # name, timeout in s, command...
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee "$out/$name.log"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E "Loading weights|Writing model shards" | tee -a "$out/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
for part in $parts; do
  case $part in
    mfu)
      run mfu_4k 300 python3 benchmarks/sft_mfu.py --seq-len 4096 --batch 1
      run mfu_4k_b2 300 python3 benchmarks/sft_mfu.py --seq-len 4096 --batch 2
      run mfu_8k 300 python3 benchmarks/sft_mfu.py --seq-len 8192 --batch 1
      run mfu_16k_ckpt 300 python3 benchmarks/sft_mfu.py --seq-len 16384 --batch 1 --grad-ckpt ;;
    rollout_small)
      run rollout_small 170 python3 benchmarks/rollout_throughput.py --size small --episodes 32 --new-tokens 64 \
        --repeats 1 --rss-episodes 0 ;;
    rollout_7b)
      run rollout_7b 400 python3 benchmarks/rollout_throughput.py --size 7b --dtype bfloat16 --episodes 16 \
        --batches 1 16 --new-tokens 64 --repeats 1 --engines kv-reuse --rss-episodes 0 ;;
    rl_small)
      run rl_small 150 python3 benchmarks/rl_step.py --size small --steps 3 --batch 16 --generations 4 ;;
    rl_7b)
      run rl_7b 240 python3 benchmarks/rl_step.py --size 7b --dtype bfloat16 --steps 2 --batch 8 --generations 4 \
        --grad-ckpt ;;
  esac
done
