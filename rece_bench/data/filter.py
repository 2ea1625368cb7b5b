"""The paper's filter: one pass, items first, then users, on distinct counts; repeated interactions are kept.

``iterative=True`` repeats the two steps until nothing changes (a k-core); the paper does not do this, so it
is an opt-in for users who want it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from rece_bench.errors import UserError

MAX_CORE_ROUNDS = 1_000


@dataclass(frozen=True)
class FilterConfig:
    min_item_users: int = 5  # keep items with at least this many distinct users
    min_user_items: int = 20  # then keep users with at least this many distinct items
    enabled: bool = True
    iterative: bool = False  # repeat until stable (k-core) instead of the paper's single pass

    def __post_init__(self) -> None:
        for name in ("min_item_users", "min_user_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = name.replace("_", "-")
                raise UserError(f"FilterConfig.{name} must be an integer >= 1, got {value!r}: fix --{flag}")

    def settings(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        return {
            "enabled": True,
            "min_item_users": self.min_item_users,
            "min_user_items": self.min_user_items,
            "iterative": self.iterative,
        }


NO_FILTER = FilterConfig(enabled=False)


def _keep_by_distinct(frame: pd.DataFrame, key: str, other: str, minimum: int) -> pd.DataFrame:
    """Rows whose ``key`` has at least ``minimum`` distinct ``other`` values."""
    distinct = frame[[key, other]].drop_duplicates()[key].value_counts()
    keep = distinct.index[distinct >= minimum]
    return frame[frame[key].isin(keep)]


def filter_once(frame: pd.DataFrame, min_item_users: int, min_user_items: int) -> pd.DataFrame:
    """Items with >= min_item_users distinct users, then users (of the rest) with >= min_user_items items."""
    frame = _keep_by_distinct(frame, "item", "user", min_item_users)
    return _keep_by_distinct(frame, "user", "item", min_user_items)


def apply_filter(frame: pd.DataFrame, config: FilterConfig) -> pd.DataFrame:
    """The filtered interactions (columns ``user``, ``item``, ``timestamp``), row order kept."""
    if not config.enabled:
        return frame
    result = filter_once(frame, config.min_item_users, config.min_user_items)
    rounds = 1
    while config.iterative and rounds < MAX_CORE_ROUNDS:
        smaller = filter_once(result, config.min_item_users, config.min_user_items)
        if len(smaller) == len(result):
            break
        result, rounds = smaller, rounds + 1
    return result.reset_index(drop=True)
