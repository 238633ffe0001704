#!/usr/bin/env bash
# The ablation of benchmarks/ablation.py at the paper's FashionMNIST scale on one GPU.
#
# The `fashionmnist` preset (ResNet-18, 1000 initial labels + 1000 per cycle, a random
# subset of 10,000 pool images scanned per cycle, batch 128, lr 0.01) with fewer epochs,
# cycles and trials, so that it fits the time budget: by default 20 epochs, 2 cycles,
# 1 trial, on the test set, variants in order of importance (whatever the time limit
# leaves unfinished is missing from the tables, which are rewritten after each variant).
# On one H100 (21 ms per MoBYv2AL step, 10.5 ms per supervised step at this scale) the
# defaults take about 3 minutes.
#
# Run from the project root (on the GPU machine after the wheel install line of
# ../shared/gpu/prepare.sh, with .data carried):
#     bash benchmarks/gpu_ablation.sh
# Tried on the CPU with tiny sizes:
#     DATA=/path/to/fashion-mnist DEVICE=cpu BACKBONE=lenet5 INITIAL=100 BUDGET=100 \
#         EPOCHS=1 POOL=1000 LIMIT=300 bash benchmarks/gpu_ablation.sh
# Environment (defaults): OUT (./.gpu-out), DATA (.data), DEVICE (cuda), EPOCHS (20),
# CYCLES (2), TRIALS (1), SPLIT (test), VARIANTS (random,mobyv2al,joint-random,coreset,
# head-linear,weak-features), BACKBONE, INITIAL, BUDGET, POOL (preset values),
# IMBALANCE (unset; KEEP cuts the pool's even classes to KEEP images, as the authors'
# imbalanced CIFAR-10 does), LIMIT (seconds for the ablation step, 200), PYTHON (python3,
# or `uv run python` here).
set -uo pipefail
OUT=${OUT:-./.gpu-out}
DATA=${DATA:-.data}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
CYCLES=${CYCLES:-2}
TRIALS=${TRIALS:-1}
SPLIT=${SPLIT:-test}
VARIANTS=${VARIANTS:-random,mobyv2al,joint-random,coreset,head-linear,weak-features}
LIMIT=${LIMIT:-200}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/ablation"
log="$OUT/gpu_ablation.log"

extra=()
[ -n "${BACKBONE:-}" ] && extra+=(--backbone "$BACKBONE")
[ -n "${INITIAL:-}" ] && extra+=(--initial "$INITIAL")
[ -n "${BUDGET:-}" ] && extra+=(--budget "$BUDGET")
[ -n "${POOL:-}" ] && extra+=(--pool-subset "$POOL")
[ -n "${IMBALANCE:-}" ] && extra+=(--imbalance "$IMBALANCE")

{
  echo "== environment $(date -u +%FT%TZ)"
  timeout 60 nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
  timeout 120 $PYTHON -c "import torch, skmoby; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available())" 2>&1
  echo "== ablation: fashionmnist preset, $EPOCHS epochs, $CYCLES cycles, $TRIALS trial(s), \
$SPLIT split, limit ${LIMIT}s"
  start=$SECONDS
  timeout "$LIMIT" $PYTHON benchmarks/ablation.py --preset fashionmnist --data-root "$DATA" \
      --device "$DEVICE" --split "$SPLIT" --epochs "$EPOCHS" --cycles "$CYCLES" \
      --trials "$TRIALS" --variants "$VARIANTS" --out "$OUT/ablation" "${extra[@]}" 2>&1
  echo "== ablation exit $? after $((SECONDS - start)) s"
  echo "== tables (variants finished within the limit)"
  cat "$OUT/ablation/ablation.rst" 2>/dev/null || echo "no variant finished"
  echo "== what each variant picked (class shares, atypicality; benchmarks/selection_stats.py)"
  timeout 120 $PYTHON benchmarks/selection_stats.py --data-root "$DATA" --out "$OUT/ablation" 2>&1
} 2>&1 | tee "$log"
