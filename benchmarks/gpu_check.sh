#!/usr/bin/env bash
# Every GPU measurement of skmoby in one run, in order of importance, each step under its
# own time limit, logs in $OUT (default .gpu-out/). Sized for one H100 in about 8 minutes.
#
# On the offline GPU machine, start with the line ../shared/gpu/prepare.sh prints (it
# installs the missing wheels and sets PYTHONPATH), then:
#   bash benchmarks/gpu_check.sh
# Try it on the CPU with tiny sizes:
#   GPU_CHECK_TINY=1 PY="uv run python" bash benchmarks/gpu_check.sh
#
# Steps and their limits (seconds); PARTS picks them (default: the first four, about
# 8 minutes in all; the last two need a second run within one device session's budget):
#   tests     pytest -m gpu tests                                120
#   training  benchmarks/train_step.py, ResNet-18 3x32x32         120  (fit vs authors' loop)
#   protocol  skmoby run, fashionmnist preset, 1 trial, 2 cycles  120  (protocol wall time)
#   coreset   benchmarks/gpu_coreset.sh                           150
#   parallel  benchmarks/gpu_parallel.sh (jobs per GPU)           180
#   ablation  benchmarks/gpu_ablation.sh (paper-scale ablation)   180
#   e.g. PARTS="parallel ablation" bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-.gpu-out}
PY=${PY:-python3}
TINY=${GPU_CHECK_TINY:-0}
PARTS=" ${PARTS:-tests training protocol coreset} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
DATA=${DATA_ROOT:-.data}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OUT PY GPU_CHECK_TINY="$TINY" TINY PYTHON="$PY"
summary="$OUT/summary.txt"
: > "$summary"

step() {  # step NAME LIMIT COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee -a "$summary"
    timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$summary"
    tail -n 25 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" \
    >> "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

if want tests; then
    if [ "$TINY" = 1 ]; then
        step pytest_gpu 120 $PY -m pytest -o addopts="" -p no:cacheprovider -q -m gpu \
            tests/classifier/test_training_path.py
    else
        step pytest_gpu 120 $PY -m pytest -o addopts="" -p no:cacheprovider -q -m gpu tests
    fi
fi
if want training; then
    if [ "$TINY" = 1 ]; then
        step train_step 120 $PY benchmarks/train_step.py --backbone lenet5 --n 256 \
            --epochs 1 --queue 256 --workers 0
    else
        step train_step 120 $PY benchmarks/train_step.py --backbone resnet18 --device cuda \
            --n 8192 --epochs 2 --workers 12
    fi
fi

if ! want protocol; then
    :
elif [ "$TINY" = 1 ]; then
    step protocol 120 $PY -m skmoby.cli run --dataset digits --backbone cnn --initial 50 \
        --budget 50 --cycles 2 --trials 1 --epochs 1 --methods mobyv2al,random \
        --out "$OUT/protocol" --quiet
elif [ -d "$DATA/FashionMNIST/raw" ]; then
    step protocol 120 $PY -m skmoby.cli run --preset fashionmnist --trials 1 --cycles 2 \
        --methods mobyv2al,random --data-root "$DATA" --device cuda \
        --out "$OUT/protocol" --quiet
else
    echo "=== protocol: skipped, no FashionMNIST under $DATA" | tee -a "$summary"
fi
if want protocol && [ -f "$OUT/protocol/results.csv" ]; then
    echo "--- protocol results (fit_seconds: before this change one H100 took 68.6 s and"
    echo "    137.1 s for mobyv2al cycles 0-1, 16.8 s and 31.7 s for random)"
    cat "$OUT/protocol/results.csv"
fi | tee -a "$summary"

for extra in coreset:150 parallel:180 ablation:180; do
    name=${extra%%:*}
    limit=${extra##*:}
    if want "$name"; then
        step "gpu_$name" "$limit" bash "benchmarks/gpu_$name.sh"
    fi
done
echo "=== done; logs in $OUT" | tee -a "$summary"
