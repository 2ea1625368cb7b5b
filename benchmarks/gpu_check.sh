#!/usr/bin/env bash
# The GPU check (issues 15, 18, 19, 20, 22), in one command that ends in under 8 minutes on one GPU (an H200).
# Steps run most important first, each under `timeout` (its own cap, and never past what is left of TOTAL_S), so a
# run cut short still answers the key questions; a failed, cut or skipped step is recorded and the script goes on.
#   wheels    .whl/*.whl (cut-cross-entropy, liger-kernel; pure Python) installed into SITE, put on PYTHONPATH
#   tests     tests/test_cuda.py and tests/kernels/test_cuda_kernels.py -m cuda (the CUDA cases and the compiled
#             Triton kernels; 0 failed expected; they fail, not skip, without a GPU)
#   mission   the README's commands on CUDA: `prepare` a small synthetic set, `run --loss rece --budget 2GB
#             --device cuda` in bf16 and in fp32 (plain `cuda`, no index: it crashed at a35faee), `report`
#   losses    every available loss under --precision bf16, then fp32: bench-loss C 173,511, N 8,192, D 64, --ops
#   step256   issue 19: a whole step (bench-step, synth-gowalla, batch 256, fp32): RECE (3,8) against CE
#   cce       issue 20: ce, cce, liger_ce, ce_chunked, rece (3,8), sce in bf16 at C 173,511, N 51,200
#   triton    issue 22: ce_chunked and rece (3,8) with kernel=triton, fp32 at N 8,192 (C 173,511 and 1e6) and
#             bf16 at N 51,200 (beside CCE); the torch rows are the other steps' (kernel=torch)
#   grid      issues 19/20: ce, (cce), ce_chunked, rece (3,8), sce at the rest of C {173,511, 1e6} x N {8,192,
#             51,200} x {fp32, bf16}
#   rece11    issue 19: RECE (1,1) at both C, both N, both precisions
#   stepbf16  issue 20: a whole step in bf16 at batch 256 for ce, rece (3,8), cce, liger_ce, ce_chunked, sce
#   kbench    `python -m rece_bench.kernels.bench` (torch against triton timings), where the module exists
#   beauty    one epoch of Beauty with the paper's config (beauty_table3.sh CONFIG=paper), RECE then CE, fp32
#   profile   bench-loss --profile: the torch profiler's table for rece (3,8), fp32, C 173,511, N 8,192
#   step32    the README's seven configurations (and every other loss) at batch 32, fp32
# The data sets (the mission's, synth-gowalla, Beauty) are prepared on the CPU in the background from the start.
# Then OUTDIR/gpu_check.md (one table per question, targets with PASS/MISS, every step's exit code and time) and
# OUTDIR/gpu_check.json (every row, the environment, the commands).
#
# Usage: benchmarks/gpu_check.sh OUTDIR
# Environment:
#   DEVICE (cuda), QUICK (0; 1 = tiny sizes, every step at most 40 s, grid/rece11/step32 left out, Beauty only with
#   BEAUTY_QUICK=1: `DEVICE=cpu QUICK=1 benchmarks/gpu_check.sh /tmp/gc` is the CPU smoke run, 2-4 minutes on the
#   shared 2-core CPU), TOTAL_S (460), ONLY / SKIP (space-separated step groups above, e.g. ONLY="beauty kbench"
#   for a second run), RAW (raw rows and data; default OUTDIR.raw, beside OUTDIR: OUTDIR keeps 6 files: log.txt,
#   steps.tsv, env.json, cuda_tests.xml, gpu_check.md, gpu_check.json; where only a folder's few files come back,
#   make OUTDIR that folder or name RAW outside it: RAW=/tmp/gc-raw), WHEELS (.whl), SITE (/tmp/site),
#   BEAUTY (the Beauty file; default shared/data/beauty_s3rec.txt in the checkout, else ../shared/data/...; only the
#   repository travels to a device machine, so carry the file in an ignored folder and name it here).
# Python: PY if given; else .venv/bin/python if its torch suits DEVICE; else a python3 whose own torch has CUDA and
#   that holds the project's dependencies (a GPU image: the project runs from this checkout, nothing is installed);
#   else `make install` (TORCH picks the build; needs the network).
set -uo pipefail  # no -e: a failed or timed-out step is recorded and the script goes on
cd "$(dirname "$0")/.."
OUTDIR=$(realpath -m "${1:?usage: benchmarks/gpu_check.sh OUTDIR}")
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
TOTAL_S=${TOTAL_S:-460}
RAW=$(realpath -m "${RAW:-$OUTDIR.raw}")
DATA=${DATA:-$RAW/data}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
ONLY=${ONLY:-}
REPORT_S=20  # kept back for the report
STARTED=$(date +%s)
mkdir -p "$OUTDIR" "$RAW" "$DATA" "$RAW/steps"
LOG=$OUTDIR/log.txt
STEPS=$OUTDIR/steps.tsv  # name, exit code, seconds, limit, command: the report reads it
: > "$STEPS"
rm -f "$OUTDIR/cuda_tests.xml"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1
# the CUDA tests never skip silently where a GPU is expected (they fail instead); on a CPU they skip
[ "$DEVICE" = cpu ] || export RECE_BENCH_CUDA_TESTS=1

