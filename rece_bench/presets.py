"""The authors' best configurations per dataset and loss (REFERENCE sections 1 and 2), for ``run --preset paper``.

Every preset shares the SASRec setup of the paper: d 64, 2 blocks, 1 head, dropout 0.3, maxlen 200, Adam 1e-3.
Beauty (leave-one-out, the paper's Table 3) uses d 256 and dropout 0.5. The exact chunked CE trains like full CE.
"""

from __future__ import annotations

from typing import Any

from rece_bench.errors import UserError

PAPER_MODEL = {"dim": 64, "n_blocks": 2, "n_heads": 1, "dropout": 0.3, "max_len": 200, "lr": 1e-3}
BEAUTY_MODEL = {**PAPER_MODEL, "dim": 256, "dropout": 0.5}


def _rece(batch: int, n_buckets: int, n_extra_chunks: int, rounds: int) -> dict[str, Any]:
    params = {"n_buckets": n_buckets, "n_extra_chunks": n_extra_chunks, "rounds": rounds}
    return {"batch_size": batch, "loss_params": params}


def _sampled(batch: int, negatives: int, t: float | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"n_negatives": negatives}
    if t is not None:
        params["t"] = t
    return {"batch_size": batch, "loss_params": params}


def _full(batch: int) -> dict[str, Any]:
    return {"batch_size": batch, "loss_params": {}}


# (dataset, loss) -> TrainConfig fields; model fields come from PAPER_MODEL / BEAUTY_MODEL.
PAPER_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("beeradvocate", "ce"): _full(8),
    ("beeradvocate", "bce"): _sampled(8, 64),
    ("beeradvocate", "ce_neg"): _sampled(8, 4096),
    ("beeradvocate", "gbce"): _sampled(16, 16, 0.75),
    ("beeradvocate", "rece"): _rece(8, 133, 1, 16),
    ("behance", "ce"): _full(64),
    ("behance", "bce"): _sampled(32, 1024),
    ("behance", "ce_neg"): _sampled(64, 1024),
    ("behance", "gbce"): _sampled(32, 64, 0.75),
    ("behance", "rece"): _rece(32, 160, 1, 8),
    ("gowalla", "ce"): _full(32),
    ("gowalla", "bce"): _sampled(128, 256),
    ("gowalla", "ce_neg"): _sampled(64, 1024),
    ("gowalla", "gbce"): _sampled(128, 256, 0.75),
    ("gowalla", "rece"): _rece(128, 583, 3, 8),
    ("kindle", "ce"): _full(64),
    ("kindle", "bce"): _sampled(64, 1024),
    ("kindle", "ce_neg"): _sampled(64, 1024),
    ("kindle", "gbce"): _sampled(64, 1024, 0.75),
    ("kindle", "rece"): _rece(256, 403, 1, 8),
    ("beauty", "rece"): _rece(4096, 907, 8, 64),
}


def paper_preset(dataset_kind: str, loss: str) -> dict[str, Any]:
    """TrainConfig fields of the authors' configuration for a dataset kind (the registry name) and a loss."""
    key = (dataset_kind, "ce" if loss == "ce_chunked" else loss)
    if key not in PAPER_PRESETS:
        known = ", ".join(sorted({f"{d}/{n}" for d, n in PAPER_PRESETS}))
        raise UserError(f"the paper has no configuration for {dataset_kind}/{loss}: drop --preset, or use {known}")
    model = BEAUTY_MODEL if dataset_kind == "beauty" else PAPER_MODEL
    preset = PAPER_PRESETS[key]
    return {**model, "batch_size": preset["batch_size"], "loss_params": dict(preset["loss_params"])}
