"""The whole-step benchmark command: ``bench-step``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rece_bench.cli.common import (
    DataDirOption,
    PrecisionOption,
    ResultsDirOption,
    ThreadsOption,
    console,
    parse_params,
    print_table,
    resolved_device,
    user_errors,
)
from rece_bench.errors import UserError

DEFAULT_CONFIGS = ["ce", "rece:n_extra_chunks=3,rounds=8", "rece:n_extra_chunks=1,rounds=1"]


def parse_loss_config(text: str) -> tuple[str, dict]:
    """'rece:n_extra_chunks=3,rounds=8' -> ('rece', {'n_extra_chunks': 3, 'rounds': 8})."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise UserError(f"--config {text!r} has no loss name: write it like rece:n_extra_chunks=3,rounds=8")
    return name.strip(), parse_params([pair for pair in rest.split(",") if pair.strip()])


def bench_step(
    dataset: Annotated[str, typer.Option(help="A prepared dataset, e.g. `prepare synthetic --like gowalla`.")],
    config: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer reads the annotation at runtime
        typer.Option(help="LOSS[:KEY=VALUE,...], repeatable (default: ce and two RECE settings)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 32,
    max_len: Annotated[int, typer.Option(help="Maximum sequence length.")] = 200,
    steps: Annotated[int, typer.Option(help="Measured steps per configuration (median reported).")] = 3,
    warmup: Annotated[int, typer.Option(help="Unmeasured steps first (Adam state is created here).")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    precision: PrecisionOption = "fp32",
    seed: Annotated[int, typer.Option(help="Seed of the batch order and the model.")] = 0,
    threads: ThreadsOption = None,
    data_dir: DataDirOption = None,
    results_dir: ResultsDirOption = None,
    ops: Annotated[bool, typer.Option("--ops", help="Count the aten ops of one step (a GPU's launches).")] = False,
    profile: Annotated[
        Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
        typer.Option(help="Write the torch profiler's table of one step to this folder, a file per configuration."),
    ] = None,
) -> None:
    """Time and measure a whole training step (forward, loss, backward, Adam) for each loss configuration."""
    from datetime import datetime, timezone

    from rece_bench.bench.step import StepBenchConfig, run_step_benchmark
    from rece_bench.io import atomic_write_json
    from rece_bench.paths import data_root, results_root
    from rece_bench.results import ensure_results_root
    from rece_bench.threads import job_threads

    with user_errors():
        ensure_results_root(results_root(results_dir), "bench-step")
        configs = tuple(parse_loss_config(c) for c in config or DEFAULT_CONFIGS)
        bench = StepBenchConfig(
            dataset=dataset, data_root=data_root(data_dir), configs=configs,
            batch_size=batch_size, max_len=max_len, steps=steps, warmup=warmup, seed=seed,
            device=resolved_device(device), precision=precision, threads=job_threads(threads),
            ops=ops, profile_dir=profile,
        )  # fmt: skip
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = results_root(results_dir) / "bench-step" / f"{dataset}-{stamp}.json"
        done = []

        def save(row, status) -> None:  # after every row, so a run stopped by a time limit keeps what it measured
            done.append(row)
            atomic_write_json(path, [{**r.to_dict(), "threads": bench.threads} for r in done])
            status.update(f"done: {row.loss} {row.params}")

        with console.status("benchmarking steps...") as status:
            rows = run_step_benchmark(bench, on_row=lambda row: save(row, status))
    print_table(step_table(rows))
    console.print(f"torch threads: {bench.threads} (--threads)", highlight=False)


def step_table(rows):
    from rich.table import Table

    from rece_bench.cli.losses import ops_cell
    from rece_bench.memory import format_bytes

    base = next((r for r in rows if r.loss == "ce"), None)
    table = Table(
        title=f"whole training step, {rows[0].dataset}, {rows[0].num_items:,} items, batch {rows[0].batch_size}, "
        f"{rows[0].precision}"
    )
    for column in (
        "loss",
        "params",
        "positions",
        "step s (min-max)",
        "pos/s",
        "peak",
        "data+sampling",
        "time vs ce",
        "peak vs ce",
    ):
        table.add_column(column, justify="left" if column in ("loss", "params") else "right")
    counted = any(r.ops is not None for r in rows)  # --ops
    if counted:
        table.add_column("ops (data-dependent)", justify="right")
    for r in rows:
        time_ratio = f"{r.step_time_s / base.step_time_s:.3f}" if base else "-"
        peak_ratio = f"{r.peak_bytes / base.peak_bytes:.3f}" if base else "-"
        params = ", ".join(f"{k}={v}" for k, v in r.params.items()) or "-"
        table.add_row(
            r.loss, params, f"{r.positions:,.0f}", _step_spread(r), f"{r.positions_per_s:,.0f}",
            format_bytes(r.peak_bytes), f"{100 * r.data_share:.1f}%", time_ratio, peak_ratio,
            *([ops_cell(r.ops)] if counted else []),
        )  # fmt: skip
    return table


def _step_spread(row) -> str:
    """The median step time with the fastest and slowest measured step: this CPU's timings wander."""
    return f"{row.step_time_s:.2f} ({min(row.step_times_s):.2f}-{max(row.step_times_s):.2f})"