if [ "$QUICK" = 1 ]; then
  # the smoke run checks the script, not the losses: tiny sizes, one data set for the runs and the steps, at most
  # QUICK_CAP_S a step, and the grid, rece11 and step32 left out (they take the code paths of cce and step256;
  # SKIP="" runs them too)
  C_MAIN=2000; C_BIG=5000; N_SMALL=256; N_BIG=1024; REPEATS_KEY=1; REPEATS=1
  MISSION_SET=(synthetic --users 300 --items 200 --interactions 6000 --name mission); MISSION_NAME=mission
  MISSION_ARGS=(--dataset mission --epochs 1 --max-len 20)
  SYNTH=("${MISSION_SET[@]}"); SET=mission
  STEP_LEN=20; BIG_BATCH=${BIG_BATCH:-32}; SMALL_STEPS=(--batch-size 16 --steps 2 --warmup 1)
  SKIP=${SKIP-grid rece11 step32}; QUICK_CAP_S=${QUICK_CAP_S:-40}
else
  C_MAIN=173511; C_BIG=1000000; N_SMALL=8192; N_BIG=51200; REPEATS_KEY=5; REPEATS=3
  MISSION_SET=(synthetic); MISSION_NAME=synthetic  # the embedded default set (2,000 users, 1,000 items)
  MISSION_ARGS=(--dataset synthetic --epochs 2)
  SYNTH=(synthetic --like gowalla --name synth-gowalla); SET=synth-gowalla
  STEP_LEN=200; BIG_BATCH=${BIG_BATCH:-256}; SMALL_STEPS=(--batch-size 32 --steps 5 --warmup 2)
fi
SKIP=${SKIP:-}
SIZES="{\"c_main\": $C_MAIN, \"c_big\": $C_BIG, \"n_small\": $N_SMALL, \"n_big\": $N_BIG,"
SIZES+=" \"big_batch\": $BIG_BATCH, \"set\": \"$SET\"}"  # for the report's headings and targets
RECE38=rece:n_extra_chunks=3,rounds=8,kernel=torch
RECE11=rece:n_extra_chunks=1,rounds=1,kernel=torch
CHUNKED=ce_chunked:kernel=torch

