#!/usr/bin/env bash
# Jobs per GPU: throughput of 1, 2 and 3 concurrent ResNet-18 fits on one GPU, without
# and (when nvidia-cuda-mps-control exists) with CUDA MPS. About 3 minutes on one H100.
#
#   bash benchmarks/gpu_parallel.sh                        # on the GPU machine
#   DEVICE=cpu BACKBONE=cnn N=256 SIZE=8 EPOCHS=1 JOBS="1 2" bash benchmarks/gpu_parallel.sh
#
# Each step runs under its own timeout; results (one JSON line per K) and logs go to
# $OUT (default ./.gpu-out). PYTHON picks the interpreter (default: python).
set -u
OUT=${OUT:-./.gpu-out}
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
BACKBONE=${BACKBONE:-resnet18}
N=${N:-4096}
SIZE=${SIZE:-32}
EPOCHS=${EPOCHS:-3}
JOBS=${JOBS:-"1 2 3"}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
log="$OUT/gpu_parallel.log"
: > "$log"

run() {  # label, then extra arguments
    local label=$1
    shift
    echo "== jobs per GPU ($label): K = $JOBS" | tee -a "$log"
    timeout "$STEP_TIMEOUT" "$PYTHON" "$here/gpu_parallel.py" --device "$DEVICE" \
        --backbone "$BACKBONE" --n "$N" --size "$SIZE" --epochs "$EPOCHS" \
        --jobs $JOBS --label "$label" "$@" 2>>"$OUT/gpu_parallel.stderr" \
        | tee -a "$log" "$OUT/gpu_parallel_$label.jsonl"
    echo "   exit status ${PIPESTATUS[0]}" | tee -a "$log"
}

run no-mps

if [ "$DEVICE" != cpu ] && command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
    export CUDA_MPS_PIPE_DIRECTORY="$OUT/mps-pipe" CUDA_MPS_LOG_DIRECTORY="$OUT/mps-log"
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if timeout 20 nvidia-cuda-mps-control -d; then
        run mps
        echo quit | timeout 20 nvidia-cuda-mps-control
    else
        echo "== MPS: the daemon did not start; skipped" | tee -a "$log"
    fi
else
    echo "== MPS: nvidia-cuda-mps-control not found (or CPU run); skipped" | tee -a "$log"
fi
echo "logs: $log" | tee -a "$log"
