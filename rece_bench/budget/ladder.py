"""Candidates under a budget: each loss declares a *ladder* (``Loss.ladder``), a start configuration and a list of
cuts, each cut lowering one knob through a list of smaller values (batch size; negatives; RECE's extra chunks and
rounds, ...). The ladder is the preference order: the knob believed to buy the least quality per byte is cut first,
so the first candidate that fits is the one to train. Every candidate is no larger than the one before it in every
knob, so peak memory falls along the ladder and a binary search (``choice.choose``) finds the first fit.
Candidates a catalogue does not allow (more negatives than items) are dropped.

A TOML file (``--grid``) replaces the ladder of any loss: ``[rece]`` with the start knobs and
``cuts = [{rounds = [4, 2, 1]}, {batch_size = [32, 8]}]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rece_bench.errors import UserError

if TYPE_CHECKING:
    from rece_bench.config import TrainConfig


@dataclass(frozen=True)
class Candidate:
    """One configuration of the knobs a budget may change: the batch size and some loss parameters."""

    batch_size: int
    loss_params: Mapping[str, Any] = field(default_factory=dict)

    def knobs(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, **self.loss_params}

    def label(self) -> str:
        from rece_bench.losses.base import abbreviate

        return ", ".join(f"{abbreviate(k)} {v}" for k, v in self.knobs().items())

    def apply(self, base: TrainConfig, budget_bytes: int | None) -> TrainConfig:
        params = {**base.loss_params, **self.loss_params}
        eval_users = min(base.eval_users_chunk, self.batch_size)  # validation never needs more than a step
        return dataclasses.replace(
            base, batch_size=self.batch_size, loss_params=params, budget_bytes=budget_bytes, eval_users_chunk=eval_users
        )


@dataclass(frozen=True)
class Ladder:
    """A start configuration and the cuts that follow it, in order; ``candidates()`` walks it."""

    start: Mapping[str, Any]
    cuts: tuple[tuple[str, tuple[Any, ...]], ...]

    def __post_init__(self) -> None:
        if "batch_size" not in self.start:
            raise UserError(f"grid start {dict(self.start)} has no batch_size: add batch_size = 128")
        current = dict(self.start)
        for knob, values in self.cuts:
            if knob not in current:
                raise UserError(f"grid cut of {knob!r} names no knob of the start {dict(self.start)}")
            for value in values:
                if not value < current[knob]:
                    raise UserError(f"grid cut of {knob!r}: {value!r} is not below {current[knob]!r}: cut downwards")
                current[knob] = value

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(self.start)

    def candidates(self) -> list[Candidate]:
        """Most preferred first; each candidate is no larger than the one before it in every knob."""
        current = dict(self.start)
        out = [_candidate(current)]
        for knob, values in self.cuts:
            for value in values:
                current[knob] = value
                out.append(_candidate(current))
        return out


def usable_candidates(loss: str, candidates: Sequence[Candidate], num_items: int, base_params=None) -> list[Candidate]:
    """The candidates a catalogue of ``num_items`` allows (no more negatives than items, ...), order kept."""
    from rece_bench.losses import build_loss
    from rece_bench.losses.base import lookup, placeholder_data_inputs

    stand_ins = placeholder_data_inputs(lookup(loss), num_items)
    usable = []
    for candidate in candidates:
        try:
            build_loss(loss, num_items=num_items, **{**(base_params or {}), **candidate.loss_params}, **stand_ins)
        except UserError:
            continue
        usable.append(candidate)
    return usable


def _candidate(knobs: Mapping[str, Any]) -> Candidate:
    params = {k: v for k, v in knobs.items() if k != "batch_size"}
    return Candidate(int(knobs["batch_size"]), params)


def ladder_for(loss: str, grid: Mapping[str, Ladder] | None = None) -> Ladder:
    """The ladder of ``loss``: from ``grid`` (a ``--grid`` file) if it has one, else the one the loss declares."""
    from rece_bench.losses.base import LOSSES

    if grid and loss in grid:
        return grid[loss]
    declared = {name: cls.ladder for name, cls in LOSSES.items() if cls.ladder is not None}
    if loss not in declared:
        known = ", ".join(sorted({*declared, *(grid or {})}))
        raise UserError(f"no budget grid for loss {loss!r}: use one of {known}, or give --grid")
    return declared[loss]


def read_grid(path: Path) -> dict[str, Ladder]:
    """Ladders from TOML (Python 3.11+): ``[rece]`` with the start knobs and ``cuts = [{rounds = [4, 2, 1]}, ...]``."""
    from rece_bench.io import read_toml
    from rece_bench.losses.base import lookup

    data = read_toml(path, "pass an existing TOML file of ladders, e.g. [rece] batch_size = 128, rounds = 8")
    for loss in data:
        try:
            lookup(loss)
        except UserError as exc:
            raise UserError(f"{path}: grid section [{loss}]: {exc}") from None
    return {loss: _ladder_from_table(loss, table) for loss, table in data.items()}


def _number(loss: str, knob: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"grid entry {loss!r}: {knob} = {value!r} is not a number: write it like {knob} = 8")
    return value


def _ladder_from_table(loss: str, table: Any) -> Ladder:
    example = "write it like [rece] batch_size = 128, rounds = 8, cuts = [{rounds = [4, 2, 1]}]"
    if not isinstance(table, dict) or not isinstance(table.get("cuts", []), list):
        raise UserError(f"grid entry {loss!r} is not a table with a list of cuts: {example}")
    start = {k: _number(loss, k, v) for k, v in table.items() if k != "cuts"}
    cuts = []
    for cut in table.get("cuts", []):
        if not isinstance(cut, dict) or len(cut) != 1 or not isinstance(next(iter(cut.values())), list):
            raise UserError(f"grid entry {loss!r}: cut {cut!r} must name one knob and a list of values: {example}")
        knob, values = next(iter(cut.items()))
        cuts.append((knob, tuple(_number(loss, knob, value) for value in values)))
    return Ladder(start, tuple(cuts))
