#!/usr/bin/env bash
# GPU checks of the estimator (device handling, pickling across machines, sample
# weights with captured CUDA-graph steps): the gpu-marked tests of the estimator's
# test modules, each module under its own timeout. Logs go to $OUT (default ./.gpu-out).
# About 2 minutes on one H100; run from the project root, e.g.
#   OUT=/tmp/out bash benchmarks/gpu_estimator_checks.sh
set -u
PYTHON="${PYTHON:-python}"  # e.g. PYTHON="uv run python" in a uv checkout
OUT="${OUT:-./.gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
for module in tests/classifier/test_faults_training.py tests/classifier/test_faults_persistence.py \
    tests/classifier/test_classifier.py; do
    name=$(basename "$module" .py)
    echo "== $module (gpu tests)"
    timeout 300 $PYTHON -m pytest "$module" -m gpu -q -p no:cacheprovider \
        -o addopts="" 2>&1 | tee "$OUT/gpu_estimator_$name.log" | tail -5
    rc=${PIPESTATUS[0]}
    echo "exit $rc" | tee -a "$OUT/gpu_estimator_$name.log"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
