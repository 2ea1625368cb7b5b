"""Training: one step (``train_step``) and a driver (``train_run``) with validation, early stopping and measurement.

The measured window opens once the model, the optimiser and the data are built, as the authors measure it, and
closes after the last epoch; it covers per-epoch validation. Every run ends in exactly one result file, whatever
happens: ok, diverged (a NaN or inf loss), oom, or interrupted (Ctrl-C).

Letters: B batch, L max length, D hidden size, N non-pad positions, C catalogue size.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from rece_bench.config import TrainConfig
from rece_bench.data.loader import (
    EvalSet,
    TrainBatch,
    TrainSequences,
    batches_per_epoch,
    build_eval_set,
    build_train_sequences,
    iterate_batches,
)
from rece_bench.evaluate import Chunking, evaluate_model
from rece_bench.memory import PeakMemory
from rece_bench.models.sasrec import SASRec, SASRecConfig
from rece_bench.results import RunResult, make_run_id, write_result

log = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg@10"


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


class Diverged(RuntimeError):
    """The loss became NaN or inf."""


@dataclass
class TrainState:
    """What the driver carries from epoch to epoch."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class RunData:
    train: TrainSequences
    valid: EvalSet
    test: EvalSet
    num_items: int


def load_run_data(data_root: Path, dataset: str, max_len: int) -> RunData:
    from rece_bench.data.store import read_dataset

    prepared = read_dataset(data_root, dataset)
    return RunData(
        train=build_train_sequences(prepared.train, max_len),
        valid=build_eval_set(prepared.valid, max_len),
        test=build_eval_set(prepared.test, max_len),
        num_items=int(prepared.meta["num_items"]),
    )


