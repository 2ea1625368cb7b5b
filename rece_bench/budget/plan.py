"""Planning a budgeted run, before anything is measured: the candidates of a loss that its catalogue allows.

Planning reads only the ladder and the dataset's size; probing (``probe``) measures, and ``fit`` drives both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rece_bench.budget.ladder import Candidate, Ladder, ladder_for, usable_candidates


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
