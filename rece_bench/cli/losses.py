"""Commands of the losses area (registered on the shared app): ``losses`` and ``bench-loss``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from rece_bench.bench.loss import BenchLossConfig
from rece_bench.cli.common import (
    PrecisionOption,
    ResultsDirOption,
    ThreadsOption,
    console,
    default_of,
    print_table,
    resolved_device,
    user_errors,
)
from rece_bench.threads import job_threads

if TYPE_CHECKING:
    from rece_bench.bench.loss import BenchLossRow

OptInt = Optional[int]  # noqa: UP045 - typer reads the annotation at runtime
OptStrList = Optional[list[str]]  # noqa: UP045
OptPath = Optional[Path]  # noqa: UP045


def _bench_default(name: str):
    return default_of(BenchLossConfig, name)


def losses_command() -> None:
    """List every loss with its parameters, defaults and a one-line description; a loss that cannot run on this
    machine says why and how to fix it."""
    with user_errors():
        from rece_bench.losses import describe_losses
        from rece_bench.losses.base import DATA_INPUTS

        table = Table(title="Losses", show_lines=True)
        for column in ("name", "description", "parameters"):
            table.add_column(column, overflow="fold")
        for info in describe_losses():
            params = "\n".join(f"{p.name}: {p.type} = {p.default_text}  {p.help}" for p in info.params) or "-"
            note = " Needs batch (sequence of each position, the user's seen items)." if info.needs_batch else ""
            note += "".join(f" Built with {key}: {DATA_INPUTS[key]}." for key in info.data_inputs)
            name = f"{info.name}\n({info.label})" if info.label else info.name
            table.add_row(name, info.description + note + _availability_note(info.name), params)
        print_table(table)


def _availability_note(name: str) -> str:
    """'' when the loss runs here at every precision; else why not, on this machine's best device (cuda if any)."""
    import torch
    from rich.markup import escape

    from rece_bench.device import PRECISIONS
    from rece_bench.losses.base import lookup

    device = "cuda" if torch.cuda.is_available() else "cpu"
    reasons = {precision: lookup(name).unavailable_reason(device, precision) for precision in PRECISIONS}
    refused = [precision for precision, reason in reasons.items() if reason is not None]
    if not refused:
        return ""
    if len(refused) == len(reasons):
        return escape(f"\nUnavailable here: {reasons[refused[0]]}.")  # '[kernels]' is no markup
    return escape(f"\nNot at {', '.join(refused)}: {reasons[refused[0]]}.")


def bench_loss_command(
    items: Annotated[str, typer.Option(help="Catalogue sizes, comma separated (1e4,1e5,1e6).")] = "1e4,1e5,1e6",
    positions: Annotated[int, typer.Option(help="Non-pad positions N per step.")] = default_of(
        BenchLossConfig, "positions"
    ),
    dim: Annotated[int, typer.Option(help="Embedding width D.")] = _bench_default("dim"),
    loss: Annotated[OptStrList, typer.Option("--loss", help="A loss to run (repeatable; default: all).")] = None,
    param: Annotated[OptStrList, typer.Option("--param", help="LOSS.NAME=VALUE, e.g. rece.rounds=8.")] = None,
    repeats: Annotated[int, typer.Option(help="Runs per loss; the median time is reported.")] = default_of(
        BenchLossConfig, "repeats"
    ),
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    precision: PrecisionOption = default_of(BenchLossConfig, "precision"),
    seed: Annotated[int, typer.Option(help="Seed of the data and of the losses' generators.")] = default_of(
        BenchLossConfig, "seed"
    ),
    threads: ThreadsOption = None,
    results_dir: ResultsDirOption = None,
    ops: Annotated[
        bool, typer.Option("--ops", help="Count the aten ops of one forward+backward (a GPU's kernel launches).")
    ] = False,
    profile: Annotated[
        OptPath, typer.Option(help="Write the torch profiler's table of one forward+backward to this folder.")
    ] = None,
) -> None:
    """Forward+backward of each loss alone on random data: peak memory, median time, loss value."""
    with user_errors():
        from rece_bench.bench.loss import (
            all_losses,
            parse_items,
            parse_param,
            run_bench_loss,
        )
        from rece_bench.losses.base import check_available
        from rece_bench.paths import results_root

        config = BenchLossConfig(
            items=parse_items(items), positions=positions, dim=dim, losses=tuple(loss or all_losses()),
            params=tuple(parse_param(text) for text in param or ()), repeats=repeats, device=resolved_device(device),
            precision=precision, seed=seed, threads=job_threads(threads), ops=ops, profile_dir=profile,
        )  # fmt: skip
        for name in loss or ():  # a loss asked for by name must run here; by default those that cannot are skipped
            check_available(name, config.device, config.precision)
        table = _bench_table(ops)
        result = run_bench_loss(config, results_root(results_dir), on_row=lambda row: _progress(table, row))
        print_table(table)
        if result.path is not None:
            console.print(f"rows saved to {result.path}")


def _bench_table(ops: bool = False) -> Table:
    table = Table(title="Loss benchmark (forward+backward)")
    table.add_column("precision")
    columns = ("loss", "items", "params", "status", "peak", "beyond inputs", "median s", "loss value")
    for column in columns + (("ops (data-dependent)",) if ops else ()):
        table.add_column(column, justify="left" if column in {"loss", "params", "status"} else "right")
    return table


def _progress(table: Table, row: BenchLossRow) -> None:
    from rece_bench.memory import format_bytes

    params = ", ".join(f"{k}={v}" for k, v in row.params.items()) or "-"
    status = row.note if row.status != "ok" else "ok"
    time_s = "-" if row.median_time_s is None else f"{row.median_time_s:.2f}"
    value = "-" if row.loss_value is None else f"{row.loss_value:.4f}"
    cells = (format_bytes(row.peak_bytes), format_bytes(row.peak_beyond_inputs_bytes), time_s, value)
    if len(table.columns) > 9:  # --ops
        cells += (ops_cell(row.ops),)
    table.add_row(row.precision, row.loss, f"{row.num_items:,}", params, status, *cells)
    console.print(f"{row.loss} C={row.num_items:,}: {status}, {cells[0]}, {time_s} s", highlight=False)


def ops_cell(ops: dict | None) -> str:
    """'4,454 (27)': dispatched ops and, in brackets, the data-dependent ones; '-' when not counted."""
    return "-" if ops is None else f"{ops['total']:,} ({ops['data_dependent']:,})"
