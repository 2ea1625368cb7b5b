"""A training run as the driver (``driver``) and the budget probes (``budget.probe``) hold it: its state from epoch to
epoch, how it is built from a config and loaded data, how it is checkpointed and restored, and how it reads as a
result row.

Shape letters (C, D) as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rece_bench.config import TrainConfig
from rece_bench.data.loader import RunData
from rece_bench.device import MIB, Compute, compute_for, working_block_bytes
from rece_bench.losses import build_loss
from rece_bench.losses.base import check_available, lookup
from rece_bench.memory import MemoryStats
from rece_bench.models.sasrec import SASRec, SASRecConfig
from rece_bench.results import Outcome, RunIdentity, RunRecord, RunResult, Scores, result_row
from rece_bench.training.checkpoint import save_last

SELECTION_METRIC = "ndcg@10"


@dataclass
class TrainState:
    """What the driver carries from epoch to epoch (and what a checkpoint restores)."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0  # wall time so far, all sessions of a resumed run together
    peak_bytes: int | None = None  # the peak so far, all sessions together
    start_bytes: int | None = None
    first_loss: float | None = None  # the first step's loss: the untrained model's, the yardstick of divergence


def build_model_and_optimizer(config: TrainConfig, num_items: int, device: torch.device):
    """SASRec of ``config``'s shape and its Adam (the paper's betas)."""
    model_config = SASRecConfig(
        num_items=num_items,
        max_len=config.max_len,
        dim=config.dim,
        n_blocks=config.n_blocks,
        n_heads=config.n_heads,
        dropout=config.dropout,
    )
    model = SASRec(model_config).to(device)
    # The fused kernel does the same update in one pass over each tensor, several times faster than the default
    # on CPU for a large item table (the model's dominant parameter); `bench-step` shows the whole-step effect.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98), fused=True)
    return model, optimizer


def working_loss_params(config: TrainConfig, device: torch.device, budget_bytes: int | None) -> dict[str, Any]:
    """``config.loss_params``, with the working block of a streaming loss (one with a ``block_mib`` parameter)
    filled in when the user gave none: ``device.working_block_bytes`` of the device and the run's budget. Fixed
    once per run, so a budget's probe and the training it chose stream the same blocks."""
    params = dict(config.loss_params)
    if "block_mib" not in params and any(spec.name == "block_mib" for spec in lookup(config.loss).params):
        params["block_mib"] = working_block_bytes(device, budget_bytes) / MIB
    return params


def build_loss_for(
    config: TrainConfig, data: RunData, device: torch.device, budget_bytes: int | None = None
) -> torch.nn.Module:
    """The loss of ``config``, given what it asks of the prepared data (``Loss.data_inputs``); ``budget_bytes``
    sizes a streaming loss's block (``working_loss_params``). A loss that cannot run on this device and precision
    here (``Loss.unavailable_reason``) is a UserError, before anything is written."""
    check_available(config.loss, device, config.precision)
    wanted = lookup(config.loss).data_inputs
    inputs = {key: value.to(device) for key, value in data.loss_inputs().items() if key in wanted}
    params = working_loss_params(config, device, budget_bytes)
    return build_loss(config.loss, num_items=data.num_items, **params, **inputs).to(device)


@dataclass
class Run:
    """Everything one training run holds; ``fit`` drives it epoch by epoch."""

    config: TrainConfig
    data: RunData
    model: SASRec
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    compute: Compute  # the device and the precision
    folder: Path | None  # checkpoints (None: never saved)
    state: TrainState = field(default_factory=TrainState)
    generator: torch.Generator = field(default_factory=torch.Generator)
    earlier_time_s: float = 0.0  # training time of earlier sessions of a resumed run
    record: RunRecord | None = None  # its result file (None: a run that is only measured)
    scaler: torch.amp.GradScaler | None = None  # fp16's gradient scaler (None: fp32, bf16)

    @property
    def device(self) -> torch.device:
        return self.compute.device

    def checkpoint(self) -> None:
        save_last(self.folder, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": asdict(self.state),
            "rng": torch.get_rng_state(), "batch_rng": self.generator.get_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        })  # fmt: skip

    def restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["state"])
        torch.set_rng_state(payload["rng"])
        self.generator.set_state(payload["batch_rng"])
        self.earlier_time_s = self.state.train_time_s


def compute_of(config: TrainConfig) -> Compute:
    """Where and how ``config`` computes: its device resolved (an index for CUDA) and its precision."""
    return compute_for(config.device, config.precision)


def build_run(
    config: TrainConfig,
    data: RunData,
    folder: Path | None = None,
    compute: Compute | None = None,
    budget_bytes: int | None = None,
) -> Run:
    """The run of ``config`` on loaded data: seeded, model, optimiser and loss built on its device.

    ``folder`` holds its checkpoints (None: a run that is only measured, e.g. a budget probe, and never saved).
    ``compute``: resolved by the caller (default: ``compute_of(config)``). ``budget_bytes`` sizes a streaming
    loss's block (default: ``config.budget_bytes``; a budget's probe passes the budget it probes for).
    """
    compute = compute or compute_of(config)
    budget_bytes = config.budget_bytes if budget_bytes is None else budget_bytes
    torch.manual_seed(config.seed)
    model, optimizer = build_model_and_optimizer(config, data.num_items, compute.device)
    loss_fn = build_loss_for(config, data, compute.device, budget_bytes)
    run = Run(config, data, model, optimizer, loss_fn, compute, folder, scaler=compute.grad_scaler())
    run.generator.manual_seed(config.seed)
    return run


def run_id_of(config: TrainConfig, data_id: str | None = None) -> str:
    """The id of a run of ``config`` on the preparation ``data_id`` of its dataset (``RunData.data_id``)."""
    return RunIdentity.of(config, data_id).run_id


def state_memory(state: TrainState) -> MemoryStats | None:
    """The peak so far, as the state carries it from epoch to epoch (None before the first epoch)."""
    return None if state.peak_bytes is None else MemoryStats(state.peak_bytes, state.start_bytes)


def result_of(
    run: Run,
    outcome: Outcome,
    memory: MemoryStats | None = None,
    test_metrics: dict[str, float] | None = None,
    eval_peak_bytes: int | None = None,
    train_time_s: float | None = None,
) -> RunResult:
    """The run as a result row: so far (status running) or final."""
    config, state = run.config, run.state
    ok = outcome.status == "ok" and state.best_epoch > 0
    scores = Scores(
        metrics=test_metrics or {},
        valid_metrics={SELECTION_METRIC: state.best_score} if ok else {},
        eval_peak_bytes=eval_peak_bytes,
        train_time_s=state.train_time_s if train_time_s is None else train_time_s,  # wall time, validation included
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        history=state.history,
    )
    return result_row(RunIdentity.of(config, run.data.data_id, str(run.device)), outcome, memory, scores)
