# Shared by the quality scripts: run every loss in $LOSSES (default: all six) with the README's loss settings.
# Usage: run_every_loss RB ARGS... (ARGS: the dataset, epochs, batch and --results-dir options common to all)
# BCE+ and gBCE run twice, with 1 negative (SASRec's original BCE) and with 256 (the paper's Gowalla setting);
# `report` keeps the one with the better validation NDCG@10, as the paper's grid search did.
run_every_loss() {
  local rb=$1; shift
  local configs=()
  for loss in ${LOSSES:-ce ce_chunked bce gbce ce_neg rece}; do
    case $loss in
      bce) configs+=("bce -p n_negatives=1" "bce -p n_negatives=256") ;;
      gbce) configs+=("gbce -p n_negatives=1 -p t=0.75" "gbce -p n_negatives=256 -p t=0.75") ;;
      ce_neg) configs+=("ce_neg -p n_negatives=256") ;;
      rece) configs+=("rece -p n_extra_chunks=3 -p rounds=8") ;;
      *) configs+=("$loss") ;;
    esac
  done
  for config in "${configs[@]}"; do
    # shellcheck disable=SC2086  # a config is a loss and its -p options, split on purpose
    $rb run --loss $config "$@"
  done
}
