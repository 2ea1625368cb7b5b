"""The ``popularity`` command: a non-learned ranking for scale beside the trained models."""

from __future__ import annotations

from typing import Annotated

import typer

from rece_bench.cli.common import DataDirOption, ResultsDirOption, default_of, print_table, user_errors
from rece_bench.config import TrainConfig


def popularity(
    dataset: Annotated[str, typer.Option(help="A prepared dataset.")] = "synthetic",
    max_len: Annotated[int, typer.Option(help="Input length (only the exclusions depend on the input).")] = default_of(
        TrainConfig, "max_len"
    ),
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Rank items by training popularity and evaluate it like a model (saved as loss 'popularity')."""
    from rece_bench.baselines import popularity_run
    from rece_bench.paths import data_root, results_root
    from rece_bench.report.render import rich_table
    from rece_bench.report.tables import results_frame

    with user_errors():
        result = popularity_run(dataset, data_root(data_dir), results_root(results_dir), max_len)
    print_table(rich_table(results_frame([result.to_row()]), title=f"{dataset}: popularity"))
