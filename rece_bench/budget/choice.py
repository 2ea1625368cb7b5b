"""The choice: the first candidate of a ladder whose probed peak fits the budget less its headroom.

The smallest candidate is probed first (it tells at once when nothing fits), then a binary search over the ladder
finds the first fit in about log2(n) probes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rece_bench.budget.sizes import format_size
from rece_bench.errors import UserError
from rece_bench.memory import format_bytes

if TYPE_CHECKING:  # annotations only: the loss cards (and torch, through the losses) stay out of `--help`
    from rece_bench.losses.cards import Candidate


@dataclass(frozen=True)
class Probe:
    """The measured peak of one candidate (None: the probe itself ran out of memory)."""

    candidate: Candidate
    peak_bytes: int | None
    time_s: float  # 0 when it came from the cache
    cached: bool = False


@dataclass(frozen=True)
class Choice:
    budget_bytes: int
    limit_bytes: int  # the budget less the headroom
    candidate: Candidate
    probes: tuple[Probe, ...]  # in the order they ran

    @property
    def probe_time_s(self) -> float:
        return sum(p.time_s for p in self.probes)

    @property
    def peak_bytes(self) -> int | None:
        return next(p.peak_bytes for p in self.probes if p.candidate == self.candidate)


class NothingFits(UserError):
    """Even the smallest candidate needs more than the budget."""

    def __init__(self, loss: str, budget_bytes: int, smallest: Probe) -> None:
        self.smallest = smallest
        need = format_bytes(smallest.peak_bytes) if smallest.peak_bytes is not None else "more than the device has"
        hint = ""
        if smallest.peak_bytes is not None:
            hint = f": pass --budget {format_size(_round_up(smallest.peak_bytes)).replace(' ', '')} or more"
        super().__init__(
            f"nothing fits a budget of {format_size(budget_bytes)}: the smallest {loss} candidate "
            f"({smallest.candidate.label()}) needs {need}{hint}"
        )


def _round_up(n_bytes: int) -> int:
    """A budget a bit above a need, in whole MB: room for the headroom."""
    return math.ceil(n_bytes * 1.1 / 10**6) * 10**6


def choose(
    loss: str,
    candidates: Sequence[Candidate],
    budget_bytes: int,
    probe: Callable[[Candidate], Probe],
    headroom_fraction: float = 0.05,
) -> Choice:
    """The first candidate whose probed peak fits; the smallest is probed first, then a binary search."""
    if not candidates:
        raise UserError(f"the budget grid of {loss!r} has no candidates")
    limit = int(budget_bytes * (1 - headroom_fraction))
    probes: dict[int, Probe] = {}

    def fits(index: int) -> bool:
        if index not in probes:
            probes[index] = probe(candidates[index])
        peak = probes[index].peak_bytes
        return peak is not None and peak <= limit

    lo, hi = 0, len(candidates) - 1
    if not fits(hi):
        raise NothingFits(loss, budget_bytes, probes[hi])
    while lo < hi:  # invariant: candidates[hi] fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return Choice(budget_bytes, limit, candidates[hi], tuple(probes.values()))
