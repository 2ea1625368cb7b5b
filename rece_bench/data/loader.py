"""Prepared data -> padded tensors for training and evaluation, with no per-step Python loops over users.

Shape letters (U, L, B, S) as in ``docs/notation.md``. Item ids stay 1-based here (0 is
padding); the loss sees 0-based catalogue columns (``item_id - 1``), which ``TrainBatch`` provides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from rece_bench.config import TrainConfig


@dataclass(frozen=True)
class CSR:
    """Per-row variable-length lists: row r holds values[indptr[r]:indptr[r + 1]]."""

    indptr: torch.Tensor  # (R + 1,) long
    values: torch.Tensor  # (nnz,) long

    def padded_rows(self, rows: torch.Tensor, fill: int = -1) -> torch.Tensor:
        """(len(rows), S) long, each row's list left-aligned, padded with ``fill``."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts  # (B,)
        width = max(int(lengths.max()), 1) if len(rows) else 1
        offsets = torch.arange(width)  # (S,)
        index = starts[:, None] + offsets  # (B, S)
        valid = offsets < lengths[:, None]  # (B, S)
        return torch.where(valid, self.values[index.clamp(max=len(self.values) - 1)], fill)


@dataclass(frozen=True)
class TrainSequences:
    inputs: torch.Tensor  # (U, L) long: items[:-1] of the last L + 1, left-padded with 0
    targets: torch.Tensor  # (U, L) long: items[1:], 0 where the input is padding
    seen: CSR  # each user's distinct training items, 0-based catalogue columns

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass(frozen=True)
class TrainBatch:
    inputs: torch.Tensor  # (B, L) long
    targets: torch.Tensor  # (B, L) long, 1-based, 0 at padding
    seen_items: torch.Tensor  # (B, S) long, 0-based, -1 padded


@dataclass(frozen=True)
class EvalSet:
    inputs: torch.Tensor  # (U, L) long: the last L input items, left-padded
    targets: torch.Tensor  # (U,) long, 1-based
    exclude: CSR  # every input item of each user (1-based), scored -inf at ranking time

    def __len__(self) -> int:
        return self.inputs.shape[0]


def _long(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.int64))  # a writable int64 copy