def loss_inputs(model: SASRec, batch: TrainBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Hidden states of the non-pad positions, their 0-based targets, and what samplers need."""
    from rece_bench.losses import LossBatch

    inputs = batch.inputs.to(device)
    hidden = model(inputs)  # (B, L, D)
    real = inputs != 0  # (B, L)
    seq_index = real.nonzero()[:, 0]  # (N,) the row of each non-pad position
    targets = batch.targets.to(device)[real] - 1  # (B, L) -> (N,), 1-based -> 0-based columns
    return hidden[real], targets, LossBatch(seq_index=seq_index, seen_items=batch.seen_items.to(device))


def train_step(
    model: SASRec, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: TrainBatch, device
) -> float:
    """Forward, loss, backward, Adam step; returns the loss value, raising Diverged on NaN or inf."""
    optimizer.zero_grad(set_to_none=True)
    hidden, targets, loss_batch = loss_inputs(model, batch, device)  # (N, D), (N,)
    loss = loss_fn(hidden, model.item_embeddings(), targets, loss_batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise Diverged(f"loss is {value}")
    loss.backward()
    optimizer.step()
    return value


def build_model_and_optimizer(config: TrainConfig, num_items: int, device: torch.device):
    model_config = SASRecConfig(
        num_items=num_items,
        max_len=config.max_len,
        dim=config.dim,
        n_blocks=config.n_blocks,
        n_heads=config.n_heads,
        dropout=config.dropout,
    )
    model = SASRec(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    return model, optimizer


def build_loss_for(config: TrainConfig, num_items: int, device: torch.device) -> torch.nn.Module:
    from rece_bench.losses import build_loss

    return build_loss(config.loss, num_items=num_items, **config.loss_params).to(device)


def run_epoch(model, loss_fn, optimizer, data: RunData, config, generator, device, meter, progress) -> float:
    """One pass over the training users; returns the mean step loss."""
    total, steps = 0.0, 0
    for batch in iterate_batches(data.train, config.batch_size, generator):
        value = train_step(model, loss_fn, optimizer, batch, device)
        meter.step_done()
        total, steps = total + value, steps + 1
        progress.step(value, meter.current_peak_bytes())
    return total / max(steps, 1)


def end_of_epoch(state: TrainState, model: SASRec, valid_metrics: dict[str, float], train_loss: float, dt_s: float):
    """Record the epoch; keep the best weights by validation NDCG@10; count epochs without improvement."""
    state.epoch += 1
    score = valid_metrics[SELECTION_METRIC]
    state.history.append({"epoch": state.epoch, "loss": train_loss, "valid_ndcg@10": score, "time_s": dt_s})
    if score > state.best_score:
        state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
        state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        state.bad_epochs += 1


def fit(model, loss_fn, optimizer, data: RunData, config: TrainConfig, device, meter, progress, state) -> None:
    """Epochs until ``config.epochs`` or ``config.patience`` epochs without a better validation NDCG@10.

    ``state`` is updated in place, so that a run stopped by an exception still tells how far it got.
    """
    generator = torch.Generator().manual_seed(config.seed)
    chunking = Chunking(config.eval_users_chunk, config.eval_items_chunk)
    while state.epoch < config.epochs and state.bad_epochs < config.patience:
        started = time.perf_counter()
        train_loss = run_epoch(model, loss_fn, optimizer, data, config, generator, device, meter, progress)
        valid = evaluate_model(model, data.valid, device, chunking, step_done=meter.step_done)
        end_of_epoch(state, model, valid, train_loss, time.perf_counter() - started)
        progress.epoch(state.epoch, train_loss, valid[SELECTION_METRIC])


def train_run(
    config: TrainConfig, data_root: Path, results_root: Path, progress: Progress | None = None
) -> RunResult:
    """Train SASRec with ``config.loss`` on a prepared dataset, test the best checkpoint, write the result."""
    progress = progress or _Silent()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    data = load_run_data(data_root, config.dataset, config.max_len)
    model, optimizer = build_model_and_optimizer(config, data.num_items, device)
    loss_fn = build_loss_for(config, data.num_items, device)
    progress.start(config.epochs, batches_per_epoch(data.train, config.batch_size))
    outcome = _measured_fit(model, loss_fn, optimizer, data, config, device, progress)
    result = _finish(config, model, data, device, outcome)
    write_result(results_root, result)
    if outcome.status == "interrupted":
        raise KeyboardInterrupt
    return result


@dataclass
class _Outcome:
    state: TrainState
    status: str
    message: str
    memory: Any
    train_time_s: float


def _measured_fit(model, loss_fn, optimizer, data, config, device, progress) -> _Outcome:
    meter = PeakMemory(device, track=(model, optimizer))
    state, status, message = TrainState(), "ok", ""
    started = time.perf_counter()
    try:
        with meter:
            fit(model, loss_fn, optimizer, data, config, device, meter, progress, state)
    except Diverged as exc:
        status, message = "diverged", f"{exc} in epoch {state.epoch + 1}"
    except torch.OutOfMemoryError as exc:
        status, message = "oom", str(exc).splitlines()[0]
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by the user"
    return _Outcome(state, status, message, meter.stats, time.perf_counter() - started)


def _finish(config: TrainConfig, model: SASRec, data: RunData, device, outcome: _Outcome) -> RunResult:
    state = outcome.state
    test_metrics, valid_metrics = {}, {}
    if outcome.status == "ok" and state.best_state is not None:
        model.load_state_dict(state.best_state)
        chunking = Chunking(config.eval_users_chunk, config.eval_items_chunk)
        test_metrics = evaluate_model(model, data.test, device, chunking)
        valid_metrics = {SELECTION_METRIC: state.best_score}
    params = config.hyperparameters()
    memory = outcome.memory.to_dict() if outcome.memory is not None else {}
    return RunResult(
        run_id=make_run_id(config.dataset, config.loss, params, config.seed, config.budget_bytes),
        dataset=config.dataset,
        loss=config.loss,
        params=params,
        seed=config.seed,
        device=str(device),
        status=outcome.status,
        metrics=test_metrics,
        valid_metrics=valid_metrics,
        peak_bytes=memory.get("peak_bytes"),
        start_bytes=memory.get("start_bytes"),
        memory_method=memory.get("memory_method"),
        device_peak_bytes=memory.get("device_peak_bytes"),
        train_time_s=outcome.train_time_s,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        budget_bytes=config.budget_bytes,
        history=state.history,
        message=outcome.message,
    )
