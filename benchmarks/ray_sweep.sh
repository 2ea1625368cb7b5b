#!/usr/bin/env bash
# Throughput of the two sweep engines on this machine: the same 8-job sweep (gBCE, 8 values of t, which leaves a
# job's cost alone; about a minute per job on one thread of a quiet 2-core CPU) with `--engine local` (one job after
# another, one torch thread) and then with `--engine ray --cpus-per-job 1` (as many jobs at once as Ray has CPUs),
# back to back. Prints each engine's wall time and jobs per minute, and the ratio ray / local. Wall times are whole
# commands: the Ray one includes starting and stopping Ray. The load average is printed before and after: other
# work on the machine slows the engine that runs more jobs at once the most.
# Usage: benchmarks/ray_sweep.sh (about 12 minutes on 2 cores); EPOCHS=2 for a quick check of the script.
# DEVICE and PRECISION (benchmarks/common.sh) reach both sweeps (with DEVICE=cuda, Ray gives each job a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh
RB=${RB:-.venv/bin/rece-bench}
OUT=${OUT:-results/ray-sweep}
EPOCHS=${EPOCHS:-10}
rm -rf "$OUT/local" "$OUT/ray"
mkdir -p "$OUT"
[ -d "$OUT/data/ray-sweep" ] ||
  $RB prepare synthetic --name ray-sweep --users 3000 --items 3000 --interactions 150000 --seed 1 --data-dir "$OUT/data"
cat > "$OUT/grid.toml" <<'TOML'
[gbce]
batch_size = 64
n_negatives = 64
t = 0.9
cuts = [{t = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]}]
TOML
SWEEP=(sweep --dataset ray-sweep --loss gbce --grid "$OUT/grid.toml" --epochs "$EPOCHS" --patience "$EPOCHS"
       --max-len 50 --data-dir "$OUT/data" "${DEVICE_ARGS[@]}")

timed() {  # timed NAME ARGS...: run the sweep into $OUT/NAME; its start and end times go to $OUT/NAME.time
  local name=$1; shift
  local start=$EPOCHREALTIME
  OMP_NUM_THREADS=1 $RB "${SWEEP[@]}" --results-dir "$OUT/$name" "$@"
  echo "$start $EPOCHREALTIME" > "$OUT/$name.time"
}

echo "load before: $(uptime)"
timed local --engine local
timed ray --engine ray --cpus-per-job 1
echo "load after:  $(uptime)"
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rate = {}
for name in ("local", "ray"):
    start, end = map(float, (out / f"{name}.time").read_text().split())
    wall_s = end - start
    runs = [json.loads(p.read_text()) for p in (out / name / "runs").glob("*.json")]
    ok = sum(r["status"] == "ok" for r in runs)
    train_s = sum(r["train_time_s"] for r in runs)
    rate[name] = len(runs) / wall_s * 60
    print(f"{name:5}: {len(runs)} jobs ({ok} ok) in {wall_s:.0f} s = {rate[name]:.2f} jobs/min "
          f"(training {train_s / max(len(runs), 1):.0f} s a job)")
print(f"throughput ray / local: {rate['ray'] / rate['local']:.2f}x")
PY
