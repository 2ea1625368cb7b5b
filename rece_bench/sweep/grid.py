"""Sweeps: every (loss, budget, seed) of a grid, restartable at any point.

With budgets, each job trains the preferred configuration of its loss that fits its budget (``budget``). Without
budgets, each job trains one candidate of the loss's ladder: the whole grid. A job is done when a result file with
a final status (ok, over_budget, oom, diverged, failed) matches it: the same dataset, loss, seed, budget and every
hyperparameter the budget does not choose. A restarted sweep runs only what is missing, whichever engine ran it.

Engines: ``LocalEngine`` runs the jobs one after another in this process, and a job left ``interrupted`` resumes
from its last checkpoint. ``ray_engine.RayEngine`` runs them as Ray tasks, on one machine or a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rece_bench.budget.choice import NothingFits
from rece_bench.budget.fit import nothing_fits_result, train_within_budget
from rece_bench.budget.ladder import Candidate, Ladder, ladder_for, usable_candidates
from rece_bench.budget.plan import Budget, catalogue_size
from rece_bench.config import TrainConfig
from rece_bench.errors import UserError
from rece_bench.results import (
    FINAL_STATUSES,
    Outcome,
    RunIdentity,
    RunResult,
    ensure_results_root,
    read_results,
    result_row,
    write_result,
)

PAPER_SEEDS = (1235, 37, 2451)


@dataclass(frozen=True)
class SweepConfig:
    """The grid: ``base`` holds the dataset, device, epochs and model; its loss and seed are replaced per job."""

    base: TrainConfig
    losses: tuple[str, ...]
    budgets_bytes: tuple[int, ...] = ()
    seeds: tuple[int, ...] = (PAPER_SEEDS[0],)
    grid: Mapping[str, Ladder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.losses:
            raise UserError("a sweep needs at least one loss: pass --loss ce --loss rece ...")
        if not self.seeds:
            raise UserError("a sweep needs at least one seed: pass --seeds 1")
        from rece_bench.losses.base import check_available

        for loss in self.losses:
            ladder_for(loss, self.grid)  # an unknown loss fails here, before any training
            check_available(loss, self.base.device, self.base.precision)  # and one not runnable
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


def schedule(todo: Sequence[Job]) -> list[tuple[Job, Job | None]]:
    """The one plan of what waits for what, which every engine follows: each job of ``todo`` with the job it waits
    for. A budgeted job waits for the job of the next smaller budget of its loss and seed: budgets that do not bind
    choose the same configuration, and then the smaller one trains it and the larger records its result (``once``)
    rather than train it a second time alongside. Other jobs wait for nothing. Every job comes after the one it
    waits for; otherwise the order is ``todo``'s."""
    jobs: list[Job] = list(todo)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.budget_bytes is not None:
            groups.setdefault((job.loss, job.seed), []).append(i)
    waits: list[Job | None] = [None] * len(jobs)
    for indexes in groups.values():
        by_budget = sorted((jobs[i] for i in indexes), key=lambda job: job.budget_bytes)
        for i, job in zip(indexes, by_budget, strict=True):  # the group's places, in budget order
            jobs[i] = job
        for i, before in zip(indexes[1:], indexes, strict=False):
            waits[i] = jobs[before]
    return list(zip(jobs, waits, strict=True))


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


def finished(rows: Sequence[dict[str, Any]], config: SweepConfig, data_id: str | None = None) -> set[str]:
    """Identities of the runs under the results root that ended with a final status, on the preparation
    ``data_id`` of the dataset (a row that names none, written before rows did, counts for any)."""
    done = set()
    for row in rows:
        if row["status"] not in FINAL_STATUSES or row["loss"] not in config.losses:
            continue
        if data_id is not None and row.get("data_id") not in (None, data_id):
            continue
        knobs = ladder_for(row["loss"], config.grid).knob_names
        done.add(identity(row["dataset"], row["loss"], row["seed"], row["budget_bytes"], row["params"], knobs))
    return done


def failed_result(job: Job, config: SweepConfig, message: str) -> RunResult:
    """The result of a job that could not finish (its task raised, or its worker kept dying): status failed.

    It carries the job's own configuration (under a budget, the base one: nothing was chosen), so the restart
    rule counts the job as done; delete the file to run it again.
    """
    train_config = dataclasses.replace(job.config(config.base), budget_bytes=job.budget_bytes)
    identity = dataclasses.replace(RunIdentity.of(train_config), threads=None)  # it never finished: none recorded
    return result_row(identity, Outcome("failed", message))


class SweepProgress(Protocol):
    """What a sweep reports; it is also the training progress of the job that runs (``train.Progress``).

    ``job_started`` comes when a job is handed out; with the Ray engine several jobs run at once, and no training
    progress comes from them."""

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
    runs: tuple[tuple[Job, RunResult], ...]  # the jobs run now with their results, in the order they finished
    wall_time_s: float = 0.0

    @property
    def results(self) -> tuple[RunResult, ...]:
        return tuple(result for _, result in self.runs)


Trainer = Callable[..., RunResult]  # called as train.train_run is, ``data`` included


class Engine(Protocol):
    """Runs the jobs a sweep still misses; returns (job, result) pairs as they finish, every result written.

    ``ready`` comes first, only when there are jobs to run: it checks and connects what the engine needs, so that
    bad input fails before the sweep begins; ``run`` is called inside it."""

    def ready(self, config: SweepConfig) -> contextlib.AbstractContextManager[object]: ...

    def run(
        self, todo: Sequence[Job], config: SweepConfig, data_root: Path, results_root: Path, progress: SweepProgress
    ) -> list[tuple[Job, RunResult]]: ...  # fmt: skip