left() { echo $(( STARTED + TOTAL_S - REPORT_S - $(date +%s) )); }
want() {  # want GROUP: is this step group selected by ONLY / SKIP?
  { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; } && [[ " $SKIP " != *" $1 "* ]]
}
record() {  # record NAME EXIT SECONDS LIMIT COMMAND: one line of steps.tsv (the command on one line)
  local command=${5//[$'\t\n']/ }
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${command//  / }" >> "$STEPS"
}
skip_step() { echo "== $1: skipped, $2"; record "$1" "skipped: $2" 0 0 "-"; }

# step NAME CAP_S COMMAND...: run it under a limit of min(CAP_S, time left); record exit code and time.
step() {
  local name=$1 cap=$2; shift 2
  [ -n "${QUICK_CAP_S:-}" ] && [ "$cap" -gt "$QUICK_CAP_S" ] && cap=$QUICK_CAP_S
  local limit; limit=$(left)
  [ "$limit" -gt "$cap" ] && limit=$cap
  LAST_RC=skipped
  if [ "$limit" -lt 5 ]; then skip_step "$name" "no time left"; return; fi
  echo "== $name (limit ${limit} s): $*"
  local t0 rc; t0=$(date +%s)
  timeout -k 10 "$limit" "$@"; rc=$?
  LAST_RC=$rc
  record "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" "$*"
  [ "$rc" = 124 ] && echo "== $name: stopped at its limit of ${limit} s"
}

# 0. the wheels first: the loss registry and every later step see cce and liger_ce where they are carried
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  mkdir -p "$SITE"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

torch_suits() {  # does this python's torch suit DEVICE?
  "$1" -c "import sys, torch; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null
}
if [ -n "${PY:-}" ]; then :
elif [ -x .venv/bin/python ] && torch_suits .venv/bin/python; then PY=.venv/bin/python
elif command -v python3 > /dev/null && torch_suits python3 \
    && python3 -c "import typer, rich, pandas, pyarrow, pytest" 2>/dev/null; then PY=python3
else
  step install 240 make install
  PY=.venv/bin/python
fi
case $PY in */*) PY=$(realpath -ms "$PY") ;; esac  # -s: a venv's python is a link that must stay one
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  # pure-Python wheels: pip where the interpreter has it, else unpacked (a wheel is a zip of the installed tree)
  step wheels 60 sh -c '"$0" -m pip install --quiet --no-index --no-deps --upgrade --target "$1" "$2"/*.whl \
      || for w in "$2"/*.whl; do "$0" -m zipfile -e "$w" "$1" || exit 1; done' "$PY" "$SITE" "$WHEELS"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the checkout's rece_bench, installed or not
RB=$RAW/rece-bench  # the CLI through the chosen python, as a program that `timeout` can run
printf '#!/bin/sh\nexec "%s" -c %s "$@"\n' "$PY" \
    "'import sys; from rece_bench.cli import app; sys.argv[0] = \"rece-bench\"; app()'" > "$RB"
chmod +x "$RB"

# The environment and what this checkout offers (options, losses available per precision, kernel parameters):
# env.json for the report, features.sh for the steps below. Features another branch has not landed yet read as
# absent, and the steps that need them are skipped with the reason.
"$PY" - "$OUTDIR/env.json" "$RAW/features.sh" "$DEVICE" "$SIZES" "$QUICK" <<'EOF'
import importlib.metadata, importlib.util, json, platform, shlex, subprocess, sys
import torch
env = {"python": platform.python_version(), "python_path": sys.executable, "torch": torch.__version__,
       "cuda": torch.version.cuda, "device": sys.argv[3], "cuda_available": torch.cuda.is_available(),
       "quick": sys.argv[5] == "1", "sizes": json.loads(sys.argv[4])}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    env.update(gpu=props.name, gpu_memory_bytes=props.total_memory)
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
for dist, module in (("triton", "triton"), ("cut-cross-entropy", "cut_cross_entropy"),
                     ("liger-kernel", "liger_kernel"), ("hypothesis", "hypothesis")):
    try:
        env[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        env[dist] = "installed (no metadata)" if importlib.util.find_spec(module) else "absent"
feats = {"options": {}, "available": {}, "unavailable": {}, "kernel_losses": [], "errors": []}


def _parse_param(loss):
    from rece_bench.bench.loss import parse_param
    return parse_param(f"{loss}.kernel=triton")


def _parse_config(loss):
    from rece_bench.cli.bench import parse_loss_config
    return parse_loss_config(f"{loss}:kernel=triton")


try:
    import typer.main
    from rece_bench.cli import app
    for name, command in typer.main.get_command(app).commands.items():
        feats["options"][name] = sorted(opt for param in command.params for opt in param.opts)
except Exception as exc:  # the check must go on and say why
    feats["errors"].append(f"CLI options: {exc!r}")
try:
    from rece_bench.bench.loss import all_losses
    from rece_bench.device import resolve_device
    from rece_bench.losses.base import lookup
    device = resolve_device(sys.argv[3])
    feats["kernel_cli"] = {"bench-loss": [], "bench-step": []}
    for loss in all_losses():
        cls = lookup(loss)
        if any(spec.name == "kernel" for spec in cls.params):
            feats["kernel_losses"].append(loss)
            for kind, parse in (("bench-loss", _parse_param), ("bench-step", _parse_config)):
                try:  # can the command pass kernel=... to this loss? (a str parameter some parsers refuse)
                    parse(loss)
                    feats["kernel_cli"][kind].append(loss)
                except Exception as exc:
                    feats["errors"].append(f"{kind} cannot pass {loss}'s kernel parameter: {exc}")
        for precision in ("fp32", "bf16", "fp16"):
            reason = None
            if hasattr(cls, "unavailable_reason"):
                try:
                    reason = cls.unavailable_reason(device, precision)
                except Exception as exc:
                    reason = f"unavailable_reason raised {exc!r}"
            if reason is None:
                feats["available"].setdefault(precision, []).append(loss)
            else:
                feats["unavailable"].setdefault(precision, {})[loss] = reason
except Exception as exc:
    feats["errors"].append(f"losses: {exc!r}")
feats["kernels_bench"] = importlib.util.find_spec("rece_bench.kernels.bench") is not None if importlib.util.find_spec(
    "rece_bench.kernels") else False
env["features"] = feats
json.dump(env, open(sys.argv[1], "w"), indent=2)
with open(sys.argv[2], "w") as out:
    for name, opts in feats["options"].items():
        print(f"OPTS_{name.replace('-', '_')}={shlex.quote(' '.join(opts))}", file=out)
    for precision in ("fp32", "bf16", "fp16"):
        print(f"LOSSES_{precision}={shlex.quote(' '.join(feats['available'].get(precision, [])))}", file=out)
    print(f"KERNEL_LOSSES={shlex.quote(' '.join(feats['kernel_losses']))}", file=out)
    for kind, losses in feats.get("kernel_cli", {}).items():
        print(f"KERNEL_CLI_{kind.replace('-', '_')}={shlex.quote(' '.join(losses))}", file=out)
    print(f"KERNELS_BENCH={int(feats['kernels_bench'])}", file=out)
print("environment:", {k: v for k, v in env.items() if k != "features"})
print("losses available:", feats["available"], "unavailable:", feats["unavailable"])
print("kernel parameter:", feats["kernel_losses"], "errors:", feats["errors"])
EOF
# shellcheck source=/dev/null
source "$RAW/features.sh" 2> /dev/null || true

has() { local v="OPTS_${1//-/_}"; [[ " ${!v:-} " == *" $2 "* ]]; }  # has COMMAND OPTION
# precision_args COMMAND PRECISION: the option, or nothing for fp32 where the command has no --precision
precision_args() {
  if has "$1" --precision; then echo "--precision $2"; elif [ "$2" = fp32 ]; then echo ""; else return 1; fi
}
available() { local v="LOSSES_$2"; [[ " ${!v:-} " == *" $1 "* ]]; }  # available LOSS PRECISION

# loss_args KIND PRECISION SPEC...: bench-loss options (KIND loss) or bench-step --config options (KIND config)
# for the specs (LOSS[:KEY=VALUE,...]) whose loss is available at PRECISION; kernel=torch is dropped where the loss
# has no kernel parameter (torch is then its only path), a loss asked for another kernel is left out.
loss_args() {
  local kind=$1 precision=$2; shift 2
  local spec loss pairs pair kept cli_var=KERNEL_CLI_bench_loss
  [ "$kind" = config ] && cli_var=KERNEL_CLI_bench_step
  for spec in "$@"; do
    loss=${spec%%:*}; pairs=""; [[ $spec == *:* ]] && pairs=${spec#*:}
    if ! available "$loss" "$precision"; then
      echo "   ($loss: not registered, or unavailable at $precision: left out)" >&2; continue
    fi
    kept=()
    for pair in ${pairs//,/ }; do
      if [[ $pair == kernel=* ]] && [[ " ${KERNEL_LOSSES:-} " != *" $loss "* ]]; then
        [ "$pair" = kernel=torch ] && continue  # torch is its only path
        echo "   ($loss has no kernel parameter: $loss:$pair left out)" >&2; continue 2
      fi
      if [[ $pair == kernel=* ]] && [[ " ${!cli_var:-} " != *" $loss "* ]]; then
        if [ "$pair" = kernel=torch ]; then
          echo "   ($loss: this command cannot pass $pair; the row runs the loss's default kernel)" >&2; continue
        fi
        echo "   ($loss: this command cannot pass $pair: $loss:$pair left out)" >&2; continue 2
      fi
      kept+=("$pair")
    done
    if [ "$kind" = config ]; then
      local joined; joined=$(IFS=,; echo "${kept[*]}")
      printf '%s\n' --config "$loss${joined:+:$joined}"
    else
      printf '%s\n' --loss "$loss"
      for pair in "${kept[@]}"; do printf '%s\n' --param "$loss.$pair"; done
    fi
  done
}

# step_dir NAME PRECISION POSITIONS: a results folder of its own per step, with what the rows cannot say themselves
step_dir() {
  local dir; dir=$RAW/steps/$(echo "$1" | tr -c 'A-Za-z0-9_.=\n-' '_')
  mkdir -p "$dir"
  printf '{"step": "%s", "precision": "%s", "positions": "%s"}\n' "$1" "$2" "$3" > "$dir/meta.json"
  echo "$dir"
}

# loss_step GROUP NAME CAP PRECISION POSITIONS ITEMS REPEATS SPEC...: one bench-loss command
loss_step() {
  local group=$1 name=$2 cap=$3 precision=$4 positions=$5 items=$6 repeats=$7; shift 7
  want "$group" || return 0
  local prec
  prec=$(precision_args bench-loss "$precision") || { skip_step "$name" "bench-loss has no --precision"; return; }
  local args; mapfile -t args < <(loss_args loss "$precision" "$@")
  [ "${#args[@]}" -gt 0 ] || { skip_step "$name" "no loss of this step available at $precision"; return; }
  local extra=("${LOSS_EXTRA[@]}"); has bench-loss --ops && extra+=(--ops)
  local dir; dir=$(step_dir "$name" "$precision" "$positions")
  # shellcheck disable=SC2086  # $prec is empty or one option and its value
  local common=(--device "$DEVICE" $prec --items "$items" --positions "$positions" --dim 64 --repeats "$repeats")
  step "$name" "$cap" "$RB" bench-loss "${common[@]}" "${extra[@]}" "${args[@]}" --results-dir "$dir"
  # A loss that raises (exit 1; only out-of-memory is a row) ends the command: the losses after it run alone.
  [ "$LAST_RC" = 1 ] && [ $# -gt 1 ] || return 0
  local done_losses spec one
  done_losses=" $("$PY" - "$dir" <<'EOF_ROWS'
import json, sys
from pathlib import Path
print(*{row["loss"] for path in Path(sys.argv[1], "bench-loss").glob("*.json")
        for row in json.loads(path.read_text()).get("rows", [])})
EOF_ROWS
) "
  for spec in "$@"; do
    [[ $done_losses == *" ${spec%%:*} "* ]] && continue
    mapfile -t one < <(loss_args loss "$precision" "$spec" 2> /dev/null)
    [ "${#one[@]}" -gt 0 ] || continue
    step "$name [${spec%%:*} alone]" 30 "$RB" bench-loss "${common[@]}" "${extra[@]}" "${one[@]}" --results-dir "$dir"
    done_losses+="${spec%%:*} "
  done
}

# bench_step GROUP NAME CAP PRECISION BATCH STEPS WARMUP SPEC...: one bench-step command on the synthetic set
bench_step() {
  local group=$1 name=$2 cap=$3 precision=$4 batch=$5 steps=$6 warmup=$7; shift 7
  want "$group" || return 0
  wait_prepare_synth
  local prec
  prec=$(precision_args bench-step "$precision") || { skip_step "$name" "bench-step has no --precision"; return; }
  local args; mapfile -t args < <(loss_args config "$precision" "$@")
  [ "${#args[@]}" -gt 0 ] || { skip_step "$name" "no loss of this step available at $precision"; return; }
  local dir; dir=$(step_dir "$name" "$precision" "")
  # shellcheck disable=SC2086
  step "$name" "$cap" "$RB" bench-step --dataset "$SET" --batch-size "$batch" --max-len "$STEP_LEN" --steps "$steps" \
      --warmup "$warmup" "${args[@]}" --device "$DEVICE" $prec --data-dir "$DATA" --results-dir "$dir"
}

# prepare_bg KEY DIR SET ARGS...: prepare data set SET into DIR on the CPU while the GPU works; wait_bg KEY records it
declare -A BG_PID BG_T0 BG_CMD
prepare_bg() {
  local key=$1 dir=$2 set_name=$3; shift 3
  if [ -f "$dir/$set_name/meta.json" ]; then return; fi
  BG_T0[$key]=$(date +%s); BG_CMD[$key]="$RB prepare $* --data-dir $dir"
  local limit=$(( $(left) > 90 ? $(left) - 60 : 30 ))
  (timeout -k 10 "$limit" "$RB" prepare "$@" --data-dir "$dir" > "$RAW/$key.txt" 2>&1; echo $? > "$RAW/$key.rc") &
  BG_PID[$key]=$!
}
wait_bg() {
  local key=$1 pid=${BG_PID[$1]:-}
  [ -n "$pid" ] || return 0
  echo "== waiting for prepare ($key)"; wait "$pid"
  local t0=${BG_T0[$key]}
  record "prepare $key" "$(cat "$RAW/$key.rc")" "$(( $(date +%s) - t0 ))" - "${BG_CMD[$key]}"
  tail -4 "$RAW/$key.txt"; BG_PID[$key]=""
}
wait_prepare_synth() { wait_bg "$SET"; }
LOSS_EXTRA=()

if [ "$DEVICE" != cpu ] && ! torch_suits "$PY"; then
  echo "!! $PY has no CUDA torch: only the report is written"
  record cuda "no CUDA torch" 0 0 -
else
  want mission && prepare_bg "$MISSION_NAME" "$DATA" "$MISSION_NAME" "${MISSION_SET[@]}"
  want_steps=0; for g in step256 stepbf16 step32; do want $g && want_steps=1; done
  [ $want_steps = 1 ] && [ -z "${BG_PID[$SET]:-}" ] && prepare_bg "$SET" "$DATA" "$SET" "${SYNTH[@]}"
  # Beauty: the file named by BEAUTY, else the checkout's shared/data (only the repository travels to a device
  # machine: ../shared does not), else ../shared/data on a machine that has it
  BEAUTY=${BEAUTY:-}
  if [ -z "$BEAUTY" ]; then
    for candidate in shared/data/beauty_s3rec.txt ../shared/data/beauty_s3rec.txt; do
      [ -f "$candidate" ] && BEAUTY=$(realpath "$candidate") && break
    done
  fi
  BEAUTY_SKIP=""
  if [ -z "$BEAUTY" ] || [ ! -f "$BEAUTY" ]; then
    BEAUTY_SKIP="no Beauty file (shared/ does not travel: carry it in an ignored folder, pass BEAUTY=path)"
  elif [ "$QUICK" = 1 ] && [ -z "${BEAUTY_QUICK:-}" ]; then
    BEAUTY_SKIP="QUICK (BEAUTY_QUICK=1 runs it with tiny settings)"
  fi
  want beauty && [ -z "$BEAUTY_SKIP" ] && prepare_bg beauty "$RAW/beauty/data" beauty beauty --raw "$BEAUTY"

  # 1. the CUDA tests (on a CPU they skip, which the report shows)
  want tests && step cuda-tests 150 "$PY" -m pytest tests/test_cuda.py tests/kernels/test_cuda_kernels.py -m cuda -q -rs -p no:cacheprovider \
      --junitxml="$OUTDIR/cuda_tests.xml"

  # 2. the mission's own commands: prepare, run with a budget on plain `cuda` in bf16 and fp32, report
  if want mission; then
    wait_bg "$MISSION_NAME"
    mkdir -p "$RAW/mission"
    for precision in bf16 fp32; do
      if ! prec=$(precision_args run "$precision"); then
        skip_step "run rece --budget 2GB $precision" "run has no --precision"
      else
        # shellcheck disable=SC2086
        step "run rece --budget 2GB $precision" 60 "$RB" run --loss rece --budget 2GB --device "$DEVICE" $prec \
            "${MISSION_ARGS[@]}" --data-dir "$DATA" --results-dir "$RAW/mission"
      fi
    done
    step "report" 20 sh -c '"$0" report --results-dir "$1" --format markdown > "$1/report.md"' "$RB" "$RAW/mission"
  fi

  # 3. every loss under autocast (and in fp32), with the dispatched-op count where bench-loss has --ops
  for precision in bf16 fp32; do
    # shellcheck disable=SC2046  # one word per loss
    loss_step losses "every loss $precision C=$C_MAIN N=$N_SMALL" 60 "$precision" "$N_SMALL" "$C_MAIN" "$REPEATS_KEY" \
        $(for l in ${LOSSES_fp32:-} ${LOSSES_bf16:-}; do echo "$l"; done | awk '!seen[$0]++' \
          | sed "s/^rece$/$RECE38/; s/^ce_chunked$/$CHUNKED/")
  done

  # 4. issue 19's whole step: RECE (3,8) against CE at batch 256
  bench_step step256 "bench-step batch $BIG_BATCH fp32" 60 fp32 "$BIG_BATCH" 3 1 ce "$RECE38"

  # 5. issue 20: the exact kernels beside ours, bf16, C 173,511, N 51,200 (CCE 139 ms / 178 MiB on the H200)
  loss_step cce "bf16 C=$C_MAIN N=$N_BIG" 50 bf16 "$N_BIG" "$C_MAIN" "$REPEATS" ce cce liger_ce "$CHUNKED" "$RECE38" sce

  # 6. issue 22: the Triton kernels (the torch rows are the steps above, kernel=torch)
  if want triton && [ -z "${KERNEL_LOSSES:-}" ]; then skip_step "triton" "no loss has a kernel parameter"
  elif want triton && [ -z "${KERNEL_CLI_bench_loss:-}" ]; then
    skip_step "triton" "bench-loss cannot pass kernel=triton (see the environment's feature probe errors)"
  else
    loss_step triton "triton fp32 C=$C_MAIN,$C_BIG N=$N_SMALL" 45 fp32 "$N_SMALL" "$C_MAIN,$C_BIG" "$REPEATS_KEY" \
        ce_chunked:kernel=triton rece:n_extra_chunks=3,rounds=8,kernel=triton
    loss_step triton "triton bf16 C=$C_MAIN N=$N_BIG" 30 bf16 "$N_BIG" "$C_MAIN" "$REPEATS" \
        ce_chunked:kernel=triton rece:n_extra_chunks=3,rounds=8,kernel=triton
  fi

  # 7. issues 19 and 20: the rest of the grid (liger_ce is left out at C 1e6: 5.4 s a call there, GPU.md)
  loss_step grid "fp32 C=$C_MAIN N=$N_BIG" 40 fp32 "$N_BIG" "$C_MAIN" "$REPEATS" ce "$CHUNKED" "$RECE38" sce
  loss_step grid "fp32 C=$C_BIG N=$N_SMALL" 40 fp32 "$N_SMALL" "$C_BIG" "$REPEATS" ce "$CHUNKED" "$RECE38" sce
  loss_step grid "bf16 C=$C_BIG N=$N_SMALL" 40 bf16 "$N_SMALL" "$C_BIG" "$REPEATS" ce cce "$CHUNKED" "$RECE38" sce
  loss_step grid "fp32 C=$C_BIG N=$N_BIG" 50 fp32 "$N_BIG" "$C_BIG" "$REPEATS" ce "$CHUNKED" "$RECE38" sce
  loss_step grid "bf16 C=$C_BIG N=$N_BIG" 50 bf16 "$N_BIG" "$C_BIG" "$REPEATS" ce cce "$CHUNKED" "$RECE38" sce

  # 8. issue 19: RECE (1,1)
  for precision in fp32 bf16; do
    for positions in "$N_SMALL" "$N_BIG"; do
      loss_step rece11 "rece (1,1) $precision C=$C_MAIN,$C_BIG N=$positions" 25 "$precision" "$positions" \
          "$C_MAIN,$C_BIG" "$REPEATS" "$RECE11"
    done
  done

  # 9. issue 20's short run of each on synth-gowalla: a whole step in bf16
  bench_step stepbf16 "bench-step batch $BIG_BATCH bf16" 60 bf16 "$BIG_BATCH" 3 1 ce "$RECE38" cce liger_ce \
      "$CHUNKED" sce

  # 10. the kernels' own benchmark
  if want kbench; then
    if [ "${KERNELS_BENCH:-0}" = 1 ]; then
      step "kernels.bench" 45 sh -c 'out=$1; shift; "$0" -m rece_bench.kernels.bench "$@" > "$out" 2>&1
          rc=$?; cat "$out"; exit $rc' \
          "$PY" "$RAW/kernels_bench.txt" --items "$C_MAIN,$C_BIG" --positions "$N_SMALL" --repeats "$REPEATS" \
          --json "$RAW/kernels_bench.json"
    else skip_step "kernels.bench" "no rece_bench.kernels.bench module"; fi
  fi

  # 11. one epoch of Beauty with the paper's configuration (RECE n_b 907, n_ec 8, r 64; batch 4096; d 256)
  if want beauty; then
    if [ -n "$BEAUTY_SKIP" ]; then skip_step "beauty" "$BEAUTY_SKIP"
    else
      wait_bg beauty
      quick_env=(); [ "$QUICK" = 1 ] && quick_env=(MAX_LEN=3 BATCH=1024 RECE_PARAMS="-p n_extra_chunks=1 -p rounds=1")
      precision=""; has run --precision && precision=fp32  # GPU.md's epoch times are fp32
      threads=4; [ "$DEVICE" = cpu ] && threads=1  # the loader's and the CPU's torch threads
      step "beauty paper 1 epoch rece, ce" 150 env "${quick_env[@]}" CONFIG=paper DEVICE="$DEVICE" \
          PRECISION="$precision" LOSSES="rece ce" RECE_EPOCHS=1 CE_EPOCHS=1 PATIENCE=1 RB="$RB" PY="$PY" \
          RAW="$BEAUTY" THREADS="$threads" benchmarks/beauty_table3.sh "$RAW/beauty"
    fi
  fi

  # 12. the profiler's table of rece (3,8)
  if want profile; then
    if has bench-loss --profile; then
      kernel=torch; [[ " ${KERNEL_CLI_bench_loss:-} " == *" rece "* ]] && kernel=triton
      LOSS_EXTRA=(--profile "$RAW/profile")
      loss_step profile "profile rece (3,8) kernel=$kernel fp32" 30 fp32 "$N_SMALL" "$C_MAIN" 1 \
          "rece:n_extra_chunks=3,rounds=8,kernel=$kernel"
      LOSS_EXTRA=()
    else skip_step "profile" "bench-loss has no --profile"; fi
  fi

  # 13. the README's whole-step table at batch 32 (fp32): seven configurations, then every other loss
  CONFIGS=(ce "$RECE38" "$RECE11" "$CHUNKED" ce_neg:n_negatives=256 bce:n_negatives=256 gbce:n_negatives=256)
  for name in ${LOSSES_fp32:-}; do
    case " ce rece ce_chunked bce gbce ce_neg " in *" $name "*) ;; *) CONFIGS+=("$name") ;; esac
  done
  bench_step step32 "bench-step batch ${SMALL_STEPS[1]} fp32" 90 fp32 "${SMALL_STEPS[1]}" "${SMALL_STEPS[3]}" \
      "${SMALL_STEPS[5]}" "${CONFIGS[@]}"
fi

# the report, whatever ran
timeout -k 5 $(( REPORT_S - 2 )) "$PY" benchmarks/gpu_check_report.py "$OUTDIR" "$RAW" > /dev/null \
  || echo "!! the report failed: the raw rows are under $RAW"
echo "gpu_check: $(( $(date +%s) - STARTED )) s in all; report in $OUTDIR/gpu_check.md (raw rows in $RAW)"
