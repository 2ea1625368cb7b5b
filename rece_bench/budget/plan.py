"""Planning a budgeted run, before anything is measured: the candidates of a loss that its catalogue allows.

Planning reads only the ladder and the dataset's size; probing (``probe``) measures, and ``fit`` drives both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rece_bench.budget.ladder import Candidate, Ladder, ladder_for, usable_candidates
from rece_bench.errors import UserError


@dataclass(frozen=True)
class Budget:
    """What a budgeted run is fitted to: ``budget_bytes``; the ladders to choose from (``grid``: a loss it names
    replaces its declared ladder); and the share of the budget kept free (a candidate fits when its probed peak is
    at most ``1 - headroom_fraction`` of the budget)."""

    budget_bytes: int
    grid: Mapping[str, Ladder] | None = None
    headroom_fraction: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes <= 0:
            raise UserError(f"budget_bytes must be a positive number of bytes, got {self.budget_bytes!r}")
        if not 0 <= self.headroom_fraction < 1:
            raise UserError(f"headroom_fraction must be in [0, 1), got {self.headroom_fraction!r}")


def check_not_chosen(
    loss: str, grid: Mapping[str, Ladder] | None, loss_params: Mapping[str, Any], batch_size: int | None
) -> None:
    """A budgeted run chooses its ladder's knobs: a loss parameter or batch size the user set too is a UserError
    naming them."""
    given = {*loss_params, *(["batch_size"] if batch_size is not None else [])}
    clash = set(ladder_for(loss, grid).knob_names) & given
    if clash:
        raise UserError(f"--budget chooses {', '.join(sorted(clash))}: drop those options, or drop --budget")


def catalogue_size(data_root: Path, dataset: str) -> int:
    """The number of items of a prepared dataset, from its ``meta.json``."""
    from rece_bench.data.store import read_meta  # imports pandas: here, so that `rece-bench --help` stays fast

    return int(read_meta(Path(data_root), dataset)["num_items"])


def plan_candidates(
    loss: str, grid: Mapping[str, Ladder] | None, num_items: int, loss_params: Mapping[str, Any]
) -> list[Candidate]:
    """The ladder's candidates of ``loss`` (``grid`` overrides the declared ladders), most preferred first, less
    those a catalogue of ``num_items`` cannot serve (e.g. more negatives than items)."""
    candidates = ladder_for(loss, grid).candidates()
    return usable_candidates(loss, candidates, num_items, loss_params)
