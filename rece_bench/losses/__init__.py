"""The losses of the benchmark behind one interface: ``loss(hidden (N, D), item_emb (C, D), targets (N,),
batch=None) -> scalar``. Build one by name with ``build_loss("rece", num_items=C, rounds=8)``.

Every module of this package is imported here, and each loss module registers its class (``@register``: the
arithmetic and its own parameters) and, beside it, its card (``register_card(LossCard(...))``: the benchmark's facts,
``cards.py``), so a new loss is one new file: ``rece_bench/losses/<name>.py``.
"""

import importlib
import pkgutil

from rece_bench.losses.base import LOSSES, Loss, LossBatch, LossInfo, ParamSpec, build_loss, describe_losses

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["LOSSES", "Loss", "LossBatch", "LossInfo", "ParamSpec", "build_loss", "describe_losses"]