def _user_bounds(user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end row of each user's run in rows sorted by user."""
    _, starts = np.unique(user_ids, return_index=True)
    ends = np.append(starts[1:], len(user_ids))
    return starts, ends


def _last_k(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int) -> np.ndarray:
    """(U, k): the last k items of every run, left-padded with 0."""
    index = ends[:, None] - k + np.arange(k)  # (U, k)
    valid = index >= starts[:, None]
    return np.where(valid, items[np.clip(index, 0, None)], 0)


def _csr(groups: np.ndarray, values: np.ndarray, n_rows: int) -> CSR:
    """CSR from (group, value) pairs with groups in 0..n_rows-1, sorted by group."""
    counts = np.bincount(groups, minlength=n_rows)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return CSR(_long(indptr), _long(values))


def build_train_sequences(train: pd.DataFrame, max_len: int) -> TrainSequences:
    """One sample per user (the last max_len + 1 items); users with a single item are skipped."""
    frame = train.sort_values(["user_id", "timestamp"], kind="stable")
    users = frame["user_id"].to_numpy()
    items = frame["item_id"].to_numpy()
    starts, ends = _user_bounds(users)
    keep = (ends - starts) >= 2
    starts, ends = starts[keep], ends[keep]
    window = _last_k(items, starts, ends, max_len + 1)  # (U, L + 1)
    inputs, targets = window[:, :-1], window[:, 1:]
    targets = np.where(inputs == 0, 0, targets)
    seen = _distinct_items_per_user(users, items, users[starts])
    return TrainSequences(_long(inputs), _long(targets), seen)


def _distinct_items_per_user(users: np.ndarray, items: np.ndarray, kept_users: np.ndarray) -> CSR:
    pairs = pd.DataFrame({"user": users, "item": items - 1}).drop_duplicates()
    pairs = pairs[pairs["user"].isin(kept_users)]
    row = np.searchsorted(kept_users, pairs["user"].to_numpy())
    order = np.argsort(row, kind="stable")
    return _csr(row[order], pairs["item"].to_numpy()[order], len(kept_users))


def iterate_batches(sequences: TrainSequences, batch_size: int, generator: torch.Generator) -> Iterator[TrainBatch]:
    """Shuffled batches, dropping the last incomplete one (as the authors do) unless it is the only one."""
    order = torch.randperm(len(sequences), generator=generator)
    n_full = len(sequences) // batch_size
    n_batches = max(n_full, 1)
    for b in range(n_batches):
        rows = order[b * batch_size : (b + 1) * batch_size]
        yield TrainBatch(sequences.inputs[rows], sequences.targets[rows], sequences.seen.padded_rows(rows))


def batches_per_epoch(sequences: TrainSequences, batch_size: int) -> int:
    return max(len(sequences) // batch_size, 1)


def build_eval_set(frame: pd.DataFrame, max_len: int) -> EvalSet:
    """Evaluation users from a valid/test frame: the non-target rows are the input, the target row the answer."""
    frame = frame.sort_values(["user_id", "timestamp", "is_target"], kind="stable")
    is_target = frame["is_target"].to_numpy()
    target_items = frame.loc[is_target, ["user_id", "item_id"]]
    history = frame.loc[~is_target]
    users = history["user_id"].to_numpy()
    items = history["item_id"].to_numpy()
    starts, ends = _user_bounds(users)
    eval_users = users[starts]
    targets = target_items.set_index("user_id").loc[eval_users, "item_id"].to_numpy()
    inputs = _last_k(items, starts, ends, max_len)
    row = np.searchsorted(eval_users, users)
    exclude = _csr(row, items, len(eval_users))
    return EvalSet(_long(inputs), _long(targets), exclude)


@dataclass(frozen=True)
class RunData:
    """A prepared dataset as one run uses it: padded training sequences, evaluation sets, per-item counts."""

    train: TrainSequences
    valid: EvalSet
    test: EvalSet
    num_items: int
    item_counts: torch.Tensor  # (C,) long: interactions per item in the training split (0-based columns)
    dataset: str
    max_len: int
    prepared_at: str | None = None  # meta.json's created_at: budget probes are cached per preparation
    data_id: str | None = None  # this preparation's content (``data_identity``): part of a run's identity

    def loss_inputs(self) -> dict[str, Any]:
        """What a loss may ask for in ``data_inputs`` (see ``losses.base.DATA_INPUTS``)."""
        return {"item_counts": self.item_counts}

    def check_serves(self, config: TrainConfig) -> None:
        if (self.dataset, self.max_len) != (config.dataset, config.max_len):
            raise ValueError(
                f"data of {self.dataset!r} at max_len {self.max_len} given to a run of {config.dataset!r} "
                f"at max_len {config.max_len}"
            )


def load_run_data(data_root: Path, dataset: str, max_len: int) -> RunData:
    from rece_bench.data.store import read_dataset

    prepared = read_dataset(data_root, dataset)
    num_items = int(prepared.meta["num_items"])
    items = torch.from_numpy(prepared.train["item_id"].to_numpy(dtype="int64", copy=True)) - 1  # 0-based
    return RunData(
        train=build_train_sequences(prepared.train, max_len),
        valid=build_eval_set(prepared.valid, max_len),
        test=build_eval_set(prepared.test, max_len),
        num_items=num_items,
        item_counts=torch.bincount(items, minlength=num_items),
        dataset=dataset,
        max_len=max_len,
        prepared_at=prepared.meta.get("created_at"),
        data_id=data_identity(prepared.meta),
    )


def data_identity(meta: dict[str, Any]) -> str:
    """A short digest of a prepared dataset's meta.json: its source, filter, split, counts and preparation time, so
    preparing it again (another catalogue, or the same one later) gives another identity."""
    blob = json.dumps(meta, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def dataset_identity(data_root: Path, dataset: str) -> str:
    """``data_identity`` of a prepared dataset, from its meta.json alone (nothing else is read)."""
    from rece_bench.data.store import read_meta

    return data_identity(read_meta(Path(data_root), dataset))
