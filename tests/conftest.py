"""Shared fixtures: a tiny prepared synthetic dataset and a tiny training configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    from rece_bench.data.prepare import PrepareConfig, SyntheticSpec, prepare_dataset

    root = tmp_path_factory.mktemp("data")
    spec = SyntheticSpec(users=300, items=120, interactions=6_000, seed=3)
    prepare_dataset(PrepareConfig(dataset="synthetic", data_root=root, name="tiny", synthetic=spec))
    return root


@pytest.fixture
def tiny_config():
    from rece_bench.config import TrainConfig

    def make(**overrides):
        base = dict(dataset="tiny", loss="ce", epochs=3, patience=3, batch_size=32, max_len=12, dim=16, seed=7)
        base.update(overrides)
        return TrainConfig(**base)

    return make
