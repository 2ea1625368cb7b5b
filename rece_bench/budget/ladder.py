"""Candidates under a budget: each loss's card declares a *ladder* (``LossCard.ladder``, ``losses/cards.py``, with
the data types ``Ladder`` and ``Candidate``), a start configuration and a list of cuts, each cut lowering one knob
through a list of smaller values (batch size; negatives; RECE's extra chunks and rounds, ...). The ladder is the
preference order: the knob believed to buy the least quality per byte is cut first, so the first candidate that fits
is the one to train. Every candidate is no larger than the one before it in every knob, so peak memory falls along
the ladder and a binary search (``choice.choose``) finds the first fit. Candidates a catalogue does not allow (more
negatives than items) are dropped.

A TOML file (``--grid``) replaces the ladder of any loss: ``[rece]`` with the start knobs and
``cuts = [{rounds = [4, 2, 1]}, {batch_size = [32, 8]}]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rece_bench.errors import UserError
from rece_bench.io import read_toml
from rece_bench.losses.base import build_loss, lookup, placeholder_data_inputs
from rece_bench.losses.cards import CARDS, Candidate, Ladder

__all__ = ["Candidate", "Ladder", "ladder_for", "read_grid", "usable_candidates"]


def usable_candidates(loss: str, candidates: Sequence[Candidate], num_items: int, base_params=None) -> list[Candidate]:
    """The candidates a catalogue of ``num_items`` allows (no more negatives than items, ...), order kept."""
    stand_ins = placeholder_data_inputs(lookup(loss), num_items)
    usable = []
    for candidate in candidates:
        try:
            build_loss(loss, num_items=num_items, **{**(base_params or {}), **candidate.loss_params}, **stand_ins)
        except UserError:
            continue
        usable.append(candidate)
    return usable


def ladder_for(loss: str, grid: Mapping[str, Ladder] | None = None) -> Ladder:
    """The ladder of ``loss``: from ``grid`` (a ``--grid`` file) if it has one, else the one the loss declares."""
    if grid and loss in grid:
        return grid[loss]
    declared = {name: card.ladder for name, card in CARDS.items() if card.ladder is not None}
    if loss not in declared:
        known = ", ".join(sorted({*declared, *(grid or {})}))
        raise UserError(f"no budget grid for loss {loss!r}: use one of {known}, or give --grid")
    return declared[loss]


def read_grid(path: Path) -> dict[str, Ladder]:
    """Ladders from TOML (Python 3.11+): ``[rece]`` with the start knobs and ``cuts = [{rounds = [4, 2, 1]}, ...]``."""
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
