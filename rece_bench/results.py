"""Run results: one JSON file per run, written atomically, read back as rows for the report.

A run's file lives through ``RunRecord``: created when training starts (status ``running``, with the pid and host
of the process), rewritten at each epoch end (the history so far), and finalised exactly once with the final
status. A ``running`` file whose process is gone (same host, no such process, or another process under that pid)
is shown as ``killed``; a ``running`` file written on another host stays ``running``, since its process cannot be
checked from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rece_bench import __version__
from rece_bench.budget.sizes import format_size
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.io import DamagedFile, atomic_write_json, read_json, remove_stale_temporaries
from rece_bench.lock import RunLock, lock_path
from rece_bench.memory import MemoryStats, format_bytes
from rece_bench.processes import process_exists, process_start

# failed: a sweep job whose task raised, or whose worker kept dying past its retries (the message says which)
STATUSES = ("ok", "over_budget", "oom", "diverged", "interrupted", "running", "failed")  # what a result file holds
FINAL_STATUSES = ("ok", "over_budget", "oom", "diverged", "failed")  # a run with one of these is over
KILLED = "killed"  # never stored: how a running result whose process is gone is shown
RUNS_DIR = "runs"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    dataset: str
    loss: str
    params: dict[str, Any]
    seed: int
    device: str
    status: str
    precision: str = "fp32"  # a file written before precisions existed was fp32
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
    data_id: str | None = None  # the prepared data's identity (data.loader.data_identity)
    threads: int | None = None  # torch's intra-op threads while it trained (None: written before it was kept)
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    pid: int | None = None  # the process that wrote the file, on ``host``; see ``shown_status``
    host: str | None = None
    process_start: str | None = None  # tells that process from a later one under the same pid (Linux)
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


@dataclass(frozen=True)
class RunIdentity:
    """What names a run and its row: the configuration's identity fields, where it ran, on which data."""

    run_id: str
    dataset: str
    loss: str
    params: dict[str, Any]
    seed: int
    device: str
    precision: str = "fp32"
    budget_bytes: int | None = None
    data_id: str | None = None
    threads: int | None = None

    @classmethod
    def of(cls, config: TrainConfig, data_id: str | None = None, device: str | None = None) -> RunIdentity:
        """The identity of a run of ``config`` on the preparation ``data_id`` of its dataset; ``device``: where
        it ran (default: as the config names it). ``data_id`` names the run but is kept in the row only when
        given."""
        params = config.hyperparameters()
        run_id = make_run_id(config.dataset, config.loss, params, config.seed, config.budget_bytes, data_id)
        return cls(
            run_id=run_id, dataset=config.dataset, loss=config.loss, params=params, seed=config.seed,
            device=device or config.device, precision=config.precision, budget_bytes=config.budget_bytes,
            data_id=data_id, threads=config.threads,
        )  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """How a run ended (or stands): a status of ``STATUSES`` and the message that explains it."""

    status: str
    message: str = ""


@dataclass(frozen=True)
class Scores:
    """What training and testing produced: metrics, time, epochs and the per-epoch history."""

    metrics: dict[str, float] = field(default_factory=dict)  # test metrics of the best checkpoint
    valid_metrics: dict[str, float] = field(default_factory=dict)
    eval_peak_bytes: int | None = None
    train_time_s: float = 0.0
    epochs: int = 0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def result_row(
    identity: RunIdentity, outcome: Outcome, memory: MemoryStats | None = None, scores: Scores | None = None
) -> RunResult:
    """The one place a ``RunResult`` is built: from who the run is, how it ended, what it measured and scored."""
    scores = scores or Scores()
    memory_fields = {}
    if memory is not None:
        memory_fields = {
            "peak_bytes": memory.peak_bytes, "start_bytes": memory.start_bytes, "memory_method": memory.method,
            "device_peak_bytes": memory.device_peak_bytes,
        }  # fmt: skip
    return RunResult(
        **asdict(identity), status=outcome.status, message=outcome.message, **memory_fields, **asdict(scores)
    )


def make_run_id(
    dataset: str,
    loss: str,
    params: dict[str, Any],
    seed: int,
    budget_bytes: int | None = None,
    data_id: str | None = None,
) -> str:
    """Deterministic id: the same configuration on the same preparation of the data (``data_id``, see
    ``data.loader.data_identity``) always maps to the same result file; preparing the data again gives new ids."""
    content = {"params": params, "budget": budget_bytes} | ({"data": data_id} if data_id is not None else {})
    blob = json.dumps(content, sort_keys=True, default=str)
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
            result = read_result(path)
        except DamagedFile as exc:
            unreadable.append(exc)
            continue
        status, message = shown_status(result, results_root)
        rows.append({**result.to_row(), "status": status, "message": message})
    return ResultSet(sorted(rows, key=lambda row: row["created_at"]), unreadable)


def read_results(results_root: Path) -> list[dict[str, Any]]:
    """The rows of ``load_results``; a caller that must name the unreadable files uses ``load_results``."""
    return load_results(results_root).rows


_FIELD_TYPES = {"run_id": str, "dataset": str, "loss": str, "status": str, "params": dict, "metrics": dict}
_FIELD_TYPES |= {"valid_metrics": dict, "history": list, "created_at": str, "pid": (int, type(None))}


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


# ---------------------------------------------------------------- one run's file from start to end


