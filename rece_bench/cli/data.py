"""Commands of the data area (registered on the shared app): ``prepare`` and ``datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from rece_bench.cli.common import DataDirOption, console, err_console, print_table, user_errors
from rece_bench.errors import UserError

if TYPE_CHECKING:
    from rece_bench.data.filter import FilterConfig
    from rece_bench.data.prepare import PrepareConfig, PrepareReport, SyntheticSpec

# typer reads these annotations at runtime, so they keep Optional[...] (noqa: UP045).
OptPath = Optional[Path]  # noqa: UP045
OptStr = Optional[str]  # noqa: UP045
OptInt = Optional[int]  # noqa: UP045


def _filter_config(
    no_filter: bool, min_item_users: int | None, min_user_items: int | None, k_core: bool
) -> FilterConfig | None:
    """None keeps the dataset's default filter; any knob builds the paper's filter with that change."""
    from rece_bench.data.filter import NO_FILTER, FilterConfig

    if no_filter:
        if min_item_users or min_user_items or k_core:
            raise UserError("--no-filter cannot go with --min-item-users, --min-user-items or --k-core: drop one")
        return NO_FILTER
    if min_item_users is None and min_user_items is None and not k_core:
        return None
    defaults = FilterConfig()
    return FilterConfig(
        min_item_users=defaults.min_item_users if min_item_users is None else min_item_users,
        min_user_items=defaults.min_user_items if min_user_items is None else min_user_items,
        iterative=k_core,
    )


def _synthetic_spec(
    dataset: str, users: int | None, items: int | None, interactions: int | None, seed: int, like: str | None
) -> SyntheticSpec | None:
    from rece_bench.data.prepare import SyntheticSpec

    given = {"users": users, "items": items, "interactions": interactions}
    if dataset != "synthetic":
        if like or any(value is not None for value in given.values()):
            raise UserError(f"--users/--items/--interactions/--like are for synthetic only, not {dataset}")
        return None
    base = SyntheticSpec.like_card(like, seed) if like else SyntheticSpec(seed=seed)
    chosen = {key: getattr(base, key) if value is None else value for key, value in given.items()}
    return SyntheticSpec(**chosen, seed=seed, like=like)


def _table_row(label: str, *values: float | int | None) -> list[str]:
    def show(value: float | int | None) -> str:
        if value is None:
            return "-"
        return f"{value:.5f}" if isinstance(value, float) else f"{value:,}"

    return [label, *(show(value) for value in values)]


def _density(counts: dict[str, int]) -> float:
    return counts["interactions"] / max(counts["users"] * counts["items"], 1)


def describe_filter(settings: dict) -> str:
    if not settings.get("enabled"):
        return "none"
    kind = "k-core (repeated)" if settings.get("iterative") else "one pass"
    items, users = settings["min_item_users"], settings["min_user_items"]
    return f"items >= {items} users, then users >= {users} items, {kind}"


def render_report(report: PrepareReport) -> None:
    counts, paper = report.counts, report.paper
    table = Table(title=f"{report.name}: prepared at {report.path}")
    for column in ("", "raw", "after filter", "paper"):
        table.add_column(column, justify="left" if not column else "right")
    for key in ("users", "items", "interactions"):
        table.add_row(*_table_row(key, counts["raw"][key], counts["filtered"][key], getattr(paper, key, None)))
    paper_density = None if paper is None else paper.density
    table.add_row(*_table_row("density", _density(counts["raw"]), _density(counts["filtered"]), paper_density))
    table.add_section()
    for part in ("train", "valid", "test"):
        table.add_row(
            f"{part} users / interactions",
            "",
            f"{counts[part]['users']:,} / {counts[part]['interactions']:,}",
            "",
        )
    print_table(table)
    split = report.meta["split"]
    threshold = f", T = {split['threshold']}" if "threshold" in split else ""
    console.print(f"split: {split['method']}{threshold}; filter: {describe_filter(report.meta['filter'])}")
    if report.meta["malformed_lines"]:
        err_console.print(
            f"[yellow]warning:[/] skipped {report.meta['malformed_lines']:,} malformed line(s), first at "
            f"{report.first_malformed} (use --strict to stop at the first)",
            highlight=False,
        )


def _run_prepare(config: PrepareConfig) -> PrepareReport:
    """prepare_dataset with a Rich bar that appears only when bytes are downloaded."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from rece_bench.data.prepare import prepare_dataset

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("download", *columns, console=err_console, transient=True) as bar:
        task = bar.add_task("download", total=None, visible=False)

        def on_bytes(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        with err_console.status(f"preparing {config.output_name}...", spinner="dots"):
            return prepare_dataset(config, progress=on_bytes)


def prepare(
    dataset: Annotated[str, typer.Argument(help="A dataset name (see `rece-bench datasets`).")],
    raw: Annotated[OptPath, typer.Option("--raw", help="Use this raw file instead of downloading.")] = None,
    raw_format: Annotated[OptStr, typer.Option("--format", help="Force a raw format (default: sniffed).")] = None,
    name: Annotated[OptStr, typer.Option(help="Store under this name (default: the dataset's).")] = None,
    split: Annotated[OptStr, typer.Option(help="temporal or loo (default: the dataset's).")] = None,
    min_item_users: Annotated[OptInt, typer.Option(help="Keep items with >= N distinct users (5).")] = None,
    min_user_items: Annotated[OptInt, typer.Option(help="Then users with >= N distinct items (20).")] = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="Keep every interaction.")] = False,
    k_core: Annotated[bool, typer.Option("--k-core", help="Repeat the filter until stable.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed line.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Prepare again over an existing dataset.")] = False,
    file: Annotated[OptPath, typer.Option(help="custom: a csv, tsv, parquet or jsonl file.")] = None,
    user_col: Annotated[str, typer.Option(help="custom: the user column.")] = "user_id",
    item_col: Annotated[str, typer.Option(help="custom: the item column.")] = "item_id",
    time_col: Annotated[str, typer.Option(help="custom: the time column (unix seconds or ISO).")] = "timestamp",
    users: Annotated[OptInt, typer.Option(help="synthetic: number of users.")] = None,
    items: Annotated[OptInt, typer.Option(help="synthetic: number of items.")] = None,
    interactions: Annotated[OptInt, typer.Option(help="synthetic: number of interactions.")] = None,
    seed: Annotated[int, typer.Option(help="synthetic: random seed.")] = 0,
    like: Annotated[OptStr, typer.Option(help="synthetic: copy a paper dataset's sizes.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Download (or read --raw), parse, filter, split and store a dataset, then show its statistics."""
    from rece_bench.data.parse import Columns
    from rece_bench.data.prepare import CustomSpec, PrepareConfig
    from rece_bench.paths import data_root

    with user_errors():
        config = PrepareConfig(
            dataset=dataset,
            data_root=data_root(data_dir),
            name=name,
            raw_path=raw,
            raw_format=raw_format,
            split=split,
            filter=_filter_config(no_filter, min_item_users, min_user_items, k_core),
            strict=strict,
            force=force,
            custom=None if file is None else CustomSpec(file, Columns(user_col, item_col, time_col)),
            synthetic=_synthetic_spec(dataset, users, items, interactions, seed, like),
        )
        report = _run_prepare(config)
    render_report(report)


def _prepared_under_own_names(root: Path, cards: set[str]) -> list[tuple[str, dict]]:
    """Sets prepared with --name (or synth-CARD): (name, meta.json), those whose meta.json reads; by name."""
    from rece_bench.data.store import read_meta

    found = []
    for meta_path in sorted(Path(root).glob("*/meta.json")):
        name = meta_path.parent.name
        if name in cards:
            continue
        try:
            found.append((name, read_meta(root, name)))
        except UserError:  # damaged or of another format: `run` on it says how to prepare it again
            continue
    return found


def datasets(data_dir: DataDirOption = None) -> None:
    """List the known datasets, the paper's statistics and whether each is prepared here."""
    from rece_bench.data.registry import DATASETS
    from rece_bench.data.store import dataset_exists
    from rece_bench.paths import data_root

    root = data_root(data_dir)
    # Two tables, so that the numbers fit 80 columns whole; the long sources fold in the second one.
    counts = Table(title=f"datasets (data root {root})")
    for column in ("name", "split", "users", "items", "interactions", "prepared"):
        counts.add_column(column, justify="right" if column in ("users", "items", "interactions") else "left")
    sources = Table(title="where each comes from")
    for column in ("name", "raw formats", "source"):
        sources.add_column(column, overflow="fold")
    for card in DATASETS.values():
        paper = card.paper
        numbers = ["-"] * 3 if paper is None else [f"{paper.users:,}", f"{paper.items:,}", f"{paper.interactions:,}"]
        prepared = "yes" if dataset_exists(root, card.name) else "no"
        counts.add_row(card.name, card.split, *numbers, prepared)
        sources.add_row(card.name, ", ".join(card.raw_formats) or "-", card.source)
    for name, meta in _prepared_under_own_names(root, set(DATASETS)):
        numbers = [f"{meta.get(key, 0):,}" for key in ("num_users", "num_items")]
        interactions = meta.get("counts", {}).get("filtered", {}).get("interactions")
        shown = f"{interactions:,}" if isinstance(interactions, int) else "-"
        counts.add_row(name, meta.get("split", {}).get("method", "-"), *numbers, shown, f"yes ({meta['dataset']})")
    print_table(counts)
    print_table(sources)
