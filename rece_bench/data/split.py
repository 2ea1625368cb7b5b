"""Contiguous ids, then the two splits of REFERENCE section 4: temporal (four large datasets), leave-one-out.

Frames here have columns ``user_id``, ``item_id``, ``timestamp`` (int64), sorted by (user_id, timestamp)
stable. ``valid`` and ``test`` hold each evaluation user's whole evaluation sequence with ``is_target`` true
on its last row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rece_bench.errors import UserError

COLUMNS = ["user_id", "item_id", "timestamp"]


@dataclass(frozen=True)
class SplitConfig:
    method: str = "temporal"  # "temporal" or "loo"
    quantile: float = 0.95  # temporal: T is this quantile of all timestamps ('nearest')
    min_history: int = 3  # an evaluation user needs this many interactions: input, valid target, test target

    def __post_init__(self) -> None:
        if self.method not in SPLITTERS:
            raise UserError(f"unknown split {self.method!r}: pass --split {' or '.join(SPLITTERS)}")
        if not 0.0 < self.quantile < 1.0:
            raise UserError(f"SplitConfig.quantile must be in (0, 1), got {self.quantile!r}")
        if self.min_history < 3:
            raise UserError(f"SplitConfig.min_history must be >= 3, got {self.min_history!r}")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # user_id, item_id, timestamp
    valid: pd.DataFrame  # user_id, item_id, timestamp, is_target
    test: pd.DataFrame
    settings: dict[str, Any]


@dataclass(frozen=True)
class Indexed:
    """Interactions with contiguous 1-based ids and the raw id of each (index 0 is padding, so absent)."""

    frame: pd.DataFrame  # user_id, item_id, timestamp; sorted by (user_id, timestamp) stable
    raw_users: list[str]  # raw_users[k] is the raw id of user_id k + 1
    raw_items: list[str]


def index_interactions(frame: pd.DataFrame, users: Sequence[str], items: Sequence[str]) -> Indexed:
    """Codes (``user``, ``item`` into ``users``/``items``) -> ids 1..N in order of first appearance.

    Users are numbered in file order; items by first appearance once each user's rows are sorted by time.
    """
    ordered = frame.sort_values(["user", "timestamp"], kind="stable")  # user codes are in file order already
    user_codes, user_ids = np.unique(ordered["user"].to_numpy(), return_inverse=True)
    item_codes, first_seen, item_inverse = np.unique(ordered["item"].to_numpy(), return_index=True, return_inverse=True)
    rank = np.empty(len(item_codes), dtype=np.int64)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(len(item_codes))  # code index -> appearance rank
    out = pd.DataFrame(
        {
            "user_id": user_ids.astype(np.int64) + 1,
            "item_id": rank[item_inverse] + 1,
            "timestamp": ordered["timestamp"].to_numpy(dtype=np.int64),
        }
    )
    raw_items = [items[code] for code in item_codes[np.argsort(first_seen, kind="stable")]]
    return Indexed(out, [users[code] for code in user_codes], raw_items)


def _with_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Mark each user's last row (rows sorted by user) as the target."""
    out = frame[COLUMNS].reset_index(drop=True)
    out["is_target"] = ~out["user_id"].duplicated(keep="last").to_numpy()
    return out


def _without_last(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["user_id"].duplicated(keep="last")]


def temporal_split(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """Test users: anyone active at or after T; never in training; valid and test share the same users."""
    threshold = int(frame["timestamp"].quantile(config.quantile, interpolation="nearest"))
    late = frame["timestamp"].to_numpy() >= threshold
    test_users = np.unique(frame["user_id"].to_numpy()[late])
    train = frame[~frame["user_id"].isin(test_users)]  # other users have no rows at or after T
    history = frame[late & frame["item_id"].isin(train["item_id"].unique()).to_numpy()]
    sizes = history["user_id"].value_counts()
    history = history[history["user_id"].isin(sizes.index[sizes >= config.min_history])]
    settings = {
        "method": "temporal",
        "quantile": config.quantile,
        "interpolation": "nearest",
        "threshold": threshold,
        "min_history": config.min_history,
        "test_users_dropped": int(len(test_users) - history["user_id"].nunique()),
    }
    train = train[COLUMNS].reset_index(drop=True)
    return Split(train, _with_targets(_without_last(history)), _with_targets(history), settings)


def leave_one_out_split(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """Last item: test target; second-to-last: validation target; the rest trains. Short users only train."""
    sizes = frame.groupby("user_id")["user_id"].transform("size").to_numpy()
    from_end = frame.groupby("user_id").cumcount(ascending=False).to_numpy()  # 0 on each user's last row
    evaluated = sizes >= config.min_history
    train = frame[~evaluated | (from_end >= 2)][COLUMNS].reset_index(drop=True)
    sequences = frame[evaluated]
    settings = {
        "method": "loo",
        "min_history": config.min_history,
        "train_only_users": int(frame.loc[~evaluated, "user_id"].nunique()),
    }
    return Split(train, _with_targets(_without_last(sequences)), _with_targets(sequences), settings)


SPLITTERS: dict[str, Callable[[pd.DataFrame, SplitConfig], Split]] = {
    "temporal": temporal_split,
    "loo": leave_one_out_split,
}


def split_interactions(frame: pd.DataFrame, config: SplitConfig) -> Split:
    """Split ``frame`` (sorted by user, time) with ``config.method``."""
    split = SPLITTERS[config.method](frame, config)
    if split.test.empty:
        raise UserError(
            f"the {config.method} split left no evaluation users: the data is too small or too sparse; "
            "loosen the filter (--min-user-items, --no-filter) or add data"
        )
    return split
