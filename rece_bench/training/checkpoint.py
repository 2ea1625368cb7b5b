"""Checkpoints: the end of every epoch (to resume) and the best weights so far (to test).

A resumed run must end with exactly the metrics of an uninterrupted one, so the checkpoint holds everything that
decides what comes next: weights, optimiser state, the early-stopping state, and every random generator's state
(torch's global one drives dropout and the samplers; the batch order has its own). Files are written to a
temporary name, synced and renamed, so a kill during a save leaves the previous checkpoint intact.

Checkpoints are read with ``torch.load(weights_only=True)``: they hold tensors (weights, optimiser state, the
generators' states as byte tensors) and plain dicts, lists and numbers only, so loading one runs no code. A
checkpoint that cannot be read is moved aside (kept for a look, never deleted) and the run says to start again.
torch is imported inside the functions that need it, so that reading results (the report) can ask whether a
run has a checkpoint without importing torch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rece_bench.errors import UserError
from rece_bench.io import DamagedFile, atomic_writer, read_torch, remove_stale_temporaries

CHECKPOINTS_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
FORMAT = 2  # 2: SASRec's item table holds the C catalogue rows only (1 had a pad row first)
LAST_KEYS = ("model", "optimizer", "state", "rng", "batch_rng")

if TYPE_CHECKING:
    import torch


def checkpoint_dir(results_root: Path, run_id: str) -> Path:
    return Path(results_root) / CHECKPOINTS_DIR / run_id


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    try:
        with atomic_writer(path) as handle:
            torch.save(obj, handle)
    except OSError as exc:  # a full disk, a folder that is a file: the previous checkpoint is left whole
        why = exc.strerror or str(exc)
        raise UserError(
            f"cannot write checkpoint {path} ({why}): free some space there, or pass another "
            "--results-dir; the run's last whole checkpoint is kept"
        ) from None


def save_last(folder: Path, payload: dict[str, Any]) -> None:
    """``payload``: model, optimizer, state (early stopping), rng, batch_rng, train_time_s, peak_bytes."""
    atomic_torch_save({**payload, "format": FORMAT}, folder / LAST)


def save_best(folder: Path, model_state: dict[str, torch.Tensor]) -> None:
    atomic_torch_save(model_state, folder / BEST)


def has_last(folder: Path) -> bool:
    return (Path(folder) / LAST).is_file()


def load_last(folder: Path) -> dict[str, Any] | None:
    """The last checkpoint, or None when there is none.

    One of another format raises a UserError; a damaged one is moved aside and raises DamagedFile.
    """
    path = Path(folder) / LAST
    if not path.exists():
        return None
    fix = "run again without --resume"
    try:
        payload = read_torch(path, fix)
        if not isinstance(payload, dict):
            raise DamagedFile(path, f"a {type(payload).__name__}, not a checkpoint", fix)
        check_resumable(payload, folder)
        missing = [key for key in LAST_KEYS if key not in payload]
        if missing:
            raise DamagedFile(path, f"no {', '.join(missing)} in it", fix)
    except DamagedFile as exc:
        aside = _move_aside(path)
        raise DamagedFile(path, exc.why, f"the checkpoint is damaged and was kept as {aside.name}; {fix}") from None
    return payload


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    path.replace(aside)
    return aside


def check_resumable(payload: dict[str, Any], folder: Path) -> None:
    """A checkpoint of another format cannot continue here: say so instead of failing on its weights' shapes."""
    found = payload.get("format", 1)
    if found != FORMAT:
        raise UserError(
            f"the checkpoint under {folder} has format {found}, this version resumes format {FORMAT}: "
            "run again with --restart"
        )


def load_best(folder: Path) -> dict[str, torch.Tensor]:
    return read_torch(Path(folder) / BEST, "the run's best weights are lost: run again without --resume")


def discard_last(folder: Path) -> None:
    """After a finished run only the best weights are kept; so are temporaries of a save that was killed."""
    (folder / LAST).unlink(missing_ok=True)
    clean_temporaries(folder)


def clean_temporaries(folder: Path) -> None:
    """Temporary files of saves whose process was killed (the checkpoints themselves are whole)."""
    for name in (LAST, BEST):
        remove_stale_temporaries(folder, name)
