#!/usr/bin/env bash
# Quality of every loss on the real Gowalla sample (../shared/data/gowalla_nyc.txt.gz: 819 users, 5,252 items after
# the paper's filter; 183 test users), one seed, the same SASRec setup for every loss. The README's table comes
# from `rece-bench report --results-dir results/gowalla-sample --format markdown` after this script.
# DEVICE and PRECISION (benchmarks/common.sh) pick where and how the runs compute.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh
RB=${RB:-.venv/bin/rece-bench}
OUT=${OUT:-results/gowalla-sample}
COMMON=(--dataset gowalla --epochs 80 --patience 10 --batch-size 16 --max-len 200 --results-dir "$OUT"
        "${DEVICE_ARGS[@]}")
[ -d datasets/gowalla ] || $RB prepare gowalla --raw ../shared/data/gowalla_nyc.txt.gz
$RB popularity --dataset gowalla --results-dir "$OUT"
run_every_loss "$RB" "${COMMON[@]}"
$RB report --results-dir "$OUT" --format markdown
