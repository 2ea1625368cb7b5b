"""Loss cards: the benchmark's facts about each loss, kept beside its class and apart from its arithmetic.

A loss file defines its ``Loss`` (arithmetic and its own parameters) and registers a ``LossCard`` beside it
(``register_card(LossCard(name=..., ...))``), the way ``data/registry.py`` registers a ``DatasetCard``: its display
label and the short names of its knobs, its budget ladder (the order in which ``--budget`` tries configurations),
its row order in the report, the authors' published configurations and their Table 2 numbers. ``budget``,
``report``, ``presets``, the CLI's listing and ``bench-loss`` read the cards, so adding a loss stays one file, and
the ``nn.Module`` a user imports into their own model carries none of the benchmark.

This module is a leaf: it holds the ladder's data types (``Candidate``, ``Ladder``) and imports nothing of
``rece_bench`` but ``errors``, so the loss files, ``budget`` and ``report`` all import it downhill.
``budget/ladder.py`` keeps the lookups (``ladder_for``, ``usable_candidates``, the TOML grid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rece_bench.errors import UserError

if TYPE_CHECKING:
    from rece_bench.config import TrainConfig

PAPER_METRICS = 5  # NDCG@1, NDCG@5, NDCG@10, HR@5, HR@10: a row of the paper's Table 2


# ---------------------------------------------------------------- ladders (data)


@dataclass(frozen=True)
class Candidate:
    """One configuration of the knobs a budget may change: the batch size and some loss parameters."""

    batch_size: int
    loss_params: Mapping[str, Any] = field(default_factory=dict)

    def knobs(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, **self.loss_params}

    def label(self) -> str:
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


def _candidate(knobs: Mapping[str, Any]) -> Candidate:
    params = {k: v for k, v in knobs.items() if k != "batch_size"}
    return Candidate(int(knobs["batch_size"]), params)


# ---------------------------------------------------------------- cards


@dataclass(frozen=True)
class LossCard:
    """What the benchmark knows about the loss registered under ``name`` (``LOSSES[name]``)."""

    name: str
    label: str = ""  # how tables and plots name the loss ("RECE", "CE-"); empty: its name
    abbreviations: Mapping[str, str] = field(default_factory=dict)  # parameter -> short name in configuration labels
    ladder: Ladder | None = None  # the candidates ``--budget`` tries, most preferred first; None: no budget
    report_rank: int = 100  # row order in Table 2 and listings (the paper's order first)
    # dataset kind -> TrainConfig fields of the authors' published configuration (batch_size, loss_params, and
    # model fields that differ from the paper's SASRec setup); ``run --preset paper`` reads it.
    paper_presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # dataset kind -> the paper's Table 2 numbers (NDCG@1, NDCG@5, NDCG@10, HR@5, HR@10), shown beside ours.
    paper_results: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("LossCard needs the name its loss is registered under")
        for kind, numbers in self.paper_results.items():
            if len(numbers) != PAPER_METRICS:
                raise ValueError(
                    f"LossCard {self.name!r}: paper_results[{kind!r}] has {len(numbers)} numbers, not "
                    f"{PAPER_METRICS} (NDCG@1, NDCG@5, NDCG@10, HR@5, HR@10)"
                )


CARDS: dict[str, LossCard] = {}


def register_card(card: LossCard) -> LossCard:
    """Add a loss's card to ``CARDS``; a loss file calls it beside its ``@register`` class."""
    if card.name in CARDS:
        raise RuntimeError(f"loss card {card.name!r} registered twice")
    CARDS[card.name] = card
    return card


def card_for(name: str) -> LossCard:
    """The card of the loss ``name``; an unknown name raises a UserError listing the known ones."""
    if name not in CARDS:
        known = ", ".join(sorted(CARDS))
        raise UserError(f"unknown loss {name!r}: choose one of {known}")
    return CARDS[name]


def abbreviate(param: str, loss: str | None = None) -> str:
    """The short name of a knob in configuration labels: 'n_extra_chunks' -> 'n_ec', 'batch_size' -> 'batch'."""
    if param == "batch_size":
        return "batch"
    owners = [CARDS[loss]] if loss in CARDS else list(CARDS.values())
    return next((card.abbreviations[param] for card in owners if param in card.abbreviations), param)
