"""Training: one step (``train_step``) and a driver (``train_run``) with validation, early stopping and measurement.

The measured window opens once the model, the optimiser and the data are built, as the authors measure it, and
closes after the last epoch; it covers per-epoch validation. Every run has exactly one result file
(``results.RunRecord``): running from the first step, rewritten after each epoch's checkpoint, and finalised once,
whatever happens: ok, over_budget, diverged (a NaN or inf loss, or a finite blow-up: ``check_not_diverging``), oom,
or interrupted (Ctrl-C, SIGTERM). A process killed outright leaves it running, which the report shows as killed.

Shape letters (B, L, D, N, C) as in ``docs/notation.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Protocol

import torch

from rece_bench.config import TrainConfig
from rece_bench.data.loader import RunData, batches_per_epoch, iterate_batches, load_run_data
from rece_bench.errors import UserError
from rece_bench.memory import MemoryStats, Meter, PeakMemory
from rece_bench.results import FINAL_STATUSES, Outcome, RunRecord, RunResult, ensure_results_root, within_budget
from rece_bench.threads import with_config_threads
from rece_bench.training.checkpoint import (
    CHECKPOINTS_DIR,
    checkpoint_dir,
    clean_temporaries,
    discard_last,
    has_last,
    load_best,
    load_last,
    save_best,
)
from rece_bench.training.evaluate import Chunking, evaluate_model
from rece_bench.training.session import (
    SELECTION_METRIC,
    Run,
    TrainState,
    build_run,
    result_of,
    run_id_of,
    state_memory,
)
from rece_bench.training.step import Diverged, train_step

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the driver reports while it trains; the CLI renders it, tests ignore it."""

    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def step(self, loss: float, peak_bytes: int) -> None: ...
    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None: ...


class _Silent:
    def start(self, epochs: int, steps_per_epoch: int) -> None:
        pass

    def step(self, loss: float, peak_bytes: int) -> None:
        pass

    def epoch(self, epoch: int, train_loss: float, valid_ndcg: float) -> None:
        pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; ``result`` (status interrupted) is saved and says how to go on."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.message)
        self.result = result


# An epoch whose mean loss is above this many times the run's first step loss (the untrained model's) diverged,
# though it stayed finite. Healthy runs stay near their first step (measured on a small synthetic set: epoch means
# at most 1.01x over 8 epochs, steps at most 1.05x, for every loss at learning rates 1e-3 to 1e-1); at --lr 10
# epochs reach 250-500x with rubbish metrics, while 1e9 overflows to NaN at once.
DIVERGED_LOSS_FACTOR = 10.0


def run_epoch(run: Run, meter: Meter, progress: Progress) -> float:
    """One pass over the training users; returns the mean step loss."""
    total, steps = 0.0, 0
    for batch in iterate_batches(run.data.train, run.config.batch_size, run.generator):
        value = train_step(run.model, run.loss_fn, run.optimizer, batch, run.compute, run.scaler)
        if run.state.first_loss is None:
            run.state.first_loss = value
        meter.step_done()
        total, steps = total + value, steps + 1
        progress.step(value, meter.current_peak_bytes())
    return total / max(steps, 1)


def end_of_epoch(state: TrainState, valid_metrics: dict[str, float], train_loss: float, dt_s: float) -> bool:
    """Record the epoch and count epochs without improvement; True when this epoch is the best so far."""
    state.epoch += 1
    score = valid_metrics[SELECTION_METRIC]
    state.history.append({"epoch": state.epoch, "loss": train_loss, "valid_ndcg@10": score, "time_s": dt_s})
    improved = score > state.best_score
    if improved:
        state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
    else:
        state.bad_epochs += 1
    return improved


def check_not_diverging(state: TrainState, train_loss: float) -> None:
    """Raise Diverged when an epoch's mean loss is above DIVERGED_LOSS_FACTOR times the first step's."""
    first = state.first_loss
    if first is not None and first > 0 and train_loss > DIVERGED_LOSS_FACTOR * first:
        factor = f"{DIVERGED_LOSS_FACTOR:g}x"
        raise Diverged(f"mean loss {train_loss:.4g} is over {factor} the first step's {first:.4g} (try a lower --lr)")


