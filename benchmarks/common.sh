# Shared by the quality scripts: run every loss in $LOSSES (default: all six) with the README's loss settings.
# Usage: run_every_loss RB ARGS... (ARGS: the dataset, epochs, batch and --results-dir options common to all)
run_every_loss() {
  local rb=$1; shift
  for loss in ${LOSSES:-ce ce_chunked bce gbce ce_neg rece}; do
    case $loss in
      bce|ce_neg) params=(-p n_negatives=256) ;;
      gbce) params=(-p n_negatives=256 -p t=0.75) ;;
      rece) params=(-p n_extra_chunks=3 -p rounds=8) ;;
      *) params=() ;;
    esac
    $rb run --loss "$loss" "${params[@]}" "$@"
  done
}
