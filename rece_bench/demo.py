"""The main job on the embedded default: prepare a small synthetic set, train, and compare with popularity."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from rece_bench.results import RunResult

DEMO_DATASET = "demo"


@dataclass(frozen=True)
class DemoConfig:
    data_root: Path
    results_root: Path
    users: int = 2_000
    items: int = 1_000
    interactions: int = 60_000
    losses: tuple[str, ...] = ("ce",)
    epochs: int = 25
    patience: int = 3
    batch_size: int = 128
    max_len: int = 50
    seed: int = 1235


ProgressFactory = Callable[[str], AbstractContextManager]


def prepare_demo_data(config: DemoConfig) -> None:
    from rece_bench.data.prepare import PrepareConfig, SyntheticSpec, prepare_dataset

    spec = SyntheticSpec(users=config.users, items=config.items, interactions=config.interactions, seed=0)
    prepare_dataset(
        PrepareConfig(dataset="synthetic", data_root=config.data_root, name=DEMO_DATASET, synthetic=spec, force=True)
    )


def run_demo(config: DemoConfig, progress_for: ProgressFactory) -> list[RunResult]:
    """Popularity first (for scale), then each loss in ``config.losses``; every run is saved for ``report``."""
    from rece_bench.baselines import popularity_run
    from rece_bench.config import TrainConfig
    from rece_bench.train import train_run

    prepare_demo_data(config)
    results = [popularity_run(DEMO_DATASET, config.data_root, config.results_root, config.max_len)]
    for loss in config.losses:
        train_config = TrainConfig(
            dataset=DEMO_DATASET, loss=loss, epochs=config.epochs, patience=config.patience,
            batch_size=config.batch_size, max_len=config.max_len, seed=config.seed,
        )  # fmt: skip
        with progress_for(loss) as progress:
            results.append(train_run(train_config, config.data_root, config.results_root, progress))
    return results
