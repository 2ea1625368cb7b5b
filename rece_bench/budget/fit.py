"""Training under a budget: choose the preferred candidate of a loss that fits, train it, check its peak.

A candidate fits when its probed peak is at most ``1 - headroom_fraction`` (95%) of the budget. On CUDA the training
process is then capped at the budget (``device.Compute.cap_memory``); a training peak above the budget makes the run
``over_budget``. The probes run in the run's precision and with the working block the budget gives a streaming
loss (``training.session.working_loss_params``), so they measure what training runs.

The modules that import torch or pandas (``training``, ``data``) are imported inside the functions
that need them, so that `rece-bench --help` stays fast; none of them imports ``budget`` back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rece_bench.budget.choice import Choice, NothingFits, choose
from rece_bench.budget.plan import Budget, plan_candidates
from rece_bench.budget.probe import Prober
from rece_bench.config import TrainConfig
from rece_bench.io import atomic_write_json
from rece_bench.memory import MemoryStats
from rece_bench.results import Outcome, RunIdentity, RunResult, ensure_results_root, result_row
from rece_bench.threads import with_config_threads

CHOICES_DIR = "budget"


@dataclass(frozen=True)
class BudgetedRun:
    result: RunResult
    choice: Choice

    @property
    def probe_ratio(self) -> float:
        """Probing time over training time (cached probes cost nothing)."""
        return self.choice.probe_time_s / max(self.result.train_time_s, 1e-9)


Trainer = Callable[..., RunResult]


@with_config_threads
def train_within_budget(
    config: TrainConfig,
    budget: Budget,
    data_root: Path | None,
    results_root: Path,
    progress=None,
    resume: bool = False,
    trainer: Trainer | None = None,
    data=None,
) -> BudgetedRun:
    """Choose the preferred candidate of ``config.loss`` that fits ``budget``, train it, check its peak.

    ``data``: the run data already loaded (``data.loader.RunData``); then ``data_root`` may be None. Otherwise it
    is loaded here, once, for the probes and the training. A given ``trainer`` (the sweep's, which trains a
    configuration once; the CLI's, which may restart) is called as ``train_run`` is, with that ``data``.
    """
    from rece_bench.data.loader import load_run_data
    from rece_bench.training.driver import train_run
    from rece_bench.training.session import compute_of

    ensure_results_root(results_root)
    compute = compute_of(config)  # a bad device fails here, before any probe
    data = data if data is not None else load_run_data(data_root, config.dataset, config.max_len)
    candidates = plan_candidates(config.loss, budget.grid, data.num_items, config.loss_params)
    probe = Prober(config, data_root, results_root, data=data, budget_bytes=budget.budget_bytes)
    choice = choose(config.loss, candidates, budget.budget_bytes, probe, budget.headroom_fraction)
    train_config = choice.candidate.apply(config, budget.budget_bytes)
    compute.cap_memory(budget.budget_bytes)  # on CUDA an allocation past the budget raises OutOfMemoryError
    trainer = trainer or train_run
    result = trainer(train_config, data_root, results_root, progress, resume=resume, data=data)
    record_choice(results_root, result, choice)
    return BudgetedRun(result, choice)


def record_choice(results_root: Path, result: RunResult, choice: Choice) -> None:
    """Beside the result: what was probed, what each probe measured and took, and the probe-time ratio."""
    probes = [
        {"candidate": p.candidate.knobs(), "peak_bytes": p.peak_bytes, "time_s": p.time_s, "cached": p.cached}
        for p in choice.probes
    ]
    atomic_write_json(
        Path(results_root) / CHOICES_DIR / f"{result.run_id}.json",
        {
            "run_id": result.run_id, "budget_bytes": choice.budget_bytes, "limit_bytes": choice.limit_bytes,
            "chosen": choice.candidate.knobs(), "probed_peak_bytes": choice.peak_bytes,
            "train_peak_bytes": result.peak_bytes, "probe_time_s": choice.probe_time_s,
            "train_time_s": result.train_time_s, "probes": probes,
        },
    )  # fmt: skip


def nothing_fits_result(config: TrainConfig, budget_bytes: int, error: NothingFits) -> RunResult:
    """The result of a budget no candidate fits (for sweeps): status over_budget, the smallest need as the peak."""
    smallest = error.smallest.candidate.apply(config, budget_bytes)
    identity = dataclasses.replace(RunIdentity.of(smallest), threads=None)  # nothing ran: no threads to record
    return result_row(identity, Outcome("over_budget", str(error)), MemoryStats(error.smallest.peak_bytes))
