"""Run results: one JSON file per run, written atomically, read back as rows for the report."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rece_bench import __version__
from rece_bench.errors import UserError
from rece_bench.io import DamagedFile, atomic_write_json, read_json

STATUSES = ("ok", "over_budget", "oom", "diverged", "interrupted")
RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    dataset: str
    loss: str
    params: dict[str, Any]
    seed: int
    device: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)  # test metrics of the best checkpoint
    valid_metrics: dict[str, float] = field(default_factory=dict)
    peak_bytes: int | None = None
    start_bytes: int | None = None
    memory_method: str | None = None
    device_peak_bytes: int | None = None
    eval_peak_bytes: int | None = None  # the final test evaluation, measured apart from training
    train_time_s: float = 0.0
    epochs: int = 0
    best_epoch: int = 0
    budget_bytes: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    package_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_row(self) -> dict[str, Any]:
        """A flat row: metrics become top-level keys (``ndcg@10``, ``hr@10``, ...)."""
        row = asdict(self)
        row.update(row.pop("metrics"))
        row.update({f"valid_{k}": v for k, v in row.pop("valid_metrics").items()})
        return row


def make_run_id(dataset: str, loss: str, params: dict[str, Any], seed: int, budget_bytes: int | None = None) -> str:
    """Deterministic id: the same configuration always maps to the same result file."""
    blob = json.dumps({"params": params, "budget": budget_bytes}, sort_keys=True, default=str)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
    return f"{dataset}-{loss}-{digest}-s{seed}"


def result_path(results_root: Path, run_id: str) -> Path:
    return Path(results_root) / RUNS_DIR / f"{run_id}.json"


def write_result(results_root: Path, result: RunResult) -> Path:
    path = result_path(results_root, result.run_id)
    try:
        atomic_write_json(path, asdict(result))
    except OSError as exc:
        problem = f"cannot write results under {results_root}: {exc.strerror}"
        raise UserError(f"{problem}: pass a writable --results-dir") from None
    return path


@dataclass(frozen=True)
class ResultSet:
    """What ``load_results`` found: the rows it could read, and the files it could not (each with why)."""

    rows: list[dict[str, Any]]
    unreadable: list[DamagedFile]


def load_results(results_root: Path) -> ResultSet:
    """Every run result under ``results_root`` as a flat row, oldest first, and the files that are no result."""
    rows, unreadable = [], []
    for path in sorted((Path(results_root) / RUNS_DIR).glob("*.json")):
        try:
            rows.append(read_result(path).to_row())
        except DamagedFile as exc:
            unreadable.append(exc)
    return ResultSet(sorted(rows, key=lambda row: row["created_at"]), unreadable)


def read_results(results_root: Path) -> list[dict[str, Any]]:
    """The rows of ``load_results``; a caller that must name the unreadable files uses ``load_results``."""
    return load_results(results_root).rows


_FIELD_TYPES = {"run_id": str, "dataset": str, "loss": str, "status": str, "params": dict, "metrics": dict}
_FIELD_TYPES |= {"valid_metrics": dict, "history": list, "created_at": str}


def read_result(path: Path) -> RunResult:
    fix = "delete it or run that configuration again"
    data = read_json(path, fix)
    wrong = [key for key, kind in _FIELD_TYPES.items() if key in data and not isinstance(data[key], kind)]
    if wrong:
        raise DamagedFile(path, f"not a run result: {', '.join(wrong)} of the wrong type", fix)
    try:
        return RunResult(**data)
    except (TypeError, ValueError) as exc:
        raise DamagedFile(path, f"not a run result: {exc}", fix) from None


def ensure_results_root(results_root: Path, folder: str = RUNS_DIR) -> None:
    """Fail early, before any training, when results cannot be written under ``results_root/folder``; nothing is
    created here (the first write makes the folders)."""
    target = Path(results_root) / folder
    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path(p.anchor or "."))
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    if problem:
        raise UserError(f"cannot write results under {results_root}: {problem}: pass a writable --results-dir")
