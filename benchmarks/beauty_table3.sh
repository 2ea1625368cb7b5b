#!/usr/bin/env bash
# The paper's Table 3: SASRec on Amazon Beauty (leave-one-out), RECE against CE (and SCE when `rece-bench losses`
# lists it), test NDCG@10 and HR@10 with their standard errors over the 22,363 test users, the paper's numbers beside.
#
# Usage: benchmarks/beauty_table3.sh OUTDIR        (data in OUTDIR/data, results in OUTDIR/results, OUTDIR/table3.md)
# Long: start it detached, e.g.  setsid nohup benchmarks/beauty_table3.sh /work/beauty > /work/beauty/log.txt 2>&1 &
#
# CONFIG picks the configuration:
#   cpu (default): what can run to a stop in about two hours on ONE thread of a shared 2-core CPU. The authors'
#       SASRec (d 256, 2 blocks, 1 head, dropout 0.5, Adam 1e-3, patience 10) with maxlen 20, batch 256 (87 steps an
#       epoch); RECE n_ec 3, r 8, n_b from the formula; CE (and SCE) on the same model. Epochs are capped
#       (RECE_EPOCHS, CE_EPOCHS, and DEADLINE for the runs after the first) so the whole job ends on time; the table
#       says whether each run stopped by patience (converged) or by the cap.
#   paper: the authors' configuration, `--preset paper` (batch 4096, n_b 907, n_ec 8, r 64, maxlen 200), up to
#       300 epochs, CE at the same model size and batch. Needs a GPU or days: on the 2-core CPU, even at maxlen 50,
#       its first epoch (5 steps, under memory tracking) had not ended after 524 s, with a 5.9 GB tensor peak;
#       maxlen 200 needs about 4x that, more than the 23 GB machine has.
# Why the cpu defaults (2026-12-02, one thread, 3-5 other jobs on the 2 cores): a step at batch 256, maxlen 50 took
#   about 2-3.3 s (CE) and 2.4-4 s (RECE 3, 8): 4-6 min an epoch with validation, about 12 epochs an hour. At maxlen
#   20 the steps took about 0.9-1.9 s (CE) and 1.7-1.9 s (RECE 3, 8), and a whole RECE epoch with validation 166-170 s
#   (the first, under memory tracking, 198 s): about 21 an hour. maxlen 20 keeps the whole training sequence of 96% of
#   the users (89% of the training positions; maxlen 50: 99.4% and 97.4%). RECE (8, 64) took 8 s a step at batch 256,
#   maxlen 50, four times CE: it cannot converge in the time. Rerun with CONFIG=paper or MAX_LEN=50 where time allows.
#
# DEVICE (cpu; cuda for a GPU) and PRECISION (unset: fp32; bf16 or fp16 autocast) reach every run:
#   `CONFIG=paper DEVICE=cuda PRECISION=bf16 benchmarks/beauty_table3.sh OUT` trains the authors' config on a GPU.
# Other knobs (env): THREADS (1), LOSSES (rece ce, plus sce when registered), MAX_LEN, BATCH, PATIENCE (10),
#   RECE_PARAMS ("-p n_extra_chunks=3 -p rounds=8"), SCE_PARAMS (""), RECE_EPOCHS (28), CE_EPOCHS (40),
#   DEADLINE (a time `date -d` understands, e.g. 16:00; runs after the first get at most
#   (DEADLINE - now) / EPOCH_S epochs, EPOCH_S default 130), SEED (1235), RECE_BENCH_KEEP_FREED_MEMORY (1: CPU
#   steps without page faults on every large temporary; tensor peaks are unchanged), RB (the rece-bench to run).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh  # DEVICE_ARGS
OUTDIR=$(realpath -m "${1:?usage: benchmarks/beauty_table3.sh OUTDIR}")
RB=${RB:-$PWD/.venv/bin/rece-bench}
PY=${PY:-$(dirname "$RB")/python}
CONFIG=${CONFIG:-cpu}
THREADS=${THREADS:-1}
PATIENCE=${PATIENCE:-10}
SEED=${SEED:-1235}
RAW=${RAW:-$PWD/../shared/data/beauty_s3rec.txt}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS  # torch's intra-op threads follow OMP_NUM_THREADS
export RECE_BENCH_KEEP_FREED_MEMORY=${RECE_BENCH_KEEP_FREED_MEMORY:-1}
DATA=$OUTDIR/data
RESULTS=$OUTDIR/results
mkdir -p "$OUTDIR"

if "$RB" losses | grep -qw sce; then DEFAULT_LOSSES="rece ce sce"; else DEFAULT_LOSSES="rece ce"; fi
LOSSES=${LOSSES:-$DEFAULT_LOSSES}

case $CONFIG in
  cpu)
    MAX_LEN=${MAX_LEN:-20}; BATCH=${BATCH:-256}
    MODEL=(--dim 256 --blocks 2 --heads 1 --dropout 0.5 --lr 1e-3 --max-len "$MAX_LEN" --batch-size "$BATCH")
    RECE_PARAMS=${RECE_PARAMS:--p n_extra_chunks=3 -p rounds=8}
    RECE_EPOCHS=${RECE_EPOCHS:-28}; CE_EPOCHS=${CE_EPOCHS:-40} ;;
  paper)
    MAX_LEN=${MAX_LEN:-200}; BATCH=${BATCH:-4096}
    MODEL=(--dim 256 --blocks 2 --heads 1 --dropout 0.5 --lr 1e-3 --max-len "$MAX_LEN" --batch-size "$BATCH")
    RECE_PARAMS=${RECE_PARAMS:---preset paper}
    RECE_EPOCHS=${RECE_EPOCHS:-300}; CE_EPOCHS=${CE_EPOCHS:-300} ;;
  *) echo "unknown CONFIG=$CONFIG: use cpu or paper" >&2; exit 2 ;;