def fit(run: Run, meter: Meter, progress: Progress) -> None:
    """Epochs until ``config.epochs`` or ``config.patience`` epochs without a better validation NDCG@10.

    ``run.state`` is updated in place, so a run stopped by an exception still tells how far it got. Each epoch
    ends with a checkpoint; the best weights are saved whenever validation improves.
    """
    config, state = run.config, run.state
    chunking = Chunking(config.eval_users_chunk, config.eval_items_chunk)
    epochs_here, session_started = 0, time.perf_counter()
    while state.epoch < config.epochs and state.bad_epochs < config.patience:
        started = time.perf_counter()
        train_loss = run_epoch(run, meter, progress)
        check_not_diverging(state, train_loss)
        valid = evaluate_model(run.model, run.data.valid, run.compute, chunking, step_done=meter.step_done)
        if end_of_epoch(state, valid, train_loss, time.perf_counter() - started):
            save_best(run.folder, run.model.state_dict())
        epochs_here += 1
        meter.epoch_done(epochs_here)
        state.train_time_s = run.earlier_time_s + time.perf_counter() - session_started
        state.peak_bytes = max(state.peak_bytes or 0, meter.current_peak_bytes())
        state.start_bytes = meter.start_bytes
        run.checkpoint()
        if run.record is not None:
            run.record.update(result_of(run, Outcome("running"), state_memory(state)))
        progress.epoch(state.epoch, train_loss, valid[SELECTION_METRIC])


def _fit_guarded(run: Run, meter: Meter, progress: Progress) -> Outcome:
    """``fit`` with every way a run can end turned into a status."""
    try:
        with meter:
            fit(run, meter, progress)
    except Diverged as exc:
        return Outcome("diverged", f"{exc} in epoch {run.state.epoch + 1}")
    except torch.OutOfMemoryError as exc:
        return Outcome("oom", _oom_message(run.config, exc))
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        return Outcome("oom", _oom_message(run.config, exc))
    except KeyboardInterrupt:
        return Outcome("interrupted", _interrupted_message(run))
    return Outcome("ok", "")


def _interrupted_message(run: Run) -> str:
    if has_last(run.folder):
        return f"stopped by the user after epoch {run.state.epoch}: the same command with --resume goes on"
    return "stopped by the user before the first checkpoint (the end of epoch 1): run the same command again"


