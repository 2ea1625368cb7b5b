#!/usr/bin/env bash
# The GPU check (issue 15 part 2), in one command that ends in under 8 minutes on one GPU (an H200):
#   1. the CUDA tests (tests/test_cuda.py: every registered loss against itself on CPU in float64, the budget
#      probe's CUDA cap, the allocator peak with NVML beside it, a run and a step benchmark on CUDA);
#   2. `bench-loss` at C = 100,000 / 173,511 / 1,000,000 for every registered loss (RECE at (1, 1) and at (3, 8)),
#      forward+backward at N 8,192, D 64, with the allocator's peak; full CE is skipped where it cannot fit; then in
#      bf16 at C 173,511 and 1,000,000: the exact fused CEs of other projects (cce, liger_ce: where their kernels
#      run; cce has no fp32 backward) beside ce, ce_chunked, rece and sce;
#   3. `bench-step` on synth-gowalla (Gowalla's sizes, generated) for the README's seven configurations at batch 32,
#      then CE and RECE (3, 8) at a larger batch (BIG_BATCH, 256): the paper's "12x less memory" read as the ratio
#      CE peak / RECE peak of a whole step at the same batch;
#   4. OUTDIR/gpu_check.md (the tables) and OUTDIR/gpu_check.json (every row, the environment, what ran and how).
# Every step runs under `timeout`, sized from what is left of TOTAL_S (460 s), so the script always ends in time
# and still writes what it has; a step cut short is named in the report.
#
# Usage: benchmarks/gpu_check.sh OUTDIR
#   DEVICE (cuda) and QUICK (0): `DEVICE=cpu QUICK=1 benchmarks/gpu_check.sh /tmp/gc` is the smoke run on a CPU (tiny
#   sizes, under 2 minutes). Raw result files go to RAW (OUTDIR/raw), the synthetic data to DATA (RAW/data).
# Python: PY if given; else .venv/bin/python if its torch suits DEVICE; else a python3 whose own torch has CUDA and
#   that holds the project's dependencies (a GPU image: the project runs from this checkout, nothing is installed);
#   else `make install` (TORCH picks the build; PyPI's torch==2.13.0 for Linux includes CUDA; needs the network).
# Expected on an H200 (not yet run there): about 4-5 minutes; synth-gowalla is generated on the CPU beside the tests
#   (16 s on the 2-core CPU). OUTDIR gets 7 files (log.txt, steps.tsv, env.json, cuda_tests.xml, prepare.txt,
#   gpu_check.md, gpu_check.json); point RAW outside it (RAW=/tmp/gc-raw) where only a few files can come back.
set -uo pipefail  # no -e: a failed or timed-out step is recorded and the script goes on
cd "$(dirname "$0")/.."
OUTDIR=$(realpath -m "${1:?usage: benchmarks/gpu_check.sh OUTDIR}")
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
TOTAL_S=${TOTAL_S:-460}
RAW=${RAW:-$OUTDIR/raw}
DATA=${DATA:-$RAW/data}
REPORT_S=20  # kept back for the report
STARTED=$(date +%s)
mkdir -p "$OUTDIR" "$RAW" "$DATA"
LOG=$OUTDIR/log.txt
STEPS=$OUTDIR/steps.tsv  # name, exit code, seconds, limit: the report reads it
: > "$STEPS"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1 RECE_BENCH_CUDA_TESTS=1  # the CUDA tests never skip silently where a GPU is expected

if [ "$QUICK" = 1 ]; then
  ITEMS=(2000 5000); POSITIONS=512; REPEATS=2
  SYNTH=(synthetic --users 400 --items 3000 --interactions 30000 --no-filter --name synth-quick); SET=synth-quick
  STEP_ARGS=(--batch-size 16 --max-len 50 --steps 2 --warmup 1); BIG_BATCH=${BIG_BATCH:-32}; BIG_LEN=50
