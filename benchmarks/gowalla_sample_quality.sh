#!/usr/bin/env bash
# Quality of every loss on the real Gowalla sample (../shared/data/gowalla_nyc.txt.gz: 819 users, 5,252 items after
# the paper's filter; 183 test users), one seed, the same SASRec setup for every loss. The README's table comes
# from `rece-bench report --results-dir results/gowalla-sample --format markdown` after this script.
set -euo pipefail
cd "$(dirname "$0")/.."
RB=${RB:-.venv/bin/rece-bench}
OUT=${OUT:-results/gowalla-sample}
COMMON=(--dataset gowalla --epochs 80 --patience 10 --batch-size 16 --max-len 200 --results-dir "$OUT")
[ -d datasets/gowalla ] || $RB prepare gowalla --raw ../shared/data/gowalla_nyc.txt.gz
$RB popularity --dataset gowalla --results-dir "$OUT"
for loss in ${LOSSES:-ce ce_chunked bce gbce ce_neg rece}; do
  case $loss in
    bce|ce_neg) params=(-p n_negatives=256) ;;
    gbce) params=(-p n_negatives=256 -p t=0.75) ;;
    rece) params=(-p n_extra_chunks=3 -p rounds=8) ;;
    *) params=() ;;
  esac
  $RB run --loss "$loss" "${params[@]}" "${COMMON[@]}"
done
$RB report --results-dir "$OUT" --format markdown