def _process_gone(pid: int, started: str | None) -> bool:
    if not process_exists(pid):
        return True
    if started is None:  # nothing recorded to tell a later process under this pid apart
        return False
    return process_start(pid) != started


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_start": process_start(pid)}


def shown_status(result: RunResult, results_root: Path) -> tuple[str, str]:
    """(status, message) as the report shows them: a running result whose process is gone is ``killed``."""
    if result.status != "running" or result.pid is None or result.host != socket.gethostname():
        return result.status, result.message
    if not _process_gone(result.pid, result.process_start):
        return result.status, result.message
    from rece_bench.training.checkpoint import checkpoint_dir, has_last

    where = f"its process (pid {result.pid} on {result.host}) ended"
    if has_last(checkpoint_dir(results_root, result.run_id)):
        return KILLED, f"{where} after epoch {result.epochs} without a final status: --resume continues it"
    if result.epochs == 0:
        return KILLED, f"{where} before its first checkpoint: run it again (without --resume)"
    return KILLED, f"{where} after epoch {result.epochs}, and its checkpoint is gone: run it again"


class RunRecord:
    """The result file of one run, as one process writes it: ``start`` (status running, this process's pid and
    host), ``update`` after each epoch, ``finish`` exactly once with the final status. ``abandon`` puts back the
    file as it was found when the run stops with an error that is no status (bad input found late, a bug), so
    such an error leaves the results as they were. Opening refuses a run whose process is alive on this host."""

    def __init__(self, results_root: Path, run_id: str) -> None:
        self.root, self.run_id = Path(results_root), run_id
        self.path = result_path(self.root, run_id)
        self._lock = RunLock(lock_path(self.root, run_id), run_id).acquire()  # first: one process per run
        self.earlier = _earlier(self.path)
        self._stage, self._created_at = "new", None
        self._writer = this_process()  # pid, host and start time: the same for every write of this record
        self._refuse_a_live_run()
        remove_stale_temporaries(self.path.parent, self.path.name)  # of a write whose process was killed

    def _refuse_a_live_run(self) -> None:
        if self.earlier is None or shown_status(self.earlier, self.root)[0] != "running":
            return
        if self.earlier.host == socket.gethostname():
            pid, since = self.earlier.pid, self.earlier.created_at
            raise UserError(
                f"run {self.run_id} is already running (pid {pid} on this host, since {since}): "
                f"wait for it, or stop it (kill {pid}) and run again with --resume"
            )
        log.warning("run %s was left running on host %s; this run replaces it", self.run_id, self.earlier.host)

    def close(self) -> None:
        """Let go of the run's lock (the process's end does it too)."""
        self._lock.release()

    @property
    def earlier_status(self) -> str | None:
        return None if self.earlier is None else shown_status(self.earlier, self.root)[0]

    def start(self, result: RunResult) -> None:
        self._check("new", "start")
        self._created_at = result.created_at
        self._keep_earlier()
        self._write(result, "running")

    @property
    def _kept(self) -> Path:
        return self.path.with_name(f".{self.path.name}.earlier")  # not *.json: no reader sees it

    def _keep_earlier(self) -> None:
        """A hard link to the file as found, so that ``abandon`` can put it back with a rename, which needs no
        free space (a full disk is one way a run stops); where links are refused, ``abandon`` rewrites it."""
        self._kept.unlink(missing_ok=True)
        if self.earlier is not None:
            with contextlib.suppress(OSError):
                os.link(self.path, self._kept)

    def update(self, result: RunResult) -> None:
        self._check("running", "update")
        self._write(result, "running")

    def finish(self, result: RunResult) -> None:
        self._check("running", "finish")
        self._write(result, "finished")
        self._kept.unlink(missing_ok=True)

    def abandon(self) -> None:
        if self._stage != "running":
            return
        self._stage = "abandoned"
        try:
            if self._kept.exists():
                os.replace(self._kept, self.path)
            elif self.earlier is not None:
                write_result(self.root, self.earlier)
            else:
                self.path.unlink(missing_ok=True)
        except (UserError, OSError) as exc:  # e.g. the disk is full: the file keeps its last whole version
            log.warning("could not put back the result of run %s as it was: %s", self.run_id, exc)

    def _check(self, stage: str, what: str) -> None:
        if self._stage != stage:
            raise RuntimeError(f"result {self.run_id}: cannot {what} a result that is {self._stage}")

    def _write(self, result: RunResult, stage: str) -> None:
        stamped = dataclasses.replace(result, created_at=self._created_at, **self._writer)
        write_result(self.root, stamped)
        self._stage = stage


def _earlier(path: Path) -> RunResult | None:
    """The result file a run finds at its start (None: none, or one that cannot be read, which it replaces)."""
    if not path.exists():
        return None
    try:
        return read_result(path)
    except DamagedFile as exc:
        log.warning("%s; this run replaces it", exc)
        return None


def within_budget(result: RunResult) -> RunResult:
    """The final check of a budgeted run, made by the trainer before it writes the final result (so the file gets
    its final status once): an ok run whose measured peak exceeds its budget becomes ``over_budget``."""
    budget = result.budget_bytes
    if result.status != "ok" or budget is None or result.peak_bytes is None or result.peak_bytes <= budget:
        return result
    message = f"training peak {format_bytes(result.peak_bytes)} is above the budget of {format_size(budget)}"
    return dataclasses.replace(result, status="over_budget", message=message)