else
  ITEMS=(100000 173511 1000000); POSITIONS=8192; REPEATS=5
  SYNTH=(synthetic --like gowalla --name synth-gowalla); SET=synth-gowalla
  STEP_ARGS=(--batch-size 32 --max-len 200 --steps 5 --warmup 2); BIG_BATCH=${BIG_BATCH:-256}; BIG_LEN=200
fi

left() { echo $(( STARTED + TOTAL_S - REPORT_S - $(date +%s) )); }

# step NAME CAP_S COMMAND...: run it under a limit of min(CAP_S, time left); record exit code and time.
step() {
  local name=$1 cap=$2; shift 2
  local limit; limit=$(left)
  [ "$limit" -gt "$cap" ] && limit=$cap
  if [ "$limit" -lt 5 ]; then
    echo "== $name: skipped, no time left"; printf '%s\tskipped\t0\t0\n' "$name" >> "$STEPS"; return
  fi
  echo "== $name (limit ${limit} s): $*"
  local t0 rc; t0=$(date +%s)
  timeout -k 10 "$limit" "$@"; rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$STEPS"
  [ "$rc" = 124 ] && echo "== $name: stopped at its limit of ${limit} s"
}

torch_suits() {  # does this python's torch suit DEVICE?
  "$1" -c "import sys, torch; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
}

if [ -n "${PY:-}" ]; then :
elif [ -x .venv/bin/python ] && torch_suits .venv/bin/python; then PY=.venv/bin/python
elif command -v python3 > /dev/null && torch_suits python3 \
    && python3 -c "import typer, rich, pandas, pyarrow, pytest, hypothesis" 2>/dev/null; then PY=python3
else
  step install 240 make install
  PY=.venv/bin/python
