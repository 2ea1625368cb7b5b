"""The losses of the benchmark behind one interface: ``loss(hidden (N, D), item_emb (C, D), targets (N,),
batch=None) -> scalar``. Build one by name with ``build_loss("rece", num_items=C, rounds=8)``."""

from rece_bench.losses import bce, ce, ce_chunked, ce_neg, gbce, rece  # noqa: F401  (each registers itself)
from rece_bench.losses.base import LOSSES, Loss, LossBatch, LossInfo, ParamSpec, build_loss, describe_losses

__all__ = ["LOSSES", "Loss", "LossBatch", "LossInfo", "ParamSpec", "build_loss", "describe_losses"]
