"""The main job on the embedded default: prepare a small synthetic set, fit losses to one memory budget, train, and
compare with popularity. Every run is saved, so ``rece-bench report`` shows them again."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from rece_bench.budget.choice import Choice
from rece_bench.results import RunResult
from rece_bench.threads import DEFAULT_THREADS

DEMO_DATASET = "demo"


@dataclass(frozen=True)
class DemoConfig:
    data_root: Path
    results_root: Path
    users: int = 2_000
    items: int = 1_000
    interactions: int = 60_000
    losses: tuple[str, ...] = ("ce", "ce_neg", "rece")
    budget_bytes: int | None = 100 * 10**6  # CE must drop to batch 64; RECE keeps batch 128, n_ec 3, r 8
    epochs: int = 8
    patience: int = 3
    batch_size: int = 128
    max_len: int = 50
    seed: int = 1235
    threads: int = DEFAULT_THREADS  # torch's intra-op threads of each run (rece_bench.threads)
    precision: str = "fp32"  # fp32, bf16 or fp16: the losses' runs train in it (popularity needs none)

    def __post_init__(self) -> None:
        from rece_bench.device import precision_of

        precision_of(self.precision)  # before any data is prepared


ProgressFactory = Callable[[str], AbstractContextManager]


def prepare_demo_data(config: DemoConfig) -> None:
    from rece_bench.data.prepare import PrepareConfig, SyntheticSpec, prepare_dataset

    spec = SyntheticSpec(users=config.users, items=config.items, interactions=config.interactions, seed=0)
    prepare_dataset(
        PrepareConfig(dataset="synthetic", data_root=config.data_root, name=DEMO_DATASET, synthetic=spec, force=True)
    )


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo, with how its configuration was chosen under the budget (None without a budget)."""

    result: RunResult
    choice: Choice | None = None


def run_demo(config: DemoConfig, progress_for: ProgressFactory) -> list[DemoRun]:
    """Popularity first (for scale), then each loss in ``config.losses`` fitted to ``config.budget_bytes``."""
    from rece_bench.baselines import popularity_run
    from rece_bench.budget.fit import train_within_budget
    from rece_bench.budget.plan import Budget
    from rece_bench.config import TrainConfig
    from rece_bench.results import ensure_results_root
    from rece_bench.training.driver import train_run

    ensure_results_root(config.results_root)
    prepare_demo_data(config)
    runs = [DemoRun(popularity_run(DEMO_DATASET, config.data_root, config.results_root, config.max_len))]
    for loss in config.losses:
        train_config = TrainConfig(
            dataset=DEMO_DATASET, loss=loss, epochs=config.epochs, patience=config.patience,
            batch_size=config.batch_size, max_len=config.max_len, seed=config.seed, precision=config.precision,
            threads=config.threads,
        )  # fmt: skip
        with progress_for(loss) as progress:
            again = functools.partial(train_run, restart=True)  # the demo's data is prepared anew each time
            if config.budget_bytes is None:
                runs.append(DemoRun(again(train_config, config.data_root, config.results_root, progress)))
                continue
            budget = Budget(config.budget_bytes)
            done = train_within_budget(
                train_config, budget, config.data_root, config.results_root, progress, trainer=again
            )
            runs.append(DemoRun(done.result, done.choice))
    return runs