esac
SCE_PARAMS=${SCE_PARAMS:-}
EPOCH_S=${EPOCH_S:-130}
DEADLINE_S=$([ -n "${DEADLINE:-}" ] && date -d "$DEADLINE" +%s || echo "")

echo "beauty_table3: CONFIG=$CONFIG DEVICE=$DEVICE PRECISION=${PRECISION:-fp32} THREADS=$THREADS LOSSES='$LOSSES'"
echo "  maxlen $MAX_LEN batch $BATCH patience $PATIENCE"
echo "  RECE: $RECE_PARAMS (up to $RECE_EPOCHS epochs); others up to $CE_EPOCHS epochs; deadline ${DEADLINE:-none}"
echo "  started $(date -u +%FT%TZ) on $(nproc --all) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

[ -f "$DATA/beauty/meta.json" ] || "$RB" prepare beauty --raw "$RAW" --data-dir "$DATA"

# Epochs for a run that starts now: its own cap, and no more than fit before the deadline.
epochs_for() {
  local cap=$1
  if [ -n "$DEADLINE_S" ]; then
    local fit=$(( ($DEADLINE_S - $(date +%s)) / EPOCH_S ))
    [ "$fit" -lt "$cap" ] && cap=$(( fit > 1 ? fit : 1 ))
  fi
  echo "$cap"
}

first=1
for loss in $LOSSES; do
  case $loss in
    rece) params=$RECE_PARAMS; cap=$RECE_EPOCHS ;;
    sce) params=$SCE_PARAMS; cap=$CE_EPOCHS ;;
    *) params=""; cap=$CE_EPOCHS ;;
  esac
  [ $first = 1 ] || cap=$(epochs_for "$cap")
  first=0
  echo "== $loss $params: up to $cap epochs, from $(date -u +%TZ)"
  # shellcheck disable=SC2086  # params are -p options (or --preset paper), split on purpose
  "$RB" run --dataset beauty --loss "$loss" $params "${MODEL[@]}" --epochs "$cap" --patience "$PATIENCE" \
      --seed "$SEED" "${DEVICE_ARGS[@]}" --data-dir "$DATA" --results-dir "$RESULTS" \
    || echo "!! $loss ended with exit code $?"
  echo "== $loss done at $(date -u +%TZ)"
done

"$RB" report --results-dir "$RESULTS" --dataset beauty --format json > "$OUTDIR/report.json"
"$PY" - "$RESULTS" "$PATIENCE" > "$OUTDIR/table3.md" <<'EOF'
"""Table 3 layout from the run files (they carry the standard errors that `report --format json` leaves out)."""
import json, sys
from pathlib import Path

PAPER = {"rece": (0.0525, 0.0897, "RECE paper, Table 3"), "sce": (0.0544, 0.0935, "SCE paper")}
runs = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1], "runs").glob("beauty-*.json"))]
patience = int(sys.argv[2])
print("| loss | configuration | NDCG@10 ± s.e. | HR@10 ± s.e. | paper NDCG@10 / HR@10 | difference in s.e. "
      "(NDCG, HR) | epochs (best) | stopped by | train time |")
print("|---|---|---|---|---|---|---|---|---|")
ORDER = ("rece", "sce", "ce")
for run in sorted(runs, key=lambda r: ORDER.index(r["loss"]) if r["loss"] in ORDER else len(ORDER)):
    p, m = run["params"], run.get("metrics", {})
    knobs = ", ".join(f"{k.removeprefix('loss.')} {v}" for k, v in p.items() if k.startswith("loss."))
    config = f"d {p['dim']}, maxlen {p['max_len']}, batch {p['batch_size']}" + (f", {knobs}" if knobs else "")
    if run["status"] != "ok":
        print(f"| {run['loss']} | {config} | {run['status']} | | | | {run['epochs']} ({run['best_epoch']}) | | |")
        continue
    n, h = m["ndcg@10"], m["hr@10"]
    n_se, h_se = m["ndcg@10_se"], m["hr@10_se"]
    paper, diff = "-", "-"
    if run["loss"] in PAPER:
        pn, ph, _ = PAPER[run["loss"]]
        paper, diff = f"{pn:.4f} / {ph:.4f}", f"{(n - pn) / n_se:+.1f}, {(h - ph) / h_se:+.1f}"
    stopped = "patience" if run["epochs"] - run["best_epoch"] >= patience else "epoch cap (not converged)"
    print(f"| {run['loss']} | {config} | {n:.4f} ± {n_se:.4f} | {h:.4f} ± {h_se:.4f} | {paper} | {diff} | "
          f"{run['epochs']} ({run['best_epoch']}) | {stopped} | {run['train_time_s'] / 60:.0f} min |")
print()
print("s.e. = sample std / sqrt(test users) (22,363 users); difference = (ours - paper) / our s.e.")
EOF
cat "$OUTDIR/table3.md"
echo "finished $(date -u +%FT%TZ)"
