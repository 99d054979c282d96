#!/usr/bin/env bash
# The toy line at the `medium` size on one GPU (issue 9, SPEC §6): `pxr pipeline toy_gpu`, then the text and blank
# controls of its evaluation. Stage times land in outputs/*/toy_gpu*/run.json (commit the record files); this log
# says when each command ended. A failed stage does not stop the controls that do not need it.
#   bash benchmarks/gpu_toy.sh            (on the GPU machine; wheels and PYTHONPATH as benchmarks/README.md says)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'cuda', torch.cuda.is_available())"
start=$SECONDS
step() {  # what, command...
  local what=$1 t=$SECONDS; shift
  echo "=== $what: $*"
  "$@"
  echo "=== $what: exit $? after $((SECONDS - t)) s ($((SECONDS - start)) s in all)"
}
step pipeline python3 -m pxr.cli pipeline toy_gpu
step text_control python3 -m pxr.cli run 40_evaluate toy_gpu_text
step blank_control python3 -m pxr.cli run 40_evaluate toy_gpu_blank
echo "=== done"