fi
case $PY in */*) PY=$(realpath -ms "$PY") ;; esac  # -s: a venv's python is a link that must stay one
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the checkout's rece_bench, installed or not
RB=$RAW/rece-bench  # the CLI through the chosen python, as a program that `timeout` can run
printf '#!/bin/sh\nexec "%s" -c %s "$@"\n' "$PY" \
    "'import sys; from rece_bench.cli import app; sys.argv[0] = \"rece-bench\"; app()'" > "$RB"
chmod +x "$RB"

"$PY" - "$OUTDIR/env.json" "$DEVICE" <<'EOF'
import json, platform, subprocess, sys
import torch
env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
       "device": sys.argv[2], "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    env.update(gpu=props.name, gpu_memory_bytes=props.total_memory)
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
json.dump(env, open(sys.argv[1], "w"), indent=2)
print("environment:", env)
EOF
if [ "$DEVICE" != cpu ] && ! torch_suits "$PY"; then
  echo "!! $PY has no CUDA torch: only the report is written"
  printf 'cuda\tno CUDA torch\t0\t0\n' >> "$STEPS"
else
  # every loss that runs on DEVICE in fp32 (new losses included; cce, liger_ce only where their kernels run)
  LOSS_NAMES=$("$PY" -c "from rece_bench.losses import LOSSES; print(' '.join(n for n, c in LOSSES.items()
               if c.unavailable_reason('$DEVICE', 'fp32') is None))")
  # the exact fused CEs of other projects in bf16 (cce needs it) beside the losses a user weighs them against
  BF16_NAMES=$("$PY" -c "from rece_bench.losses import LOSSES; print(' '.join(n for n in
               ('ce', 'ce_chunked', 'rece', 'sce', 'cce', 'liger_ce') if LOSSES[n].unavailable_reason('$DEVICE', 'bf16') is None))")
  BF16_ARGS=(); for name in $BF16_NAMES; do BF16_ARGS+=(--loss "$name"); done
  LOSS_ARGS=(); for name in $LOSS_NAMES; do LOSS_ARGS+=(--loss "$name"); done
  # The synthetic set is generated on the CPU while the GPU runs the tests and bench-loss.
  PREP_T0=$(date +%s)
  if [ -f "$DATA/$SET/meta.json" ]; then PREP_PID=""; else
    PREP_LIMIT=$(( $(left) > 90 ? $(left) - 60 : 30 ))
    (timeout -k 10 "$PREP_LIMIT" "$RB" prepare "${SYNTH[@]}" --data-dir "$DATA" > "$OUTDIR/prepare.txt" 2>&1
     echo $? > "$RAW/prepare.rc") &
    PREP_PID=$!
  fi
  wait_prepare() {
    [ -n "$PREP_PID" ] || return 0
    echo "== waiting for prepare $SET"; wait "$PREP_PID"
    printf 'prepare %s\t%s\t%s\t-\n' "$SET" "$(cat "$RAW/prepare.rc")" "$(( $(date +%s) - PREP_T0 ))" >> "$STEPS"
    tail -4 "$OUTDIR/prepare.txt"; PREP_PID=""
  }

  # 1. CUDA tests (on a CPU they skip, which the report shows)
  step cuda-tests 150 "$PY" -m pytest tests/test_cuda.py -m cuda -q -rs -p no:cacheprovider \
      --junitxml="$OUTDIR/cuda_tests.xml"

  # 2. the losses alone: one command per catalogue size, so that a slow size cannot take the others' time
  for items in "${ITEMS[@]}"; do
    step "bench-loss C=$items" 90 "$RB" bench-loss --device "$DEVICE" --items "$items" --positions "$POSITIONS" \
        --dim 64 --repeats "$REPEATS" "${LOSS_ARGS[@]}" --results-dir "$RAW"
  done
  for items in "${ITEMS[@]:1}"; do  # C 173,511 and 1,000,000 (the quick run: its larger size)
    step "bench-loss bf16 C=$items" 60 "$RB" bench-loss --device "$DEVICE" --precision bf16 --items "$items" \
        --positions "$POSITIONS" --dim 64 --repeats "$REPEATS" "${BF16_ARGS[@]}" --results-dir "$RAW"
  done
  step "bench-loss rece (3, 8)" 60 "$RB" bench-loss --device "$DEVICE" --items "$(IFS=,; echo "${ITEMS[*]}")" \
      --positions "$POSITIONS" --dim 64 --repeats "$REPEATS" --loss rece --param rece.n_extra_chunks=3 \
      --param rece.rounds=8 --results-dir "$RAW"

  # 3. a whole training step (bench-step saves each row as it lands)
  wait_prepare
  CONFIGS=(--config ce --config rece:n_extra_chunks=3,rounds=8 --config rece:n_extra_chunks=1,rounds=1
           --config ce_chunked --config bce:n_negatives=256 --config gbce:n_negatives=256
           --config ce_neg:n_negatives=256)
  for name in $LOSS_NAMES; do  # a loss the README's list does not know yet, at its defaults
    case " ce rece ce_chunked bce gbce ce_neg " in *" $name "*) ;; *) CONFIGS+=(--config "$name") ;; esac
  done
  step "bench-step batch ${STEP_ARGS[1]}" 150 "$RB" bench-step --dataset "$SET" "${STEP_ARGS[@]}" "${CONFIGS[@]}" \
      --device "$DEVICE" --data-dir "$DATA" --results-dir "$RAW"
  step "bench-step batch $BIG_BATCH" 90 "$RB" bench-step --dataset "$SET" --batch-size "$BIG_BATCH" \
      --max-len "$BIG_LEN" --steps 3 --warmup 1 --config ce --config rece:n_extra_chunks=3,rounds=8 \
      --device "$DEVICE" --data-dir "$DATA" --results-dir "$RAW"
fi

# 4. the report, whatever ran
timeout -k 5 $(( REPORT_S - 2 )) "$PY" benchmarks/gpu_check_report.py "$OUTDIR" "$RAW" \
  || echo "!! the report failed: the raw rows are under $RAW"
echo "gpu_check: $(( $(date +%s) - STARTED )) s in all; report in $OUTDIR/gpu_check.md"