def _oom_message(config: TrainConfig, exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"out of memory with loss {config.loss} {dict(config.loss_params)}, batch {config.batch_size}: {first}"


def prepare_run(
    config: TrainConfig, data_root: Path | None, results_root: Path, resume: bool, data: RunData | None = None
) -> Run:
    """Load the data (unless ``data`` is given) and build the run; restore the last checkpoint when resuming."""
    if data is None:
        data = load_run_data(data_root, config.dataset, config.max_len)
    data.check_serves(config)
    folder = checkpoint_dir(results_root, run_id_of(config, data.data_id))
    run = build_run(config, data, folder)
    if resume:
        clean_temporaries(folder)  # of a save whose process was killed; the checkpoints themselves are whole
        payload = load_last(folder)
        if payload is None:
            raise UserError(f"nothing to resume: no checkpoint under {folder}: run again without --resume")
        run.restore(payload)
    else:
        discard_last(folder)
    return run


def check_resume(record: RunRecord, folder: Path) -> None:
    """Before loading anything: refuse --resume of a finished run, or of one that never saved a checkpoint."""
    status = record.earlier_status
    if status in FINAL_STATUSES:
        raise UserError(
            f"run {record.run_id} already finished (status {status}): its result is {record.path}; "
            "`rece-bench report` shows it, and the same command with --restart instead of --resume trains it again"
        )
    if not has_last(folder):
        if status is None:
            why = f"no run of this configuration on this preparation of its dataset under {record.root}"
        else:
            why = f"the run ({status}) stopped before its first checkpoint"
        raise UserError(f"nothing to resume: {why}: run the same command again without --resume")


@with_config_threads
def train_run(
    config: TrainConfig,
    data_root: Path | None,
    results_root: Path,
    progress: Progress | None = None,
    resume: bool = False,
    data: RunData | None = None,
    restart: bool = False,
) -> RunResult:
    """Train SASRec with ``config.loss`` on a prepared dataset, test the best checkpoint, write the result.

    The dataset is read from ``data_root``, or taken as loaded from ``data`` (then ``data_root`` may be None).
    The result file exists from the start of training (status running) and is finalised exactly once, whatever
    happens: ok, over_budget (``config.budget_bytes`` exceeded), diverged, oom or interrupted. Bad input found
    before training writes nothing. A Ctrl-C raises ``Interrupted`` once the result is saved; the last checkpoint
    stays for ``resume=True``. A run that finished, or left a checkpoint, is trained again only with
    ``restart=True`` (``check_rerun``). The run's lock (``lock.RunLock``) is held from the first look at its result
    to the end.
    """
    ensure_results_root(results_root)
    ensure_results_root(results_root, CHECKPOINTS_DIR)  # e.g. a file named checkpoints: one line, before anything
    if resume and restart:
        raise UserError("--resume and --restart contradict each other: pass one of them")
    data = data if data is not None else load_run_data(data_root, config.dataset, config.max_len)
    record = RunRecord(results_root, run_id_of(config, data.data_id))
    try:
        return _train_recorded(config, record, data, progress or _Silent(), resume, restart)
    finally:
        record.close()


def check_rerun(record: RunRecord, folder: Path, resume: bool, restart: bool) -> None:
    """No progress is lost by accident: --resume must have something to go on from, and a run that finished or
    left a checkpoint is trained again only with --restart."""
    if resume:
        check_resume(record, folder)
        return
    status = record.earlier_status
    if restart or status is None:
        return
    if status in FINAL_STATUSES:
        raise UserError(
            f"run {record.run_id} already finished (status {status}): its result is {record.path}; "
            "`rece-bench report` shows it, and the same command with --restart trains it again"
        )
    if has_last(folder):
        raise UserError(
            f"run {record.run_id} stopped ({status}) after epoch {record.earlier.epochs} and its checkpoint is "
            "kept: pass --resume to go on from it, or --restart to start it over"
        )


def _train_recorded(
    config: TrainConfig, record: RunRecord, data: RunData, progress: Progress, resume: bool, restart: bool
) -> RunResult:
    check_rerun(record, checkpoint_dir(record.root, record.run_id), resume, restart)
    run = prepare_run(config, None, record.root, resume, data)
    run.record = record
    record.start(result_of(run, Outcome("running"), state_memory(run.state)))
    try:
        result = _train_and_test(run, progress)
    except BaseException:
        record.abandon()  # an error that is no status (bad input found late, a bug): the results as they were
        raise
    record.finish(result)
    if result.status == "interrupted":
        raise Interrupted(result)
    discard_last(run.folder)  # only an interrupted run can go on; the best weights stay
    return result


def _train_and_test(run: Run, progress: Progress) -> RunResult:
    config = run.config
    progress.start(config.epochs, batches_per_epoch(run.data.train, config.batch_size))
    meter = Meter(run.compute, track=(run.model, run.optimizer), track_epochs=config.track_memory_epochs)
    session_started = time.perf_counter()
    outcome = _fit_guarded(run, meter, progress)
    return _finish(run, meter, outcome, time.perf_counter() - session_started)


def _test_best(run: Run) -> tuple[dict[str, float], int | None]:
    """Test metrics of the best weights, and the peak memory of that evaluation."""
    run.model.load_state_dict(load_best(run.folder))
    chunking = Chunking(run.config.eval_users_chunk, run.config.eval_items_chunk)
    meter = PeakMemory(run.compute, track=(run.model,))
    with meter:
        metrics = evaluate_model(run.model, run.data.test, run.compute, chunking, step_done=meter.step_done)
    return metrics, meter.stats.peak_bytes


def _memory_of(run: Run, meter: Meter) -> MemoryStats | None:
    """This session's measurement, merged with the peak of earlier sessions of a resumed run."""
    stats, earlier = meter.stats, run.state.peak_bytes
    if earlier is None or (stats is not None and earlier <= stats.peak_bytes):
        return stats
    if stats is None:
        return MemoryStats(earlier, run.state.start_bytes)
    return dataclasses.replace(stats, peak_bytes=earlier, start_bytes=run.state.start_bytes)


def _finish(run: Run, meter: Meter, outcome: Outcome, session_time_s: float) -> RunResult:
    """The final result: test metrics of the best weights for an ok run, then the budget check."""
    ok = outcome.status == "ok" and run.state.best_epoch > 0
    test_metrics, eval_peak_bytes = _test_best(run) if ok else ({}, None)
    result = result_of(
        run, outcome, _memory_of(run, meter), test_metrics, eval_peak_bytes, run.earlier_time_s + session_time_s
    )  # fmt: skip
    return within_budget(result)
