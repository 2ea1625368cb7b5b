"""Sweeps: every (loss, budget, seed) of a grid, restartable at any point.

With budgets, each job trains the preferred configuration of its loss that fits its budget (``budget``). Without
budgets, each job trains one candidate of the loss's ladder: the whole grid. A job is done when a result file with
a final status (ok, over_budget, oom, diverged) matches it: the same dataset, loss, seed, budget and every
hyperparameter the budget does not choose. A restarted sweep runs only what is missing, and a job left
``interrupted`` resumes from its last checkpoint. On CUDA, ``workers`` processes run jobs side by side, one per GPU;
on CPU jobs run one after another.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rece_bench.budget.choice import NothingFits
from rece_bench.budget.fit import catalogue_size, nothing_fits_result, train_within_budget
from rece_bench.budget.ladder import Candidate, Ladder, ladder_for, usable_candidates
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.results import RunResult, ensure_results_root, read_results, write_result

log = logging.getLogger(__name__)
FINAL_STATUSES = ("ok", "over_budget", "oom", "diverged")
PAPER_SEEDS = (1235, 37, 2451)


@dataclass(frozen=True)
class SweepConfig:
    """The grid: ``base`` holds the dataset, device, epochs and model; its loss and seed are replaced per job."""

    base: TrainConfig
    losses: tuple[str, ...]
    budgets_bytes: tuple[int, ...] = ()
    seeds: tuple[int, ...] = (PAPER_SEEDS[0],)
    grid: Mapping[str, Ladder] = field(default_factory=dict)
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.losses:
            raise UserError("a sweep needs at least one loss: pass --loss ce --loss rece ...")
        if not self.seeds:
            raise UserError("a sweep needs at least one seed: pass --seeds 1")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"workers must be a positive integer, got {self.workers!r}: pass --workers 1")
        for loss in self.losses:
            ladder_for(loss, self.grid)  # an unknown loss fails here, before any training
        object.__setattr__(self, "losses", tuple(dict.fromkeys(self.losses)))
        object.__setattr__(self, "budgets_bytes", tuple(sorted(set(self.budgets_bytes))))


@dataclass(frozen=True)
class Job:
    """One training run of a sweep: a budget to fit (the candidate is chosen) or one candidate of the grid."""

    loss: str
    seed: int
    budget_bytes: int | None = None
    candidate: Candidate | None = None

    def config(self, base: TrainConfig) -> TrainConfig:
        config = dataclasses.replace(base, loss=self.loss, seed=self.seed, budget_bytes=None)
        return self.candidate.apply(config, None) if self.candidate is not None else config

    def label(self) -> str:
        from rece_bench.budget.sizes import format_size

        what = f"budget {format_size(self.budget_bytes)}" if self.candidate is None else self.candidate.label()
        return f"{self.loss} ({what}, seed {self.seed})"


def plan_jobs(config: SweepConfig, num_items: int | None = None) -> list[Job]:
    """Losses in the given order; per loss, budgets from small to large (or the ladder's candidates that a catalogue
    of ``num_items`` allows), then seeds."""
    jobs = []
    for loss in config.losses:
        if config.budgets_bytes:
            jobs += [Job(loss, seed, budget) for budget in config.budgets_bytes for seed in config.seeds]
            continue
        candidates = ladder_for(loss, config.grid).candidates()
        if num_items is not None:
            candidates = usable_candidates(loss, candidates, num_items, config.base.loss_params)
        jobs += [Job(loss, seed, None, c) for c in candidates for seed in config.seeds]
    return jobs


def identity(dataset: str, loss: str, seed: int, budget_bytes: int | None, params: Mapping[str, Any], knobs) -> str:
    """What makes two runs the same job; under a budget, the knobs the budget chooses are left out."""
    if budget_bytes is not None:
        chosen = {"batch_size", *(f"loss.{k}" for k in knobs)}
        params = {k: v for k, v in params.items() if k not in chosen}
    params = {k: v for k, v in params.items() if k not in ("seed", "budget_bytes")}
    return json.dumps([dataset, loss, seed, budget_bytes, params], sort_keys=True, default=str)


def job_identity(job: Job, config: SweepConfig) -> str:
    train_config = job.config(config.base)
    knobs = ladder_for(job.loss, config.grid).knob_names
    params = train_config.hyperparameters()
    return identity(train_config.dataset, job.loss, job.seed, job.budget_bytes, params, knobs)


def finished(rows: Sequence[dict[str, Any]], config: SweepConfig) -> set[str]:
    """Identities of the runs under the results root that ended with a final status."""
    done = set()
    for row in rows:
        if row["status"] not in FINAL_STATUSES or row["loss"] not in config.losses:
            continue
        knobs = ladder_for(row["loss"], config.grid).knob_names
        done.add(identity(row["dataset"], row["loss"], row["seed"], row["budget_bytes"], row["params"], knobs))
    return done


class SweepProgress(Protocol):
    """What a sweep reports; it is also the training progress of the job that runs (``train.Progress``)."""

    def begin(self, total: int, skipped: int) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_done(self, job: Job, result: RunResult) -> None: ...
    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def step(self, loss: float, peak_bytes: int) -> None: ...
    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None: ...


class _Quiet:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass(frozen=True)
class SweepSummary:
    planned: int
    skipped: int
    results: tuple[RunResult, ...]


Trainer = Callable[..., RunResult]


def run_sweep(
    config: SweepConfig,
    data_root: Path,
    results_root: Path,
    progress: SweepProgress | None = None,
    trainer: Trainer | None = None,
    probe_for: Callable[[TrainConfig], Callable] | None = None,
) -> SweepSummary:
    """Run every job of the grid that has no final result yet; a Ctrl-C stops after saving the running job."""
    progress = progress or _Quiet()
    ensure_results_root(results_root)
    jobs = plan_jobs(config, None if config.budgets_bytes else catalogue_size(data_root, config.base.dataset))
    done = finished(read_results(results_root), config)
    todo = [job for job in jobs if job_identity(job, config) not in done]
    progress.begin(len(jobs), len(jobs) - len(todo))
    if config.workers > 1:
        check_workers(config.workers, config.base.device)
        results = run_parallel(todo, config, data_root, results_root, progress)
    else:
        results = []
        for job in todo:
            progress.job_started(job)
            results.append(run_job(job, config, data_root, results_root, progress, trainer, probe_for))
            progress.job_done(job, results[-1])
    return SweepSummary(len(jobs), len(jobs) - len(todo), tuple(results))


def run_job(
    job: Job,
    config: SweepConfig,
    data_root: Path,
    results_root: Path,
    progress=None,
    trainer: Trainer | None = None,
    probe_for: Callable[[TrainConfig], Callable] | None = None,
) -> RunResult:
    """Train one job (choosing its configuration first under a budget); resume it when a checkpoint is left."""
    train_config = job.config(config.base)
    resuming = _resuming(trainer)
    if job.budget_bytes is None:
        return resuming(train_config, data_root, results_root, progress)
    probe = probe_for(train_config) if probe_for is not None else None
    try:
        return train_within_budget(
            train_config, job.budget_bytes, data_root, results_root, progress, grid=config.grid, probe=probe,
            trainer=resuming,
        ).result  # fmt: skip
    except NothingFits as exc:
        result = nothing_fits_result(train_config, job.budget_bytes, exc)
        write_result(results_root, result)
        return result


def _resuming(trainer: Trainer | None) -> Trainer:
    """The trainer, resuming a run whose last checkpoint is still there (an interrupted or killed run)."""
    from rece_bench.checkpoint import LAST, checkpoint_dir
    from rece_bench.train import run_id_of, train_run

    def train(config: TrainConfig, data_root: Path, results_root: Path, progress=None, resume: bool = False):
        resume = resume or (checkpoint_dir(results_root, run_id_of(config)) / LAST).exists()
        return (trainer or train_run)(config, data_root, results_root, progress, resume=resume)

    return train


# ---------------------------------------------------------------- several GPUs


def check_workers(workers: int, device: str) -> None:
    """Several workers need as many GPUs; on CPU the jobs run one after another."""
    if workers == 1:
        return
    import torch

    if not device.startswith("cuda"):
        raise UserError(f"--workers {workers} runs one job per GPU, but the device is {device}: use --workers 1")
    available = torch.cuda.device_count()
    if workers > available:
        raise UserError(f"--workers {workers} asks for {workers} GPUs but {available} are visible: use --workers 1")


def run_parallel(todo: list[Job], config: SweepConfig, data_root: Path, results_root: Path, progress) -> list:
    """One process per GPU, each running its share of the jobs on ``cuda:i``; results arrive as they finish."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    shards = [(todo[i :: config.workers], f"cuda:{i}") for i in range(config.workers)]
    workers = [
        context.Process(target=_worker, args=(shard, config, device, data_root, results_root, events))
        for shard, device in shards
        if shard
    ]
    for worker in workers:
        worker.start()
    results, remaining = [], len(todo)
    while remaining and (any(w.is_alive() for w in workers) or not events.empty()):
        try:
            kind, job, payload = events.get(timeout=5)
        except queue.Empty:
            continue
        if kind == "started":
            progress.job_started(job)
            continue
        remaining -= 1
        if kind == "done":
            results.append(payload)
            progress.job_done(job, payload)
        else:
            log.error("job %s failed: %s", job.label(), payload)
    for worker in workers:
        worker.join()
    return results


def _worker(jobs: list[Job], config: SweepConfig, device: str, data_root, results_root, events) -> None:
    config = dataclasses.replace(config, base=dataclasses.replace(config.base, device=device), workers=1)
    for job in jobs:
        events.put(("started", job, None))
        try:
            events.put(("done", job, run_job(job, config, data_root, results_root)))
        except Exception as exc:  # one failed job must not stop the other jobs of this GPU
            events.put(("failed", job, f"{type(exc).__name__}: {exc}"))
