#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one go (one H200, no network): SFT MFU at the 7B config, the rollout
# engine at small size and one 7B-config rollout batch, RL steps at small size and at the 7B config. Each part
# writes its log to $OUT (or ./gpu_logs) and a failure in one does not stop the others.
#   bash benchmarks/gpu_suite.sh [part ...]      parts: mfu rollout_small rollout_7b rl_small rl_7b (default: all)
#                                                rl_7b_micro rl_7b_onecall, and toy_bases and box_probe (in the
#                                                background; the script waits for them at the end)
set -uo pipefail
out=${OUT:-gpu_logs}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
parts=${*:-mfu rollout_small rollout_7b rl_small rl_7b}
base_logs=/tmp/gpu_base_logs; mkdir -p "$base_logs"  # the toy bases' logs: packed with their records at the end
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
    toy_bases)  # four variants of the toy line's perception base side by side on this GPU (outputs/LOG.md
      # 2026-12-04: on 2 CPU cores the `small` base's loss stayed at 2.6 for 4,000 steps). No synthesis run here:
      # the tokenizer is built from the generic corpus and the items' questions. Records: outputs/15_perception_base/
      for variant in "tiny:-p model_size=tiny" "small_read:-p n_peek=0 -p n_coarse=0" \
          "small_lr3e-4:-p learning_rate=3e-4" "tiny_read:-p model_size=tiny -p n_peek=0 -p n_coarse=0"; do
        name=${variant%%:*}
        # shellcheck disable=SC2086  # the variant's overrides are separate words
        (out=$base_logs run "base_$name" "${BASE_LIMIT:-500}" python3 -m pxr.runner.cli run 15_perception_base toy \
          --allow-dirty -p 'synth_dir=""' ${variant#*:} ${BASE_EXTRA:-} --as "probe_$name" > /dev/null) &
      done ;;
    box_probe)  # does a fresh `small` model write the asked tile's box given 48,000 examples? (in the background)
      run box_probe "${PROBE_LIMIT:-480}" python3 benchmarks/grid_box_probe.py /tmp/box_probe --items 1500 \
        --steps 3000 --batch 16 --threads 8 &
      ;;
    rl_7b_micro)  # micro-batched generation (RLConfig.generation_micro_batch_size) at the 7B config
      run rl_7b_micro 270 python3 benchmarks/rl_step.py --size 7b --dtype bfloat16 --grad-ckpt --generations 8 \
        --batch 16 --gen-micro-batch 8 --turn-tokens 256 --max-completion-length 1024 --steps 3 ;;
    rl_7b_onecall)  # the same step with all 16 rollouts in one generate call
      run rl_7b_onecall 180 python3 benchmarks/rl_step.py --size 7b --dtype bfloat16 --grad-ckpt --generations 8 \
        --batch 16 --turn-tokens 256 --max-completion-length 1024 --steps 3 ;;
    rl_7b)
      run rl_7b 240 python3 benchmarks/rl_step.py --size 7b --dtype bfloat16 --steps 2 --batch 8 --generations 4 \
        --grad-ckpt ;;
  esac
done
wait  # parts started in the background (toy_bases)
if [[ " $parts " == *" toy_bases "* ]]; then
  python3 benchmarks/run_curves.py 'outputs/15_perception_base/probe_*' --every 250 | tee "$out/toy_bases.txt"
  tar czf "$out/toy_bases.tgz" "$base_logs" outputs/15_perception_base/probe_*/{run.json,metrics.json,params.yaml} \
    outputs/15_perception_base/probe_*/executed.ipynb 2>/dev/null
fi