class LocalEngine:
    """One job after another in this process; a Ctrl-C stops after saving the running job (``interrupted``)."""

    def ready(self, config: SweepConfig) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def run(self, todo, config, data_root, results_root, progress):
        runs = []
        for job, _ in schedule(todo):  # one after another: each job's wait is over when it starts
            progress.job_started(job)
            runs.append((job, run_job(job, config, data_root, results_root, progress)))
            progress.job_done(*runs[-1])
        return runs


def run_sweep(
    config: SweepConfig,
    data_root: Path,
    results_root: Path,
    progress: SweepProgress | None = None,
    engine: Engine | None = None,
) -> SweepSummary:
    """Run every job of the grid that has no final result yet, on ``engine`` (default: ``LocalEngine``)."""
    progress = progress or _Quiet()
    started = time.perf_counter()
    ensure_results_root(results_root)
    jobs = plan_jobs(config, None if config.budgets_bytes else catalogue_size(data_root, config.base.dataset))
    done = finished(read_results(results_root), config, _data_id(data_root, config.base.dataset))
    todo = [job for job in jobs if job_identity(job, config) not in done]
    engine = engine or LocalEngine()
    with engine.ready(config) if todo else contextlib.nullcontext():
        progress.begin(len(jobs), len(jobs) - len(todo))
        runs = engine.run(todo, config, data_root, results_root, progress) if todo else []
    return SweepSummary(len(jobs), len(jobs) - len(todo), tuple(runs), time.perf_counter() - started)


def _data_id(data_root: Path | None, dataset: str, data=None) -> str | None:
    """The prepared data's identity: the loaded data's (``data``) when given, else read from ``data_root``."""
    from rece_bench.data.loader import dataset_identity

    if data is not None:
        return data.data_id
    return None if data_root is None else dataset_identity(data_root, dataset)


def run_job(
    job: Job,
    config: SweepConfig,
    data_root: Path | None,
    results_root: Path,
    progress=None,
    data=None,
) -> RunResult:
    """Train one job (choosing its configuration first under a budget); resume it when a checkpoint is left.

    ``data``: the dataset already loaded (``data.loader.RunData``); then ``data_root`` may be None.
    """
    train_config = job.config(config.base)
    resuming = _resuming(data)
    if job.budget_bytes is None:
        return resuming(train_config, data_root, results_root, progress)
    budget = Budget(job.budget_bytes, config.grid)
    try:
        return train_within_budget(
            train_config, budget, data_root, results_root, progress, trainer=once(resuming, data), data=data
        ).result
    except NothingFits as exc:
        result = nothing_fits_result(train_config, job.budget_bytes, exc)
        write_result(results_root, result)
        return result


def once(trainer: Trainer, data=None) -> Trainer:
    """The trainer of a budgeted job, training each distinct configuration once: when the budget chose a
    configuration that an ok run of another budget already trained (same hyperparameters, seed and data, a peak
    within this budget too), its result is recorded for this budget with a message pointing to that run, instead
    of training it again. Budgets that do not bind choose the same configuration; it is trained once."""

    def train(config: TrainConfig, data_root: Path | None, results_root: Path, progress=None, resume=False, data=data):
        data_id = _data_id(data_root, config.dataset, data)
        twin = trained_twin(results_root, config, data_id)
        if twin is None or resume:
            return trainer(config, data_root, results_root, progress, resume=resume, data=data)
        return repeat_result(results_root, twin, config, data_id)

    return train


def trained_twin(results_root: Path, config: TrainConfig, data_id: str | None) -> RunResult | None:
    """An ok run of ``config``'s configuration under another budget whose peak fits ``config.budget_bytes``."""
    from rece_bench.results import read_result, result_path

    def key(params: Mapping[str, Any]) -> str:
        return json.dumps({k: v for k, v in params.items() if k != "budget_bytes"}, sort_keys=True, default=str)

    params = key(config.hyperparameters())
    for row in read_results(results_root):
        same = (row["loss"], row["seed"], row.get("data_id")) == (config.loss, config.seed, data_id)
        if not same or row["status"] != "ok" or row["budget_bytes"] in (None, config.budget_bytes):
            continue
        fits = row["peak_bytes"] is not None and row["peak_bytes"] <= config.budget_bytes
        if fits and key(row["params"]) == params:
            return read_result(result_path(results_root, row["run_id"]))
    return None


def repeat_result(results_root: Path, twin: RunResult, config: TrainConfig, data_id: str | None) -> RunResult:
    """``twin``'s result, recorded as this budget's run (its own id and budget), saying where it comes from."""
    from rece_bench.budget.sizes import format_size
    from rece_bench.training.session import run_id_of

    result = dataclasses.replace(
        twin, run_id=run_id_of(config, data_id), budget_bytes=config.budget_bytes, pid=None, host=None,
        process_start=None, message=f"the configuration run {twin.run_id} trained (budget "
        f"{format_size(twin.budget_bytes)}) fits this budget too: its result, not trained again",
    )  # fmt: skip
    write_result(results_root, result)
    return result


def _resuming(data=None) -> Trainer:
    """``train_run``, resuming a run whose last checkpoint is still there (an interrupted or killed run)."""
    from rece_bench.training import driver as training  # imports torch: here, so that `rece-bench --help` stays fast
    from rece_bench.training.checkpoint import LAST, checkpoint_dir
    from rece_bench.training.session import run_id_of

    def train(config: TrainConfig, data_root: Path | None, results_root: Path, progress=None, resume=False, data=data):
        data_id = _data_id(data_root, config.dataset, data)
        resume = resume or (checkpoint_dir(results_root, run_id_of(config, data_id)) / LAST).exists()
        return training.train_run(config, data_root, results_root, progress, resume=resume, data=data)

    return train
