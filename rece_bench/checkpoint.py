"""Checkpoints: the end of every epoch (to resume) and the best weights so far (to test).

A resumed run must end with exactly the metrics of an uninterrupted one, so the checkpoint holds everything that
decides what comes next: weights, optimiser state, the early-stopping state, and every random generator's state
(torch's global one drives dropout and the samplers; the batch order has its own). Files are written to a
temporary name and renamed, so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rece_bench.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
FORMAT = 2  # 2: SASRec's item table holds the C catalogue rows only (1 had a pad row first)


def checkpoint_dir(results_root: Path, run_id: str) -> Path:
    return Path(results_root) / CHECKPOINTS_DIR / run_id


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_last(folder: Path, payload: dict[str, Any]) -> None:
    """``payload``: model, optimizer, state (early stopping), rng, batch_rng, train_time_s, peak_bytes."""
    atomic_torch_save({**payload, "format": FORMAT}, folder / LAST)


def save_best(folder: Path, model_state: dict[str, torch.Tensor]) -> None:
    atomic_torch_save(model_state, folder / BEST)


def load_last(folder: Path) -> dict[str, Any] | None:
    path = folder / LAST
    return torch.load(path, weights_only=False) if path.exists() else None


def check_resumable(payload: dict[str, Any], folder: Path) -> None:
    """A checkpoint of another format cannot continue here: say so instead of failing on its weights' shapes."""
    found = payload.get("format", 1)
    if found != FORMAT:
        raise UserError(
            f"the checkpoint under {folder} has format {found}, this version resumes format {FORMAT}: "
            "run again without --resume"
        )


def load_best(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / BEST, weights_only=True)


def discard_last(folder: Path) -> None:
    """After a finished run only the best weights are kept."""
    (folder / LAST).unlink(missing_ok=True)
