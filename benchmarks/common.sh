# Shared by the benchmark scripts.
# DEVICE (cpu; cuda or cuda:N for a GPU) and PRECISION (unset: the CLI's default, fp32; bf16 or fp16 autocast on a
# GPU) reach every command that trains through DEVICE_ARGS, e.g. `DEVICE=cuda PRECISION=bf16 benchmarks/...`.
DEVICE=${DEVICE:-cpu}
DEVICE_ARGS=(--device "$DEVICE")
if [ -n "${PRECISION:-}" ]; then DEVICE_ARGS+=(--precision "$PRECISION"); fi

# Run every loss in $LOSSES (default: every registered loss, in report order) with
# the README's loss settings; a loss not listed below runs with its defaults.
# Usage: run_every_loss RB ARGS... (ARGS: the dataset, epochs, batch and --results-dir options common to all)
# BCE+ and gBCE run twice, with 1 negative (SASRec's original BCE) and with 256 (the paper's Gowalla setting);
# ce_logq runs with popularity-sampled and with in-batch negatives (1,024, its default).
# `report` keeps the one with the better validation NDCG@10, as the paper's grid search did.
run_every_loss() {
  local rb=$1; shift
  local configs=()
  local py=python3
  [[ $rb == */* ]] && py="${rb%/*}/python"  # the interpreter beside the CLI (the venv's)
  local losses=${LOSSES:-$("$py" -c 'from rece_bench.bench.loss import all_losses; print(*all_losses())')}
  for loss in $losses; do
    case $loss in
      bce) configs+=("bce -p n_negatives=1" "bce -p n_negatives=256") ;;
      gbce) configs+=("gbce -p n_negatives=1 -p t=0.75" "gbce -p n_negatives=256 -p t=0.75") ;;
      ce_neg) configs+=("ce_neg -p n_negatives=256") ;;
      rece) configs+=("rece -p n_extra_chunks=3 -p rounds=8") ;;
      ce_logq) configs+=("ce_logq -p n_negatives=1024" "ce_logq -p n_negatives=1024 -p sampler=in_batch") ;;
      *) configs+=("$loss") ;;
    esac
  done
  for config in "${configs[@]}"; do
    # shellcheck disable=SC2086  # a config is a loss and its -p options, split on purpose
    $rb run --loss $config "$@"
  done
}
