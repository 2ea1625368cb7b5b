"""The training step, shared by the driver (``driver``), the budget's probe (``budget.probe``) and ``bench-step``:
forward and loss under the precision's autocast, backward, optimiser step.

Shape letters (B, L, D, N, C) as in ``docs/notation.md``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rece_bench.data.loader import TrainBatch
from rece_bench.device import Compute, compute_for
from rece_bench.losses import LossBatch
from rece_bench.models.sasrec import SASRec


class Diverged(RuntimeError):
    """The loss became NaN or inf, or an epoch's mean loss rose far above the untrained model's (see ``fit``)."""


def loss_inputs(model: SASRec, batch: TrainBatch, device: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Hidden states of the non-pad positions, their 0-based targets, and what samplers need."""
    inputs = batch.inputs.to(device)
    hidden = model(inputs)  # (B, L, D)
    real = inputs != 0  # (B, L)
    seq_index = real.nonzero()[:, 0]  # (N,) the row of each non-pad position
    targets = batch.targets.to(device)[real] - 1  # (B, L) -> (N,), 1-based -> 0-based columns
    return hidden[real], targets, LossBatch(seq_index=seq_index, seen_items=batch.seen_items.to(device))


def train_step(
    model: SASRec,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    compute: Compute | Any,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """Forward and loss under the precision's autocast, backward, Adam step; returns the loss value, raising
    Diverged on NaN or inf.

    ``compute``: a ``device.Compute`` (a bare device means fp32 there). ``scaler``: fp16's gradient scaler: the
    loss is scaled before backward, the step skipped when a gradient overflowed, and the scale updated.
    """
    compute = compute_for(compute)
    optimizer.zero_grad(set_to_none=True)
    with compute.autocast():
        hidden, targets, loss_batch = loss_inputs(model, batch, compute.device)  # (N, D), (N,)
        loss = loss_fn(hidden, model.item_embeddings(), targets, loss_batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise Diverged(f"loss is {value}")
    if scaler is None:
        loss.backward()
        optimizer.step()
        return value
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value
