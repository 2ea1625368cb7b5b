#!/usr/bin/env bash
# Quality of every loss on the embedded default dataset (synthetic: 2,000 users, 1,000 items, 100,000 interactions,
# seed 0), one seed, the same small SASRec setup for every loss, with popularity for scale. The README's table comes
# from `rece-bench report --results-dir results/synthetic --format markdown` after this script.
# DEVICE and PRECISION (benchmarks/common.sh) pick where and how the runs compute.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh
RB=${RB:-.venv/bin/rece-bench}
OUT=${OUT:-results/synthetic}
COMMON=(--dataset synthetic --epochs 40 --patience 3 --batch-size 128 --max-len 50 --results-dir "$OUT"
        "${DEVICE_ARGS[@]}")
[ -d datasets/synthetic ] || $RB prepare synthetic
$RB popularity --dataset synthetic --max-len 50 --results-dir "$OUT"
run_every_loss "$RB" "${COMMON[@]}"
$RB report --results-dir "$OUT" --format markdown
