"""Where data and results live: an explicit option, else an environment variable, else a folder here."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "RECE_BENCH_DATA"
RESULTS_ENV = "RECE_BENCH_RESULTS"


def data_root(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_ENV, "datasets"))


def results_root(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(RESULTS_ENV, "results"))
