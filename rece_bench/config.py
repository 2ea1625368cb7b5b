"""Frozen, validated configurations. A bad value fails at construction with the field, the value and the fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from rece_bench.device import precision_of
from rece_bench.errors import UserError
from rece_bench.threads import DEFAULT_THREADS, check_threads

DEFAULT_PRECISION = "fp32"


def positive_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{owner}: {name} must be a positive integer, got {value!r}: pass --{_flag(name)} N >= 1")


# Longer inputs than any recommender trains on (the paper: 200); beyond it the position table and the attention
# matrices ((L, L) per head) cannot be allocated, and the error was a MemoryError's traceback.
MAX_LEN_LIMIT = 100_000


def check_max_len(owner: str, value: Any) -> None:
    positive_int(owner, "max_len", value)
    if value > MAX_LEN_LIMIT:
        raise UserError(f"{owner}: max_len {value} is beyond any sequence here: pass --max-len <= {MAX_LEN_LIMIT:,}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (the data root and results root are paths, passed separately)."""

    dataset: str
    loss: str = "ce"
    loss_params: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 300
    patience: int = 10
    batch_size: int = 128
    max_len: int = 200
    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.3
    lr: float = 1e-3
    seed: int = 1235
    device: str = "cpu"
    precision: str = DEFAULT_PRECISION  # fp32, bf16 or fp16 (device.PRECISIONS): autocast of the forward and the loss
    eval_users_chunk: int = 512
    eval_items_chunk: int = 65_536
    budget_bytes: int | None = None
    track_memory_epochs: int = 1  # CPU only: epochs under live-tensor tracking (0 = all); see memory.Meter
    threads: int = DEFAULT_THREADS  # torch's intra-op threads (rece_bench.threads: one per job by default); timing only

    def __post_init__(self) -> None:
        owner = "train config"
        for name in ("epochs", "patience", "batch_size", "max_len", "dim", "n_blocks", "n_heads"):
            positive_int(owner, name, getattr(self, name))
        check_max_len(owner, self.max_len)
        for name in ("eval_users_chunk", "eval_items_chunk"):
            positive_int(owner, name, getattr(self, name))
        if self.track_memory_epochs < 0:
            raise UserError(f"{owner}: track_memory_epochs must be >= 0 (0 = all), got {self.track_memory_epochs}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{owner}: dropout must be in [0, 1), got {self.dropout!r}: pass --dropout 0.3")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"{owner}: lr must be a finite number > 0, got {self.lr!r}: pass --lr 1e-3")
        check_threads(self.threads)
        if self.dim % self.n_heads:
            raise UserError(f"{owner}: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if not self.dataset:
            raise UserError(f"{owner}: dataset is empty: pass --dataset NAME")
        precision_of(self.precision)  # a UserError naming the choices
        object.__setattr__(self, "loss_params", dict(self.loss_params))

    def hyperparameters(self) -> dict[str, Any]:
        """Every knob that changes the result (not the device nor the evaluation chunking).

        The precision is one, but only when it is not fp32: results written before precisions existed were fp32
        and carry no such key, so their run ids (resume) and the sweep's restart rule still match fp32 runs.
        """
        params = asdict(self)
        not_knobs = ("dataset", "loss", "loss_params", "device", "eval_users_chunk", "eval_items_chunk")
        for key in (*not_knobs, "track_memory_epochs", "threads"):
            params.pop(key)
        if params["precision"] == DEFAULT_PRECISION:
            params.pop("precision")
        params.update({f"loss.{k}": v for k, v in sorted(self.loss_params.items())})
        return params
